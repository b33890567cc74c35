/* One message file in one Maildir, per maildir(5): written under a
 * unique name in tmp/, fsynced by the caller, then renamed into new/
 * as <name>,S=<size> and new/ fsynced.  Every step can be undone
 * (best effort) until the caller reports success. */
#ifndef DOPIS_MAILDIR_H
#define DOPIS_MAILDIR_H

#include <stddef.h>
#include <stralloc.h>

enum maildir_state { MAILDIR_NONE = 0, MAILDIR_TMP, MAILDIR_NEW };

struct maildir_file {
  stralloc dir;      /* the Maildir (folder), without a trailing / */
  stralloc tmp;      /* dir/tmp/<unique> */
  stralloc new;      /* dir/new/<unique>,S=<size>, once moved */
  enum maildir_state state;
};

/* The host part of unique names: hostname with '/' and ':' written
 * as \057 and \072.  Returns 0 on out of memory. */
int maildir_init(const char *host, size_t len);

/* Creates the Maildir's cur/ new/ tmp/ where missing (never the first
 * keep bytes of maildir; see fsync_mkdirs) and a new empty file in
 * tmp/, opened read-write.  Returns the fd, or -1 with why set. */
int maildir_open(struct maildir_file *f, const char *maildir, size_t keep,
                 stralloc *why);

/* Renames the (complete, fsynced, closed) file into new/, its name
 * completed with ",S=size".  Returns 0, or -1 with why set. */
int maildir_move(struct maildir_file *f, unsigned long long size,
                 stralloc *why);

/* fsyncs the Maildir's new/.  Returns 0, or -1 with why set. */
int maildir_syncnew(struct maildir_file *f, stralloc *why);

/* Best effort: a file in new/ is renamed back into tmp/ (so that even
 * when the unlink then fails no reader ever takes it for mail; tmp/
 * is cleaned by age), then removed; a file in tmp/ is removed. */
void maildir_undo(struct maildir_file *f);

#endif
