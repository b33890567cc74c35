#include "xtext.h"

static int xtext_hex(char c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;   /* RFC 3461: upper-case hex only */
}

int xtext_decode(const char *s, size_t len, stralloc *out)
{
  stralloc_zero(out);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '+') {
      int h, l;
      if (i + 2 >= len) return 0;
      h = xtext_hex(s[i + 1]);
      l = xtext_hex(s[i + 2]);
      if (h < 0 || l < 0) return 0;
      c = (unsigned char)(h * 16 + l);
      i += 2;
      if (c < 32 || c == 127) return 0;
    } else if (c < '!' || c > '~' || c == '=') {
      return 0;
    }
    if (!stralloc_append(out, (char *)&c)) return 0;
  }
  return 1;
}

int xtext_encode(const char *s, size_t len, stralloc *out)
{
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < '!' || c > '~' || c == '+' || c == '=') {
      char e[3] = { '+', hex[c >> 4], hex[c & 15] };
      if (!stralloc_catb(out, e, 3)) return 0;
    } else if (!stralloc_append(out, (char *)&c)) {
      return 0;
    }
  }
  return 1;
}
