/* Header lines sendmail writes itself: the date, and From: with the
 * full name of -F made into an RFC 5322 phrase. */
#include <byte.h>
#include <str.h>
#include <stralloc.h>
#include <textcode.h>
#include "sendmail.h"

/* Length of the UTF-8 sequence at s (no overlongs, no surrogates), or
 * 0 when it is not one. */
static size_t compose_utf8len(const unsigned char *s, size_t len)
{
  unsigned long cp;
  size_t n;
  if (s[0] < 0x80) return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) { n = 2; cp = s[0] & 0x1f; }
  else if (s[0] >= 0xe0 && s[0] <= 0xef) { n = 3; cp = s[0] & 0x0f; }
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) { n = 4; cp = s[0] & 0x07; }
  else return 0;
  if (n > len) return 0;
  for (size_t k = 1; k < n; k++) {
    if ((s[k] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[k] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

int compose_fullnameok(const char *s, size_t len)
{
  size_t i = 0;
  if (len > SENDMAIL_MAXFULLNAME) return 0;
  while (i < len) {
    unsigned char c = (unsigned char)s[i];
    size_t n;
    /* a CR or LF would start a header line of the caller's choosing */
    if (c < ' ' || c == 127) return 0;
    if (!(n = compose_utf8len((const unsigned char *)s + i, len - i))) return 0;
    i += n;
  }
  return 1;
}

static int compose_isatext(unsigned char c)
{
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return byte_chr("!#$%&'*+-/=?^_`{|}~", 19, c) < 19;
}

/* RFC 2047 encoded words, each at most 75 characters: 45 bytes of
 * text a word, cut between characters. */
static int compose_encoded(stralloc *out, const char *s, size_t len)
{
  size_t i = 0;
  while (i < len) {
    char b64[64];
    size_t n = 0, k;
    while (i + n < len && (k = compose_utf8len((const unsigned char *)s + i + n, len - i - n)) &&
           n + k <= 45)
      n += k;
    if (n == 0) return 0;   /* not UTF-8: compose_fullnameok refuses it */
    if (i && !stralloc_append(out, " ")) return 0;
    if (!stralloc_cats(out, "=?UTF-8?B?") ||
        !stralloc_catb(out, b64, fmt_base64(b64, s + i, n)) || !stralloc_cats(out, "?="))
      return 0;
    i += n;
  }
  return 1;
}

/* The display name: atoms as they are, else a quoted string, else
 * (non-ASCII) encoded words. */
static int compose_phrase(stralloc *out, const char *s, size_t len)
{
  int atoms = 1, ascii = 1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80) ascii = 0;
    else if (!compose_isatext(c) && !(c == ' ' && i && i + 1 < len && s[i + 1] != ' ')) atoms = 0;
  }
  if (!ascii) return compose_encoded(out, s, len);
  if (atoms) return stralloc_catb(out, s, len);
  if (!stralloc_append(out, "\"")) return 0;
  for (size_t i = 0; i < len; i++)
    if (((s[i] == '"' || s[i] == '\\') && !stralloc_append(out, "\\")) || !stralloc_append(out, s + i))
      return 0;
  return stralloc_append(out, "\"");
}

int compose_from(stralloc *out, const char *fullname, const char *addr, size_t addrlen)
{
  if (!stralloc_cats(out, "From: ")) return 0;
  if (fullname && *fullname) {
    if (!compose_phrase(out, fullname, str_len(fullname)) || !stralloc_cats(out, " <") ||
        !stralloc_catb(out, addr, addrlen) || !stralloc_cats(out, ">\n"))
      return 0;
    return 1;
  }
  return stralloc_catb(out, addr, addrlen) && stralloc_cats(out, "\n");
}
