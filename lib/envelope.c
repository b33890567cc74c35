#include <buffer.h>
#include <stralloc.h>
#include "envelope.h"

int envelope_put(buffer *b, char type, const char *s, size_t len)
{
  if (buffer_put(b, &type, 1) == -1) return 0;
  if (len && buffer_put(b, s, len) == -1) return 0;
  return buffer_put(b, "", 1) == 0;
}

int envelope_get(buffer *b, stralloc *rec, size_t max)
{
  char c;
  stralloc_zero(rec);
  for (;;) {
    ssize_t r = buffer_getc(b, &c);
    if (r <= 0) return -1;
    if (c == 0) return rec->len ? 1 : 0;
    if (rec->len >= max) return -1;
    if (!stralloc_append(rec, &c)) return -1;
  }
}
