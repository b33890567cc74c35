/* The way in for users other than the owner of the mailroot: SMTP to
 * dopis-smtpd in DOPIS_MODE=local on a Unix socket (dopis-submit.socket),
 * which knows the user by SO_PEERCRED and runs deliver as the owner.
 * One command at a time, no pipelining: a handful of commands per
 * message.  Replies are read with fixed limits. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <buffer.h>
#include <byte.h>
#include <str.h>
#include <stralloc.h>
#include "fsync.h"
#include "smtpreply.h"
#include "sendmail.h"

/* A connected stream socket to path, close-on-exec, or -1 (errno). */
static int submit_socket(const char *path)
{
  struct sockaddr_un sun;
  size_t len = str_len(path);
  int fd, r;
  if (len >= sizeof sun.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  byte_zero(&sun, sizeof sun);
  sun.sun_family = AF_UNIX;
  byte_copy(sun.sun_path, len, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) return -1;
  do r = connect(fd, (struct sockaddr *)&sun, sizeof sun); while (r == -1 && errno == EINTR);
  if (r == -1) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int submit_connect(struct submit *s, const char *path, unsigned long timeout)
{
  struct timeval tv;
  byte_zero(s, sizeof *s);
  s->fd = submit_socket(path);
  if (s->fd == -1) return 0;
  /* every read and write: a hung smtpd must not hang a cron job */
  tv.tv_sec = (time_t)timeout;
  tv.tv_usec = 0;
  if (setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == -1 ||
      setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == -1) {
    int e = errno;
    close(s->fd);
    s->fd = -1;
    errno = e;
    return 0;
  }
  buffer_init(&s->in, sendmail_read, s->fd, s->inspace, sizeof s->inspace);
  buffer_init(&s->out, sendmail_write, s->fd, s->outspace, sizeof s->outspace);
  return 1;
}

/* One line of a reply into line (CRLF or LF taken off).  Returns its
 * length, -1 when the connection ended or broke (errno; EPIPE at the
 * end), -2 when it is longer than REPLY_MAXLINE. */
static ssize_t submit_getline(struct submit *s, char *line)
{
  size_t got = 0;
  for (;;) {
    ssize_t n = buffer_feed(&s->in);
    const char *p;
    size_t lf, take;
    if (n < 0) return -1;
    if (n == 0) {
      errno = EPIPE;
      return -1;
    }
    p = buffer_peek(&s->in);
    lf = byte_chr(p, (size_t)n, '\n');
    take = lf < (size_t)n ? lf : (size_t)n;
    if (take > REPLY_MAXLINE - got) return -2;
    byte_copy(line + got, take, p);
    got += take;
    buffer_seek(&s->in, lf < (size_t)n ? take + 1 : take);
    if (lf < (size_t)n) break;
  }
  if (got && line[got - 1] == '\r') got--;
  return (ssize_t)got;
}

int submit_reply(struct submit *s)
{
  static char line[REPLY_MAXLINE];
  int r;
  s->nlines = 0;
  do {
    ssize_t n = submit_getline(s, line);
    if (n == -1) return 0;
    if (n == -2) return -1;
    r = reply_line(&s->code, &s->nlines, &s->text, line, (size_t)n);
    if (r == -1) return -1;
  } while (r == 0);
  return s->code >= 200 ? s->code : -1;
}

int submit_command(struct submit *s, const char *line, size_t len)
{
  if (buffer_put(&s->out, line, len) == -1 || buffer_put(&s->out, "\r\n", 2) == -1 ||
      buffer_flush(&s->out) == -1)
    return 0;
  return submit_reply(s);
}

int submit_data(struct submit *s, int fd)
{
  static char space[65536];
  buffer b;
  int bol = 1;
  buffer_init(&b, sendmail_read, fd, space, sizeof space);
  for (;;) {
    ssize_t n = buffer_feed(&b);
    const char *p;
    size_t i = 0;
    if (n < 0) return -2;
    if (n == 0) break;
    p = buffer_peek(&b);
    while (i < (size_t)n) {
      size_t lf = byte_chr(p + i, (size_t)n - i, '\n');
      /* RFC 5321 4.5.2: a line that starts with a dot gets another */
      if (bol && p[i] == '.' && buffer_put(&s->out, ".", 1) == -1) return 0;
      if (buffer_put(&s->out, p + i, lf) == -1) return 0;
      i += lf;
      bol = 0;
      if (i < (size_t)n) {
        if (buffer_put(&s->out, "\r\n", 2) == -1) return 0;
        i++;
        bol = 1;
      }
    }
    buffer_seek(&b, (size_t)n);
  }
  /* the spool always ends its last line; should it not, end it here */
  if (!bol && buffer_put(&s->out, "\r\n", 2) == -1) return 0;
  return submit_command(s, ".", 1);
}

int submit_proxy(int sock)
{
  char buf[8192];
  struct pollfd p[2];
  int inopen = 1;
  for (;;) {
    int r;
    p[0].fd = inopen ? 0 : -1;
    p[0].events = POLLIN;
    p[0].revents = 0;
    p[1].fd = sock;
    p[1].events = POLLIN;
    p[1].revents = 0;
    r = poll(p, 2, -1);
    if (r == -1) {
      if (errno == EINTR) continue;
      return 0;
    }
    if (p[1].revents) {
      ssize_t n = sendmail_read(sock, buf, sizeof buf);
      if (n < 0) return 0;
      if (n == 0) return 1;   /* smtpd ended the session */
      if (fsync_writeall(1, buf, (size_t)n) == -1) return 0;
    }
    if (inopen && p[0].revents) {
      ssize_t n = sendmail_read(0, buf, sizeof buf);
      if (n < 0) return 0;
      if (n == 0) {
        /* the client is done: smtpd sees the end, answers what is
         * pending and ends the session */
        inopen = 0;
        if (shutdown(sock, SHUT_WR) == -1) return 0;
        continue;
      }
      if (fsync_writeall(sock, buf, (size_t)n) == -1) return 0;
    }
  }
}
