/* LD_PRELOAD shim for OpenSMTPD, whose listen backlog is a fixed 5:
 * with 16 clients reconnecting for every message the accept queue
 * overflows and clients stall in SYN retransmissions (1 s, 3 s, ...).
 * Raises every listen() backlog to at least 1024, nothing else. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>

int listen(int fd, int backlog)
{
  static int (*real)(int, int);
  if (!real) real = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
  if (backlog < 1024) backlog = 1024;
  return real(fd, backlog);
}
