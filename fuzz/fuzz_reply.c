/* libFuzzer harness: relay/reply.c, how the relay reads what a remote
 * SMTP server says: reply lines into replies, their enhanced status
 * codes, the EHLO keywords.
 *
 * Input: one byte (bit 0: the replies answer EHLO, so their lines after
 * the first name extensions), then the peer's bytes, cut into lines as
 * relay/client.c's conn_read does (at LF, a CR before it dropped, at
 * most REPLY_MAXLINE bytes); each line in a heap block of its exact
 * size.  The first protocol error ends the input, as it ends the
 * connection.  Checked:
 *   - a complete reply: code 100..599, text starting with it, at most
 *     REPLY_MAXTEXT + 1 bytes, NUL-terminated, no control byte;
 *   - its status: digits.digits.digits, at most 9 bytes and a NUL,
 *     starting with the reply's class (4 for a 1xx reply unless the
 *     text says otherwise);
 *   - an EHLO keyword line: SIZE only from a line that says SIZE. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stralloc.h>
#include "../relay/relay.h"
#include "fuzz.h"

/* relay.h declares what relay.c defines; reply.c needs none of it */
struct config cfg;
const char *queuedir;

static stralloc text;

static void fuzz_complete(int code)
{
  char st[16];
  size_t n;
  memset(st, 0x55, sizeof st);
  FUZZ_CHECK(code >= 100 && code <= 599, "code %d", code);
  FUZZ_CHECK(text.len >= 3 && text.len <= REPLY_MAXTEXT + 1, "text of %zu bytes", text.len);
  FUZZ_CHECK(text.s[text.len] == 0, "text not NUL-terminated");
  FUZZ_CHECK(text.s[0] - '0' == code / 100 && text.s[1] - '0' == code / 10 % 10 && text.s[2] - '0' == code % 10,
             "text does not start with the code");
  for (size_t i = 0; i < text.len; i++)
    FUZZ_CHECK((unsigned char)text.s[i] >= 32 && text.s[i] != 127, "control byte in text");
  reply_status(code, &text, st);
  n = strnlen(st, sizeof st);
  FUZZ_CHECK(n >= 5 && n <= 9, "status of %zu bytes", n);
  FUZZ_CHECK(st[0] == '0' + code / 100 || (code < 200 && st[0] == '4'), "status %s for %d", st, code);
  {
    size_t dots = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
      if (st[i] == '.') {
        FUZZ_CHECK(digits && ++dots <= 2, "status %s", st);
        digits = 0;
      } else {
        FUZZ_CHECK(st[i] >= '0' && st[i] <= '9', "status %s", st);
        digits++;
      }
    }
    FUZZ_CHECK(dots == 2 && digits, "status %s", st);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  int code = 0, nlines = 0, ehlo;
  size_t i, start;

  if (size < 1) return -1;
  ehlo = data[0] & 1;
  for (i = start = 1; i < size; i++) {
    size_t len;
    char *line;
    int r, later = nlines > 0;
    if (data[i] != '\n') {
      if (i - start >= REPLY_MAXLINE) break;   /* "reply line too long" */
      continue;
    }
    len = i - start;
    if (len && data[start + len - 1] == '\r') len--;
    line = fuzz_dup(data + start, len);
    start = i + 1;
    r = reply_line(&code, &nlines, &text, line, len);
    if (r != -1 && later && ehlo && len > 4) {
      unsigned long long sz = 0x5a5a;
      char *kw = fuzz_dup(line + 4, len - 4);
      enum reply_ext e = reply_ehlo(kw, len - 4, &sz);
      FUZZ_CHECK(e >= EXT_OTHER && e <= EXT_SIZE, "extension %d", (int)e);
      FUZZ_CHECK(e == EXT_SIZE || sz == 0x5a5a, "size set by another keyword");
      free(kw);
    }
    free(line);
    if (r == -1) break;
    FUZZ_CHECK(nlines >= 0 && nlines <= REPLY_MAXLINES, "%d lines", nlines);
    if (r == 1) {
      FUZZ_CHECK(nlines == 0, "complete with lines pending");
      fuzz_complete(code);
    }
  }
  return 0;
}
