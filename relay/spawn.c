/* Running deliver, as smtpd does (dopis-deliver(8)): a fixed argv, the
 * envelope on its fd 1, the message on its fd 0, then the commit
 * record.  Used for queued local recipients and for DSNs: deliver
 * stores them durably, in a Maildir or in the queue, before it exits 0. */
#include <sys/types.h>
#include <errno.h>
#include <unistd.h>
#include <buffer.h>
#include <str.h>
#include <stralloc.h>
#include "deliverpipe.h"
#include "envelope.h"
#include "fsync.h"
#include "relay.h"

struct spawn {
  int fd;
  unsigned long long n;
  int failed;
};

int spawn_put(struct spawn *s, const char *buf, size_t len)
{
  if (s->failed) return -1;
  if (fsync_writeall(s->fd, buf, len) == -1) { s->failed = 1; return -1; }
  s->n += len;
  return 0;
}

int spawn_puts(struct spawn *s, const char *str)
{
  return spawn_put(s, str, str_len(str));
}

static ssize_t spawn_write(int fd, const char *buf, size_t len)
{
  ssize_t r;
  do r = write(fd, buf, len); while (r == -1 && errno == EINTR);
  return r;
}

static int spawn_envelope(int fd, const char *sender, const stralloc *rcpts,
                          const stralloc *params)
{
  char space[4096];
  buffer b;
  buffer_init(&b, spawn_write, fd, space, sizeof space);
  if (!envelope_put(&b, 'F', sender, str_len(sender))) return 0;
  for (size_t i = 0; params && i < params->len; i += str_len(params->s + i) + 1)
    if (!envelope_put(&b, 'P', params->s + i, str_len(params->s + i))) return 0;
  for (size_t i = 0; i < rcpts->len; i += str_len(rcpts->s + i) + 1) {
    const char *r = rcpts->s + i;
    if (!envelope_put(&b, r[0], r + 1, str_len(r + 1))) return 0;
  }
  return buffer_put(&b, "", 1) == 0 && buffer_flush(&b) == 0;
}

int spawn_deliver(const char *sender, const stralloc *rcpts,
                  const stralloc *params, int fd, unsigned long long size,
                  int (*fill)(struct spawn *, void *), void *arg,
                  stralloc *why)
{
  struct deliverpipe d;
  struct spawn s = { -1, 0, 0 };
  int status, ok;

  if (fd != -1 && lseek(fd, 0, SEEK_SET) == -1) return fsync_why(why, "lseek", NULL);
  if (!deliverpipe_start(&d, cfg.deliver.s, fd)) return fsync_why(why, "spawn", cfg.deliver.s);
  /* a write error shows up as deliver's exit status: it exits 75
   * without the commit record */
  ok = spawn_envelope(d.envfd, sender, rcpts, params);
  if (fd == -1) {
    s.fd = d.msgfd;
    if (ok && fill(&s, arg) == -1) ok = 0;
    if (s.failed) ok = 0;
    size = s.n;
  }
  if (!ok) {
    deliverpipe_abort(&d);
    return stralloc_copys(why, "deliver: write failed"), -1;
  }
  status = deliverpipe_commit(&d, size);
  if (status == -1) return stralloc_copys(why, "deliver died or the commit failed"), -1;
  if (status && !stralloc_copys(why, "deliver failed")) return -1;
  return status;
}
