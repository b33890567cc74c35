#include <stddef.h>
#include <ip4.h>
#include <ip6.h>
#include <byte.h>
#include <stralloc.h>
#include "address.h"

static int address_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int address_isatext(unsigned char c, int utf8)
{
  if (c >= 0x80) return utf8;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return 1;
  return byte_chr("!#$%&'*+-/=?^_`{|}~", 19, c) < 19;
}

/* Well-formed UTF-8 (no overlongs, no surrogates), as RFC 6531 needs. */
static int address_utf8ok(const unsigned char *s, size_t len)
{
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    size_t n;
    unsigned long cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
    else return 0;
    for (size_t k = 1; k <= n; k++) {
      if (i + k >= len || (s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n + 1;
  }
  return 1;
}

/* Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str];
 * with SMTPUTF8 a label may also hold UTF-8 (a U-label). */
static size_t address_scandomain(const char *s, size_t len, int utf8)
{
  size_t i = 0;
  for (;;) {
    size_t start = i;
    while (i < len) {
      unsigned char c = (unsigned char)s[i];
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || (c >= 0x80 && utf8))
        i++;
      else
        break;
    }
    if (i == start || s[start] == '-' || s[i - 1] == '-' || i - start > 63) return 0;
    if (i < len && s[i] == '.' && i + 1 < len) { i++; continue; }
    return i;
  }
}

static size_t address_scanliteral(const char *s, size_t len)
{
  char ip[16];
  size_t close = byte_chr(s, len, ']');
  char tmp[64];
  size_t n;

  if (len < 2 || s[0] != '[' || close == len || close > sizeof tmp - 1) return 0;
  byte_copy(tmp, close - 1, s + 1);
  tmp[close - 1] = 0;
  if (close - 1 > 5 && byte_equal(tmp, 5, "IPv6:")) {
    n = scan_ip6(tmp + 5, ip);
    if (n == 0 || n != close - 6) return 0;
  } else {
    n = scan_ip4(tmp, ip);
    if (n == 0 || n != close - 1) return 0;
  }
  return close + 1;
}

static size_t address_scanlocal(const char *s, size_t len, int utf8)
{
  size_t i = 0;
  if (len && s[0] == '"') {
    for (i = 1; i < len; i++) {
      unsigned char c = (unsigned char)s[i];
      if (c == '"') return i + 1;
      if (c == '\\') {
        if (++i >= len) return 0;
        c = (unsigned char)s[i];
        if (c < 32 || c == 127 || (c >= 0x80 && !utf8)) return 0;
      } else if (c < 32 || c == 127 || (c >= 0x80 && !utf8))
        return 0;
    }
    return 0;
  }
  for (;;) {
    size_t start = i;
    while (i < len && address_isatext((unsigned char)s[i], utf8)) i++;
    if (i == start) return 0;
    if (i < len && s[i] == '.') { i++; continue; }
    return i;
  }
}

size_t address_scanpath(const char *s, size_t len, int flags, stralloc *out,
                        enum address_error *why)
{
  int utf8 = flags & ADDRESS_UTF8;
  size_t i = 1, n, local, dom;

  *why = ADDRESS_ESYNTAX;
  stralloc_zero(out);
  if (len < 2 || s[0] != '<') return 0;
  for (n = 0; n < len && n <= ADDRESS_MAXPATH; n++)
    if ((unsigned char)s[n] >= 0x80) {
      if (!utf8) { *why = ADDRESS_E8BIT; return 0; }
    }
  if (s[1] == '>') {
    if (!(flags & ADDRESS_NULL)) return 0;
    if (!stralloc_copys(out, "")) return 0;
    *why = ADDRESS_OK;
    return 2;
  }
  /* source route: @dom,@dom: -- accepted and ignored (RFC 5321 4.1.2) */
  if (s[i] == '@') {
    for (;;) {
      if (i >= len || s[i] != '@') return 0;
      i++;
      n = address_scandomain(s + i, len - i, utf8);
      if (!n) return 0;
      i += n;
      if (i < len && s[i] == ',') { i++; continue; }
      if (i < len && s[i] == ':') { i++; break; }
      return 0;
    }
  }
  local = i;
  n = address_scanlocal(s + i, len - i, utf8);
  if (!n) return 0;
  i += n;
  if (i < len && s[i] == '>' && (flags & ADDRESS_POSTMASTER) && n == 10) {
    static const char pm[] = "postmaster";
    size_t k;
    for (k = 0; k < 10; k++)
      if (address_lower((unsigned char)s[local + k]) != pm[k]) break;
    if (k == 10) {
      if (!stralloc_copys(out, "postmaster")) return 0;
      *why = ADDRESS_OK;
      return i + 1;
    }
  }
  if (n > ADDRESS_MAXLOCAL) { *why = ADDRESS_ETOOLONG; return 0; }
  if (i >= len || s[i] != '@') return 0;
  i++;
  dom = i;
  if (i < len && s[i] == '[')
    n = address_scanliteral(s + i, len - i);
  else
    n = address_scandomain(s + i, len - i, utf8);
  if (!n) {
    /* an over-long label or domain is a limit, not a syntax error */
    size_t k = i;
    while (k < len && s[k] != '>') k++;
    if (k - i > ADDRESS_MAXDOMAIN) *why = ADDRESS_ETOOLONG;
    return 0;
  }
  if (n > ADDRESS_MAXDOMAIN) { *why = ADDRESS_ETOOLONG; return 0; }
  i += n;
  if (i >= len || s[i] != '>') return 0;
  i++;
  if (i > ADDRESS_MAXPATH) { *why = ADDRESS_ETOOLONG; return 0; }
  if (utf8 && !address_utf8ok((const unsigned char *)s, i)) return 0;
  if (!stralloc_copyb(out, s + local, dom - local)) return 0;
  for (size_t k = dom; k < i - 1; k++) {
    /* domain names are case-insensitive; an address literal is kept */
    char c = s[dom] == '[' ? s[k] : (char)address_lower((unsigned char)s[k]);
    if (!stralloc_append(out, &c)) return 0;
  }
  *why = ADDRESS_OK;
  return i;
}

size_t address_at(const char *a, size_t len)
{
  size_t at = len;
  for (size_t i = 0; i < len; i++)
    if (a[i] == '@') at = i;
  return at;
}

int address_key(const char *a, size_t len, stralloc *key)
{
  size_t at = address_at(a, len);
  size_t i = 0, end = at;
  stralloc_zero(key);
  if (at < len && at > 1 && a[0] == '"' && a[at - 1] == '"') { i = 1; end = at - 1; }
  for (; i < end; i++) {
    char c = a[i];
    if (end != at && c == '\\' && i + 1 < end) c = a[++i];
    c = (char)address_lower((unsigned char)c);
    if (!stralloc_append(key, &c)) return 0;
  }
  for (i = at; i < len; i++) {
    char c = (char)address_lower((unsigned char)a[i]);
    if (!stralloc_append(key, &c)) return 0;
  }
  return 1;
}

int address_isdotstring(const char *local, size_t len)
{
  return len && address_scanlocal(local, len, 1) == len && local[0] != '"';
}
