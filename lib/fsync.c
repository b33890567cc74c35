#include <sys/types.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <stralloc.h>
#include <str.h>
#include "fsync.h"

int fsync_writeall(int fd, const char *buf, size_t len)
{
  while (len) {
    ssize_t r = write(fd, buf, len);
    if (r == -1) {
      if (errno == EINTR) continue;
      return -1;
    }
    /* a regular file that takes nothing is full */
    if (r == 0) { errno = ENOSPC; return -1; }
    buf += r;
    len -= (size_t)r;
  }
  return 0;
}

/* The fallback of fsync_copy: plain reads and writes, constant memory. */
static int fsync_copyslow(int out, int in, off_t inoff, unsigned long long len)
{
  char buf[65536];
  while (len) {
    size_t n = len < sizeof buf ? (size_t)len : sizeof buf;
    ssize_t r = pread(in, buf, n, inoff);
    if (r == -1) {
      if (errno == EINTR) continue;
      return -1;
    }
    /* the source is shorter than it was when we wrote it */
    if (r == 0) { errno = EIO; return -1; }
    if (fsync_writeall(out, buf, (size_t)r) == -1) return -1;
    inoff += r;
    len -= (unsigned long long)r;
  }
  return 0;
}

int fsync_copy(int out, int in, off_t inoff, unsigned long long len)
{
  while (len) {
    /* the kernel copies at most about 2 GiB per call anyway */
    size_t n = len < (1UL << 30) ? (size_t)len : (1UL << 30);
    ssize_t r = copy_file_range(in, &inoff, out, NULL, n, 0);
    if (r == -1) {
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
          errno == EOPNOTSUPP)
        return fsync_copyslow(out, in, inoff, len);
      return -1;
    }
    /* some kernels return 0 for file systems they cannot copy between;
     * the slow path tells that apart from a short source */
    if (r == 0) return fsync_copyslow(out, in, inoff, len);
    len -= (unsigned long long)r;
  }
  return 0;
}

int fsync_close(int fd)
{
  int r = 0, saved = 0;
  if (fsync(fd) == -1) { r = -1; saved = errno; }
  /* close can report a delayed write error (NFS); never retry it */
  if (close(fd) == -1 && r == 0) { r = -1; saved = errno; }
  if (r == -1) errno = saved;
  return r;
}

int fsync_dir(const char *path)
{
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1) return -1;
  if (fsync(fd) == -1 && errno != EINVAL) {
    /* EINVAL: a file system that cannot sync at all; there is nothing
     * more we could do for durability there */
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return close(fd);
}

/* fsync of the directory holding p[0..len), len > 0 */
static int fsync_parent(stralloc *p, size_t len)
{
  size_t i = len;
  int r;
  char save;
  while (i > 0 && p->s[i - 1] != '/') i--;     /* start of last name */
  while (i > 1 && p->s[i - 1] == '/') i--;      /* its slashes */
  if (i == 0) return fsync_dir(".");
  save = p->s[i];
  p->s[i] = 0;
  r = fsync_dir(p->s);
  p->s[i] = save;
  return r;
}

int fsync_mkdirs(const char *path, size_t keep, mode_t mode)
{
  static stralloc p;
  struct stat st;
  size_t len = str_len(path), j;

  /* the common case: it is all there already */
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
  if (!stralloc_copyb(&p, path, len) || !stralloc_0(&p)) {
    errno = ENOMEM;
    return -1;
  }
  for (j = 1; j <= len; j++) {
    if (j < len && p.s[j] != '/') continue;
    if (p.s[j - 1] == '/') continue;            /* "//" or a trailing / */
    if (j <= keep) continue;
    p.s[j] = 0;
    if (mkdir(p.s, mode) == 0) {
      if (fsync_parent(&p, j) == -1) return -1;
    } else if (errno != EEXIST) {
      return -1;
    }
    /* an existing non-directory shows up as ENOTDIR one step later,
     * or at the caller's open */
    if (j < len) p.s[j] = '/';
  }
  return 0;
}

int fsync_why(stralloc *why, const char *op, const char *path)
{
  int saved = errno;
  if (stralloc_copys(why, op)) {
    if (path) (void)(stralloc_cats(why, " ") && stralloc_cats(why, path));
    (void)(stralloc_cats(why, ": ") && stralloc_cats(why, strerror(saved)));
  }
  errno = saved;
  return -1;
}
