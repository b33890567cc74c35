#include <sys/stat.h>
#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <byte.h>
#include <fmt.h>
#include <openreadclose.h>
#include <stralloc.h>
#include "address.h"
#include "passwd.h"

#define PASSWD_MAXPASS 512

static int passwd_fail(stralloc *err, const stralloc *path, unsigned long line, const char *what)
{
  char num[FMT_ULONG] = "";
  size_t n = fmt_ulong(num, line);
  stralloc_copyb(err, path->s, path->len ? path->len - 1 : 0);
  if (line) { stralloc_cats(err, ":"); stralloc_catb(err, num, n); }
  stralloc_cats(err, ": ");
  stralloc_cats(err, what);
  return -1;
}

#define PASSWD_EXPECTED "expected user@domain:$crypt-hash"

/* One line (without its \n), trimmed in place: 0 for a blank line or
 * a comment, 1 for user@domain:$hash with *colon set, -1 otherwise. */
/* The next line of data from *start (without its LF): 1, or 0 after
 * the last. */
static int passwd_line(const stralloc *data, size_t *start, char **l, size_t *len)
{
  size_t end;
  if (*start > data->len) return 0;
  end = *start + byte_chr(data->s + *start, data->len - *start, '\n');
  *l = data->s + *start;
  *len = end - *start;
  *start = end + 1;
  return 1;
}

static int passwd_parse(char **lp, size_t *lenp, size_t *colon)
{
  char *l = *lp;
  size_t len = *lenp;
  while (len && (l[len - 1] == ' ' || l[len - 1] == '\t' || l[len - 1] == '\r')) len--;
  while (len && (*l == ' ' || *l == '\t')) { l++; len--; }
  *lp = l;
  *lenp = len;
  if (!len || *l == '#') return 0;
  *colon = byte_chr(l, len, ':');
  if (*colon == len || *colon == 0 || address_at(l, *colon) == *colon || *colon + 1 >= len ||
      l[*colon + 1] != '$' || byte_chr(l, len, 0) < len)
    return -1;
  return 1;
}

/* Compares without stopping at the first difference. */
static int passwd_equal(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = la != lb;
  for (size_t i = 0; i < la && i < lb; i++) d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

int passwd_check(const struct config *c, const char *user, size_t userlen,
                 const char *pass, size_t passlen, stralloc *err)
{
  static struct crypt_data cd;   /* large: not on the stack */
  static stralloc path, data, key, pw, hash;
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  const char *computed;
  unsigned long line = 0;
  int found = 0, ok = 0;
  size_t start, len;
  char *l;

  if (!stralloc_copy(&path, &c->dir) || !stralloc_cats(&path, "/passwd") || !stralloc_0(&path))
    return passwd_fail(err, &path, 0, "out of memory");
  switch (openreadclose(path.s, &data, 1024)) {
  case 1: break;
  case 0: return passwd_fail(err, &path, 0, "missing");
  default: return passwd_fail(err, &path, 0, strerror(errno));
  }
  if (passlen > PASSWD_MAXPASS || byte_chr(pass, passlen, 0) < passlen) passlen = 0, found = -1;
  if (!address_key(user, userlen, &key)) return passwd_fail(err, &path, 0, "out of memory");
  for (start = 0; passwd_line(&data, &start, &l, &len);) {
    size_t colon;
    int r;
    line++;
    if (!(r = passwd_parse(&l, &len, &colon))) continue;
    if (r == -1) return passwd_fail(err, &path, line, PASSWD_EXPECTED);
    if (found) continue;
    if (!address_key(l, colon, &pw)) return passwd_fail(err, &path, 0, "out of memory");
    if (pw.len == key.len && byte_equal(pw.s, pw.len, key.s)) {
      if (!stralloc_copyb(&hash, l + colon + 1, len - colon - 1) || !stralloc_0(&hash))
        return passwd_fail(err, &path, 0, "out of memory");
      found = 1;
    }
  }
  if (!stralloc_copyb(&pw, pass, passlen) || !stralloc_0(&pw)) return passwd_fail(err, &path, 0, "out of memory");
  if (found != 1) {
    /* an unknown user costs the same as a known one */
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting)) return 0;
    crypt_r(pw.s, setting, &cd);
  } else {
    computed = crypt_r(pw.s, hash.s, &cd);
    ok = computed && computed[0] == '$' && passwd_equal(computed, hash.s);
  }
  byte_zero(pw.s, pw.len);
  byte_zero(&cd, sizeof cd);
  return ok;
}

struct passwd_user {
  char *key;              /* address_key of the user */
  unsigned long line;
};

static int passwd_usercmp(const void *a, const void *b)
{
  const struct passwd_user *x = a, *y = b;
  int r = strcmp(x->key, y->key);
  if (r) return r;
  return x->line < y->line ? -1 : x->line > y->line;
}

static void passwd_report(void (*report)(int, const char *, void *), void *arg,
                          int warning, const stralloc *path, unsigned long line,
                          const char *what)
{
  stralloc msg = {0};
  passwd_fail(&msg, path, line, what);
  if (stralloc_0(&msg)) report(warning, msg.s, arg);
  else report(0, "out of memory", arg);
  stralloc_free(&msg);
}

/* The hash can match some password: crypt(3) knows its method and
 * gives back a hash of the same setting and length. */
static int passwd_hashok(const char *hash, size_t len)
{
  static struct crypt_data cd;   /* large: not on the stack */
  const char *h;
  size_t set = len;
  while (set && hash[set - 1] != '$') set--;
  h = crypt_r("", hash, &cd);
  return h && h[0] == '$' && strlen(h) == len && byte_equal(h, set, hash);
}

int passwd_verify(const struct config *c,
                  void (*report)(int warning, const char *problem, void *arg), void *arg)
{
  stralloc path = {0}, data = {0}, key = {0};
  struct passwd_user *u = NULL;
  size_t nu = 0, i, start, len;
  char *l;
  unsigned long line = 0;
  struct stat st;
  int errors = 0;

  if (!stralloc_copy(&path, &c->dir) || !stralloc_cats(&path, "/passwd") || !stralloc_0(&path)) {
    report(0, "out of memory", arg);
    return 1;
  }
  switch (openreadclose(path.s, &data, 1024)) {
  case 1:
    /* a spare byte after the data, for the NUL that ends each line */
    if (!stralloc_0(&data)) { report(0, "out of memory", arg); errors++; goto out; }
    data.len--;
    break;
  case 0: goto out;   /* no file: no one may log in, which is fine */
  default:
    passwd_report(report, arg, 0, &path, 0, strerror(errno));
    errors++;
    goto out;
  }
  /* the hashes are secrets too (dictionary attacks) */
  if (stat(path.s, &st) == 0 && (st.st_mode & S_IROTH))
    passwd_report(report, arg, 1, &path, 0, "warning: readable by everyone; keep it for smtpd's user");
  u = malloc((data.len / 4 + 1) * sizeof *u);   /* a user line has 4 bytes at least */
  if (!u) { passwd_report(report, arg, 0, &path, 0, "out of memory"); errors++; goto out; }
  for (start = 0; passwd_line(&data, &start, &l, &len);) {
    char save;
    size_t colon;
    int r;
    line++;
    if (!(r = passwd_parse(&l, &len, &colon))) continue;
    if (r == -1) {
      passwd_report(report, arg, 0, &path, line, PASSWD_EXPECTED);
      errors++;
      continue;
    }
    save = l[len];
    l[len] = 0;   /* the byte after the line: '\n', a blank, or data's spare */
    if (!passwd_hashok(l + colon + 1, len - colon - 1)) {
      passwd_report(report, arg, 0, &path, line,
                    "the hash matches no password: cut short, or a method crypt(3) does not know");
      errors++;
    } else if (crypt_checksalt(l + colon + 1) == CRYPT_SALT_METHOD_LEGACY) {
      passwd_report(report, arg, 1, &path, line,
                    "warning: a legacy hash method; use yescrypt ($y$) or SHA-512-crypt ($6$)");
    }
    l[len] = save;
    if (!address_key(l, colon, &key) || !stralloc_0(&key) || !(u[nu].key = strdup(key.s))) {
      passwd_report(report, arg, 0, &path, 0, "out of memory");
      errors++;
      goto out;
    }
    u[nu++].line = line;
  }
  /* passwd_check takes the first line of a user: a later one is dead */
  if (nu) qsort(u, nu, sizeof *u, passwd_usercmp);
  for (i = 1; i < nu; i++)
    if (!strcmp(u[i - 1].key, u[i].key)) {
      passwd_report(report, arg, 0, &path, u[i].line, "user listed twice");
      errors++;
    }
out:
  for (i = 0; i < nu; i++) free(u[i].key);
  free(u);
  stralloc_free(&path);
  stralloc_free(&data);
  stralloc_free(&key);
  return errors;
}
