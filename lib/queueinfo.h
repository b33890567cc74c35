/* Reading and rewriting the queue's info files (see queue.h for the
 * layout, and the state record below), shared by the relay and the
 * queue tool.
 *
 * An info file is a sequence of envelope records (type byte, text,
 * NUL) ended by the empty record.  Everything before the first T
 * record is the message's part (I, F, P, C and whatever a later
 * version adds); every T record starts a recipient's part, which runs
 * to the next T: the lead adds N<NOTIFY value> and O<ORCPT value,
 * xtext as the client sent it> there, and the relay its state record:
 *
 *   S<state> <attempts> <first> <next> <flags> <status> <remote> <text>
 *
 * fields separated by one space, the last running to the end:
 *   state     pending    not final; tried again at <next>
 *             delivered  final
 *             relayed    delivered, but a success DSN is still owed
 *                        (NOTIFY=SUCCESS, the peer did not take DSN)
 *             failed     failed for good, a failure DSN is still owed
 *             bounced    final (the DSN was handed on, or none is due)
 *   attempts  delivery attempts so far, decimal
 *   first     unix time of the first attempt, 0 for none
 *   next      unix time of the next attempt, 0 for "now"
 *   flags     "-", or letters: w = the delay warning was sent
 *   status    RFC 3463 status of the last result ("4.4.1"), or "-"
 *   remote    the host that gave it ("mx.example.com[192.0.2.1]"), or
 *             "-" for none or a local delivery
 *   text      the last reply or reason, printable, may be empty
 *
 * A recipient without an S record is pending, untried, due now.
 * Records this code does not know are kept, in place, when a file is
 * rewritten.  A file is only ever replaced whole: written in tmp/,
 * fsynced, renamed over info/<qid>, and info/ fsynced. */
#ifndef DOPIS_QUEUEINFO_H
#define DOPIS_QUEUEINFO_H

#include <stddef.h>
#include <stralloc.h>

#define QINFO_MAXTEXT 900   /* of an S record's text: a record stays short */

enum qinfo_state {
  QINFO_PENDING = 0, QINFO_DELIVERED, QINFO_RELAYED, QINFO_FAILED, QINFO_BOUNCED
};

#define QINFO_WARNED 1

struct qinfo_rcpt {
  stralloc raw;           /* the recipient's records but S, verbatim */
  const char *addr;       /* into raw: the T text, NUL-terminated */
  const char *notify;     /* into raw: N text, or NULL */
  const char *orcpt;      /* into raw: O text, or NULL */
  enum qinfo_state state;
  unsigned long attempts, first, next;
  int flags;
  stralloc status, remote, text;  /* "" for none; not NUL-terminated */
};

struct qinfo {
  stralloc head;          /* the records before the first T, verbatim */
  const char *id;         /* into head: I text, or "" */
  const char *sender;     /* into head: F text ("" for <>) */
  unsigned long created;  /* C */
  struct qinfo_rcpt *r;
  size_t n, a;
};

/* Reads path into q (which must be zeroed or freed before).  Returns
 * 0, or -1 with why set; errno ENOENT when the file is not there,
 * EINVAL when it is malformed. */
int qinfo_read(struct qinfo *q, const char *path, stralloc *why);
void qinfo_free(struct qinfo *q);

/* Calls fn for every P record (text without the P) until fn returns
 * nonzero; returns that, or 0. */
int qinfo_params(const struct qinfo *q,
                 int (*fn)(const char *p, size_t len, void *arg), void *arg);

/* Sets the state record's text fields (status, remote: NULL for
 * none).  Control bytes become blanks; text is cut at QINFO_MAXTEXT. */
int qinfo_settext(struct qinfo_rcpt *r, const char *status,
                  const char *remote, const char *text, size_t len);

/* Replaces info/<qid> of queuedir with q: tmp/<qid>.<pid>.state is
 * written and fsynced, renamed over info/<qid>, and info/ fsynced.
 * Returns 0, or -1 with why set. */
int qinfo_write(const struct qinfo *q, const char *queuedir,
                const char *qid, stralloc *why);

/* Removes a message: info/<qid> first, info/ fsynced, then mess/<qid>.
 * Returns 0, or -1 with why set. */
int qinfo_remove(const char *queuedir, const char *qid, stralloc *why);

/* The parts of the two above, for a caller that commits several
 * changes of info/ with one fsync (the relay's group commit): qinfo_put
 * is qinfo_write without the fsync of info/, qinfo_syncdir that fsync;
 * qinfo_unlink removes <sub>/<qid> ("info" or "mess"; gone already is
 * no error).  Each returns 0, or -1 with why set. */
int qinfo_put(const struct qinfo *q, const char *queuedir,
              const char *qid, stralloc *why);
int qinfo_syncdir(const char *queuedir, stralloc *why);
int qinfo_unlink(const char *queuedir, const char *qid, const char *sub, stralloc *why);

/* Whether a pending recipient is due at now: its next-try time has
 * come; or that time lies more than retry_max ahead (never set so
 * far ahead, so it was set by a clock that has since gone back: waiting
 * for it could hold the mail as long as the clock jumped); or the
 * message has outlived lifetime (one last try, then the bounce).  The
 * relay's rule, which the queue tool shows. */
int qinfo_due(const struct qinfo *q, const struct qinfo_rcpt *r, unsigned long now,
              unsigned long retry_max, unsigned long lifetime);

/* "pending", "delivered", ... */
const char *qinfo_statename(enum qinfo_state s);

#endif
