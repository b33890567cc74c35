/* The smarthost's credentials: smarthost_user from dopis.conf, the
 * password from smarthost_password_file, its first line, as it is.
 * The password lives in a file of its own because dopis.conf is read
 * by every program of dopis (and installed readable by all), while the
 * password is only the relay's business.  Only the AUTH PLAIN response
 * (RFC 4954, RFC 4616) is kept; client.c sends it inside TLS only, and
 * it never reaches a log line. */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <byte.h>
#include <stralloc.h>
#include <textcode.h>
#include "log.h"
#include "relay.h"

#define AUTH_MAXPASS 1024

static stralloc response;   /* "AUTH PLAIN <base64>\r\n" */

static int auth_fail(stralloc *why, const char *what)
{
  if (!stralloc_copys(why, "smarthost_password_file ") ||
      !stralloc_cats(why, cfg.smarthost_password_file.s) || !stralloc_cats(why, ": ") ||
      !stralloc_cats(why, what))
    stralloc_copys(why, "smarthost_password_file: out of memory");
  return -1;
}

int auth_init(stralloc *why)
{
  char buf[AUTH_MAXPASS + 2], plain[AUTH_MAXPASS * 2 + 4];
  char b64[(sizeof plain + 2) / 3 * 4 + 4];
  struct stat st;
  ssize_t r;
  size_t n = 0, len, ulen = cfg.smarthost_user.len;
  int fd, ok;

  if (!cfg.smarthost_user.len) return 0;
  fd = open(cfg.smarthost_password_file.s, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd == -1) return auth_fail(why, strerror(errno));
  if (fstat(fd, &st) == -1) { close(fd); return auth_fail(why, strerror(errno)); }
  if (!S_ISREG(st.st_mode)) { close(fd); return auth_fail(why, "not a regular file"); }
  while (n < sizeof buf) {
    do r = read(fd, buf + n, sizeof buf - n); while (r == -1 && errno == EINTR);
    if (r == -1) {
      byte_zero(buf, sizeof buf);
      close(fd);
      return auth_fail(why, strerror(errno));
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  len = byte_chr(buf, n, '\n');
  if (len && buf[len - 1] == '\r') len--;
  if (len > AUTH_MAXPASS || ulen > AUTH_MAXPASS) {
    byte_zero(buf, sizeof buf);
    return auth_fail(why, "user name or password longer than 1024 bytes");
  }
  if (!len || byte_chr(buf, len, 0) < len) {
    byte_zero(buf, sizeof buf);
    return auth_fail(why, "no password on the first line, or a NUL byte in it");
  }
  if (st.st_mode & S_IROTH) {
    log_start();
    log_str("event", "config-warning");
    log_str("error", "smarthost_password_file is readable by everyone");
    log_end();
  }
  /* authorization identity empty, NUL, user, NUL, password */
  plain[0] = 0;
  byte_copy(plain + 1, ulen, cfg.smarthost_user.s);
  plain[1 + ulen] = 0;
  byte_copy(plain + 2 + ulen, len, buf);
  byte_zero(buf, sizeof buf);
  n = fmt_base64(b64, plain, 2 + ulen + len);
  byte_zero(plain, sizeof plain);
  ok = stralloc_copys(&response, "AUTH PLAIN ") && stralloc_catb(&response, b64, n) &&
       stralloc_cats(&response, "\r\n");
  byte_zero(b64, sizeof b64);
  if (!ok) return stralloc_copys(why, "out of memory"), -1;
  return 0;
}

int auth_wanted(void) { return cfg.smarthost_user.len != 0; }

int auth_put(stralloc *out)
{
  return stralloc_cat(out, &response);
}
