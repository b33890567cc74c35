/* Messages of the queue in memory: their info files read, each
 * delivery result applied to the recipient's state record and logged,
 * and the info file rewritten at once, so that a crash loses at most
 * the result of the transaction in flight. */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <byte.h>
#include <case.h>
#include <str.h>
#include <stralloc.h>
#include "fsync.h"
#include "log.h"
#include "relay.h"

static int msg_path(stralloc *p, const struct msg *m, const char *sub)
{
  return stralloc_copys(p, queuedir) && stralloc_cats(p, "/") &&
         stralloc_cats(p, sub) && stralloc_cats(p, "/") &&
         stralloc_cats(p, m->qid.s) && stralloc_0(p);
}

/* "KEY=value" or "KEY" at p, case-insensitive key */
static int msg_iskey(const char *p, size_t len, const char *key)
{
  size_t k = str_len(key);
  return len >= k && case_equalb(p, k, key) && (len == k || p[k] == '=');
}

static int msg_param(const char *p, size_t len, void *arg)
{
  struct msg *m = arg;
  if (msg_iskey(p, len, "BODY")) {
    if (len == 13 && case_equalb(p + 5, 8, "8BITMIME")) m->flags |= MSG_8BIT;
    if (len == 15 && case_equalb(p + 5, 10, "BINARYMIME")) m->flags |= MSG_BINARY;
  } else if (len == 8 && case_equalb(p, 8, "SMTPUTF8")) {
    m->flags |= MSG_SMTPUTF8;
  } else if (msg_iskey(p, len, "RET") && len > 4) {
    if (len == 8 && case_equalb(p + 4, 4, "FULL")) m->flags |= MSG_RETFULL;
    if (len == 8 && case_equalb(p + 4, 4, "HDRS")) m->flags |= MSG_RETHDRS;
  } else if (msg_iskey(p, len, "ENVID") && len > 6) {
    m->envid = p + 6;
  } else if (len == 13 && case_equalb(p, 13, "XDOUBLEBOUNCE")) {
    m->flags |= MSG_DOUBLEBOUNCE;
  }
  return 0;
}

int msg_notify(const struct qinfo_rcpt *r)
{
  const char *s = r->notify;
  int bits = 0;
  if (!s) return 0;
  bits = NOTIFY_GIVEN;
  while (*s) {
    size_t n = str_chr(s, ',');
    if (n == 5 && case_equalb(s, 5, "NEVER")) bits |= NOTIFY_NEVER;
    if (n == 7 && case_equalb(s, 7, "SUCCESS")) bits |= NOTIFY_SUCCESS;
    if (n == 7 && case_equalb(s, 7, "FAILURE")) bits |= NOTIFY_FAILURE;
    if (n == 5 && case_equalb(s, 5, "DELAY")) bits |= NOTIFY_DELAY;
    s += n;
    if (*s) s++;
  }
  return bits;
}

int msg_load(struct msg *m, const char *qid)
{
  static stralloc p, why;
  struct stat st;

  byte_zero(m, sizeof *m);
  if (!stralloc_copys(&m->qid, qid) || !stralloc_0(&m->qid) ||
      !msg_path(&p, m, "info"))
    return -1;
  if (qinfo_read(&m->qi, p.s, &why) == -1) {
    if (errno == ENOENT) return -1;   /* removed meanwhile */
    m->broken = 1;
    log_start();
    log_str("id", qid);
    log_str("event", "bad-info");
    log_buf("error", why.s, why.len);
    log_end();
    return 0;
  }
  qinfo_params(&m->qi, msg_param, m);
  if (!msg_path(&p, m, "mess")) return -1;
  if (stat(p.s, &st) == -1) {
    m->broken = 1;
    fsync_why(&why, "stat", p.s);
    log_start();
    log_str("id", qid);
    log_str("event", "no-message");
    log_buf("error", why.s, why.len);
    log_end();
    return 0;
  }
  m->size = (unsigned long long)st.st_size;
  /* deliver always writes C; should it be missing, the file's age */
  if (!m->qi.created) m->qi.created = (unsigned long)st.st_mtime;
  return 0;
}

void msg_free(struct msg *m)
{
  qinfo_free(&m->qi);
  stralloc_free(&m->qid);
}

int msg_open(const struct msg *m, stralloc *why)
{
  static stralloc p;
  int fd;
  if (!msg_path(&p, m, "mess")) { errno = ENOMEM; return fsync_why(why, "open", NULL); }
  fd = open(p.s, O_RDONLY | O_CLOEXEC);
  if (fd == -1) return fsync_why(why, "open", p.s);
  return fd;
}

int msg_count(struct msg *m, stralloc *why)
{
  char buf[65536];
  struct wire w;
  unsigned long long n = 0;
  int fd;

  if (m->counted) return 0;
  fd = msg_open(m, why);
  if (fd == -1) return -1;
  wire_init(&w, 0, (m->flags & MSG_BINARY) != 0);
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r == -1) {
      if (errno == EINTR) continue;
      fsync_why(why, "read", m->qid.s);
      close(fd);
      return -1;
    }
    if (r == 0) break;
    n += wire_count(&w, buf, (size_t)r);
  }
  close(fd);
  m->wiresize = n + wire_countend(&w);
  m->counted = 1;
  return 0;
}

/* retry_min, doubled per attempt, at most retry_max */
static unsigned long msg_backoff(unsigned long attempts)
{
  unsigned long d = cfg.retry_min;
  while (attempts-- > 1 && d < cfg.retry_max) d *= 2;
  return d > cfg.retry_max ? cfg.retry_max : d;
}

void msg_result(struct msg *m, size_t i, enum result res,
                const char *status, const char *host, const char *text,
                size_t textlen, int dsnpeer)
{
  msg_result_tls(m, i, res, status, host, text, textlen, dsnpeer, NULL);
}

void msg_result_tls(struct msg *m, size_t i, enum result res,
                    const char *status, const char *host, const char *text,
                    size_t textlen, int dsnpeer, const struct msg_tls *tls)
{
  struct qinfo_rcpt *r = &m->qi.r[i];
  unsigned long now = relay_now();
  const char *what;

  r->attempts++;
  if (!r->first) r->first = now;
  r->next = 0;
  if (res == RES_OK) {
    /* NOTIFY=SUCCESS that the peer cannot take over: we report it */
    r->state = (msg_notify(r) & NOTIFY_SUCCESS) && !dsnpeer
               ? QINFO_RELAYED : QINFO_DELIVERED;
    what = "delivered";
  } else if (res == RES_FAIL) {
    r->state = QINFO_FAILED;
    what = "bounced";
  } else if (now >= m->qi.created + cfg.max_queue_lifetime) {
    /* a transient trouble that outlived the queue lifetime */
    r->state = QINFO_FAILED;
    status = "4.4.7";
    what = "bounced";
  } else {
    r->state = QINFO_PENDING;
    r->next = now + msg_backoff(r->attempts);
    what = "deferred";
  }
  if (!qinfo_settext(r, status, host, text, textlen)) {
    /* out of memory: the state itself still counts */
    stralloc_zero(&r->text);
  }
  log_start();
  log_str("id", m->qid.s);
  log_str("rcpt", r->addr);
  log_str("host", host ? host : "-");
  log_buf("reply", text, textlen > 300 ? 300 : textlen);
  log_str("status", what);
  if (status) log_str("dsn", status);
  log_ulong("attempts", r->attempts);
  log_ulong("delay", now >= m->qi.created ? now - m->qi.created : 0);
  /* whether the message crossed the network encrypted */
  if (tls) {
    log_str("tls", tls->version ? tls->version : "none");
    if (tls->version) log_str("cipher", tls->cipher);
    log_str("verify", tls->verify);
  }
  log_end();
}

/* Group commit.  A state file renamed into info/ and a finished
 * message's info file removed are made durable together by one fsync
 * of info/ in msg_sync, which the relay calls once per turn of its
 * loop: the connections that finish a transaction in the same turn
 * share one journal commit instead of two fsyncs each.  A finished
 * message's mess/ file goes only after that fsync (a crash before it
 * must find both files or neither). */
static int infodirty;
static struct msg **dropped;
static size_t ndropped, adropped;

static void msg_logfail(const struct msg *m, const char *event, const stralloc *why)
{
  log_start();
  if (m) log_str("id", m->qid.s);
  log_str("event", event);
  log_buf("error", why->s, why->len);
  log_end();
}

static int msg_final(const struct msg *m)
{
  for (size_t i = 0; i < m->qi.n; i++)
    if (m->qi.r[i].state != QINFO_DELIVERED &&
        m->qi.r[i].state != QINFO_BOUNCED)
      return 0;
  return 1;
}

/* Every recipient is final and nothing is owed: the info file goes
 * (durable at the next msg_sync), then the mess file. */
static int msg_drop(struct msg *m)
{
  static stralloc why;
  if (ndropped == adropped) {
    size_t a = adropped ? adropped * 2 : 64;
    struct msg **d = realloc(dropped, a * sizeof *d);
    if (!d) { errno = ENOMEM; fsync_why(&why, "remove", NULL); msg_logfail(m, "remove-failed", &why); return -1; }
    dropped = d;
    adropped = a;
  }
  if (qinfo_unlink(queuedir, m->qid.s, "info", &why) == -1) {
    msg_logfail(m, "remove-failed", &why);
    return -1;
  }
  m->dropped = 1;
  dropped[ndropped++] = m;
  infodirty = 1;
  return 0;
}

int msg_save(struct msg *m)
{
  static stralloc why;
  if (m->dropped) return 0;
  if (msg_final(m)) {
    int owed = 0;
    for (size_t i = 0; i < m->qi.n; i++)
      if (m->qi.r[i].state == QINFO_FAILED || m->qi.r[i].state == QINFO_RELAYED)
        owed = 1;
    if (!owed) return msg_drop(m);
  }
  if (qinfo_put(&m->qi, queuedir, m->qid.s, &why) == 0) {
    infodirty = 1;
    return 0;
  }
  msg_logfail(m, "save-failed", &why);
  return -1;
}

void msg_sync(void)
{
  static stralloc why;
  if (!infodirty) return;
  infodirty = 0;
  if (qinfo_syncdir(queuedir, &why) == -1) {
    /* the removals may not be on disk: their mess files stay, and a
     * later pass finds what is left */
    msg_logfail(NULL, "sync-failed", &why);
    ndropped = 0;
    return;
  }
  for (size_t i = 0; i < ndropped; i++) {
    struct msg *m = dropped[i];
    if (qinfo_unlink(queuedir, m->qid.s, "mess", &why) == -1)
      msg_logfail(m, "remove-failed", &why);
    log_start();
    log_str("id", m->qid.s);
    log_str("event", "done");
    log_end();
  }
  ndropped = 0;
}

void msg_finish(struct msg *m)
{
  int owed = 0;

  if (m->broken || m->dropped) return;
  for (size_t i = 0; i < m->qi.n; i++)
    if (m->qi.r[i].state == QINFO_FAILED || m->qi.r[i].state == QINFO_RELAYED)
      owed = 1;
  /* bounce_send changes the states of what it reported; msg_save then
   * removes the message if nothing is left */
  if ((owed || cfg.delay_warning) && bounce_send(m, cfg.delay_warning != 0) == 1) {
    msg_save(m);
    return;
  }
  if (msg_final(m)) msg_drop(m);
}
