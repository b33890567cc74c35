/* The header section of a message from a local program: read line by
 * line (LF or CRLF) into memory, bounded, up to the empty line, a line
 * that cannot be a header field, or the end of the input. */
#include <sysexits.h>
#include <buffer.h>
#include <byte.h>
#include <stralloc.h>
#include "sendmail.h"

enum { KIND_FIELD, KIND_CONT, KIND_BODY };

/* What a line (maybe only its beginning) is: a field "name:" (RFC 5322
 * 2.2, with the obsolete blanks before the colon), a continuation, or
 * the first line of the body. */
static int header_kind(const char *s, size_t len)
{
  size_t i = 0;
  if (len && (s[0] == ' ' || s[0] == '\t')) return KIND_CONT;
  while (i < len && (unsigned char)s[i] >= 33 && (unsigned char)s[i] <= 126 && s[i] != ':') i++;
  if (i == 0) return KIND_BODY;
  while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
  return i < len && s[i] == ':' ? KIND_FIELD : KIND_BODY;
}

/* One line, LF included, onto line (emptied first), at most max bytes.
 * Returns 1 for a line (the last may lack its LF), 2 when max bytes
 * came without an LF, 0 at the end of the input, -1 on a read error. */
static int header_getline(buffer *in, stralloc *line, size_t max)
{
  stralloc_zero(line);
  for (;;) {
    ssize_t n = buffer_feed(in);
    const char *p;
    size_t lf, take;
    if (n < 0) return -1;
    if (n == 0) return line->len ? 1 : 0;
    p = buffer_peek(in);
    lf = byte_chr(p, (size_t)n, '\n');
    take = lf < (size_t)n ? lf + 1 : (size_t)n;
    if (take > max - line->len) {
      take = max - line->len;
      if (!stralloc_catb(line, p, take)) return -1;
      buffer_seek(in, take);
      return 2;
    }
    if (!stralloc_catb(line, p, take)) return -1;
    buffer_seek(in, take);
    if (lf < (size_t)n) return 1;
  }
}

int header_read(buffer *in, int dotend, struct header *h, const char **why)
{
  static stralloc line;
  int first = 1;

  stralloc_zero(&h->text);
  stralloc_zero(&h->first);
  h->lines = 0;
  for (;;) {
    /* +2: room for the empty line ending a full section */
    int r = header_getline(in, &line, SENDMAIL_MAXHEADER + 2 - h->text.len);
    size_t len;
    int kind;
    if (r == -1) { *why = "cannot read the message"; return EX_IOERR; }
    if (r == 0) { h->end = HEADER_EOF; return 0; }
    if (r == 2) {
      /* no room left: only the start of a body may be this long */
      kind = header_kind(line.s, line.len);
      if (first && line.len >= 5 && byte_equal(line.s, 5, "From ")) kind = KIND_FIELD;
      if (kind == KIND_BODY || (kind == KIND_CONT && !h->text.len)) {
        h->end = HEADER_BODY;
        return stralloc_copy(&h->first, &line) ? 0 : (*why = "out of memory", EX_TEMPFAIL);
      }
      *why = "header section too big";
      return EX_DATAERR;
    }
    len = line.len;
    if (len && line.s[len - 1] == '\n') len--;
    if (len && line.s[len - 1] == '\r') len--;
    if (len == 0) { h->end = HEADER_BLANK; return 0; }
    if (dotend && len == 1 && line.s[0] == '.') { h->end = HEADER_DOT; return 0; }
    /* an mbox "From " line before the header is not part of the message */
    if (first && len >= 5 && byte_equal(line.s, 5, "From ")) { first = 0; continue; }
    first = 0;
    kind = header_kind(line.s, len);
    if (kind == KIND_BODY || (kind == KIND_CONT && !h->text.len)) {
      h->end = HEADER_BODY;
      return stralloc_copy(&h->first, &line) ? 0 : (*why = "out of memory", EX_TEMPFAIL);
    }
    if (++h->lines > SENDMAIL_MAXHEADERLINES) { *why = "too many header lines"; return EX_DATAERR; }
    if (!stralloc_catb(&h->text, line.s, len) || !stralloc_append(&h->text, "\n")) {
      *why = "out of memory";
      return EX_TEMPFAIL;
    }
    if (h->text.len > SENDMAIL_MAXHEADER) { *why = "header section too big"; return EX_DATAERR; }
  }
}

int header_next(const struct header *h, size_t *pos, struct header_field *f)
{
  const char *s = h->text.s;
  size_t start = *pos, end = start, colon;

  if (start >= h->text.len) return 0;
  /* the field and its continuation lines; every line ends in LF */
  do end += byte_chr(s + end, h->text.len - end, '\n') + 1;
  while (end < h->text.len && (s[end] == ' ' || s[end] == '\t'));
  f->s = s + start;
  f->len = end - start;
  f->namelen = 0;
  while (f->namelen < f->len && s[start + f->namelen] != ':' && s[start + f->namelen] != ' ' &&
         s[start + f->namelen] != '\t')
    f->namelen++;
  colon = byte_chr(f->s, f->len, ':');   /* header_read made sure there is one */
  f->value = f->s + colon + 1;
  f->valuelen = f->len - colon - 2;       /* without the final LF */
  *pos = end;
  return 1;
}

int header_is(const struct header_field *f, const char *lname)
{
  size_t i;
  for (i = 0; i < f->namelen; i++) {
    char c = f->s[i];
    if (c >= 'A' && c <= 'Z') c += 32;
    if (!lname[i] || c != lname[i]) return 0;
  }
  return lname[i] == 0;
}
