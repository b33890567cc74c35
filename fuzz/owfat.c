/* libowfat's byte, str, case and scan_ulong functions, compiled here with the
 * sanitizers and linked before -l:libowfat.a, which then supplies
 * everything else.  Debian's libowfat.a is not instrumented: a length
 * one byte too long handed to byte_copy or byte_chr (the way dopis
 * mostly touches memory) would go unseen by AddressSanitizer.  Same
 * semantics as libowfat's, one byte at a time, so every access is
 * checked and none is made that libowfat would not make. */
#include <stddef.h>
#include <byte.h>
#include <case.h>
#include <scan.h>
#include <str.h>

size_t byte_chr(const void *haystack, size_t len, char needle)
{
  const char *s = haystack;
  size_t i = 0;
  while (i < len && s[i] != needle) i++;
  return i;
}

size_t byte_rchr(const void *haystack, size_t len, char needle)
{
  const char *s = haystack;
  size_t found = len;
  for (size_t i = 0; i < len; i++)
    if (s[i] == needle) found = i;
  return found;
}

void byte_copy(void *out, size_t len, const void *in)
{
  char *d = out;
  const char *s = in;
  for (size_t i = 0; i < len; i++) d[i] = s[i];
}

void byte_copyr(void *out, size_t len, const void *in)
{
  char *d = out;
  const char *s = in;
  while (len) { len--; d[len] = s[len]; }
}

int byte_diff(const void *a, size_t len, const void *b)
{
  const unsigned char *s = a, *t = b;
  for (size_t i = 0; i < len; i++)
    if (s[i] != t[i]) return (int)s[i] - (int)t[i];
  return 0;
}

void byte_zero(void *out, size_t len)
{
  char *d = out;
  for (size_t i = 0; i < len; i++) d[i] = 0;
}

size_t str_len(const char *s)
{
  size_t i = 0;
  while (s[i]) i++;
  return i;
}

int str_diff(const char *a, const char *b)
{
  const unsigned char *s = (const unsigned char *)a, *t = (const unsigned char *)b;
  for (;; s++, t++)
    if (*s != *t || !*t) return (int)*s - (int)*t;
}

int str_diffn(const char *a, const char *b, size_t limit)
{
  const unsigned char *s = (const unsigned char *)a, *t = (const unsigned char *)b;
  for (; limit; limit--, s++, t++)
    if (*s != *t || !*t) return (int)*s - (int)*t;
  return 0;
}

size_t str_chr(const char *haystack, char needle)
{
  size_t i = 0;
  while (haystack[i] && haystack[i] != needle) i++;
  return i;
}

size_t str_rchr(const char *haystack, char needle)
{
  size_t i, found = (size_t)-1;
  for (i = 0; haystack[i]; i++)
    if (haystack[i] == needle) found = i;
  return found == (size_t)-1 ? i : found;
}

int str_start(const char *a, const char *b)
{
  for (; *b; a++, b++)
    if (*a != *b) return 0;
  return 1;
}

static unsigned char owfat_lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

int case_diffb(const void *a, size_t len, const void *b)
{
  const unsigned char *s = a, *t = b;
  for (size_t i = 0; i < len; i++) {
    unsigned char x = owfat_lower(s[i]), y = owfat_lower(t[i]);
    if (x != y) return (int)x - (int)y;
  }
  return 0;
}

void case_lowerb(void *buf, size_t len)
{
  unsigned char *s = buf;
  for (size_t i = 0; i < len; i++) s[i] = owfat_lower(s[i]);
}

/* Digits up to the first non-digit, or up to the one that would
 * overflow; *dest is set only when there was a digit. */
size_t scan_ulong(const char *src, unsigned long *dest)
{
  size_t i = 0;
  unsigned long l = 0;
  for (; src[i] >= '0' && src[i] <= '9'; i++) {
    unsigned long c = (unsigned long)(src[i] - '0');
    if (l > (~0UL - c) / 10) break;
    l = l * 10 + c;
  }
  if (i) *dest = l;
  return i;
}

size_t scan_ulonglong(const char *src, unsigned long long *dest)
{
  size_t i = 0;
  unsigned long long l = 0;
  for (; src[i] >= '0' && src[i] <= '9'; i++) {
    unsigned long long c = (unsigned long long)(src[i] - '0');
    if (l > (~0ULL - c) / 10) break;
    l = l * 10 + c;
  }
  if (i) *dest = l;
  return i;
}
