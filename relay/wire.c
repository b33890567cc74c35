/* The stored message becomes SMTP data.  The queue holds LF line ends;
 * on the wire every line ends in CRLF.  A CR that is not followed by
 * LF is a line end too (it becomes CRLF): so no bare CR or LF ever
 * reaches the wire, and since dot-stuffing is done after this, on the
 * lines as the peer will see them, a stored "\r.\r" goes out as
 * CRLF ".." CRLF and can never end the data early (the outbound half
 * of SMTP smuggling).  BDAT with BINARYMIME has no end marker and no
 * stuffing, and its message was stored exactly as received (smtpd
 * does not touch a BINARYMIME body): it is sent byte for byte. */
#include <stralloc.h>
#include "relay.h"

void wire_init(struct wire *w, int stuff, int binary)
{
  w->bol = 1;
  w->cr = 0;
  w->stuff = stuff;
  w->binary = binary;
}

/* out == NULL: only count (and never count stuffing dots) */
static unsigned long long wire_run(struct wire *w, stralloc *out,
                                   const char *s, size_t len, int *ok)
{
  char buf[4096];
  size_t n = 0;
  unsigned long long count = 0;

#define EMIT(ch) do { \
    if (n == sizeof buf) { \
      if (out && !stralloc_catb(out, buf, n)) *ok = 0; \
      count += n; n = 0; \
    } \
    buf[n++] = (ch); \
  } while (0)

  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (w->binary) { EMIT(c); continue; }  /* stored as received: sent so */
    if (w->cr) {
      w->cr = 0;
      if (c == '\n') { EMIT('\r'); EMIT('\n'); w->bol = 1; continue; }
      if (w->binary) { EMIT('\r'); w->bol = 0; }
      else { EMIT('\r'); EMIT('\n'); w->bol = 1; }
    }
    if (c == '\r') { w->cr = 1; continue; }
    if (c == '\n') { EMIT('\r'); EMIT('\n'); w->bol = 1; continue; }
    if (w->bol && w->stuff && c == '.' && out) EMIT('.');
    EMIT(c);
    w->bol = 0;
  }
  if (out && n && !stralloc_catb(out, buf, n)) *ok = 0;
  count += n;
#undef EMIT
  return count;
}

int wire_put(struct wire *w, stralloc *out, const char *s, size_t len)
{
  int ok = 1;
  wire_run(w, out, s, len, &ok);
  return ok;
}

unsigned long long wire_count(struct wire *w, const char *s, size_t len)
{
  int ok = 1;
  return wire_run(w, NULL, s, len, &ok);
}

/* what wire_end adds, counted or appended */
static unsigned long long wire_tail(struct wire *w, stralloc *out)
{
  char buf[8];
  size_t n = 0;
  if (w->cr) {
    w->cr = 0;
    if (w->binary) { buf[n++] = '\r'; w->bol = 0; }
    else { buf[n++] = '\r'; buf[n++] = '\n'; w->bol = 1; }
  }
  /* text ends with a line end; binary data is sent as it is */
  if (!w->bol && !w->binary) { buf[n++] = '\r'; buf[n++] = '\n'; w->bol = 1; }
  if (out) {
    if (w->stuff) { buf[n++] = '.'; buf[n++] = '\r'; buf[n++] = '\n'; }
    if (!stralloc_catb(out, buf, n)) return (unsigned long long)-1;
  }
  return n;
}

int wire_end(struct wire *w, stralloc *out)
{
  return wire_tail(w, out) != (unsigned long long)-1;
}

unsigned long long wire_countend(struct wire *w)
{
  return wire_tail(w, NULL);
}
