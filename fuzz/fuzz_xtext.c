/* libFuzzer harness: lib/xtext.c (RFC 3461 xtext: ENVID, ORCPT).
 *
 * Input: any bytes, in a heap block of their exact size.  Checked:
 *   - decoding: when taken, the result is no longer than the input and
 *     holds no control byte (CR, LF, NUL, ... would split a header or
 *     a record later); encoding that gives xtext that decodes back to
 *     it exactly;
 *   - encoding the raw bytes: only xchars and "+HH" (upper-case hex)
 *     come out, and they decode back to the input exactly when the
 *     input has no control byte, and are refused otherwise. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stralloc.h>
#include "xtext.h"
#include "fuzz.h"

static stralloc dec, enc, back;

static int fuzz_control(const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 32 || s[i] == 127) return 1;
  return 0;
}

static void fuzz_xtextform(const stralloc *x)
{
  for (size_t i = 0; i < x->len; i++) {
    unsigned char c = (unsigned char)x->s[i];
    if (c == '+') {
      FUZZ_CHECK(i + 2 < x->len, "cut-short +HH");
      for (int k = 1; k <= 2; k++) {
        char h = x->s[i + k];
        FUZZ_CHECK((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'), "bad hex in encoding");
      }
      i += 2;
    } else {
      FUZZ_CHECK(c >= '!' && c <= '~' && c != '=', "byte %02x left unencoded", c);
    }
  }
}

static void fuzz_roundtrip(const char *s, size_t len)
{
  stralloc_zero(&enc);
  FUZZ_CHECK(xtext_encode(s, len, &enc), "encode: out of memory");
  fuzz_xtextform(&enc);
  if (fuzz_control(s, len)) {
    FUZZ_CHECK(!xtext_decode(enc.s, enc.len, &back), "a control byte decoded");
    return;
  }
  FUZZ_CHECK(xtext_decode(enc.s, enc.len, &back), "own encoding refused");
  FUZZ_CHECK(back.len == len && (len == 0 || !memcmp(back.s, s, len)), "round trip changed the bytes");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *s = fuzz_dup(data, size);
  if (xtext_decode(s, size, &dec)) {
    char *d = fuzz_dup(dec.s, dec.len);
    size_t dlen = dec.len;
    FUZZ_CHECK(dlen <= size, "decoded %zu bytes from %zu", dlen, size);
    FUZZ_CHECK(!fuzz_control(d, dlen), "decoded to a control byte");
    fuzz_roundtrip(d, dlen);
    free(d);
  }
  fuzz_roundtrip(s, size);
  free(s);
  return 0;
}
