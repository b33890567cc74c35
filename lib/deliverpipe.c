#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fmt.h>
#include "deliverpipe.h"
#include "fsync.h"

extern char **environ;

/* -1: start deliver here; else the socket to the broker */
static int broker = -1;

static int deliverpipe_spawn(struct deliverpipe *d, const char *path, int msgsrc)
{
  posix_spawn_file_actions_t fa;
  char *argv[] = { (char *)path, NULL };
  int m[2] = { -1, -1 }, e[2], r;

  d->pid = -1;
  d->msgfd = d->envfd = -1;
  if (msgsrc == -1 && pipe2(m, O_CLOEXEC) == -1) return 0;
  if (pipe2(e, O_CLOEXEC) == -1) {
    r = errno;
    if (m[0] != -1) { close(m[0]); close(m[1]); }
    errno = r;
    return 0;
  }
  r = posix_spawn_file_actions_init(&fa);
  if (r == 0) {
    /* deliver reads the message on fd 0 and the envelope on fd 1 */
    r = posix_spawn_file_actions_adddup2(&fa, msgsrc != -1 ? msgsrc : m[0], 0);
    if (r == 0) r = posix_spawn_file_actions_adddup2(&fa, e[0], 1);
    if (r == 0) r = posix_spawn(&d->pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
  }
  close(e[0]);
  if (m[0] != -1) close(m[0]);
  if (r != 0) {
    close(e[1]);
    if (m[1] != -1) close(m[1]);
    d->pid = -1;
    errno = r;
    return 0;
  }
  d->msgfd = m[1];
  d->envfd = e[1];
  return 1;
}

static int deliverpipe_reap(pid_t pid)
{
  int status;
  pid_t r;
  do r = waitpid(pid, &status, 0); while (r == -1 && errno == EINTR);
  if (r == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

/* ---- the broker: one small loop, run in the child forked before the
 * sandbox.  Requests are a tag byte and an int: "S" starts deliver, and
 * the broker answers "O" with the two pipe ends, or "E" and an errno,
 * and later "X" and deliver's status; "T" comes with the client's two
 * fds and starts dopis-tlsd on them, answered by "O" with smtpd's end
 * of the plaintext socket, or "E"; "W" waits for dopis-tlsd to exit,
 * answered by "X". ---- */

static int deliverpipe_sendfds(int sock, char tag, const int *fds, int nfds, int value)
{
  char buf[1 + sizeof(int)];
  union { char c[CMSG_SPACE(2 * sizeof(int))]; struct cmsghdr align; } ctl;
  struct iovec iov = { buf, sizeof buf };
  struct msghdr msg;
  ssize_t r;

  memset(&msg, 0, sizeof msg);
  buf[0] = tag;
  memcpy(buf + 1, &value, sizeof value);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds) {
    struct cmsghdr *c;
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.c;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  do r = sendmsg(sock, &msg, MSG_NOSIGNAL); while (r == -1 && errno == EINTR);
  return r == (ssize_t)sizeof buf;
}

/* Receives one answer; fds gets up to two descriptors. */
static int deliverpipe_recv(int sock, char *tag, int *value, int *fds)
{
  char buf[1 + sizeof(int)];
  union { char c[CMSG_SPACE(2 * sizeof(int))]; struct cmsghdr align; } ctl;
  struct iovec iov = { buf, sizeof buf };
  struct msghdr msg;
  struct cmsghdr *c;
  ssize_t r;

  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.c;
  msg.msg_controllen = sizeof ctl.c;
  do r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (r == -1 && errno == EINTR);
  if (r != (ssize_t)sizeof buf) return 0;
  *tag = buf[0];
  memcpy(value, buf + 1, sizeof *value);
  fds[0] = fds[1] = -1;
  for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      if (c->cmsg_len == CMSG_LEN(2 * sizeof(int))) memcpy(fds, CMSG_DATA(c), 2 * sizeof(int));
      else if (c->cmsg_len == CMSG_LEN(sizeof(int))) memcpy(fds, CMSG_DATA(c), sizeof(int));
    }
  return 1;
}

static pid_t tlspid = -1;

/* dopis-tlsd on the client's fds (0, 1) with one end of a stream
 * socket as its fd 3; returns the other end, or -1. */
static int deliverpipe_spawntls(const char *path, const int *net)
{
  posix_spawn_file_actions_t fa;
  char *argv[] = { (char *)path, NULL };
  int sp[2], r;

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1) return -1;
  r = posix_spawn_file_actions_init(&fa);
  if (r == 0) {
    r = posix_spawn_file_actions_adddup2(&fa, net[0], 0);
    if (r == 0) r = posix_spawn_file_actions_adddup2(&fa, net[1], 1);
    if (r == 0) r = posix_spawn_file_actions_adddup2(&fa, sp[1], 3);
    if (r == 0) r = posix_spawn(&tlspid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
  }
  close(sp[1]);
  if (r != 0) {
    close(sp[0]);
    tlspid = -1;
    errno = r;
    return -1;
  }
  return sp[0];
}

static void deliverpipe_serve(int sock, const char *path, const char *tlspath) __attribute__((noreturn));
static void deliverpipe_serve(int sock, const char *path, const char *tlspath)
{
  for (;;) {
    struct deliverpipe d;
    char req;
    int value, fds[2];
    ssize_t r;
    if (!deliverpipe_recv(sock, &req, &value, fds)) {
      /* the session is over; dopis-tlsd ends when its socket does */
      if (tlspid != -1) deliverpipe_reap(tlspid);
      _exit(0);
    }
    if (req == 'T') {
      int plain = -1;
      if (tlspid != -1 || !tlspath || fds[0] == -1 || fds[1] == -1) errno = EPROTO;
      else plain = deliverpipe_spawntls(tlspath, fds);
      if (fds[0] != -1) close(fds[0]);
      if (fds[1] != -1) close(fds[1]);
      if (plain == -1) {
        if (!deliverpipe_sendfds(sock, 'E', NULL, 0, errno)) _exit(0);
        continue;
      }
      r = deliverpipe_sendfds(sock, 'O', &plain, 1, 0);
      close(plain);
      if (!r) _exit(0);
      continue;
    }
    if (req == 'W') {
      r = tlspid == -1 ? -1 : deliverpipe_reap(tlspid);
      tlspid = -1;
      if (!deliverpipe_sendfds(sock, 'X', NULL, 0, (int)r)) _exit(0);
      continue;
    }
    if (fds[0] != -1) close(fds[0]);
    if (fds[1] != -1) close(fds[1]);
    if (req != 'S') _exit(0);
    if (!deliverpipe_spawn(&d, path, -1)) {
      if (!deliverpipe_sendfds(sock, 'E', NULL, 0, errno)) _exit(0);
      continue;
    }
    {
      int p[2] = { d.msgfd, d.envfd };
      int ok = deliverpipe_sendfds(sock, 'O', p, 2, 0);
      close(d.msgfd);
      close(d.envfd);
      r = deliverpipe_reap(d.pid);
      if (!ok || !deliverpipe_sendfds(sock, 'X', NULL, 0, (int)r)) _exit(0);
    }
  }
}

static const char *tlsprogram;

void deliverpipe_tlsprogram(const char *tlspath) { tlsprogram = tlspath; }

int deliverpipe_broker(const char *path)
{
  int sv[2];
  pid_t pid;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) return 0;
  pid = fork();
  if (pid == -1) { close(sv[0]); close(sv[1]); return 0; }
  if (pid == 0) {
    /* the broker holds no part of the client's connection; fds 0 and 1
     * stay taken, so that no pipe it makes lands on them */
    int nul = open("/dev/null", O_RDWR);
    close(sv[0]);
    if (nul == -1 || dup2(nul, 0) == -1 || dup2(nul, 1) == -1) _exit(1);
    if (nul > 1) close(nul);
    signal(SIGPIPE, SIG_IGN);
    deliverpipe_serve(sv[1], path, tlsprogram);
  }
  close(sv[1]);
  broker = sv[0];
  return 1;
}

/* ---- the calling side ---- */

int deliverpipe_start(struct deliverpipe *d, const char *path, int msgsrc)
{
  char tag;
  int value, fds[2];
  if (broker == -1 || msgsrc != -1) return deliverpipe_spawn(d, path, msgsrc);
  d->pid = d->msgfd = d->envfd = -1;
  if (!deliverpipe_sendfds(broker, 'S', NULL, 0, 0) || !deliverpipe_recv(broker, &tag, &value, fds)) {
    errno = EPIPE;
    return 0;
  }
  if (tag != 'O' || fds[0] == -1) {
    if (fds[0] != -1) { close(fds[0]); close(fds[1]); }
    errno = tag == 'E' ? value : EPROTO;
    return 0;
  }
  d->pid = 0;   /* running, under the broker */
  d->msgfd = fds[0];
  d->envfd = fds[1];
  return 1;
}

static int deliverpipe_wait(struct deliverpipe *d)
{
  pid_t pid = d->pid;
  d->pid = -1;
  if (pid == -1) return -1;
  if (pid == 0) {
    char tag;
    int value, fds[2];
    if (!deliverpipe_recv(broker, &tag, &value, fds) || tag != 'X') return -1;
    return value;
  }
  return deliverpipe_reap(pid);
}

int deliverpipe_commit(struct deliverpipe *d, unsigned long long size)
{
  char rec[2 + FMT_ULONG];
  size_t n = 0;
  int ok, status;

  if (d->msgfd != -1) { close(d->msgfd); d->msgfd = -1; }
  rec[n++] = 'Z';
  n += fmt_ulonglong(rec + n, size);
  rec[n++] = 0;
  ok = fsync_writeall(d->envfd, rec, n) == 0;
  close(d->envfd);
  d->envfd = -1;
  status = deliverpipe_wait(d);
  /* deliver may have stopped early on purpose: its status says why */
  return !ok && status == 0 ? -1 : status;
}

void deliverpipe_abort(struct deliverpipe *d)
{
  if (d->msgfd != -1) close(d->msgfd);
  if (d->envfd != -1) close(d->envfd);
  d->msgfd = d->envfd = -1;
  deliverpipe_wait(d);
}

int deliverpipe_tls(void)
{
  char tag;
  int value, fds[2], net[2] = { 0, 1 };
  if (broker == -1) { errno = EPROTO; return -1; }
  if (!deliverpipe_sendfds(broker, 'T', net, 2, 0) || !deliverpipe_recv(broker, &tag, &value, fds)) {
    errno = EPIPE;
    return -1;
  }
  if (tag != 'O' || fds[0] == -1) {
    if (fds[0] != -1) close(fds[0]);
    errno = tag == 'E' ? value : EPROTO;
    return -1;
  }
  return fds[0];
}

int deliverpipe_tlswait(void)
{
  char tag;
  int value, fds[2];
  if (broker == -1 || !deliverpipe_sendfds(broker, 'W', NULL, 0, 0) ||
      !deliverpipe_recv(broker, &tag, &value, fds) || tag != 'X')
    return -1;
  return value;
}
