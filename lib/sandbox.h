/* Self-confinement on Linux: Landlock for the file system, seccomp for
 * system calls.  Both are inherited by everything the process starts,
 * so smtpd confines itself only after forking the broker that starts
 * deliver (see deliverpipe_broker). */
#ifndef DOPIS_SANDBOX_H
#define DOPIS_SANDBOX_H

#include <stralloc.h>

/* The sanitizers' runtimes read /proc and make calls of their own: a
 * sanitizer build runs unconfined. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANDBOX_OFF 1
#endif
#endif
#ifndef SANDBOX_OFF
#define SANDBOX_OFF 0
#endif

/* Landlock: after this the process may open nothing but the files in
 * readable (read only) and, below the directories in writable, what
 * deliver needs; it may execute nothing.  Both lists end with NULL.
 * Returns 1 when confined, 0 when the kernel has no Landlock (why
 * says so: run on, log it), -1 on an error (why). */
int sandbox_files(const char *const *readable, const char *const *writable, stralloc *why);
/* seccomp: only the system calls smtpd's session needs; any other
 * kills the process.  Returns 1, 0 when unsupported here, -1 on error. */
int sandbox_syscalls_smtpd(stralloc *why);

#endif
