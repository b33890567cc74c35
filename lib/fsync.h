/* Durability helpers: everything deliver (and later relay) needs to
 * put bytes and names on disk so that they survive a crash, and to
 * say in one line why that did not work.
 *
 * Functions return 0 on success and -1 on failure with errno set,
 * unless said otherwise. */
#ifndef DOPIS_FSYNC_H
#define DOPIS_FSYNC_H

#include <stddef.h>
#include <sys/types.h>
#include <stralloc.h>

/* Writes all of buf, retrying on EINTR and short writes.  A write
 * that returns 0 is an error (ENOSPC). */
int fsync_writeall(int fd, const char *buf, size_t len);

/* Copies len bytes of in, starting at offset inoff, to out at its
 * current file position, with copy_file_range(2), falling back to
 * pread/write where the kernel or file system cannot (EXDEV, ENOSYS,
 * EINVAL, EOPNOTSUPP).  A source shorter than len is an error (EIO). */
int fsync_copy(int out, int in, off_t inoff, unsigned long long len);

/* fsync(2) and close(2) of fd, both checked; fd is closed either way. */
int fsync_close(int fd);

/* Opens the directory path and fsyncs it, so that names created in
 * or renamed into it are durable. */
int fsync_dir(const char *path);

/* mkdir -p path with mode, but never creates the first keep bytes of
 * path (a directory path[0..keep) must already exist: a missing
 * mount point or home directory is an error, not something to
 * paper over on the wrong file system).  The parent of every
 * directory it creates is fsynced. */
int fsync_mkdirs(const char *path, size_t keep, mode_t mode);

/* Sets why to "op path: strerror(errno)" and returns -1 with errno
 * preserved; path may be NULL.  For one-line failure reasons. */
int fsync_why(stralloc *why, const char *op, const char *path);

#endif
