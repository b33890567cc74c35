/* check: validates the configuration before the programs meet it.
 * See dopis-check(8).
 *
 *   check [dir]
 *
 * Loads the configuration as every program does (config_load, which
 * stops at its first error), then checks what config_load leaves to
 * the moment of use: the passwd file, the TLS certificate and key,
 * the mailroot and queue directories and the deliver program.  Each
 * problem is one line on stderr, "file:line: problem" or
 * "file: problem", a warning's problem starting with "warning:".
 * Exits 0 when there are warnings at most, 78 (EX_CONFIG) on errors. */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <byte.h>
#include <fmt.h>
#include <openreadclose.h>
#include <str.h>
#include <stralloc.h>
#include "config.h"
#include "fsync.h"
#include "passwd.h"
#include "sibling.h"
#include "../smtpd_tls.h"

static struct config cfg;
static stralloc confpath;       /* .../dopis.conf, NUL-terminated */
static unsigned long errors;

/* One problem, one line, one write (lines of a concurrent run never
 * mix); a stderr that cannot be written leaves only the exit code to
 * say it, so a failed write is not reported again. */
static void check_say(const char *line, size_t len)
{
  stralloc out = {0};
  if (stralloc_copyb(&out, line, len) && stralloc_cats(&out, "\n"))
    (void)fsync_writeall(2, out.s, out.len);
  else
    (void)fsync_writeall(2, "out of memory\n", 14);
  stralloc_free(&out);
}

static void check_passwdreport(int warning, const char *problem, void *arg)
{
  (void)arg;
  if (!warning) errors++;
  check_say(problem, str_len(problem));
}

/* The line of dopis.conf that sets key, or 0 (the default applies).
 * config_load has accepted the file: at most one line sets it. */
static unsigned long check_keyline(const char *key)
{
  stralloc data = {0};
  size_t i, start, klen = str_len(key);
  unsigned long line = 0, found = 0;

  if (openreadclose(confpath.s, &data, 1024) != 1) return 0;
  for (i = start = 0; i <= data.len && !found; i++) {
    const char *l;
    size_t len;
    if (i < data.len && data.s[i] != '\n') continue;
    line++;
    l = data.s + start;
    len = i - start;
    start = i + 1;
    while (len && (*l == ' ' || *l == '\t')) { l++; len--; }
    if (len > klen && byte_equal(l, klen, key) &&
        (l[klen] == ' ' || l[klen] == '\t' || l[klen] == '='))
      found = line;
  }
  stralloc_free(&data);
  return found;
}

/* "dopis.conf:12: key /path: what" (the line of the key, when set) */
static void check_problem(int warning, const char *key, const char *path,
                          const char *what, const char *detail)
{
  stralloc msg = {0};
  char num[FMT_ULONG];
  unsigned long line = check_keyline(key);
  int ok = stralloc_copy(&msg, &confpath) && (msg.len--, 1);

  if (ok && line)
    ok = stralloc_cats(&msg, ":") && stralloc_catb(&msg, num, fmt_ulong(num, line));
  ok = ok && stralloc_cats(&msg, ": ") &&
       (!warning || stralloc_cats(&msg, "warning: ")) &&
       stralloc_cats(&msg, key) && stralloc_cats(&msg, " ") && stralloc_cats(&msg, path) &&
       (line || stralloc_cats(&msg, " (the default)")) &&
       stralloc_cats(&msg, ": ") && stralloc_cats(&msg, what) &&
       (!detail || (stralloc_cats(&msg, ": ") && stralloc_cats(&msg, detail)));
  if (ok) check_say(msg.s, msg.len);
  else check_say("out of memory", 13);
  if (!warning) errors++;
  stralloc_free(&msg);
}

/* A file the programs read: there, a regular file, readable now. */
static int check_readable(const char *key, const char *path, struct stat *st)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd == -1) {
    check_problem(0, key, path, "cannot read", strerror(errno));
    return 0;
  }
  if (fstat(fd, st) == -1) {
    check_problem(0, key, path, "cannot stat", strerror(errno));
    close(fd);
    return 0;
  }
  close(fd);   /* read-only: nothing to lose */
  if (!S_ISREG(st->st_mode)) {
    check_problem(0, key, path, "not a regular file", NULL);
    return 0;
  }
  return 1;
}

/* smtpd leaves TLS to dopis-tlsd, found beside smtpd as beside us */
static void check_tlsd(void)
{
  stralloc path = {0};
  const char *why;
  if (!sibling_path("tlsd", &path)) {
    check_say("out of memory", 13);
    errors++;
    return;
  }
  if (faccessat(AT_FDCWD, path.s, X_OK, AT_EACCESS) == -1) {
    why = strerror(errno);
    if (!stralloc_cats(&path, ": ") || !stralloc_cats(&path, why) || !stralloc_0(&path)) {
      check_say("out of memory", 13);
      errors++;
    } else {
      check_problem(0, "tls_cert", cfg.tls_cert.s, "set, but dopis-tlsd cannot be run", path.s);
    }
  }
  stralloc_free(&path);
}

static void check_tls(void)
{
  struct stat st;
  stralloc err = {0};
  int certok, keyok;

  if (!cfg.tls_cert.len) return;   /* config_load saw that both or neither are set */
  check_tlsd();
  certok = check_readable("tls_cert", cfg.tls_cert.s, &st);
  keyok = check_readable("tls_key", cfg.tls_key.s, &st);
  if (keyok && (st.st_mode & S_IROTH))
    check_problem(1, "tls_key", cfg.tls_key.s, "readable by everyone", NULL);
  if (!certok || !keyok) return;
  /* what smtpd does at STARTTLS: a key that does not fit the
   * certificate, or a file that is no PEM, shows here */
  if (!smtpd_tls_prepare(cfg.tls_cert.s, cfg.tls_key.s, &err)) {
    if (!stralloc_0(&err)) err.s = NULL;
    check_problem(0, "tls_cert", cfg.tls_cert.s, "cannot be used with tls_key",
                  err.s ? err.s : "out of memory");
  }
  stralloc_free(&err);
}

/* A directory the programs write in.  Returns 1 when it is one. */
static int check_dir(const char *key, const char *path, const char *missing)
{
  struct stat st;
  if (stat(path, &st) == -1) {
    if (errno == ENOENT) check_problem(1, key, path, missing ? missing : "missing", NULL);
    else check_problem(0, key, path, "cannot stat", strerror(errno));
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) {
    check_problem(0, key, path, "not a directory", NULL);
    return 0;
  }
  /* the effective user's rights, as the programs will have them */
  if (faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) == -1) {
    check_problem(0, key, path, "not writable by this user", strerror(errno));
    return 0;
  }
  return 1;
}

static void check_queue(void)
{
  static const char *const sub[] = { "info", "mess", "tmp" };
  stralloc p = {0};
  struct stat st;

  if (!check_dir("queue", cfg.queue.s,
                 "missing (deliver creates it when its parent directory exists)"))
    return;
  for (size_t i = 0; i < sizeof sub / sizeof *sub; i++) {
    if (!stralloc_copys(&p, cfg.queue.s) || !stralloc_cats(&p, "/") ||
        !stralloc_cats(&p, sub[i]) || !stralloc_0(&p)) {
      check_say("out of memory", 13);
      errors++;
      break;
    }
    /* missing ones are made by deliver; wrong ones stop it */
    if (stat(p.s, &st) == 0 || errno != ENOENT) check_dir("queue", p.s, NULL);
  }
  if (stralloc_copys(&p, cfg.queue.s) && stralloc_cats(&p, "/lock") && stralloc_0(&p) &&
      faccessat(AT_FDCWD, p.s, R_OK | W_OK, AT_EACCESS) == -1 && errno != ENOENT)
    check_problem(0, "queue", p.s, "the relay cannot open its lock", strerror(errno));
  stralloc_free(&p);
}

static void check_deliver(void)
{
  struct stat st;
  if (stat(cfg.deliver.s, &st) == -1) {
    if (errno == ENOENT) check_problem(0, "deliver", cfg.deliver.s, "missing", NULL);
    else check_problem(0, "deliver", cfg.deliver.s, "cannot stat", strerror(errno));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    check_problem(0, "deliver", cfg.deliver.s, "not a regular file", NULL);
    return;
  }
  if (faccessat(AT_FDCWD, cfg.deliver.s, X_OK, AT_EACCESS) == -1)
    check_problem(0, "deliver", cfg.deliver.s, "not executable by this user", strerror(errno));
}

int main(int argc, char **argv)
{
  static stralloc err;   /* static: still reachable at exit, for LeakSanitizer */
  int loaded;

  if (argc > 2 || (argc == 2 && (!argv[1][0] || argv[1][0] == '-'))) {
    check_say("usage: check [configuration-directory]", 38);
    return EX_USAGE;
  }
  /* the directory to check, as the programs are told it */
  if (argc == 2 && setenv("DOPIS_CONF", argv[1], 1) == -1) {
    check_say("out of memory", 13);
    return EX_OSERR;
  }
  loaded = config_load(&cfg, &err);
  if (!loaded) {
    check_say(err.s, err.len);
    errors++;
  }
  /* config_load sets dir first: passwd can be checked even so */
  if (cfg.dir.len) passwd_verify(&cfg, check_passwdreport, NULL);
  if (loaded) {
    if (!stralloc_copy(&confpath, &cfg.dir) || !stralloc_cats(&confpath, "/dopis.conf") ||
        !stralloc_0(&confpath)) {
      check_say("out of memory", 13);
      return EX_OSERR;
    }
    check_tls();
    check_dir("mailroot", cfg.mailroot.s,
              "missing (local deliveries fail until it is created)");
    check_queue();
    check_deliver();
  }
  return errors ? EX_CONFIG : 0;
}
