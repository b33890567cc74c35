#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <buffer.h>
#include <fmt.h>
#include <str.h>
#include <stralloc.h>
#include "envelope.h"
#include "fsync.h"
#include "queue.h"

/* how many ".n" suffixes to try before giving up on a name */
#define QUEUE_MAXSUFFIX 1000

/* dir + "/" + sub [+ "/" + name [+ ext]], NUL-terminated */
static int queue_path(stralloc *out, const stralloc *dir, const char *sub,
                      const stralloc *name, const char *ext)
{
  if (!stralloc_copyb(out, dir->s, dir->len - 1) ||
      !stralloc_cats(out, "/") || !stralloc_cats(out, sub))
    return 0;
  if (name && (!stralloc_cats(out, "/") ||
               !stralloc_catb(out, name->s, name->len - 1)))
    return 0;
  if (ext && !stralloc_cats(out, ext)) return 0;
  return stralloc_0(out);
}

static int queue_nomem(stralloc *why)
{
  errno = ENOMEM;
  return fsync_why(why, "queue", NULL);
}

/* Creates path exclusively.  A leftover of the same name can only
 * come from a dead process that had our pid and this id: remove it. */
static int queue_create(const char *path, stralloc *why)
{
  for (int tries = 0; tries < 2; tries++) {
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd != -1) return fd;
    if (errno != EEXIST || unlink(path) == -1) break;
  }
  return fsync_why(why, "open", path);
}

int queue_open(struct queue_msg *q, const char *queuedir, size_t keep,
               const char *id, stralloc *why)
{
  static const char *const subs[] = { "tmp", "mess", "info" };
  static stralloc p;
  char num[FMT_ULONG];
  int fd;

  q->state = 0;
  if (!stralloc_copys(&q->dir, queuedir) || !stralloc_0(&q->dir) ||
      !stralloc_copys(&q->qid, id) || !stralloc_0(&q->qid))
    return queue_nomem(why);
  for (size_t i = 0; i < 3; i++) {
    if (!queue_path(&p, &q->dir, subs[i], NULL, NULL)) return queue_nomem(why);
    if (fsync_mkdirs(p.s, keep, 0700) == -1)
      return fsync_why(why, "mkdir", p.s);
  }
  /* the pid keeps two deliver processes with the same id apart */
  num[fmt_ulong(num, (unsigned long)getpid())] = 0;
  if (!stralloc_copym(&p, ".", num, ".mess") || !stralloc_0(&p) ||
      !queue_path(&q->tmpmess, &q->dir, "tmp", &q->qid, p.s) ||
      !stralloc_copym(&p, ".", num, ".info") || !stralloc_0(&p) ||
      !queue_path(&q->tmpinfo, &q->dir, "tmp", &q->qid, p.s))
    return queue_nomem(why);
  fd = queue_create(q->tmpmess.s, why);
  if (fd != -1) q->state |= QUEUE_TMPMESS;
  return fd;
}

int queue_putmess(struct queue_msg *q, int fd, stralloc *why)
{
  static stralloc base;
  char num[FMT_ULONG];

  if (fsync_close(fd) == -1) return fsync_why(why, "fsync", q->tmpmess.s);
  if (!stralloc_copy(&base, &q->qid)) return queue_nomem(why);
  for (unsigned long n = 0; ; n++) {
    if (n) {
      if (!stralloc_copyb(&q->qid, base.s, base.len - 1) ||
          !stralloc_cats(&q->qid, ".") ||
          !stralloc_catb(&q->qid, num, fmt_ulong(num, n)) ||
          !stralloc_0(&q->qid))
        return queue_nomem(why);
    }
    if (!queue_path(&q->mess, &q->dir, "mess", &q->qid, NULL))
      return queue_nomem(why);
    if (link(q->tmpmess.s, q->mess.s) == 0) break;
    if (errno != EEXIST || n >= QUEUE_MAXSUFFIX)
      return fsync_why(why, "link", q->mess.s);
  }
  q->state |= QUEUE_MESS;
  if (!queue_path(&base, &q->dir, "mess", NULL, NULL)) return queue_nomem(why);
  if (fsync_dir(base.s) == -1) return fsync_why(why, "fsync", base.s);
  /* the tmp name has done its job; a failure here only leaves garbage
   * that the age rule of tmp/ removes */
  if (unlink(q->tmpmess.s) == 0) q->state &= ~QUEUE_TMPMESS;
  return 0;
}

/* write(2) for buffer: a write that takes nothing is a full disk, not
 * a reason for buffer_flush to spin */
static ssize_t queue_write(int fd, const char *buf, size_t len)
{
  ssize_t r;
  do r = write(fd, buf, len); while (r == -1 && errno == EINTR);
  if (r == 0) { errno = ENOSPC; return -1; }
  return r;
}

int queue_putinfo(struct queue_msg *q, const char *id,
                  const char *sender, size_t senderlen,
                  const stralloc *params, const struct route_list *l,
                  const char *const *localaddr, stralloc *why)
{
  char space[4096];
  char num[FMT_ULONG];
  buffer b;
  int fd, ok;

  fd = queue_create(q->tmpinfo.s, why);
  if (fd == -1) return -1;
  q->state |= QUEUE_TMPINFO;
  buffer_init(&b, queue_write, fd, space, sizeof space);
  ok = envelope_put(&b, 'I', id, str_len(id)) &&
       envelope_put(&b, 'F', sender, senderlen);
  for (size_t i = 0; ok && params && i < params->len; ) {
    size_t n = str_len(params->s + i);
    ok = envelope_put(&b, 'P', params->s + i, n);
    i += n + 1;
  }
  ok = ok && envelope_put(&b, 'C', num,
                          fmt_ulong(num, (unsigned long)time(NULL)));
  for (size_t i = 0; ok && i < l->n; i++) {
    const struct route_target *t = &l->t[i];
    const char *addr = t->maildir ? (localaddr ? localaddr[i] : NULL) : t->addr;
    if (!addr) continue;
    ok = envelope_put(&b, 'T', addr, str_len(addr));
    if (ok && t->notify) ok = envelope_put(&b, 'N', t->notify, str_len(t->notify));
    if (ok && t->orcpt) ok = envelope_put(&b, 'O', t->orcpt, str_len(t->orcpt));
  }
  ok = ok && buffer_put(&b, "", 1) == 0 && buffer_flush(&b) == 0;
  if (!ok) {
    fsync_why(why, "write", q->tmpinfo.s);
    close(fd);
    return -1;
  }
  if (fsync_close(fd) == -1) return fsync_why(why, "fsync", q->tmpinfo.s);
  return 0;
}

int queue_commit(struct queue_msg *q, stralloc *why)
{
  static stralloc p;
  if (!queue_path(&q->info, &q->dir, "info", &q->qid, NULL) ||
      !queue_path(&p, &q->dir, "info", NULL, NULL))
    return queue_nomem(why);
  if (rename(q->tmpinfo.s, q->info.s) == -1)
    return fsync_why(why, "rename", q->tmpinfo.s);
  q->state = (q->state & ~QUEUE_TMPINFO) | QUEUE_INFO;
  if (fsync_dir(p.s) == -1) {
    fsync_why(why, "fsync", p.s);
    queue_undo(q);
    return -1;
  }
  return 0;
}

void queue_undo(struct queue_msg *q)
{
  static stralloc p;
  /* info first: without it the rest is not a queued message */
  if ((q->state & QUEUE_INFO) && unlink(q->info.s) == 0) {
    q->state &= ~QUEUE_INFO;
    if (queue_path(&p, &q->dir, "info", NULL, NULL)) (void)fsync_dir(p.s);
  }
  if ((q->state & QUEUE_TMPINFO) && unlink(q->tmpinfo.s) == 0)
    q->state &= ~QUEUE_TMPINFO;
  if ((q->state & QUEUE_MESS) && unlink(q->mess.s) == 0)
    q->state &= ~QUEUE_MESS;
  if ((q->state & QUEUE_TMPMESS) && unlink(q->tmpmess.s) == 0)
    q->state &= ~QUEUE_TMPMESS;
}
