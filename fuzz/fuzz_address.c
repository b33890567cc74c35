/* libFuzzer harness: lib/address.c, the parser of every MAIL FROM and
 * RCPT TO path and of the addresses in the list files.
 *
 * Input: one byte of flags (ADDRESS_UTF8, _POSTMASTER, _NULL in its low
 * bits), then the path, in a heap block of its exact size.  Checked:
 *   - a path taken: 2 <= consumed <= 256 bytes, from "<" to ">"; the
 *     mailbox printable (no CR, LF, NUL), ASCII unless UTF8 was
 *     allowed, "" only for <> with ADDRESS_NULL, its local part at
 *     most 64 bytes and its domain at most 255; scanned again as
 *     "<mailbox>" it comes back byte for byte (a fixed point, so no
 *     two spellings of one address can reach a lookup);
 *   - a path refused: a reason given, nothing in out, E8BIT only for an
 *     8-bit byte without UTF8;
 *   - address_key of the mailbox: no longer, no ASCII capitals, the
 *     same domain lower-cased, and the mailbox itself lower-cased when
 *     its local part is a dot-string;
 *   - address_key, address_at and address_isdotstring of the raw bytes
 *     as well (the list files hand them whatever is written there). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stralloc.h>
#include "address.h"
#include "fuzz.h"

static stralloc out, again, key;

static void fuzz_key(const char *a, size_t len, int scanned)
{
  size_t at = address_at(a, len), kat;
  FUZZ_CHECK(address_key(a, len, &key), "address_key: out of memory");
  FUZZ_CHECK(key.len <= len, "key of %zu bytes from %zu", key.len, len);
  for (size_t i = 0; i < key.len; i++)
    FUZZ_CHECK(key.s[i] < 'A' || key.s[i] > 'Z', "capital in key %.*s", (int)key.len, key.s);
  FUZZ_CHECK(at <= len, "address_at past the end");
  if (at == len) return;
  kat = address_at(key.s, key.len);
  FUZZ_CHECK(key.len - kat == len - at, "key's domain differs in length");
  for (size_t i = 0; i < len - at; i++) {
    char c = a[at + i];
    if (c >= 'A' && c <= 'Z') c += 32;
    FUZZ_CHECK(key.s[kat + i] == c, "key's domain differs");
  }
  if (scanned && a[0] != '"') {
    FUZZ_CHECK(address_isdotstring(a, at), "unquoted local part %.*s is no dot-string", (int)at, a);
    FUZZ_CHECK(key.len == len, "key of a dot-string changed length");
    for (size_t i = 0; i < at; i++) {
      char c = a[i];
      if (c >= 'A' && c <= 'Z') c += 32;
      FUZZ_CHECK(key.s[i] == c, "key of a dot-string is not it lower-cased");
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  enum address_error why = ADDRESS_OK, why2;
  int flags, has8 = 0;
  size_t n, len;
  char *s;

  if (size < 1) return -1;
  flags = data[0] & (ADDRESS_UTF8 | ADDRESS_POSTMASTER | ADDRESS_NULL);
  len = size - 1;
  s = fuzz_dup(data + 1, len);
  for (size_t i = 0; i < len && i <= ADDRESS_MAXPATH; i++)
    if ((unsigned char)s[i] >= 0x80) has8 = 1;

  n = address_scanpath(s, len, flags, &out, &why);
  if (!n) {
    FUZZ_CHECK(why != ADDRESS_OK, "refused without a reason");
    FUZZ_CHECK(out.len == 0, "refused, yet out holds %zu bytes", out.len);
    FUZZ_CHECK(why != ADDRESS_E8BIT || (has8 && !(flags & ADDRESS_UTF8)), "E8BIT without an 8-bit byte");
  } else {
    size_t at = address_at(out.s, out.len);
    FUZZ_CHECK(why == ADDRESS_OK, "taken with an error");
    FUZZ_CHECK(n >= 2 && n <= len && n <= ADDRESS_MAXPATH, "consumed %zu of %zu", n, len);
    FUZZ_CHECK(s[0] == '<' && s[n - 1] == '>', "consumed is not <...>");
    FUZZ_CHECK(out.len <= n - 2, "mailbox longer than its path");
    for (size_t i = 0; i < out.len; i++) {
      unsigned char c = (unsigned char)out.s[i];
      FUZZ_CHECK(c >= 32 && c != 127, "control byte %02x in mailbox", c);
      FUZZ_CHECK(c < 0x80 || (flags & ADDRESS_UTF8), "8-bit mailbox without UTF8");
    }
    if (out.len == 0) {
      FUZZ_CHECK((flags & ADDRESS_NULL) && n == 2, "empty mailbox not from <>");
    } else if (at == out.len) {
      FUZZ_CHECK((flags & ADDRESS_POSTMASTER) && out.len == 10 && !memcmp(out.s, "postmaster", 10),
                 "mailbox without @: %.*s", (int)out.len, out.s);
    } else {
      char *m = fuzz_dup(out.s, out.len);
      char *p = malloc(out.len + 2);
      FUZZ_CHECK(at > 0 && at <= ADDRESS_MAXLOCAL && out.len - at - 1 <= ADDRESS_MAXDOMAIN,
                 "local part %zu or domain %zu too long", at, out.len - at - 1);
      /* the fixed point */
      p[0] = '<';
      memcpy(p + 1, m, out.len);
      p[out.len + 1] = '>';
      n = address_scanpath(p, out.len + 2, flags, &again, &why2);
      FUZZ_CHECK(n == out.len + 2 && again.len == out.len && !memcmp(again.s, m, out.len),
                 "<%.*s> scans differently", (int)out.len, m);
      fuzz_key(m, out.len, 1);
      free(p);
      free(m);
    }
  }
  fuzz_key(s, len, 0);
  (void)address_isdotstring(s, len);
  free(s);
  return 0;
}
