/* queue: the queue tool (dopis-queue, and mailq).  See dopis-queue(8).
 *
 *   queue [--json] [list]     every message and recipient
 *   queue [--json] show ID    one message: envelope, states, the message
 *   queue flush [ID]          the relay now: relay -f, or relay -i ID
 *   queue delete ID           removes the message, no report
 *   queue bounce ID           fails its pending recipients; relay -i ID
 *                             sends the report
 *
 * Changes are made under the relay's lock, so that no relay pass
 * holding the message in memory writes over them; sending is the
 * relay's, which is exec'd.  Run as root, it first becomes the owner
 * of the queue, so that every file it (or the relay) writes there
 * stays the queue owner's. */
#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <scan.h>
#include <str.h>
#include <stralloc.h>
#include "config.h"
#include "fsync.h"
#include "log.h"
#include "queueinfo.h"
#include "sibling.h"
#include "qtool.h"

#define QTOOL_USAGE "queue [--json] [list | show ID] | flush [ID] | delete ID | bounce ID"
#define QTOOL_BOUNCED "bounced by the administrator"

struct config cfg;
static int lockfd = -1;

unsigned long qtool_now(void)
{
  static unsigned long now;
  if (!now) {
    const char *s = getenv("DOPIS_NOW");
    unsigned long n;
    if (s && *s && scan_ulong(s, &n) == str_len(s) && n) now = n;
    else now = (unsigned long)time(NULL);
  }
  return now;
}

int qtool_path(stralloc *p, const char *sub, const char *qid)
{
  if (!stralloc_copys(p, cfg.queue.s) || !stralloc_cats(p, "/") || !stralloc_cats(p, sub))
    return 0;
  if (qid && (!stralloc_cats(p, "/") || !stralloc_cats(p, qid))) return 0;
  return stralloc_0(p);
}

static void __attribute__((noreturn)) qtool_dieb(int code, const char *event, const char *qid,
                                                 const char *error, size_t len)
{
  log_start();
  if (qid) log_str("id", qid);
  log_str("event", event);
  if (error) log_buf("error", error, len);
  log_end();
  _exit(code);
}

void qtool_die(int code, const char *event, const char *qid, const char *error)
{
  qtool_dieb(code, event, qid, error, error ? str_len(error) : 0);
}

/* the same with why (not NUL-terminated) as the error */
static void __attribute__((noreturn)) qtool_diewhy(int code, const char *event,
                                                   const char *qid, const stralloc *why)
{
  qtool_dieb(code, event, qid, why->s, why->len);
}

static void __attribute__((noreturn)) qtool_usage(void)
{
  qtool_die(EX_USAGE, "usage", NULL, QTOOL_USAGE);
}

/* an errno as an exit code */
static int qtool_code(int e)
{
  return e == EACCES || e == EPERM ? EX_NOPERM : e == ENOMEM ? EX_OSERR : EX_IOERR;
}

/* A queue name, never a path: the relay's rule. */
static void qtool_checkid(const char *qid)
{
  if (!*qid || qid[0] == '.' || qid[str_chr(qid, '/')]) qtool_die(EX_USAGE, "usage", qid, "bad id");
}

/* Root becomes the queue's owner: a file root wrote there (an info
 * file, the lock) would be unreadable for the relay.  Anyone else is
 * who they are; a queue not theirs fails with EACCES where it matters. */
static void qtool_owner(void)
{
  struct stat st;
  if (geteuid() != 0) return;
  if (stat(cfg.queue.s, &st) == -1) {
    if (errno == ENOENT) return;   /* no queue: nothing will be written */
    qtool_die(qtool_code(errno), "failed", NULL, strerror(errno));
  }
  if (st.st_uid == 0) return;
  if (setgroups(0, NULL) == -1 || setgid(st.st_gid) == -1 || setuid(st.st_uid) == -1)
    qtool_die(EX_OSERR, "failed", NULL, "cannot become the queue's owner");
}

/* The relay's lock, not waited for: a pass can take minutes. */
static void qtool_lock(const char *qid)
{
  static stralloc p;
  if (!qtool_path(&p, "lock", NULL)) qtool_die(EX_OSERR, "failed", qid, "out of memory");
  lockfd = open(p.s, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lockfd == -1) {
    if (errno == ENOENT) qtool_die(EX_NOINPUT, "no-such-message", qid, "no queue");
    qtool_die(qtool_code(errno), "failed", qid, strerror(errno));
  }
  if (flock(lockfd, LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK)
      qtool_die(EX_TEMPFAIL, "busy", qid, "a relay pass holds the queue lock; try again");
    qtool_die(EX_OSERR, "failed", qid, strerror(errno));
  }
}

static void qtool_unlock(void)
{
  if (lockfd != -1) close(lockfd);   /* releases the flock */
  lockfd = -1;
}

/* Exits 66 unless info/<qid> is there. */
static void qtool_exists(const char *qid)
{
  static stralloc p;
  if (!qtool_path(&p, "info", qid)) qtool_die(EX_OSERR, "failed", qid, "out of memory");
  if (access(p.s, F_OK) == -1) {
    if (errno == ENOENT || errno == ENOTDIR)
      qtool_die(EX_NOINPUT, "no-such-message", qid, "not in the queue");
    qtool_die(qtool_code(errno), "failed", qid, strerror(errno));
  }
}

/* Runs the relay in this process: relay -f, or relay -i qid. */
static void __attribute__((noreturn)) qtool_relay(const char *qid, const char *after)
{
  static stralloc path;
  char *argv[4];
  stralloc why = {0};

  qtool_unlock();
  if (!sibling_path("relay", &path)) qtool_die(EX_OSERR, "failed", qid, "out of memory");
  argv[0] = path.s;
  argv[1] = qid ? "-i" : "-f";
  argv[2] = (char *)qid;
  argv[3] = NULL;
  execv(path.s, argv);
  fsync_why(&why, "exec", path.s);
  if (after && !stralloc_cats(&why, after)) why.len = 0;
  qtool_diewhy(EX_OSERR, "failed", qid, &why);
}

static int qtool_delete(const char *qid)
{
  static stralloc why, p;

  qtool_lock(qid);
  qtool_exists(qid);
  /* info/ first: from then on the message is not queued */
  if (qinfo_remove(cfg.queue.s, qid, &why) == -1)
    qtool_diewhy(qtool_code(errno), "failed", qid, &why);
  if (!qtool_path(&p, "mess", NULL)) qtool_die(EX_OSERR, "failed", qid, "out of memory");
  if (fsync_dir(p.s) == -1) {
    fsync_why(&why, "fsync", p.s);
    qtool_diewhy(qtool_code(errno), "failed", qid, &why);
  }
  qtool_unlock();
  log_start();
  log_str("id", qid);
  log_str("event", "deleted");
  log_end();
  return 0;
}

/* Every pending recipient becomes "failed, report owed" (the state the
 * relay gives a 5xx), and the relay sends the report at once. */
static int qtool_bounce(const char *qid)
{
  static stralloc p, why;
  struct qinfo qi;
  unsigned long n = 0;

  qtool_lock(qid);
  if (!qtool_path(&p, "info", qid)) qtool_die(EX_OSERR, "failed", qid, "out of memory");
  if (qinfo_read(&qi, p.s, &why) == -1) {
    if (errno == ENOENT) qtool_die(EX_NOINPUT, "no-such-message", qid, "not in the queue");
    qtool_diewhy(errno == EINVAL ? EX_DATAERR : qtool_code(errno), "bad-info", qid, &why);
  }
  for (size_t i = 0; i < qi.n; i++) {
    struct qinfo_rcpt *r = &qi.r[i];
    if (r->state != QINFO_PENDING) continue;
    r->state = QINFO_FAILED;
    r->next = 0;
    if (!qinfo_settext(r, "5.0.0", NULL, QTOOL_BOUNCED, sizeof QTOOL_BOUNCED - 1))
      qtool_die(EX_OSERR, "failed", qid, "out of memory");
    n++;
  }
  if (n && qinfo_write(&qi, cfg.queue.s, qid, &why) == -1)
    qtool_diewhy(qtool_code(errno), "failed", qid, &why);
  qinfo_free(&qi);
  log_start();
  log_str("id", qid);
  log_str("event", "bounced");
  log_ulong("recipients", n);
  log_end();
  /* failed recipients wait for their report even when none was pending */
  qtool_relay(qid, "; the next relay pass sends the report");
}

int main(int argc, char **argv)
{
  static stralloc err;
  const char *args[3];
  int n = 0, json = 0, ok = 0;
  const char *cmd;

  log_init("queue");
  for (int i = 1; i < argc; i++) {
    if (!str_diff(argv[i], "--json")) json = 1;
    else if (argv[i][0] == '-' || n == 2) qtool_usage();
    else args[n++] = argv[i];
  }
  cmd = n ? args[0] : "list";
  /* the command line first: a usage error needs no configuration */
  if (!str_diff(cmd, "list")) ok = n <= 1;
  else if (!str_diff(cmd, "show")) ok = n == 2;
  else if (!str_diff(cmd, "flush")) ok = !json;
  else if (!str_diff(cmd, "delete") || !str_diff(cmd, "bounce")) ok = n == 2 && !json;
  if (!ok) qtool_usage();
  if (n == 2) qtool_checkid(args[1]);
  if (!config_load(&cfg, &err)) qtool_diewhy(EX_CONFIG, "config-error", NULL, &err);
  qtool_owner();

  if (!str_diff(cmd, "list")) return show_list(json);
  if (!str_diff(cmd, "show")) return show_one(args[1], json);
  if (!str_diff(cmd, "delete")) return qtool_delete(args[1]);
  if (!str_diff(cmd, "bounce")) return qtool_bounce(args[1]);
  if (n == 2) qtool_exists(args[1]);
  qtool_relay(n == 2 ? args[1] : NULL, NULL);   /* flush */
}
