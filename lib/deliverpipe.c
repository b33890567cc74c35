#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/wait.h>
#include <fmt.h>
#include "deliverpipe.h"
#include "fsync.h"

extern char **environ;

int deliverpipe_start(struct deliverpipe *d, const char *path, int msgsrc)
{
  posix_spawn_file_actions_t fa;
  char *argv[] = { (char *)path, NULL };
  int m[2] = { -1, -1 }, e[2], r;

  d->pid = -1;
  d->msgfd = d->envfd = -1;
  if (msgsrc == -1 && pipe2(m, O_CLOEXEC) == -1) return 0;
  if (pipe2(e, O_CLOEXEC) == -1) goto fail;
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
fail:
  r = errno;
  if (m[0] != -1) { close(m[0]); close(m[1]); }
  errno = r;
  return 0;
}

static int deliverpipe_wait(struct deliverpipe *d)
{
  int status;
  pid_t r;
  if (d->pid == -1) return -1;
  do r = waitpid(d->pid, &status, 0); while (r == -1 && errno == EINTR);
  d->pid = -1;
  if (r == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
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
