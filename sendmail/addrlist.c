/* RFC 5322 3.4 address lists, as in To:, Cc: and Bcc: and on
 * sendmail's command line: only the addr-specs are wanted, so display
 * names, comments and group names are read and dropped.
 *
 * Tokens: white space and comments (separators), quoted strings and
 * domain literals and atoms (words), and the specials < > @ , ; : . */
#include <byte.h>
#include <stralloc.h>
#include "sendmail.h"

struct addrlist {
  stralloc plain;     /* the tokens outside <>: an addr-spec, or a name */
  stralloc angle;     /* the tokens inside <> */
  int inangle, hadangle, closed, ingroup;
  int lastword;       /* the previous token outside <> was a word */
  int angleword;      /* the same inside <> */
  int adjacent;       /* two words outside <> with nothing between */
  int angleadjacent;
};

static void addrlist_reset(struct addrlist *a)
{
  stralloc_zero(&a->plain);
  stralloc_zero(&a->angle);
  a->inangle = a->hadangle = a->closed = 0;
  a->lastword = a->angleword = a->adjacent = a->angleadjacent = 0;
}

/* The end of one address (at "," or ";" or the end of the list). */
static int addrlist_finish(struct addrlist *a, stralloc *out)
{
  const stralloc *spec = a->hadangle ? &a->angle : &a->plain;
  int r = 1;
  if (a->hadangle ? a->angleadjacent : a->adjacent) return 0;
  /* empty: "a@b,,c@d" or an empty group; "<>" is kept for the caller */
  if (a->hadangle || a->plain.len)
    if (!stralloc_cat(out, spec) || !stralloc_0(out)) r = -1;
  addrlist_reset(a);
  return r;
}

/* The end of a quoted string or domain literal starting at s[i], just
 * after its closing character; 0 when it is not closed. */
static size_t addrlist_quoted(const char *s, size_t len, size_t i, char close)
{
  for (i++; i < len; i++) {
    if (s[i] == '\\') { i++; continue; }
    if (s[i] == close) return i + 1;
  }
  return 0;
}

static size_t addrlist_comment(const char *s, size_t len, size_t i)
{
  unsigned long depth = 0;
  for (; i < len; i++) {
    if (s[i] == '\\') { i++; continue; }
    if (s[i] == '(') depth++;
    else if (s[i] == ')' && --depth == 0) return i + 1;
  }
  return 0;
}

static int addrlist_word(struct addrlist *a, const char *s, size_t len)
{
  if (a->closed) return 0;   /* nothing but comments after "<...>" */
  if (a->inangle) {
    if (a->angleword) a->angleadjacent = 1;
    a->angleword = 1;
    return stralloc_catb(&a->angle, s, len) ? 1 : -1;
  }
  if (a->lastword) a->adjacent = 1;
  a->lastword = 1;
  return stralloc_catb(&a->plain, s, len) ? 1 : -1;
}

static int addrlist_special(struct addrlist *a, char c, stralloc *out)
{
  switch (c) {
  case '<':
    if (a->hadangle) return 0;
    a->inangle = a->hadangle = 1;
    return 1;
  case '>':
    if (!a->inangle) return 0;
    a->inangle = 0;
    a->closed = 1;
    return 1;
  case ',':
    /* inside <> it belongs to a source route: <@a,@b:u@d> */
    if (a->inangle) break;
    return addrlist_finish(a, out);
  case ':':
    if (a->inangle) break;
    /* "group-name:" -- the name is no address */
    if (a->ingroup || a->hadangle) return 0;
    a->ingroup = 1;
    addrlist_reset(a);
    return 1;
  case ';': {
    int r;
    if (a->inangle || !a->ingroup) return 0;
    r = addrlist_finish(a, out);
    a->ingroup = 0;
    return r;
  }
  default:   /* '.' and '@' join the words of an addr-spec */
    if (a->closed) return 0;
    if (a->inangle) break;
    a->lastword = 0;
    return stralloc_append(&a->plain, &c) ? 1 : -1;
  }
  a->angleword = 0;
  return stralloc_append(&a->angle, &c) ? 1 : -1;
}

int addrlist_parse(const char *s, size_t len, stralloc *out)
{
  /* what ends an atom (RFC 5322 3.2.3) */
  static const char stops[] = " \t\r\n()<>@,;:.\"[]\\";
  struct addrlist a;
  size_t i = 0;
  int r = 1;

  byte_zero(&a, sizeof a);
  while (i < len && r == 1) {
    char c = s[i];
    size_t end;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') { i++; continue; }
    if (c == '(') {
      if (!(end = addrlist_comment(s, len, i))) { r = 0; break; }
      i = end;
      continue;
    }
    if (c == '"' || c == '[') {
      if (!(end = addrlist_quoted(s, len, i, c == '"' ? '"' : ']'))) { r = 0; break; }
      r = addrlist_word(&a, s + i, end - i);
      i = end;
      continue;
    }
    if (byte_chr("<>@,;:.", 7, c) < 7) {
      r = addrlist_special(&a, c, out);
      i++;
      continue;
    }
    if (c == ')' || c == ']' || c == '\\') { r = 0; break; }
    for (end = i; end < len; end++)
      if (byte_chr(stops, sizeof stops - 1, s[end]) < sizeof stops - 1) break;
    r = addrlist_word(&a, s + i, end - i);
    i = end;
  }
  /* a group left open at the end is forgiven: mailers often write
   * "undisclosed-recipients:" without the ";" */
  if (r == 1 && a.inangle) r = 0;
  if (r == 1) r = addrlist_finish(&a, out);
  stralloc_free(&a.plain);
  stralloc_free(&a.angle);
  return r;
}
