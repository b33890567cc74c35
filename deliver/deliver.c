/* deliver: stores one message durably in local Maildirs and the queue,
 * all or nothing.  See dopis-deliver(8).
 *
 * fd 0 is the message, fd 1 the envelope (read, not written), fd 2
 * the log.  The message is streamed into the first copy while it is
 * read (constant memory whatever its size); every other copy is made
 * from that file.  Nothing becomes visible before every copy is on
 * disk and fsynced, and a failure at any point removes everything --
 * except that a local copy which cannot be written (a full or broken
 * Maildir) sends its recipient into the queue instead, when another
 * recipient's copy is stored: relay hands it back to us later, the
 * others' copies stand, and the sender still hears all or nothing. */
#include <sys/types.h>
#include <sys/stat.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sysexits.h>
#include <unistd.h>
#include <buffer.h>
#include <byte.h>
#include <case.h>
#include <str.h>
#include <stralloc.h>
#include "address.h"
#include "config.h"
#include "envelope.h"
#include "fsync.h"
#include "id.h"
#include "log.h"
#include "queue.h"
#include "route.h"
#include "sandbox.h"
#include "maildir.h"

#define DELIVER_MAXID 64   /* the id names queue files */

struct deliver_copy {
  struct maildir_file f;
  const struct route_target *t;
  unsigned long long size;   /* of the whole file */
  int queued;                /* its Maildir failed: it waits in the queue */
  stralloc reason;           /* why, for its log line */
  stralloc qaddr;            /* the address it waits under, NUL-terminated */
};

static struct config conf;
static stralloc mailroot;      /* NUL-terminated, no trailing / */
static stralloc queuedir;      /* NUL-terminated */
static stralloc id;            /* NUL-terminated */
static stralloc sender;        /* NUL-terminated */
static stralloc params;        /* NUL-terminated texts */
static struct route_list targets;
static struct deliver_copy *copies;
static size_t ncopies;         /* of them created so far */
static size_t nlocal, nremote;
static size_t nqueuedlocal;    /* copies that went into the queue instead */
static const struct deliver_copy *lastlost;  /* the last of them */
static const char **localaddr; /* per target: the address a queued local
                                  one waits under, else NULL */
static int primary = -1;       /* the file the message streams into */
static size_t primaryi;        /* its copy, or nlocal for the queue's */
static unsigned long long bodyoff;  /* where the message begins in it */
static struct queue_msg queue;
static size_t qkeep;           /* of queuedir, for queue_open */
static int queued;             /* queue_open was called */
static stralloc why;
static char envspace[4096];
static buffer env;

/* Best effort: nothing of this message stays behind. */
static void deliver_undo(void)
{
  for (size_t i = 0; i < ncopies; i++) maildir_undo(&copies[i].f);
  if (queued) queue_undo(&queue);
}

/* One log line, everything removed, exit.  reason may be NULL: then
 * it is in why. */
static void __attribute__((noreturn))
deliver_fail(int status, const char *event, const char *reason,
             const char *rcpt, size_t rcptlen)
{
  deliver_undo();
  log_start();
  if (id.len) log_str("id", id.s);
  log_str("event", event);
  log_ulong("status", (unsigned long)status);
  if (rcpt) log_buf("rcpt", rcpt, rcptlen);
  if (reason) log_str("reason", reason);
  else log_buf("reason", why.s, why.len);
  log_end();
  exit(status);
}

static void __attribute__((noreturn)) deliver_nomem(void)
{
  deliver_fail(EX_TEMPFAIL, "failed", "out of memory", NULL, 0);
}

/* Text that goes into header lines and file names never holds control
 * bytes: a CR or LF in the sender would forge header lines. */
static int deliver_textok(const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < ' ' || c == 127) return 0;
  }
  return 1;
}

/* The id names files: letters, digits and dots, never "." or "..". */
static int deliver_idok(const char *s, size_t len)
{
  if (len == 0 || len > DELIVER_MAXID || s[0] == '.') return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.'))
      return 0;
  }
  return 1;
}

static void deliver_route(const char *rcpt, size_t len)
{
  switch (route_resolve(&conf, rcpt, len, &targets)) {
  case ROUTE_OK:
  case ROUTE_REMOTE:
    return;
  case ROUTE_UNKNOWN:
    deliver_fail(EX_NOUSER, "failed", "unknown recipient", rcpt, len);
  case ROUTE_LOOP:
    deliver_fail(EX_NOUSER, "failed", "alias loop", rcpt, len);
  case ROUTE_TOOMANY:
    /* smtpd refuses this at RCPT time; here only a configuration that
     * changed since can cause it, so the sender may try again */
    deliver_fail(EX_TEMPFAIL, "failed", "too many targets", rcpt, len);
  case ROUTE_NOMEM:
    deliver_nomem();
  }
  deliver_fail(EX_TEMPFAIL, "failed", "route", rcpt, len);
}

/* The envelope section: I? F P* (T N? O?)+ and the empty record. */
static void deliver_readenvelope(void)
{
  static stralloc rec;
  enum { NONE, ID, FROM, PARAM, RCPT } stage = NONE;
  size_t lastfirst = 0;

  for (;;) {
    int r = envelope_get(&env, &rec, ENVELOPE_MAXRECORD);
    const char *s;
    size_t len;
    if (r == -1)
      deliver_fail(EX_DATAERR, "failed", "envelope cut short or record too long",
                   NULL, 0);
    if (r == 0) break;
    s = rec.s + 1;
    len = rec.len - 1;
    switch (rec.s[0]) {
    case 'I':
      if (stage != NONE || !deliver_idok(s, len))
        deliver_fail(EX_DATAERR, "failed", "bad I record", NULL, 0);
      if (!stralloc_copyb(&id, s, len) || !stralloc_0(&id)) deliver_nomem();
      stage = ID;
      break;
    case 'F':
      if (stage > ID || !deliver_textok(s, len))
        deliver_fail(EX_DATAERR, "failed", "bad F record", NULL, 0);
      if (!stralloc_copyb(&sender, s, len) || !stralloc_0(&sender))
        deliver_nomem();
      stage = FROM;
      break;
    case 'P':
      if (stage < FROM || stage > PARAM || len == 0 || !deliver_textok(s, len))
        deliver_fail(EX_DATAERR, "failed", "bad P record", NULL, 0);
      if (!stralloc_catb(&params, s, len) || !stralloc_0(&params))
        deliver_nomem();
      stage = PARAM;
      break;
    case 'T':
      if (stage < FROM || len == 0 || !deliver_textok(s, len))
        deliver_fail(EX_DATAERR, "failed", "bad T record", NULL, 0);
      lastfirst = targets.n;
      deliver_route(s, len);
      stage = RCPT;
      break;
    case 'N':
    case 'O':
      /* DSN NOTIFY / ORCPT of the recipient just read: they go with
       * every target it expanded into (not with ones an earlier
       * recipient already produced) */
      if (stage != RCPT || len == 0 || !deliver_textok(s, len))
        deliver_fail(EX_DATAERR, "failed", "bad N or O record", NULL, 0);
      for (size_t i = lastfirst; i < targets.n; i++) {
        char **f = rec.s[0] == 'N' ? &targets.t[i].notify : &targets.t[i].orcpt;
        if (*f) deliver_fail(EX_DATAERR, "failed", "N or O record twice", NULL, 0);
        if (!(*f = malloc(len + 1))) deliver_nomem();
        byte_copy(*f, len, s);
        (*f)[len] = 0;
      }
      break;
    default:
      deliver_fail(EX_DATAERR, "failed", "unknown record", NULL, 0);
    }
  }
  if (stage != RCPT)
    deliver_fail(EX_DATAERR, "failed", "no sender or no recipient", NULL, 0);
}

/* Where fsync_mkdirs must stop: a Maildir under mailroot may be
 * created below mailroot; any other needs its parent to exist. */
static size_t deliver_keep(const char *path)
{
  size_t n = str_len(path), m = mailroot.len - 1;
  while (n > 1 && path[n - 1] == '/') n--;
  if (m > 1 && n > m && path[m] == '/' && byte_equal(path, m, mailroot.s))
    return m;
  while (n > 0 && path[n - 1] != '/') n--;
  return n;
}

/* Whether addr, handed back to deliver, routes to t's Maildir under
 * t's address, and to nothing else. */
static int deliver_routesback(const struct route_target *t, const char *addr)
{
  struct route_list l = { NULL, 0, 0 };
  enum route_result r = route_resolve(&conf, addr, str_len(addr), &l);
  int ok = r == ROUTE_OK && l.n == 1 && l.t[0].maildir &&
           str_equal(l.t[0].maildir, t->maildir) && str_equal(l.t[0].addr, t->addr);
  route_list_free(&l);
  if (r == ROUTE_NOMEM) deliver_nomem();
  return ok;
}

/* t's key with the tag spelt as its Maildir++ folder is ("alice+Work@x"
 * for .../.Work): route looks for a folder by the tag as written, then
 * in lower case, and a key is all lower case.  Returns 0 when t is no
 * such folder. */
static int deliver_folderaddr(const struct route_target *t, stralloc *out)
{
  const char *a = t->addr, *m = t->maildir;
  size_t alen = str_len(a), at = address_at(a, alen), plus = byte_chr(a, at, '+');
  size_t mlen = str_len(m), slash = byte_rchr(m, mlen, '/'), flen;

  if (plus >= at || slash == mlen || mlen - slash < 3 || m[slash + 1] != '.')
    return 0;
  flen = mlen - slash - 2;   /* the folder's name, without its dot */
  if (flen != at - plus - 1 ||
      !case_equalb(m + slash + 2, flen, a + plus + 1))
    return 0;
  if (!stralloc_copyb(out, a, plus + 1) || !stralloc_catb(out, m + slash + 2, flen) ||
      !stralloc_catb(out, a + at, alen - at) || !stralloc_0(out))
    deliver_nomem();
  return 1;
}

/* Local copy c could not be written: why says how, errno is still the
 * cause.  Its recipient waits in the queue instead, and relay hands it
 * back to deliver later, so that the others' copies stand and what the
 * sender hears stays all or nothing (a retry of the client never
 * duplicates them).  That needs an address which leads back to this
 * Maildir alone; without one (an alias that names itself), or when the
 * cause is our memory and not the Maildir, the whole message fails, as
 * it always did.  The caller then removes the file (deliver_drop). */
static void deliver_lost(struct deliver_copy *c)
{
  const char *a = c->t->addr;

  if (errno == ENOMEM) deliver_fail(EX_TEMPFAIL, "failed", NULL, a, str_len(a));
  if (!stralloc_copy(&c->reason, &why) || !stralloc_copys(&c->qaddr, a) ||
      !stralloc_0(&c->qaddr))
    deliver_nomem();
  if (!deliver_routesback(c->t, c->qaddr.s) &&
      !(deliver_folderaddr(c->t, &c->qaddr) && deliver_routesback(c->t, c->qaddr.s))) {
    if (!stralloc_cats(&why, "; cannot be queued: its address leads elsewhere too"))
      deliver_nomem();
    deliver_fail(EX_TEMPFAIL, "failed", NULL, a, str_len(a));
  }
  c->queued = 1;
  localaddr[c->t - targets.t] = c->qaddr.s;
  nqueuedlocal++;
  lastlost = c;
}

/* Removes a lost copy's file; fd (-1: none) is closed unchecked, as
 * the file goes anyway. */
static void deliver_drop(struct deliver_copy *c, int fd)
{
  if (fd != -1) (void)close(fd);
  maildir_undo(&c->f);
}

/* Opens the copy's file in tmp/ and writes its two header lines.
 * Returns the fd, or -1 when the copy is lost (deliver_lost). */
static int deliver_open(struct deliver_copy *c, size_t *hdrlen)
{
  static stralloc h;
  int fd = maildir_open(&c->f, c->t->maildir, deliver_keep(c->t->maildir),
                        &why);
  ncopies++;   /* from here on deliver_undo knows it */
  if (fd == -1) {
    deliver_lost(c);
    deliver_drop(c, -1);
    return -1;
  }
  if (!stralloc_copys(&h, "Return-Path: <") ||
      !stralloc_catb(&h, sender.s, sender.len - 1) ||
      !stralloc_cats(&h, ">\nDelivered-To: ") ||
      !stralloc_cats(&h, c->t->addr) || !stralloc_cats(&h, "\n"))
    deliver_nomem();
  if (fsync_writeall(fd, h.s, h.len) == -1) {
    fsync_why(&why, "write", c->f.tmp.s);
    deliver_lost(c);
    deliver_drop(c, fd);
    return -1;
  }
  *hdrlen = h.len;
  return fd;
}

/* The queue's message file; failing to make it fails everything. */
static int deliver_queueopen(void)
{
  int fd;
  queued = 1;
  fd = queue_open(&queue, queuedir.s, qkeep, id.s, &why);
  if (fd == -1) deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  return fd;
}

/* Makes the primary the first local copy from `from` on that can be
 * opened and take the done bytes of the message already read (from
 * oldfd at oldoff), else the queue's message file. */
static void deliver_primary(size_t from, int oldfd, unsigned long long oldoff,
                            unsigned long long done)
{
  size_t hdrlen;
  for (primaryi = from; primaryi < nlocal; primaryi++) {
    struct deliver_copy *c = &copies[primaryi];
    primary = deliver_open(c, &hdrlen);
    if (primary == -1) continue;
    if (fsync_copy(primary, oldfd, (off_t)oldoff, done) == 0) {
      bodyoff = hdrlen;
      return;
    }
    fsync_why(&why, "write", c->f.tmp.s);
    deliver_lost(c);
    deliver_drop(c, primary);
  }
  /* No Maildir takes it.  Without a remote recipient nothing but the
   * lost copies would be stored, and then a plain temporary failure
   * (why: the last one's) says the same to smtpd's client; to relay,
   * handing a queued local recipient back, it must: requeued as a new
   * message and reported done, that recipient would go round every
   * pass, never backed off, never bounced. */
  if (!nremote)
    deliver_fail(EX_TEMPFAIL, "failed", NULL, lastlost ? lastlost->t->addr : NULL,
                 lastlost ? str_len(lastlost->t->addr) : 0);
  primary = deliver_queueopen();
  bodyoff = 0;
  if (fsync_copy(primary, oldfd, (off_t)oldoff, done) == -1) {
    fsync_why(&why, "write", queue.tmpmess.s);
    deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  }
}

/* The primary failed (why says how) after done bytes of the message:
 * the next copy takes over, and this one's recipient goes into the
 * queue.  When the primary is the queue's file there is no next. */
static void deliver_switch(unsigned long long done)
{
  size_t old = primaryi;
  int oldfd = primary;

  if (old == nlocal) deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  deliver_lost(&copies[old]);
  /* its file is read for what it already holds, then removed */
  deliver_primary(old + 1, oldfd, bodyoff, done);
  deliver_drop(&copies[old], oldfd);
}

/* Reads the message from fd 0 into the primary (none: nowhere).
 * Returns its size. */
static unsigned long long deliver_stream(void)
{
  static char buf[65536];
  unsigned long long n = 0;
  for (;;) {
    ssize_t r = read(0, buf, sizeof buf);
    if (r == -1) {
      if (errno == EINTR) continue;
      fsync_why(&why, "read", "message");
      deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
    }
    if (r == 0) return n;
    while (primary != -1 && fsync_writeall(primary, buf, (size_t)r) == -1) {
      fsync_why(&why, "write", primaryi < nlocal ? copies[primaryi].f.tmp.s
                                                 : queue.tmpmess.s);
      deliver_switch(n);
    }
    n += (unsigned long long)r;
  }
}

/* The commit record Z<size>, then the end of fd 1.  Anything else
 * means the sender changed its mind: nothing may be delivered. */
static void deliver_commit(unsigned long long size)
{
  static stralloc rec;
  unsigned long long z = 0;
  char c;
  int r = envelope_get(&env, &rec, 32);

  if (r != 1 || rec.s[0] != 'Z' || rec.len < 2 || rec.len > 21)
    deliver_fail(EX_TEMPFAIL, "aborted", "no commit record", NULL, 0);
  for (size_t i = 1; i < rec.len; i++) {
    unsigned int d = (unsigned char)rec.s[i] - '0';
    if (d > 9 || z > (~0ULL - d) / 10)
      deliver_fail(EX_TEMPFAIL, "aborted", "bad commit record", NULL, 0);
    z = z * 10 + d;
  }
  if (z != size)
    deliver_fail(EX_TEMPFAIL, "aborted", "size differs from commit record",
                 NULL, 0);
  if (buffer_get(&env, &c, 1) != 0)
    deliver_fail(EX_TEMPFAIL, "aborted", "data after commit record", NULL, 0);
}

static void deliver_hostname(void)
{
  char h[256];
  if (conf.hostname.len) {
    if (maildir_init(conf.hostname.s, conf.hostname.len)) return;
    deliver_nomem();
  }
  if (gethostname(h, sizeof h) == -1) byte_copy(h, 10, "localhost");
  h[sizeof h - 1] = 0;
  if (!maildir_init(h, str_len(h))) deliver_nomem();
}

static void deliver_setup(void)
{
  size_t n;

  /* a log reader that went away must not kill us half-way */
  signal(SIGPIPE, SIG_IGN);
  log_init("deliver");
  if (!config_load(&conf, &why))
    deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  deliver_hostname();
  n = conf.mailroot.len;
  while (n > 1 && conf.mailroot.s[n - 1] == '/') n--;
  if (!stralloc_copyb(&mailroot, conf.mailroot.s, n) || !stralloc_0(&mailroot) ||
      !stralloc_copy(&queuedir, &conf.queue) || !stralloc_0(&queuedir))
    deliver_nomem();
}

/* Before the first file is made: from here deliver may write only
 * beneath where its targets' Maildirs are made (the mailroot, or an
 * explicit Maildir's parent) and the queue, and execute nothing. */
static void deliver_sandbox(void)
{
  static stralloc paths;
  const char **writable;
  size_t n = 0, off;
  int r;

  if (SANDBOX_OFF) return;
  writable = calloc(targets.n + 2, sizeof *writable);
  if (!writable) deliver_nomem();
  for (size_t i = 0; i < targets.n; i++) {
    const char *m = targets.t[i].maildir;
    if (!m) continue;
    if (!stralloc_catb(&paths, m, deliver_keep(m)) || !stralloc_0(&paths)) deliver_nomem();
  }
  {
    /* the queue, or its parent when it is still to be made: remote
     * recipients go there, and local ones whose Maildir fails */
    size_t q = queuedir.len - 1;
    struct stat st;
    if (stat(queuedir.s, &st) == -1)
      while (q > 1 && queuedir.s[q - 1] != '/') q--;
    if (!stralloc_catb(&paths, queuedir.s, q) || !stralloc_0(&paths)) deliver_nomem();
  }
  for (off = 0; off < paths.len; off += str_len(paths.s + off) + 1) writable[n++] = paths.s + off;
  writable[n] = NULL;
  r = sandbox_files(NULL, writable, &why);
  if (r == -1) deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  if (r == 0) {
    log_start();
    log_str("id", id.s);
    log_str("event", "sandbox-unavailable");
    log_buf("error", why.s, why.len);
    log_end();
  }
  free(writable);
}

int main(void)
{
  static const int sigs[] = { SIGHUP, SIGINT, SIGTERM, SIGQUIT };
  unsigned long long size;
  size_t hdrlen = 0;
  int toqueue;
  sigset_t set;

  deliver_setup();
  buffer_init(&env, read, 1, envspace, sizeof envspace);
  deliver_readenvelope();
  if (!id.len) {
    char made[ID_LEN];
    id_make(made);
    if (!stralloc_copys(&id, made) || !stralloc_0(&id)) deliver_nomem();
  }
  for (size_t i = 0; i < targets.n; i++)
    if (targets.t[i].maildir) nlocal++;
    else nremote++;
  deliver_sandbox();
  if (nlocal) {
    copies = calloc(nlocal, sizeof *copies);
    localaddr = calloc(targets.n, sizeof *localaddr);
    if (!copies || !localaddr) deliver_nomem();
    for (size_t i = 0, j = 0; i < targets.n; i++)
      if (targets.t[i].maildir) copies[j++].t = &targets.t[i];
  }
  qkeep = queuedir.len - 1;
  while (qkeep > 0 && queuedir.s[qkeep - 1] == '/') qkeep--;  /* "q/" */
  while (qkeep > 0 && queuedir.s[qkeep - 1] != '/') qkeep--;  /* its parent */

  /* the first copy is written while the message is read: a Maildir
   * file when a local recipient's can be made, else the queue's */
  if (targets.n) deliver_primary(0, -1, 0, 0);
  size = deliver_stream();
  deliver_commit(size);
  /* durable before the others are made from it; a failure hands over
   * to the next copy as a failed write does */
  while (primaryi < nlocal && fsync(primary) == -1) {
    fsync_why(&why, "fsync", copies[primaryi].f.tmp.s);
    deliver_switch(size);
  }
  if (primaryi < nlocal) copies[primaryi].size = bodyoff + size;

  /* every other copy comes from the first file (those before it are
   * lost already) */
  for (size_t i = primaryi + 1; i < nlocal; i++) {
    struct deliver_copy *c = &copies[i];
    int fd = deliver_open(c, &hdrlen);
    if (fd == -1) continue;
    if (fsync_copy(fd, primary, (off_t)bodyoff, size) == -1) {
      fsync_why(&why, "write", c->f.tmp.s);
      deliver_lost(c);
      deliver_drop(c, fd);
      continue;
    }
    if (fsync_close(fd) == -1) {
      fsync_why(&why, "fsync", c->f.tmp.s);
      deliver_lost(c);
      deliver_drop(c, -1);
      continue;
    }
    c->size = hdrlen + size;
  }
  /* the queue, when anything waits there; it is written in full before
   * any copy becomes visible, and a queue that cannot take it fails
   * everything, the lost local copies with it */
  toqueue = nremote || nqueuedlocal;
  if (toqueue) {
    int qfd;
    if (primaryi == nlocal) {
      qfd = primary;
      primary = -1;
    } else {
      qfd = deliver_queueopen();
      if (fsync_copy(qfd, primary, (off_t)bodyoff, size) == -1) {
        fsync_why(&why, "write", queue.tmpmess.s);
        (void)close(qfd);   /* removed by deliver_fail anyway */
        deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
      }
    }
    if (queue_putmess(&queue, qfd, &why) == -1 ||
        queue_putinfo(&queue, id.s, sender.s, sender.len - 1, &params,
                      &targets, localaddr, &why) == -1)
      deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  }
  /* fsynced above: only a file system that reports late (NFS) fails
   * here, and the queue has been written without this recipient */
  if (primary != -1 && close(primary) == -1) {
    fsync_why(&why, "close", copies[primaryi].f.tmp.s);
    deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  }

  /* Everything is on disk.  From here the moves and the commit are
   * one step: no signal may cut it in two. */
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaddset(&set, sigs[i]);
  if (sigprocmask(SIG_BLOCK, &set, NULL) == -1) {
    fsync_why(&why, "sigprocmask", NULL);
    deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  }
  for (size_t i = 0; i < nlocal; i++)
    if (!copies[i].queued && maildir_move(&copies[i].f, copies[i].size, &why) == -1)
      deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  for (size_t i = 0; i < nlocal; i++) {
    size_t j = 0;
    if (copies[i].queued) continue;
    /* fsync each new/ once */
    while (j < i && (copies[j].queued ||
                     !(copies[j].f.dir.len == copies[i].f.dir.len &&
                       byte_equal(copies[j].f.dir.s, copies[i].f.dir.len,
                                  copies[i].f.dir.s))))
      j++;
    if (j == i && maildir_syncnew(&copies[i].f, &why) == -1)
      deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);
  }
  if (toqueue && queue_commit(&queue, &why) == -1)
    deliver_fail(EX_TEMPFAIL, "failed", NULL, NULL, 0);

  for (size_t i = 0; i < nlocal; i++) {
    const struct deliver_copy *c = &copies[i];
    log_start();
    log_str("id", id.s);
    if (c->queued) {
      log_str("event", "queued-local");
      log_str("rcpt", c->qaddr.s);
      log_str("maildir", c->t->maildir);
      log_str("qid", queue.qid.s);
      log_ulong("size", (unsigned long)size);
      log_buf("reason", c->reason.s, c->reason.len);
    } else {
      log_str("event", "delivered");
      log_str("rcpt", c->t->addr);
      log_buf("maildir", c->f.dir.s, c->f.dir.len);
      log_ulong("size", (unsigned long)c->size);
    }
    log_end();
  }
  for (size_t i = 0; i < targets.n; i++) {
    if (targets.t[i].maildir) continue;
    log_start();
    log_str("id", id.s);
    log_str("event", "queued");
    log_str("rcpt", targets.t[i].addr);
    log_str("qid", queue.qid.s);
    log_ulong("size", (unsigned long)size);
    log_end();
  }
  log_start();
  log_str("id", id.s);
  log_str("event", "done");
  log_buf("from", sender.s, sender.len - 1);
  log_ulong("local", (unsigned long)(nlocal - nqueuedlocal));
  log_ulong("remote", (unsigned long)nremote);
  log_ulong("size", (unsigned long)size);
  if (nqueuedlocal) log_ulong("queuedlocal", (unsigned long)nqueuedlocal);
  log_end();
  return 0;
}
