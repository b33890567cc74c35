/* forkexec PROGRAM PARALLEL SECONDS: fork+exec+wait of PROGRAM (a small
 * static binary), in PARALLEL loops for SECONDS, as tcpserver starts a
 * program per connection; prints "execs_per_second total seconds".
 * PROGRAM runs with /dev/null as fds 0, 1 and 2 and must exit by itself
 * (smtpd does, at end of input); its exit code is not checked. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
  if (argc < 4) {
    fprintf(stderr, "usage: forkexec PROGRAM PARALLEL SECONDS\n");
    return 64;
  }
  int par = atoi(argv[2]);
  double secs = atof(argv[3]);
  int res[2];
  if (pipe(res)) return 111;
  double t0 = now();
  for (int i = 0; i < par; i++) {
    if (fork() == 0) {
      long n = 0;
      double end = t0 + secs;
      while (now() < end) {
        pid_t p = fork();
        if (p == 0) {
          char *av[] = { argv[1], NULL };
          int fd = open("/dev/null", O_RDWR);
          dup2(fd, 0);
          dup2(fd, 1);
          dup2(fd, 2);
          execv(argv[1], av);
          _exit(127);
        }
        int st;
        if (p < 0 || waitpid(p, &st, 0) != p || (WIFEXITED(st) && WEXITSTATUS(st) == 127)) {
          perror("spawn");
          _exit(111);
        }
        n++;
      }
      if (write(res[1], &n, sizeof n) != sizeof n) _exit(111);
      _exit(0);
    }
  }
  close(res[1]);
  long total = 0, n;
  while (read(res[0], &n, sizeof n) == sizeof n) total += n;
  while (wait(NULL) > 0) {}
  double t = now() - t0;
  printf("%.1f %ld %.3f\n", total / t, total, t);
  return 0;
}
