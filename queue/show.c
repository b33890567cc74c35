/* list and show: the queue for people (like Postfix's mailq) and for
 * scripts (--json).  Info files are read with qinfo_read only; the
 * size is mess/<qid>'s. */
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <byte.h>
#include <str.h>
#include <stralloc.h>
#include "queueinfo.h"
#include "qtool.h"

struct entry {
  const char *qid;
  struct qinfo qi;
  int broken;               /* the info file is unreadable: qid and why only */
  int hasmess;              /* mess/<qid> is there; size is its */
  unsigned long long size;
  stralloc why;             /* NUL-terminated: why broken, or mess/ missing */
};

/* Returns 0 (e set up, perhaps broken), or -1 when the message is not
 * in the queue (any more). */
static int entry_load(struct entry *e, const char *qid)
{
  static stralloc p;
  struct stat st;

  byte_zero(e, sizeof *e);
  e->qid = qid;
  if (!qtool_path(&p, "info", qid)) qtool_die(EX_OSERR, "failed", qid, "out of memory");
  if (qinfo_read(&e->qi, p.s, &e->why) == -1) {
    if (errno == ENOENT) {
      stralloc_free(&e->why);
      return -1;
    }
    e->broken = 1;
  } else {
    if (!qtool_path(&p, "mess", qid)) qtool_die(EX_OSERR, "failed", qid, "out of memory");
    if (stat(p.s, &st) == 0) {
      e->hasmess = 1;
      e->size = (unsigned long long)st.st_size;
      /* as the relay does: deliver always writes C, else the file's age */
      if (!e->qi.created) e->qi.created = (unsigned long)st.st_mtime;
    } else if (!stralloc_copys(&e->why, "no message file: ") ||
               !stralloc_cats(&e->why, strerror(errno))) {
      qtool_die(EX_OSERR, "failed", qid, "out of memory");
    }
  }
  if (!stralloc_0(&e->why)) qtool_die(EX_OSERR, "failed", qid, "out of memory");
  return 0;
}

static void entry_free(struct entry *e)
{
  qinfo_free(&e->qi);
  stralloc_free(&e->why);
}

static unsigned long entry_age(const struct entry *e, unsigned long now)
{
  return now > e->qi.created ? now - e->qi.created : 0;
}

/* What the relay would do now (relay_isdue without -f): the next-try
 * time has come, or the message has outlived max_queue_lifetime. */
static int rcpt_due(const struct entry *e, const struct qinfo_rcpt *r, unsigned long now)
{
  return qinfo_due(&e->qi, r, now, cfg.retry_max, cfg.max_queue_lifetime);
}

static void rcpt_text(const struct entry *e, const struct qinfo_rcpt *r,
                      unsigned long now, int detail)
{
  out_puts("  <");
  out_texts(r->addr);
  out_puts("> ");
  out_puts(qinfo_statename(r->state));
  out_puts(", ");
  out_ulong(r->attempts);
  out_puts(r->attempts == 1 ? " attempt" : " attempts");
  if (r->state == QINFO_PENDING) {
    if (rcpt_due(e, r, now)) out_puts(", next try now");
    else {
      out_puts(", next try in ");
      out_age(r->next - now);
    }
  } else if (r->state == QINFO_FAILED) {
    out_puts(", failure report owed");
  } else if (r->state == QINFO_RELAYED) {
    out_puts(", success report owed");
  }
  if (r->flags & QINFO_WARNED) out_puts(", delay warning sent");
  out_puts("\n");
  if (detail) {
    if (r->notify) { out_puts("    notify: "); out_texts(r->notify); out_puts("\n"); }
    if (r->orcpt) { out_puts("    orcpt: "); out_texts(r->orcpt); out_puts("\n"); }
    if (r->first) { out_puts("    first attempt: "); out_date(r->first); out_puts("\n"); }
    if (r->state == QINFO_PENDING && r->next) {
      out_puts("    next try: ");
      out_date(r->next);
      out_puts("\n");
    }
  }
  if (r->status.len || r->remote.len || r->text.len) {
    out_puts("    last:");
    if (r->status.len) { out_puts(" "); out_text(r->status.s, r->status.len); }
    if (r->remote.len) { out_puts(" "); out_text(r->remote.s, r->remote.len); }
    out_puts(r->status.len || r->remote.len ? ": " : " ");
    out_text(r->text.s, r->text.len);
    out_puts("\n");
  }
}

static int param_text(const char *p, size_t len, void *arg)
{
  (void)arg;
  out_puts("parameter: ");
  out_text(p, len);
  out_puts("\n");
  return 0;
}

static void entry_text(const struct entry *e, unsigned long now)
{
  out_texts(e->qid);
  if (e->broken) {
    out_puts("  unreadable: ");
    out_texts(e->why.s);
    out_puts("\n");
    return;
  }
  if (e->hasmess) {
    out_puts("  ");
    out_ulong(e->size);
    out_puts(" bytes");
  } else {
    out_puts("  (");
    out_texts(e->why.s);
    out_puts(")");
  }
  out_puts("  age ");
  out_age(entry_age(e, now));
  out_puts("  from <");
  out_texts(e->qi.sender);
  out_puts(">\n");
  for (size_t i = 0; i < e->qi.n; i++) rcpt_text(e, &e->qi.r[i], now, 0);
}

/* a JSON string, or null for "" */
static void json_opt(const stralloc *sa)
{
  if (sa->len) out_json(sa->s, sa->len);
  else out_puts("null");
}

static int param_json(const char *p, size_t len, void *arg)
{
  int *first = arg;
  if (!*first) out_puts(",");
  *first = 0;
  out_json(p, len);
  return 0;
}

/* One message as a JSON object, left open for show's "message". */
static void entry_json(const struct entry *e, unsigned long now)
{
  int first = 1;

  out_puts("{\"id\":");
  out_jsons(e->qid);
  if (e->broken) {
    out_puts(",\"error\":");
    out_jsons(e->why.s);
    return;
  }
  out_puts(",\"message_id\":");
  out_jsons(e->qi.id);
  out_puts(",\"size\":");
  if (e->hasmess) out_ulong(e->size);
  else out_puts("null");
  out_puts(",\"error\":");
  if (e->hasmess) out_puts("null");
  else out_jsons(e->why.s);
  out_puts(",\"created\":");
  out_ulong(e->qi.created);
  out_puts(",\"age\":");
  out_ulong(entry_age(e, now));
  out_puts(",\"sender\":");
  out_jsons(e->qi.sender);
  out_puts(",\"params\":[");
  qinfo_params(&e->qi, param_json, &first);
  out_puts("],\"recipients\":[");
  for (size_t i = 0; i < e->qi.n; i++) {
    const struct qinfo_rcpt *r = &e->qi.r[i];
    if (i) out_puts(",");
    out_puts("{\"address\":");
    out_jsons(r->addr);
    out_puts(",\"state\":");
    out_jsons(qinfo_statename(r->state));
    out_puts(",\"attempts\":");
    out_ulong(r->attempts);
    out_puts(",\"first\":");
    out_ulong(r->first);
    out_puts(",\"next\":");
    out_ulong(r->next);
    out_puts(rcpt_due(e, r, now) ? ",\"due\":true" : ",\"due\":false");
    out_puts(r->flags & QINFO_WARNED ? ",\"warned\":true" : ",\"warned\":false");
    out_puts(",\"notify\":");
    out_jsons(r->notify);
    out_puts(",\"orcpt\":");
    out_jsons(r->orcpt);
    out_puts(",\"status\":");
    json_opt(&r->status);
    out_puts(",\"remote\":");
    json_opt(&r->remote);
    out_puts(",\"text\":");
    json_opt(&r->text);
    out_puts("}");
  }
  out_puts("]");
}

static int show_namecmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int show_done(void)
{
  if (out_flush() == -1) qtool_die(EX_IOERR, "failed", NULL, "cannot write the output");
  return 0;
}

int show_list(int json)
{
  static stralloc p;
  char **names = NULL;
  size_t n = 0, a = 0, shown = 0;
  unsigned long long bytes = 0;
  unsigned long now = qtool_now();
  DIR *dir;
  struct dirent *d;

  if (!qtool_path(&p, "info", NULL)) qtool_die(EX_OSERR, "failed", NULL, "out of memory");
  dir = opendir(p.s);
  if (!dir && errno != ENOENT)   /* none: nothing was ever queued */
    qtool_die(errno == EACCES ? EX_NOPERM : EX_IOERR, "failed", NULL, strerror(errno));
  while (dir && (errno = 0, d = readdir(dir))) {
    if (d->d_name[0] == '.') continue;
    if (n == a) {
      char **nn;
      a = a ? a * 2 : 64;
      if (!(nn = realloc(names, a * sizeof *nn))) qtool_die(EX_OSERR, "failed", NULL, "out of memory");
      names = nn;
    }
    if (!(names[n] = strdup(d->d_name))) qtool_die(EX_OSERR, "failed", NULL, "out of memory");
    n++;
  }
  if (dir && errno) qtool_die(EX_IOERR, "failed", NULL, strerror(errno));
  if (dir) closedir(dir);
  /* oldest first: an id starts with the time in hex */
  if (n) qsort(names, n, sizeof *names, show_namecmp);

  if (json) out_puts("{\"messages\":[");
  for (size_t i = 0; i < n; i++) {
    struct entry e;
    if (entry_load(&e, names[i]) == -1) continue;   /* sent meanwhile */
    if (json) {
      if (shown) out_puts(",");
      entry_json(&e, now);
      out_puts("}");
    } else {
      if (shown) out_puts("\n");
      entry_text(&e, now);
    }
    shown++;
    bytes += e.size;
    entry_free(&e);
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  if (json) out_puts("]}\n");
  else if (!shown) out_puts("queue is empty\n");
  else {
    out_puts("\n-- ");
    out_ulong(shown);
    out_puts(shown == 1 ? " message, " : " messages, ");
    out_ulong(bytes);
    out_puts(" bytes\n");
  }
  return show_done();
}

/* The message file after the envelope: as it is for people (it is
 * theirs to page through), one JSON string for scripts. */
static void show_mess(const struct entry *e, int json)
{
  static stralloc p;
  char buf[65536];
  size_t have = 0;
  int fd;

  if (!qtool_path(&p, "mess", e->qid)) qtool_die(EX_OSERR, "failed", e->qid, "out of memory");
  fd = open(p.s, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    if (json) out_puts("null");
    return;
  }
  if (json) out_puts("\"");
  for (;;) {
    ssize_t r = read(fd, buf + have, sizeof buf - have);
    if (r == -1 && errno == EINTR) continue;
    if (r == -1) qtool_die(EX_IOERR, "failed", e->qid, strerror(errno));
    if (!json) {
      out_put(buf, (size_t)r);
    } else {
      size_t len = have + (size_t)r, used = out_jsonpart(buf, len, r == 0);
      /* at most 3 bytes of a sequence wait for the rest of it */
      have = len - used;
      byte_copy(buf, have, buf + used);
    }
    if (r == 0) break;
  }
  close(fd);
  if (json) out_puts("\"");
}

int show_one(const char *qid, int json)
{
  unsigned long now = qtool_now();
  struct entry e;

  if (entry_load(&e, qid) == -1) qtool_die(EX_NOINPUT, "no-such-message", qid, "not in the queue");
  if (e.broken) qtool_die(EX_DATAERR, "bad-info", qid, e.why.s);
  if (json) {
    entry_json(&e, now);
    out_puts(",\"message\":");
    show_mess(&e, 1);
    out_puts("}\n");
  } else {
    out_puts("id: ");
    out_texts(qid);
    out_puts("\nmessage id: ");
    out_texts(e.qi.id);
    out_puts("\nsize: ");
    if (e.hasmess) { out_ulong(e.size); out_puts(" bytes"); }
    else out_texts(e.why.s);
    out_puts("\nqueued: ");
    out_date(e.qi.created);
    out_puts(" (");
    out_age(entry_age(&e, now));
    out_puts(" ago)\nsender: <");
    out_texts(e.qi.sender);
    out_puts(">\n");
    qinfo_params(&e.qi, param_text, NULL);
    for (size_t i = 0; i < e.qi.n; i++) rcpt_text(&e, &e.qi.r[i], now, 1);
    out_puts("\n");
    show_mess(&e, 0);
  }
  entry_free(&e);
  return show_done();
}
