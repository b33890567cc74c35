#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sanitizer/common_interface_defs.h>
#include "fuzz.h"

static char dir[256];

static int fuzz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st; (void)flag; (void)ftw;
  remove(path);
  return 0;
}

static void fuzz_cleanup(void)
{
  if (dir[0]) nftw(dir, fuzz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* tmpfs where there is one: every run writes files */
const char *fuzz_dir(void)
{
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
  if (dir[0]) return dir;
  if (!base || !*base) base = "/tmp";
  snprintf(dir, sizeof dir, "%s/dopis-fuzz.XXXXXX", base);
  if (!mkdtemp(dir)) fuzz_fail("mkdtemp %s: %s", dir, strerror(errno));
  atexit(fuzz_cleanup);
  return dir;
}

const char *fuzz_path(const char *d, const char *name)
{
  static char p[512];
  snprintf(p, sizeof p, "%s/%s", d, name);
  return p;
}

void fuzz_write(const char *d, const char *name, const char *s, size_t len)
{
  const char *p = fuzz_path(d, name);
  int fd;
  unlink(p);
  fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1) fuzz_fail("open %s: %s", p, strerror(errno));
  while (len) {
    ssize_t r = write(fd, s, len);
    if (r <= 0) fuzz_fail("write %s: %s", p, strerror(errno));
    s += r;
    len -= (size_t)r;
  }
  close(fd);
}

size_t fuzz_split(const uint8_t *data, size_t size, char sep, struct fuzz_part *p, size_t max)
{
  size_t n = 0, start = 0;
  if (!max) return 0;
  for (size_t i = 0; i < size && n + 1 < max; i++)
    if ((char)data[i] == sep) {
      p[n].s = (const char *)data + start;
      p[n++].len = i - start;
      start = i + 1;
    }
  p[n].s = (const char *)data + start;
  p[n++].len = size - start;
  return n;
}

char *fuzz_dup(const void *s, size_t len)
{
  char *d = malloc(len ? len : 1);
  if (!d) fuzz_fail("out of memory");
  if (len) memcpy(d, s, len);
  return d;
}

void fuzz_fail(const char *fmt, ...)
{
  char msg[1024];
  int n = snprintf(msg, sizeof msg, "dopis fuzz: invariant broken: ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", msg);
  /* also where the sanitizers report: libFuzzer's -close_fd_mask=2
   * leaves our stderr on /dev/null */
  __sanitizer_report_error_summary(msg);
  abort();
}
