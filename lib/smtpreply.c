#include "smtpreply.h"

int reply_line(int *code, int *nlines, stralloc *text, const char *s, size_t len)
{
  int n3;
  if (len < 3 || s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' ||
      s[2] < '0' || s[2] > '9' || (len > 3 && s[3] != ' ' && s[3] != '-'))
    return -1;
  n3 = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
  if (*nlines == 0) {
    *code = n3;
    if (!stralloc_copyb(text, s, 3)) return -1;
  } else if (n3 != *code) {
    return -1;
  }
  if (++*nlines > REPLY_MAXLINES) return -1;
  if (len > 4 && text->len < REPLY_MAXTEXT) {
    size_t n = len - 4;
    if (n > REPLY_MAXTEXT - text->len) n = REPLY_MAXTEXT - text->len;
    if (!stralloc_cats(text, " ")) return -1;
    for (size_t i = 0; i < n; i++) {
      char ch = (unsigned char)s[4 + i] < ' ' || s[4 + i] == 127 ? ' ' : s[4 + i];
      if (!stralloc_append(text, &ch)) return -1;
    }
  }
  if (len > 3 && s[3] == '-') return 0;
  if (!stralloc_0(text)) return -1;
  text->len--;
  *nlines = 0;
  return 1;
}
