/* The peer's replies as the client reads them: lines into replies
 * (RFC 5321 4.2), the enhanced status code (RFC 3463), the EHLO
 * keywords.  Everything here is what a hostile peer controls, so it
 * sits apart from client.c's state machine, where fuzz/fuzz_reply.c
 * can drive it alone. */
#include <byte.h>
#include <case.h>
#include <stralloc.h>
#include "relay.h"

int reply_line(int *code, int *nlines, stralloc *text, const char *s, size_t len)
{
  int n3;
  if (len < 3 || s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' ||
      s[2] < '0' || s[2] > '9' || (len > 3 && s[3] != ' ' && s[3] != '-'))
    return -1;
  n3 = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
  if (*nlines == 0) {
    *code = n3;
    if (!stralloc_copyb(text, s, 3)) return -1;
  } else if (n3 != *code) {
    return -1;
  }
  if (++*nlines > REPLY_MAXLINES) return -1;
  if (len > 4 && text->len < REPLY_MAXTEXT) {
    size_t n = len - 4;
    if (n > REPLY_MAXTEXT - text->len) n = REPLY_MAXTEXT - text->len;
    if (!stralloc_cats(text, " ")) return -1;
    for (size_t i = 0; i < n; i++) {
      char ch = (unsigned char)s[4 + i] < ' ' || s[4 + i] == 127 ? ' ' : s[4 + i];
      if (!stralloc_append(text, &ch)) return -1;
    }
  }
  if (len > 3 && s[3] == '-') return 0;
  if (!stralloc_0(text)) return -1;
  text->len--;
  *nlines = 0;
  return 1;
}

void reply_status(int code, const stralloc *text, char *out)
{
  const char *s = text->s + 4;
  size_t len = text->len > 4 ? text->len - 4 : 0, i = 0, dots = 0, digits = 0;
  while (i < len && i < 9 && s[i] != ' ') {
    if (s[i] == '.') { if (!digits) break; dots++; digits = 0; }
    else if (s[i] >= '0' && s[i] <= '9') digits++;
    else break;
    i++;
  }
  if (i && i < 10 && (i == len || s[i] == ' ') && dots == 2 && digits &&
      s[0] == '0' + code / 100) {
    byte_copy(out, i, s);
    out[i] = 0;
    return;
  }
  out[0] = (char)('0' + (code / 100 >= 2 && code / 100 <= 5 ? code / 100 : 4));
  byte_copy(out + 1, 5, ".0.0");
}

enum reply_ext reply_ehlo(const char *s, size_t len, unsigned long long *size)
{
  size_t k = 0;
  while (k < len && s[k] != ' ' && s[k] != '=') k++;
#define IS(w) (k == sizeof(w) - 1 && case_equalb(s, k, w))
  if (IS("PIPELINING")) return EXT_PIPELINING;
  if (IS("8BITMIME")) return EXT_8BITMIME;
  if (IS("SMTPUTF8")) return EXT_SMTPUTF8;
  if (IS("DSN")) return EXT_DSN;
  if (IS("CHUNKING")) return EXT_CHUNKING;
  if (IS("BINARYMIME")) return EXT_BINARYMIME;
  if (IS("STARTTLS")) return EXT_STARTTLS;
  if (IS("AUTH")) {
    /* "AUTH LOGIN PLAIN", or the old "AUTH=LOGIN PLAIN" */
    size_t i = k;
    while (i < len) {
      size_t w;
      while (i < len && (s[i] == ' ' || s[i] == '=')) i++;
      for (w = i; w < len && s[w] != ' '; w++) ;
      if (w - i == 5 && case_equalb(s + i, 5, "PLAIN")) return EXT_AUTHPLAIN;
      i = w;
    }
    return EXT_OTHER;
  }
  if (IS("SIZE")) {
    unsigned long long n = 0;
    size_t i = k;
    while (i < len && s[i] == ' ') i++;
    /* "SIZE" alone or "SIZE 0": no fixed limit, but say our size.  The
     * digits end where the line does: s is no C string (client.c's
     * line buffer holds older lines' bytes after it), so no scan_ulong
     * here.  A size past 2^64 - 1 is as good as none: the largest. */
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
      unsigned d = (unsigned)(s[i] - '0');
      if (n > (~0ULL - d) / 10) { n = ~0ULL; break; }
      n = n * 10 + d;
    }
    *size = n;
    return EXT_SIZE;
  }
#undef IS
  return EXT_OTHER;
}
