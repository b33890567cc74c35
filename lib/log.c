#include <unistd.h>
#include <errno.h>
#include <fmt.h>
#include <str.h>
#include "log.h"

/* A fixed buffer: a log line never allocates, and an over-long value
 * is cut (marked with "...") rather than growing anything. */
static char line[1024];
static size_t used;
static int cut;
static const char *progname = "dopis";

void log_init(const char *prog) { progname = prog; }

static void log_putb(const char *s, size_t len)
{
  if (used + len > sizeof line - 5) {
    len = sizeof line - 5 - used;
    cut = 1;
  }
  for (size_t i = 0; i < len; i++) line[used++] = s[i];
}

void log_start(void)
{
  used = 0;
  cut = 0;
  log_putb(progname, str_len(progname));
}

static int log_needsquote(const char *v, size_t len)
{
  if (len == 0) return 1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c <= ' ' || c == '"' || c == '\\' || c == '=' || c >= 127) return 1;
  }
  return 0;
}

void log_buf(const char *key, const char *val, size_t len)
{
  static const char hex[] = "0123456789abcdef";
  log_putb(" ", 1);
  log_putb(key, str_len(key));
  log_putb("=", 1);
  if (!log_needsquote(val, len)) { log_putb(val, len); return; }
  log_putb("\"", 1);
  for (size_t i = 0; i < len && !cut; i++) {
    unsigned char c = (unsigned char)val[i];
    if (c == '"' || c == '\\') {
      char e[2] = { '\\', (char)c };
      log_putb(e, 2);
    } else if (c < ' ' || c == 127) {
      char e[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
      log_putb(e, 4);
    } else
      log_putb((const char *)&c, 1);
  }
  log_putb("\"", 1);
}

void log_str(const char *key, const char *val)
{
  log_buf(key, val ? val : "", val ? str_len(val) : 0);
}

void log_ulong(const char *key, unsigned long val)
{
  char num[FMT_ULONG] = "";  /* gcc cannot see that fmt_ulong fills it */
  size_t n = fmt_ulong(num, val);
  log_buf(key, num, n);
}

void log_end(void)
{
  int saved = errno;
  if (cut) { line[used++] = '.'; line[used++] = '.'; line[used++] = '.'; }
  line[used++] = '\n';
  /* one write, so lines of concurrent processes never interleave */
  ssize_t r = write(2, line, used);
  (void)r;
  used = 0;
  errno = saved;
}
