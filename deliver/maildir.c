#include <sys/time.h>
#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <fmt.h>
#include <stralloc.h>
#include "fsync.h"
#include "maildir.h"

static stralloc host;           /* encoded for file names */
static unsigned long counter;   /* Q<n>: files made by this process */

int maildir_init(const char *h, size_t len)
{
  if (!stralloc_copys(&host, "")) return 0;
  for (size_t i = 0; i < len; i++) {
    /* maildir(5): '/' and ':' would break the name or its info part */
    const char *e = h[i] == '/' ? "\\057" : h[i] == ':' ? "\\072" : NULL;
    if (e ? !stralloc_cats(&host, e) : !stralloc_append(&host, h + i))
      return 0;
  }
  return 1;
}

/* dir + "/" + sub, NUL-terminated */
static int maildir_path(stralloc *out, const stralloc *dir, const char *sub)
{
  return stralloc_copy(out, dir) && stralloc_cats(out, "/") &&
         stralloc_cats(out, sub) && stralloc_0(out);
}

/* stralloc_catulong of libowfat 0.32 writes NULs (its fmt_ulong0
 * ignores a width of 0), so numbers go through fmt_ulong */
static int maildir_catnum(stralloc *out, const char *prefix, unsigned long n)
{
  char num[FMT_ULONG];
  return stralloc_cats(out, prefix) &&
         stralloc_catb(out, num, fmt_ulong(num, n));
}

/* "<sec>.M<usec>P<pid>Q<n>.<host>", unique on this host: no other
 * process has our pid within this microsecond, and we count. */
static int maildir_unique(stralloc *out)
{
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return maildir_catnum(out, "", (unsigned long)tv.tv_sec) &&
         maildir_catnum(out, ".M", (unsigned long)tv.tv_usec) &&
         maildir_catnum(out, "P", (unsigned long)getpid()) &&
         maildir_catnum(out, "Q", ++counter) &&
         stralloc_cats(out, ".") && stralloc_cat(out, &host);
}

int maildir_open(struct maildir_file *f, const char *maildir, size_t keep,
                 stralloc *why)
{
  static const char *const subs[] = { "cur", "new", "tmp" };
  static stralloc p;
  size_t len = 0;

  f->state = MAILDIR_NONE;
  while (maildir[len]) len++;
  while (len > 1 && maildir[len - 1] == '/') len--;
  /* kept NUL-terminated beyond len, for messages */
  if (!stralloc_copyb(&f->dir, maildir, len) || !stralloc_0(&f->dir))
    goto nomem;
  f->dir.len--;

  for (size_t i = 0; i < 3; i++) {
    if (!maildir_path(&p, &f->dir, subs[i])) goto nomem;
    if (fsync_mkdirs(p.s, keep, 0700) == -1)
      return fsync_why(why, "mkdir", p.s);
  }

  /* a clash means a clock step back within one pid's life: just
   * take the next number */
  for (int tries = 0; tries < 10; tries++) {
    int fd;
    if (!maildir_path(&f->tmp, &f->dir, "tmp/")) goto nomem;
    f->tmp.len--;  /* drop the NUL: the name goes on */
    if (!maildir_unique(&f->tmp) || !stralloc_0(&f->tmp)) goto nomem;
    fd = open(f->tmp.s, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd != -1) {
      f->state = MAILDIR_TMP;
      return fd;
    }
    if (errno != EEXIST) return fsync_why(why, "open", f->tmp.s);
  }
  return fsync_why(why, "open", f->tmp.s);
nomem:
  errno = ENOMEM;
  return fsync_why(why, "maildir", maildir);
}

int maildir_move(struct maildir_file *f, unsigned long long size,
                 stralloc *why)
{
  char num[FMT_ULONG];
  size_t base = f->dir.len + 5;   /* "/tmp/" */

  /* new/ gets the same unique name plus the size, so that readers
   * (Maildir++ quotas, POP3 LIST) need no stat */
  if (!stralloc_copy(&f->new, &f->dir) || !stralloc_cats(&f->new, "/new/") ||
      !stralloc_catb(&f->new, f->tmp.s + base, f->tmp.len - 1 - base) ||
      !stralloc_cats(&f->new, ",S=") ||
      !stralloc_catb(&f->new, num, fmt_ulonglong(num, size)) ||
      !stralloc_0(&f->new)) {
    errno = ENOMEM;
    return fsync_why(why, "rename", f->tmp.s);
  }
  if (rename(f->tmp.s, f->new.s) == -1)
    return fsync_why(why, "rename", f->tmp.s);
  f->state = MAILDIR_NEW;
  return 0;
}

int maildir_syncnew(struct maildir_file *f, stralloc *why)
{
  static stralloc p;
  if (!maildir_path(&p, &f->dir, "new")) {
    errno = ENOMEM;
    return fsync_why(why, "fsync", f->dir.s);
  }
  if (fsync_dir(p.s) == -1) return fsync_why(why, "fsync", p.s);
  return 0;
}

void maildir_undo(struct maildir_file *f)
{
  static stralloc ignored;
  if (f->state == MAILDIR_NEW) {
    if (rename(f->new.s, f->tmp.s) == 0)
      f->state = MAILDIR_TMP;
    else if (unlink(f->new.s) == 0)
      f->state = MAILDIR_NONE;
    /* so that a crash now does not bring it back */
    if (f->state != MAILDIR_NEW) (void)maildir_syncnew(f, &ignored);
  }
  if (f->state == MAILDIR_TMP && unlink(f->tmp.s) == 0)
    f->state = MAILDIR_NONE;
}
