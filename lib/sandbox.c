#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stralloc.h>
#include "sandbox.h"

/* Rights newer than the kernel headers here; the ABI version says
 * which the kernel knows, and only those may be asked for. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

#define FS_FILE (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
                 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE | \
                 LANDLOCK_ACCESS_FS_IOCTL_DEV)

static int sandbox_fail(stralloc *why, const char *what)
{
  stralloc_copys(why, what);
  stralloc_cats(why, ": ");
  stralloc_cats(why, strerror(errno));
  return -1;
}

static int sandbox_rule(int ruleset, const char *path, __u64 access, stralloc *why)
{
  struct landlock_path_beneath_attr pb;
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd == -1) return errno == ENOENT ? 0 : sandbox_fail(why, path);
  memset(&pb, 0, sizeof pb);
  pb.parent_fd = fd;
  pb.allowed_access = access;
  if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == -1) {
    /* a file takes only the rights of files */
    if (errno == EINVAL) {
      pb.allowed_access = access & FS_FILE;
      if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == 0) {
        close(fd);
        return 0;
      }
    }
    close(fd);
    return sandbox_fail(why, path);
  }
  close(fd);
  return 0;
}

int sandbox_files(const char *const *readable, const char *const *writable, stralloc *why)
{
  struct landlock_ruleset_attr attr;
  __u64 all, rw;
  long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  int ruleset;

  if (abi < 1) {
    stralloc_copys(why, "the kernel has no Landlock");
    return 0;
  }
  all = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
        LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
        LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
        LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
        LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2) all |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) all |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  /* a Maildir and the queue: files and directories made, written,
   * renamed (tmp/ to new/: REFER) and removed; nothing executed */
  rw = all & (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
              LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |
              LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_TRUNCATE);
  memset(&attr, 0, sizeof attr);
  attr.handled_access_fs = all;
  ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
  if (ruleset == -1) return sandbox_fail(why, "landlock_create_ruleset");
  for (; readable && *readable; readable++)
    if (sandbox_rule(ruleset, *readable, LANDLOCK_ACCESS_FS_READ_FILE, why) == -1) goto fail;
  for (; writable && *writable; writable++)
    if (sandbox_rule(ruleset, *writable, rw, why) == -1) goto fail;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) { sandbox_fail(why, "PR_SET_NO_NEW_PRIVS"); goto fail; }
  if (syscall(SYS_landlock_restrict_self, ruleset, 0) == -1) { sandbox_fail(why, "landlock_restrict_self"); goto fail; }
  close(ruleset);
  return 1;
fail:
  close(ruleset);
  return -1;
}

#if defined(__x86_64__)
#define SANDBOX_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SANDBOX_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef SANDBOX_ARCH
/* What a session does after start-up, in smtpd and in dopis-tlsd: I/O
 * on its descriptors and the deliver pipes, the broker's messages,
 * dup2 (smtpd's fds 0 and 1 become the socket to dopis-tlsd), memory,
 * time, signals, TLS (getrandom), the passwd file (openat: Landlock
 * decides which). */
static const int sandbox_smtpd_calls[] = {
  SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_close, SYS_ppoll, SYS_fcntl,
  SYS_fstat, SYS_newfstatat, SYS_lseek, SYS_openat,
  SYS_mmap, SYS_munmap, SYS_mremap, SYS_mprotect, SYS_brk, SYS_madvise,
  SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_restart_syscall,
  SYS_exit, SYS_exit_group, SYS_getpid, SYS_gettid, SYS_tgkill,
  SYS_clock_gettime, SYS_gettimeofday, SYS_clock_nanosleep, SYS_nanosleep,
  SYS_getrandom, SYS_futex, SYS_sendmsg, SYS_recvmsg, SYS_shutdown,
  SYS_dup3,
#ifdef SYS_dup2
  SYS_dup2,
#endif
#ifdef SYS_poll
  SYS_poll,
#endif
#ifdef SYS_time
  SYS_time,
#endif
#ifdef SYS_statx
  SYS_statx,
#endif
};
#endif

int sandbox_syscalls_smtpd(stralloc *why)
{
#ifdef SANDBOX_ARCH
  enum { N = sizeof sandbox_smtpd_calls / sizeof *sandbox_smtpd_calls };
  struct sock_filter f[4 + N + 2];
  struct sock_fprog prog;
  size_t n = 0;

  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SANDBOX_ARCH, 1, 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  for (size_t i = 0; i < N; i++)
    /* equal: jump to the ALLOW at the end; else go on */
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)sandbox_smtpd_calls[i],
                                          (unsigned char)(N - i), 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  prog.len = (unsigned short)n;
  prog.filter = f;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) return sandbox_fail(why, "PR_SET_NO_NEW_PRIVS");
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == -1) return sandbox_fail(why, "seccomp");
  return 1;
#else
  stralloc_copys(why, "no seccomp filter for this architecture");
  return 0;
#endif
}
