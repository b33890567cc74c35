/* Applies dopis's sandbox (lib/sandbox.c) the way smtpd does, then
 * tries what it forbids.  tests/test_sandbox.py builds and runs it.
 *   sandbox_probe files ALLOWED OTHER   Landlock: reads ALLOWED, must
 *                                       not read or write OTHER, nor exec
 *   sandbox_probe syscall              seccomp: socket() must kill it */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "sandbox.h"

int main(int argc, char **argv)
{
  stralloc why = {0};
  if (argc == 4 && !strcmp(argv[1], "files")) {
    const char *readable[] = { argv[2], NULL };
    char *const av[] = { "/bin/true", NULL };
    int fd, bad = 0, r = sandbox_files(readable, NULL, &why);
    if (r != 1) { printf("not confined (%d)\n", r); return 2; }
    if ((fd = open(argv[2], O_RDONLY)) == -1) { printf("allowed file refused\n"); bad = 1; } else close(fd);
    if ((fd = open(argv[3], O_RDONLY)) != -1 || errno != EACCES) { printf("read of %s not refused\n", argv[3]); bad = 1; }
    if ((fd = open(argv[3], O_WRONLY | O_APPEND)) != -1 || errno != EACCES) { printf("write not refused\n"); bad = 1; }
    execve(av[0], av, NULL);
    if (errno != EACCES) { printf("exec not refused: %s\n", strerror(errno)); bad = 1; }
    printf(bad ? "FAILED\n" : "refused\n");
    return bad;
  }
  if (argc == 2 && !strcmp(argv[1], "syscall")) {
    if (sandbox_syscalls_smtpd(&why) != 1) { printf("not confined\n"); return 2; }
    printf("confined\n");
    fflush(stdout);
    socket(AF_INET, SOCK_STREAM, 0);   /* not on smtpd's list */
    printf("socket() was allowed\n");
    return 1;
  }
  return 64;
}
