/* The spool: the message as deliver gets it, in an unnamed temporary
 * file.  deliver must see BODY=8BITMIME in the envelope before the
 * message, and only the end of the body tells whether it is 8-bit;
 * the file also means a sender that stops half-way starts nothing. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <buffer.h>
#include <byte.h>
#include <str.h>
#include <stralloc.h>
#include "sendmail.h"

static char spoolspace[65536];

static ssize_t spool_write(int fd, const char *buf, size_t len)
{
  ssize_t r;
  do r = write(fd, buf, len); while (r == -1 && errno == EINTR);
  return r;
}

int spool_tmp(void)
{
  const char *dir = getenv("TMPDIR");
  static stralloc path;
  int fd;
  if (!dir || dir[0] != '/') dir = "/tmp";
  /* O_TMPFILE: the file never has a name, so nothing is left behind */
  fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
  if (fd != -1 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
  if (!stralloc_copys(&path, dir) || !stralloc_cats(&path, "/dopis-sendmail.XXXXXX") ||
      !stralloc_0(&path)) {
    errno = ENOMEM;
    return -1;
  }
  fd = mkostemp(path.s, O_CLOEXEC);
  if (fd != -1 && unlink(path.s) == -1) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int spool_open(struct spool *s, unsigned long long max)
{
  byte_zero(s, sizeof *s);
  s->max = max;
  s->fd = spool_tmp();
  if (s->fd == -1) return 0;
  buffer_init(&s->b, spool_write, s->fd, spoolspace, sizeof spoolspace);
  return 1;
}

int spool_putraw(struct spool *s, const char *p, size_t len)
{
  if (s->error) return 0;
  if (buffer_put(&s->b, p, len) == -1) {
    s->error = 1;
    return 0;
  }
  s->size += len;
  return 1;
}

int spool_put(struct spool *s, const char *p, size_t len)
{
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)p[i];
    s->wire += c == '\n' ? 2 : 1;
    if (c >= 0x80) s->eightbit = 1;
  }
  if (s->wire > s->max) {
    s->toobig = 1;
    return 0;
  }
  return spool_putraw(s, p, len);
}

int spool_finish(struct spool *s)
{
  if (s->error || buffer_flush(&s->b) == -1) {
    s->error = 1;
    return 0;
  }
  if (lseek(s->fd, 0, SEEK_SET) == -1) {
    s->error = 1;
    return 0;
  }
  return 1;
}

void body_init(struct body *b, int dotend)
{
  b->state = BODY_LS;
  b->dotend = dotend;
  b->done = 0;
}

size_t body_feed(struct body *b, struct spool *s, const char *p, size_t len)
{
  size_t i = 0;
  while (i < len && !b->done) {
    switch (b->state) {
    case BODY_MID: {
      /* the common case: a run of ordinary bytes, with its LF */
      size_t j = i;
      while (j < len && p[j] != '\r' && p[j] != '\n') j++;
      if (j < len && p[j] == '\n') {
        spool_put(s, p + i, ++j - i);
        b->state = BODY_LS;
      } else {
        spool_put(s, p + i, j - i);
        if (j < len) { b->state = BODY_CR; j++; }
      }
      i = j;
      continue;
    }
    case BODY_CR:
      if (p[i] == '\n') {
        spool_put(s, "\n", 1);
        b->state = BODY_LS;
        i++;
        continue;
      }
      spool_put(s, "\r", 1);   /* a CR alone is content */
      b->state = BODY_MID;
      continue;
    case BODY_LS:
      if (b->dotend && p[i] == '.') { b->state = BODY_DOT; i++; continue; }
      b->state = BODY_MID;
      continue;
    case BODY_DOT:
      if (p[i] == '\n') { b->done = 1; i++; continue; }
      if (p[i] == '\r') { b->state = BODY_DOTCR; i++; continue; }
      spool_put(s, ".", 1);
      b->state = BODY_MID;
      continue;
    case BODY_DOTCR:
      if (p[i] == '\n') { b->done = 1; i++; continue; }
      spool_put(s, ".", 1);
      b->state = BODY_CR;
      continue;
    }
  }
  return i;
}

/* The input ended: a CR there ends its line, a last line without one
 * gets its LF, and "." (or ".\r") is still the end marker. */
void body_end(struct body *b, struct spool *s)
{
  switch (b->state) {
  case BODY_DOT:
  case BODY_DOTCR:
    b->done = 1;
    break;
  case BODY_MID:
  case BODY_CR:
    spool_put(s, "\n", 1);
    break;
  }
  b->state = BODY_LS;
}
