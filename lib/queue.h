/* The queue: remote recipients wait here for the relay.
 *
 * Layout, under the directory named by `queue` in dopis.conf (each
 * directory mode 0700, created when missing):
 *
 *   tmp/<id>.<pid>.mess, tmp/<id>.<pid>.info, tmp/<qid>.<pid>.state
 *                  files being written (the last by the relay);
 *                  anything here older than a day is garbage left by
 *                  a crash and may be removed (the relay does).
 *   mess/<qid>     the message exactly as deliver received it on fd 0
 *                  (LF line ends, no Return-Path or Delivered-To).
 *   info/<qid>     the envelope, in the record format of envelope.h
 *                  (type byte, text, NUL): I<message id>, F<sender>,
 *                  any P<MAIL parameter>, C<unix time it was queued>,
 *                  one T<recipient> per remote recipient (and per
 *                  local one whose Maildir could not take its copy
 *                  for the moment: relay hands those back to deliver),
 *                  each followed by its DSN N<notify> and O<orcpt> records
 *                  when the client gave them, and the empty record.
 *                  A recipient with no state record after it is
 *                  pending: no attempts yet, due now.
 *                  The relay adds its state records by writing a new
 *                  info file in tmp/ and renaming it over this one:
 *                  after a recipient's T (and N, O) records comes
 *                    S<state> <attempts> <first> <next> <flags>
 *                     <status> <remote> <text>
 *                  state pending|delivered|relayed|failed|bounced,
 *                  times in unix seconds (0: none/now), flags "-" or
 *                  "w" (delay warning sent), status an RFC 3463 code or
 *                  "-", remote "host[ip]" or "-", text the last reply
 *                  or reason.  Details in queueinfo.h, which reads and
 *                  rewrites info files.
 *   lock           flock(2)ed by the relay for its whole pass.
 *
 * <qid> is the message id, or the id with ".1", ".2", ... appended
 * when that name is taken.  Writing order, each step durable before
 * the next: the message goes to tmp/, is fsynced and hard-linked to
 * mess/<qid> (link, not rename, because link fails when the name
 * exists), mess/ is fsynced; then the info file is written to tmp/,
 * fsynced, and renamed to info/<qid>, and info/ is fsynced.  The
 * rename into info/ is the commit: a message without an info file is
 * not queued (garbage of an interrupted write).  Whoever removes a
 * message removes info/<qid> first and mess/<qid> last, so that an
 * existing mess/<qid> always reserves the name. */
#ifndef DOPIS_QUEUE_H
#define DOPIS_QUEUE_H

#include <stddef.h>
#include <stralloc.h>
#include "route.h"

#define QUEUE_TMPMESS 1
#define QUEUE_MESS    2
#define QUEUE_TMPINFO 4
#define QUEUE_INFO    8

struct queue_msg {
  stralloc dir;       /* the queue directory, NUL-terminated */
  stralloc qid;       /* name in mess/ and info/, NUL-terminated */
  stralloc tmpmess, tmpinfo, mess, info;  /* paths, NUL-terminated */
  int state;          /* QUEUE_* bits: what exists on disk */
};

/* Creates the queue's directories where missing (never the first keep
 * bytes of queuedir; see fsync_mkdirs) and an empty message file in
 * tmp/, opened read-write.  Returns its fd, or -1 with why set. */
int queue_open(struct queue_msg *q, const char *queuedir, size_t keep,
               const char *id, stralloc *why);

/* fsyncs and closes fd (from queue_open, the message written into it;
 * closed in any case) and links it into mess/.  Returns 0, or -1 with why set. */
int queue_putmess(struct queue_msg *q, int fd, stralloc *why);

/* Writes and fsyncs the info file in tmp/: id, sender, params (a list
 * of NUL-terminated texts, each sent as a P record), and a T record
 * for every remote target (maildir == NULL) in l, and for every local
 * one that has an address in localaddr (NULL, or one entry per target
 * of l, NULL for "not queued": a local delivery that failed for the
 * moment waits here under that address until relay hands it back to
 * deliver).  Returns 0, or -1 with why set. */
int queue_putinfo(struct queue_msg *q, const char *id,
                  const char *sender, size_t senderlen,
                  const stralloc *params, const struct route_list *l,
                  const char *const *localaddr, stralloc *why);

/* The commit: renames the info file into info/ and fsyncs info/.
 * Returns 0, or -1 with why set (and the commit undone). */
int queue_commit(struct queue_msg *q, stralloc *why);

/* Best effort: removes whatever of this message exists. */
void queue_undo(struct queue_msg *q);

#endif
