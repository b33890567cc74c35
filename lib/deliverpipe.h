/* The calling side of dopis-deliver(8), shared by smtpd and relay:
 * start deliver with a fixed argv, give it the envelope on its fd 1
 * and the message on its fd 0, then commit (or abort) and wait. */
#ifndef DOPIS_DELIVERPIPE_H
#define DOPIS_DELIVERPIPE_H

#include <sys/types.h>

struct deliverpipe {
  pid_t pid;     /* -1: not running */
  int msgfd;     /* write end of deliver's fd 0, or -1 (message from a file) */
  int envfd;     /* write end of deliver's fd 1 */
};

/* Starts path.  The message comes from the open file msgsrc (read from
 * its current offset), or, with msgsrc -1, through a pipe written at
 * d->msgfd.  Returns 1, or 0 with errno set. */
int deliverpipe_start(struct deliverpipe *d, const char *path, int msgsrc);
/* Closes d->msgfd (the end of the message) when still open, writes the
 * commit record Z<size>, closes the envelope and waits.  Returns
 * deliver's exit status, or -1 (killed, or the commit could not be
 * written although deliver exited 0). */
int deliverpipe_commit(struct deliverpipe *d, unsigned long long size);
/* Closes both pipes without committing, so deliver stores nothing, and
 * waits for it.  Harmless when nothing runs. */
void deliverpipe_abort(struct deliverpipe *d);


/* Privilege separation for smtpd: forks a broker that keeps the
 * right to start deliver, so that the caller can then sandbox itself
 * with no right to execute or write anything (sandboxes are inherited
 * by what a process starts).  Afterwards deliverpipe_start goes
 * through the broker: it starts path with a fixed argv and passes the
 * pipe ends back (SCM_RIGHTS); its exit status comes back the same
 * way.  Call before reading any untrusted input.  Returns 1, or 0. */
int deliverpipe_broker(const char *path);
/* Before deliverpipe_broker: the TLS program deliverpipe_tls starts. */
void deliverpipe_tlsprogram(const char *tlspath);

/* Through the broker: starts tlspath (dopis-tlsd(8)) on the caller's
 * fds 0 and 1, with one end of a stream socket as its fd 3, and returns
 * the other end (the session's plaintext from then on), or -1 with
 * errno set.  Once per session. */
int deliverpipe_tls(void);
/* After the caller closed its end: waits until dopis-tlsd has ended
 * the TLS session (close_notify) and exited.  Returns its exit status,
 * or -1. */
int deliverpipe_tlswait(void);

#endif
