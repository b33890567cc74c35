/* durable DIR WRITERS SECONDS [SIZE [ORDER]]: the machine's durable
 * small-file create rate, the way a Maildir delivery makes a file
 * durable: write SIZE bytes (1024) to DIR/tmp/<name>, fsync it, rename
 * it into DIR/new/, fsync new/.  WRITERS processes share both
 * directories and run for SECONDS; prints "creates_per_second
 * total_files seconds".  ORDER "late" renames before the file's fsync
 * (write, rename, fsync file, fsync new/): the same two fsyncs, done
 * before the function returns, but on a journaled ext4 the first commit
 * carries the rename too, so the second finds nothing left to do. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
  perror(what);
  exit(111);
}

int main(int argc, char **argv)
{
  if (argc < 4) {
    fprintf(stderr, "usage: durable DIR WRITERS SECONDS [SIZE]\n");
    return 64;
  }
  const char *dir = argv[1];
  int writers = atoi(argv[2]);
  double secs = atof(argv[3]);
  size_t size = argc > 4 ? (size_t)atol(argv[4]) : 1024;
  int late = argc > 5 && !strcmp(argv[5], "late");
  char tmpd[4096], newd[4096];
  snprintf(tmpd, sizeof tmpd, "%s/tmp", dir);
  snprintf(newd, sizeof newd, "%s/new", dir);
  mkdir(dir, 0700);
  mkdir(tmpd, 0700);
  mkdir(newd, 0700);
  int go[2], res[2];
  if (pipe(go) || pipe(res)) die("pipe");
  for (int w = 0; w < writers; w++) {
    pid_t p = fork();
    if (p < 0) die("fork");
    if (p) continue;
    close(go[1]);
    char *buf = malloc(size);
    memset(buf, 'x', size);
    char c;
    if (read(go[0], &c, 1) < 0) die("read");  /* EOF: start */
    double end = now() + secs;
    long n = 0;
    int nd = open(newd, O_RDONLY | O_DIRECTORY);
    if (nd < 0) die(newd);
    while (now() < end) {
      char t[4200], f[4200];
      snprintf(t, sizeof t, "%s/%d.%ld", tmpd, w, n);
      snprintf(f, sizeof f, "%s/%d.%ld", newd, w, n);
      int fd = open(t, O_WRONLY | O_CREAT | O_EXCL, 0600);
      if (fd < 0) die(t);
      if (write(fd, buf, size) != (ssize_t)size) die("write");
      if (late) {
        if (rename(t, f)) die("rename");
        if (fsync(fd)) die("fsync");
        close(fd);
      } else {
        if (fsync(fd)) die("fsync");
        close(fd);
        if (rename(t, f)) die("rename");
      }
      if (fsync(nd)) die("fsync dir");
      n++;
    }
    if (write(res[1], &n, sizeof n) != sizeof n) die("write");
    _exit(0);
  }
  close(go[0]);
  close(res[1]);
  double t0 = now();
  close(go[1]);
  long total = 0, n;
  while (read(res[0], &n, sizeof n) == sizeof n) total += n;
  while (wait(NULL) > 0) {}
  double t = now() - t0;
  printf("%.1f %ld %.3f\n", total / t, total, t);
  return 0;
}
