/* The peer's replies as the client reads them: lines into replies
 * (RFC 5321 4.2), the enhanced status code (RFC 3463), the EHLO
 * keywords.  Everything here is what a hostile peer controls, so it
 * sits apart from client.c's state machine, where fuzz/fuzz_reply.c
 * can drive it alone. */
#include <byte.h>
#include <case.h>
#include <stralloc.h>
#include "relay.h"

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
