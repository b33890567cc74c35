/* Output of the queue tool.  What it prints comes from the network
 * (addresses, replies, whole messages), so nothing reaches a terminal
 * or a JSON parser unescaped. */
#include <time.h>
#include <buffer.h>
#include <fmt.h>
#include <str.h>
#include "qtool.h"

static int failed;
static const char hex[] = "0123456789abcdef";

void out_put(const char *s, size_t len)
{
  if (!failed && len && buffer_put(buffer_1, s, len) == -1) failed = 1;
}

void out_puts(const char *s) { out_put(s, str_len(s)); }

void out_ulong(unsigned long long n)
{
  char num[FMT_ULONG] = "";   /* gcc cannot see that fmt_ulonglong fills it */
  out_put(num, fmt_ulonglong(num, n));
}

int out_flush(void)
{
  if (!failed && buffer_flush(buffer_1) == -1) failed = 1;
  return failed ? -1 : 0;
}

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), its code point in
 * *cp; 0 when s starts no valid sequence; len + 1 when s[0..len) is
 * the valid start of a longer one. */
static size_t out_utf8(const unsigned char *s, size_t len, unsigned long *cp)
{
  unsigned char c = s[0], lo = 0x80, hi = 0xbf;
  size_t n, i;

  if (c < 0x80) { *cp = c; return 1; }
  if (c >= 0xc2 && c <= 0xdf) { n = 2; *cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    *cp = c & 0x0f;
    if (c == 0xe0) lo = 0xa0;          /* overlong */
    if (c == 0xed) hi = 0x9f;          /* surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    *cp = c & 0x07;
    if (c == 0xf0) lo = 0x90;          /* overlong */
    if (c == 0xf4) hi = 0x8f;          /* above U+10FFFF */
  } else {
    return 0;
  }
  for (i = 1; i < n; i++) {
    if (i >= len) return len + 1;
    if (s[i] < lo || s[i] > hi) return 0;
    lo = 0x80;
    hi = 0xbf;
    *cp = *cp << 6 | (s[i] & 0x3f);
  }
  return n;
}

void out_text(const char *s, size_t len)
{
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, n;
  unsigned long cp;

  while (i < len) {
    n = out_utf8(u + i, len - i, &cp);
    if (n == 0 || n > len - i || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
      /* C1 controls too: some terminals obey them */
      if (n == 0 || n > len - i) n = 1;
      for (size_t k = 0; k < n; k++) {
        char e[4] = { '\\', 'x', hex[u[i + k] >> 4], hex[u[i + k] & 15] };
        out_put(e, 4);
      }
    } else if (cp == '\\') {
      out_put("\\\\", 2);
    } else {
      out_put(s + i, n);
    }
    i += n;
  }
}

void out_texts(const char *s) { out_text(s, str_len(s)); }

size_t out_jsonpart(const char *s, size_t len, int last)
{
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, n, plain = 0;
  unsigned long cp;

  while (i < len) {
    n = out_utf8(u + i, len - i, &cp);
    if (n > len - i && !last) break;   /* the rest of it comes next */
    if (n > 0 && n <= len - i && cp >= 0x20 && cp != '"' && cp != '\\' &&
        cp != 0x7f && cp != 0x2028 && cp != 0x2029) {
      i += n;
      continue;
    }
    /* the text since the last escape as it is, then this one escaped */
    out_put(s + plain, i - plain);
    if (n == 0 || n > len - i) {
      out_put("\\ufffd", 6);
      n = 1;
    } else if (cp == '"') out_put("\\\"", 2);
    else if (cp == '\\') out_put("\\\\", 2);
    else if (cp == '\n') out_put("\\n", 2);
    else if (cp == '\r') out_put("\\r", 2);
    else if (cp == '\t') out_put("\\t", 2);
    else {
      /* the other controls, DEL, and U+2028/9 (line ends to JavaScript) */
      char e[6] = { '\\', 'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15],
                    hex[(cp >> 4) & 15], hex[cp & 15] };
      out_put(e, 6);
    }
    i += n;
    plain = i;
  }
  out_put(s + plain, i - plain);
  return i;
}

void out_json(const char *s, size_t len)
{
  if (!s) { out_put("null", 4); return; }
  out_put("\"", 1);
  out_jsonpart(s, len, 1);
  out_put("\"", 1);
}

void out_jsons(const char *s) { out_json(s, s ? str_len(s) : 0); }

/* "5m12s": a, its unit, b in two digits, its unit */
static void out_two(unsigned long a, char ua, unsigned long b, char ub)
{
  char num[FMT_ULONG + 4];
  size_t n = fmt_ulong(num, a);
  num[n++] = ua;
  num[n++] = (char)('0' + b / 10 % 10);
  num[n++] = (char)('0' + b % 10);
  num[n++] = ub;
  out_put(num, n);
}

void out_age(unsigned long s)
{
  char num[FMT_ULONG + 1];
  size_t n;
  if (s < 60) {
    n = fmt_ulong(num, s);
    num[n++] = 's';
    out_put(num, n);
  } else if (s < 3600) out_two(s / 60, 'm', s % 60, 's');
  else if (s < 86400) out_two(s / 3600, 'h', s / 60 % 60, 'm');
  else out_two(s / 86400, 'd', s / 3600 % 24, 'h');
}

void out_date(unsigned long t)
{
  char buf[64];
  time_t tt = (time_t)t;
  struct tm tm;
  size_t n = 0;
  if (localtime_r(&tt, &tm)) n = strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %z", &tm);
  if (n) out_put(buf, n);
  else out_ulong(t);
}
