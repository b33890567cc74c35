/* libFuzzer harness: lib/passwd.c, the AUTH credentials file, as
 * smtpd reads it (passwd_check) and as dopis-check does
 * (passwd_verify).
 *
 * Input: the file, the user and the password, separated by one byte
 * 0xff.  crypt_r is replaced by a stand-in here: the hashing is
 * libxcrypt's, not dopis's, and a file that names yescrypt or
 * "rounds=999999999" would otherwise make a run take seconds.  The
 * stand-in gives back the setting itself for the password "right",
 * the setting with its last byte changed for any other, and "*0" for
 * a setting that does not start with "$" or is "$" alone.  Checked:
 *   - passwd_check: -1 only with a reason; 1 only for "right";
 *   - passwd_verify: as many errors as reports that are no warnings,
 *     each one line; a file it finds no error in is one passwd_check
 *     can read (never -1). */
#include <crypt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stralloc.h>
#include "config.h"
#include "passwd.h"
#include "fuzz.h"

static struct config c;
static stralloc err;
static int reports;

char *crypt_r(const char *phrase, const char *setting, struct crypt_data *data)
{
  size_t n = strlen(setting);
  /* as libxcrypt, a failure token for what is no setting ("$" alone
   * is none either: it would match every password here) */
  if (setting[0] != '$' || n < 2 || n >= sizeof data->output) return strcpy(data->output, "*0");
  memcpy(data->output, setting, n + 1);
  if (strcmp(phrase, "right")) data->output[n - 1] = data->output[n - 1] == 'A' ? 'B' : 'A';
  return data->output;
}

static void fuzz_report(int warning, const char *problem, void *arg)
{
  (void)arg;
  FUZZ_CHECK(problem && *problem && !strchr(problem, '\n'), "report not one line");
  if (!warning) reports++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc; (void)argv;
  if (!stralloc_copys(&c.dir, fuzz_dir()) || !stralloc_0(&c.dir)) fuzz_fail("out of memory");
  c.dir.len--;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct fuzz_part p[3];
  size_t n = fuzz_split(data, size, (char)0xff, p, 3);
  char *user, *pass;
  size_t ulen = n > 1 ? p[1].len : 0, plen = n > 2 ? p[2].len : 0;
  int r, errors;

  fuzz_write(c.dir.s, "passwd", p[0].s, p[0].len);
  user = fuzz_dup(n > 1 ? p[1].s : "", ulen);
  pass = fuzz_dup(n > 2 ? p[2].s : "", plen);
  stralloc_zero(&err);
  r = passwd_check(&c, user, ulen, pass, plen, &err);
  FUZZ_CHECK(r >= -1 && r <= 1, "passwd_check gave %d", r);
  FUZZ_CHECK(r != -1 || err.len > 0, "-1 without a reason");
  FUZZ_CHECK(r != 1 || (plen == 5 && !memcmp(pass, "right", 5)), "a wrong password taken");
  reports = 0;
  errors = passwd_verify(&c, fuzz_report, NULL);
  FUZZ_CHECK(errors == reports, "%d errors, %d reported", errors, reports);
  FUZZ_CHECK(errors || r != -1, "passwd_verify finds no error, passwd_check fails: %.*s", (int)err.len, err.s);
  free(user);
  free(pass);
  return 0;
}
