#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <byte.h>
#include <fmt.h>
#include <openreadclose.h>
#include <scan.h>
#include <str.h>
#include <stralloc.h>
#include "envelope.h"
#include "fsync.h"
#include "queueinfo.h"

#define QINFO_MAXFILE (1UL << 24)   /* ROUTE_MAXTARGETS records fit easily */

static const char *const qinfo_names[] = {
  "pending", "delivered", "relayed", "failed", "bounced"
};

const char *qinfo_statename(enum qinfo_state s)
{
  return (unsigned)s < sizeof qinfo_names / sizeof *qinfo_names
         ? qinfo_names[s] : "?";
}

static int qinfo_bad(stralloc *why, const char *path, const char *what)
{
  if (stralloc_copys(why, path)) {
    (void)(stralloc_cats(why, ": ") && stralloc_cats(why, what));
  }
  errno = EINVAL;
  return -1;
}

static int qinfo_nomem(stralloc *why)
{
  errno = ENOMEM;
  return fsync_why(why, "info", NULL);
}

void qinfo_free(struct qinfo *q)
{
  for (size_t i = 0; i < q->n; i++) {
    stralloc_free(&q->r[i].raw);
    stralloc_free(&q->r[i].status);
    stralloc_free(&q->r[i].remote);
    stralloc_free(&q->r[i].text);
  }
  free(q->r);
  stralloc_free(&q->head);
  byte_zero(q, sizeof *q);
}

/* One field of an S record: s[*i..] up to a blank. */
static int qinfo_field(const char *s, size_t len, size_t *i,
                       const char **f, size_t *flen)
{
  size_t j = *i;
  if (j >= len) return 0;
  while (j < len && s[j] != ' ') j++;
  *f = s + *i;
  *flen = j - *i;
  *i = j < len ? j + 1 : j;
  return *flen > 0;
}

static int qinfo_num(const char *f, size_t flen, unsigned long *out)
{
  return flen && flen < 20 && scan_ulong(f, out) == flen;
}

/* "-" is the empty field */
static int qinfo_dash(stralloc *sa, const char *f, size_t flen)
{
  if (flen == 1 && f[0] == '-') flen = 0;
  return stralloc_copyb(sa, f, flen);
}

static int qinfo_parsestate(struct qinfo_rcpt *r, const char *s, size_t len)
{
  const char *f;
  size_t flen, i = 0, k;

  if (!qinfo_field(s, len, &i, &f, &flen)) return 0;
  for (k = 0; k < sizeof qinfo_names / sizeof *qinfo_names; k++)
    if (str_len(qinfo_names[k]) == flen && byte_equal(f, flen, qinfo_names[k]))
      break;
  if (k == sizeof qinfo_names / sizeof *qinfo_names) return 0;
  r->state = (enum qinfo_state)k;
  if (!qinfo_field(s, len, &i, &f, &flen) || !qinfo_num(f, flen, &r->attempts)) return 0;
  if (!qinfo_field(s, len, &i, &f, &flen) || !qinfo_num(f, flen, &r->first)) return 0;
  if (!qinfo_field(s, len, &i, &f, &flen) || !qinfo_num(f, flen, &r->next)) return 0;
  if (!qinfo_field(s, len, &i, &f, &flen)) return 0;
  r->flags = 0;
  for (k = 0; k < flen; k++)
    if (f[k] == 'w') r->flags |= QINFO_WARNED;
  if (!qinfo_field(s, len, &i, &f, &flen) || !qinfo_dash(&r->status, f, flen)) return 0;
  if (!qinfo_field(s, len, &i, &f, &flen) || !qinfo_dash(&r->remote, f, flen)) return 0;
  return stralloc_copyb(&r->text, s + i, len - i);
}

/* Points addr, notify and orcpt into the finished raw records. */
static void qinfo_index(struct qinfo_rcpt *r)
{
  for (size_t i = 0; i < r->raw.len; ) {
    const char *rec = r->raw.s + i;
    size_t n = str_len(rec);
    if (rec[0] == 'T' && !r->addr) r->addr = rec + 1;
    else if (rec[0] == 'N' && !r->notify) r->notify = rec + 1;
    else if (rec[0] == 'O' && !r->orcpt) r->orcpt = rec + 1;
    i += n + 1;
  }
}

int qinfo_read(struct qinfo *q, const char *path, stralloc *why)
{
  stralloc data = {0};
  struct qinfo_rcpt *cur = NULL;
  size_t i;
  int r, ended = 0, sawsender = 0;

  byte_zero(q, sizeof *q);
  r = openreadclose(path, &data, 4096);
  if (r == 0) errno = ENOENT;
  if (r <= 0) {
    fsync_why(why, "read", path);
    stralloc_free(&data);
    return -1;
  }
  if (data.len > QINFO_MAXFILE) {
    stralloc_free(&data);
    return qinfo_bad(why, path, "too big");
  }
  for (i = 0; i < data.len; ) {
    const char *rec = data.s + i;
    size_t n = byte_chr(rec, data.len - i, 0);
    if (n == data.len - i) break;            /* no NUL: cut short */
    if (n == 0) { ended = 1; i++; break; }
    if (n > ENVELOPE_MAXRECORD) break;
    if (rec[0] == 'T') {
      if (q->n == q->a) {
        size_t a = q->a ? q->a * 2 : 8;
        struct qinfo_rcpt *nr = realloc(q->r, a * sizeof *nr);
        if (!nr) goto nomem;
        q->r = nr;
        q->a = a;
      }
      cur = &q->r[q->n++];
      byte_zero(cur, sizeof *cur);
    }
    if (!cur) {
      if (rec[0] == 'F') sawsender = 1;
      if (rec[0] == 'C') {
        unsigned long t;
        if (!qinfo_num(rec + 1, n - 1, &t)) {
          stralloc_free(&data);
          return qinfo_bad(why, path, "bad C record");
        }
        q->created = t;
      }
      if (!stralloc_catb(&q->head, rec, n + 1)) goto nomem;
    } else if (rec[0] == 'S') {
      if (!qinfo_parsestate(cur, rec + 1, n - 1)) {
        stralloc_free(&data);
        return qinfo_bad(why, path, "bad S record");
      }
    } else if (!stralloc_catb(&cur->raw, rec, n + 1)) {
      goto nomem;
    }
    i += n + 1;
  }
  stralloc_free(&data);
  if (!ended) return qinfo_bad(why, path, "cut short or record too long");
  if (!sawsender || !q->n) return qinfo_bad(why, path, "no sender or no recipient");
  q->id = q->sender = "";
  for (i = 0; i < q->head.len; i += str_len(q->head.s + i) + 1) {
    const char *rec = q->head.s + i;
    if (rec[0] == 'I' && !*q->id) q->id = rec + 1;
    if (rec[0] == 'F') q->sender = rec + 1;
  }
  for (i = 0; i < q->n; i++) qinfo_index(&q->r[i]);
  return 0;
nomem:
  stralloc_free(&data);
  return qinfo_nomem(why);
}

int qinfo_params(const struct qinfo *q,
                 int (*fn)(const char *p, size_t len, void *arg), void *arg)
{
  for (size_t i = 0; i < q->head.len; ) {
    const char *rec = q->head.s + i;
    size_t n = str_len(rec);
    if (rec[0] == 'P') {
      int r = fn(rec + 1, n - 1, arg);
      if (r) return r;
    }
    i += n + 1;
  }
  return 0;
}

/* Printable text without blanks for a field; "" -> "-" at write time. */
static int qinfo_cleanfield(stralloc *sa, const char *s)
{
  stralloc_zero(sa);
  if (!s) return 1;
  for (size_t i = 0; s[i] && i < 300; i++) {
    char c = (unsigned char)s[i] <= ' ' || s[i] == 127 ? '_' : s[i];
    if (!stralloc_append(sa, &c)) return 0;
  }
  return 1;
}

int qinfo_settext(struct qinfo_rcpt *r, const char *status,
                  const char *remote, const char *text, size_t len)
{
  if (!qinfo_cleanfield(&r->status, status) ||
      !qinfo_cleanfield(&r->remote, remote))
    return 0;
  stralloc_zero(&r->text);
  if (len > QINFO_MAXTEXT) len = QINFO_MAXTEXT;
  for (size_t i = 0; i < len; i++) {
    char c = (unsigned char)text[i] < ' ' || text[i] == 127 ? ' ' : text[i];
    if (!stralloc_append(&r->text, &c)) return 0;
  }
  return 1;
}

static int qinfo_putnum(stralloc *sa, unsigned long n)
{
  char num[FMT_ULONG];
  return stralloc_catb(sa, num, fmt_ulong(num, n));
}

static int qinfo_putfield(stralloc *sa, const stralloc *f)
{
  if (!stralloc_cats(sa, " ")) return 0;
  if (!f->len) return stralloc_cats(sa, "-");
  return stralloc_cat(sa, f);
}

/* The whole file, in memory: info files are small. */
static int qinfo_format(const struct qinfo *q, stralloc *out)
{
  if (!stralloc_copy(out, &q->head)) return 0;
  for (size_t i = 0; i < q->n; i++) {
    const struct qinfo_rcpt *r = &q->r[i];
    if (!stralloc_cat(out, &r->raw)) return 0;
    if (r->state == QINFO_PENDING && !r->attempts && !r->flags && !r->next)
      continue;   /* the same as no record */
    if (!stralloc_cats(out, "S") ||
        !stralloc_cats(out, qinfo_statename(r->state)) ||
        !stralloc_cats(out, " ") || !qinfo_putnum(out, r->attempts) ||
        !stralloc_cats(out, " ") || !qinfo_putnum(out, r->first) ||
        !stralloc_cats(out, " ") || !qinfo_putnum(out, r->next) ||
        !stralloc_cats(out, (r->flags & QINFO_WARNED) ? " w" : " -") ||
        !qinfo_putfield(out, &r->status) || !qinfo_putfield(out, &r->remote) ||
        !stralloc_cats(out, " ") || !stralloc_cat(out, &r->text) ||
        !stralloc_0(out))
      return 0;
  }
  return stralloc_0(out);
}

static int qinfo_path(stralloc *p, const char *dir, const char *sub,
                      const char *name, const char *ext)
{
  if (!stralloc_copys(p, dir) || !stralloc_cats(p, "/") ||
      !stralloc_cats(p, sub))
    return 0;
  if (name && (!stralloc_cats(p, "/") || !stralloc_cats(p, name))) return 0;
  if (ext && !stralloc_cats(p, ext)) return 0;
  return stralloc_0(p);
}

int qinfo_put(const struct qinfo *q, const char *queuedir,
              const char *qid, stralloc *why)
{
  static stralloc data, tmp, dst, ext;
  char num[FMT_ULONG];
  int fd;

  num[fmt_ulong(num, (unsigned long)getpid())] = 0;
  if (!qinfo_format(q, &data) ||
      !stralloc_copys(&ext, ".") || !stralloc_cats(&ext, num) ||
      !stralloc_cats(&ext, ".state") || !stralloc_0(&ext) ||
      !qinfo_path(&tmp, queuedir, "tmp", qid, ext.s) ||
      !qinfo_path(&dst, queuedir, "info", qid, NULL))
    return qinfo_nomem(why);
  fd = open(tmp.s, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1) return fsync_why(why, "open", tmp.s);
  if (fsync_writeall(fd, data.s, data.len) == -1) {
    fsync_why(why, "write", tmp.s);
    close(fd);
    unlink(tmp.s);
    return -1;
  }
  if (fsync_close(fd) == -1) {
    fsync_why(why, "fsync", tmp.s);
    unlink(tmp.s);
    return -1;
  }
  if (rename(tmp.s, dst.s) == -1) {
    fsync_why(why, "rename", tmp.s);
    unlink(tmp.s);
    return -1;
  }
  return 0;
}

int qinfo_syncdir(const char *queuedir, stralloc *why)
{
  static stralloc dir;
  if (!qinfo_path(&dir, queuedir, "info", NULL, NULL)) return qinfo_nomem(why);
  if (fsync_dir(dir.s) == -1) return fsync_why(why, "fsync", dir.s);
  return 0;
}

int qinfo_write(const struct qinfo *q, const char *queuedir,
                const char *qid, stralloc *why)
{
  if (qinfo_put(q, queuedir, qid, why) == -1) return -1;
  return qinfo_syncdir(queuedir, why);
}

int qinfo_unlink(const char *queuedir, const char *qid, const char *sub, stralloc *why)
{
  static stralloc p;
  if (!qinfo_path(&p, queuedir, sub, qid, NULL)) return qinfo_nomem(why);
  if (unlink(p.s) == -1 && errno != ENOENT) return fsync_why(why, "unlink", p.s);
  return 0;
}

int qinfo_remove(const char *queuedir, const char *qid, stralloc *why)
{
  /* info first: a message without it is not queued any more, and the
   * mess/ file that stays a moment longer keeps the name reserved */
  if (qinfo_unlink(queuedir, qid, "info", why) == -1 ||
      qinfo_syncdir(queuedir, why) == -1)
    return -1;
  return qinfo_unlink(queuedir, qid, "mess", why);
}

int qinfo_due(const struct qinfo *q, const struct qinfo_rcpt *r, unsigned long now,
              unsigned long retry_max, unsigned long lifetime)
{
  if (r->state != QINFO_PENDING) return 0;
  /* (after retry_max was lowered the second rule tries early once) */
  if (r->next <= now || r->next - now > retry_max) return 1;
  return now >= q->created + lifetime;
}
