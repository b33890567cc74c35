/* dopis-tlsd: the TLS side of one smtpd session (dopis-tlsd(8)).
 *
 * smtpd's broker starts it when a client says STARTTLS, or at once in
 * submissions mode: fds 0 and 1 are the client's connection, fd 3 a
 * stream socket to smtpd.  It loads the certificate and key, confines
 * itself, says "R\n" (ready) on fd 3, makes the handshake, tells smtpd
 * how it went in one line ("T<version> <cipher>\n" or "F<reason>\n";
 * "F" instead of "R" when the key cannot be loaded), and from then on
 * moves bytes: what the client sends, decrypted, to fd 3; what smtpd
 * writes on fd 3, encrypted, to the client.  So the process that parses
 * the client's commands never holds the key nor links OpenSSL, and a
 * session without TLS never pays for it. */

#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sysexits.h>
#include <unistd.h>
#include <tls.h>
#include <str.h>
#include <stralloc.h>
#include "config.h"
#include "sandbox.h"
#include "../smtpd_tls.h"

#define PLAIN 3
#define BUFSIZE 16384
#define CLOSE_MS 5000          /* for close_notify at the end */

struct half {
  char buf[BUFSIZE];
  size_t len, pos;             /* pending: buf[pos..len) */
  int eof;                     /* the source has ended */
  int shut;                    /* its end was passed on */
};

static struct config cfg;
static struct tls *conn;
static struct half up;         /* client -> smtpd */
static struct half down;       /* smtpd -> client */

static int tlsd_timeoutms(void)
{
  return cfg.timeout ? (int)(cfg.timeout * 1000) : 300000;
}

/* Writes the status line to smtpd; nothing else can be said. */
static void tlsd_status(char tag, const char *a, const char *b)
{
  static stralloc line;
  ssize_t r;
  size_t off = 0;
  if (!stralloc_copyb(&line, &tag, 1) || !stralloc_cats(&line, a ? a : "") ||
      (b && (!stralloc_cats(&line, " ") || !stralloc_cats(&line, b))))
    line.len = 0;
  /* one line, no control bytes: the reason is text from libtls */
  if (line.len > 300) line.len = 300;
  for (size_t i = 1; i < line.len; i++)
    if ((unsigned char)line.s[i] < 32 || line.s[i] == 127) line.s[i] = ' ';
  if (!line.len || !stralloc_cats(&line, "\n")) {
    if (!stralloc_copys(&line, "Fout of memory\n")) _exit(EX_TEMPFAIL);
  }
  while (off < line.len) {
    do r = write(PLAIN, line.s + off, line.len - off); while (r == -1 && errno == EINTR);
    if (r <= 0) _exit(EX_TEMPFAIL);
    off += (size_t)r;
  }
}

static void tlsd_fail(int code, const char *what, const char *why) __attribute__((noreturn));
static void tlsd_fail(int code, const char *what, const char *why)
{
  tlsd_status('F', what, why);
  _exit(code);
}

static int tlsd_nonblock(int fd)
{
  int fl = fcntl(fd, F_GETFL);
  return fl != -1 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != -1;
}

/* One step of each kind that can make progress; returns 1 if any did,
 * 0 if none, -1 when the session is over.  *want gets what libtls
 * waits for on the network (POLLIN, POLLOUT). */
static int tlsd_step(short *netwant)
{
  int moved = 0;
  ssize_t r;

  *netwant = 0;
  /* client -> smtpd */
  if (!up.eof && up.len == 0) {
    r = tls_read(conn, up.buf, sizeof up.buf);
    if (r > 0) { up.len = (size_t)r; up.pos = 0; moved = 1; }
    else if (r == 0) { up.eof = 1; moved = 1; }
    else if (r == TLS_WANT_POLLIN) *netwant |= POLLIN;
    else if (r == TLS_WANT_POLLOUT) *netwant |= POLLOUT;
    else up.eof = 1, moved = 1;          /* a broken connection ends it */
  }
  if (up.pos < up.len) {
    do r = write(PLAIN, up.buf + up.pos, up.len - up.pos); while (r == -1 && errno == EINTR);
    if (r > 0) {
      up.pos += (size_t)r;
      if (up.pos == up.len) up.len = up.pos = 0;
      moved = 1;
    } else if (errno != EAGAIN) {
      return -1;                         /* smtpd is gone */
    }
  }
  if (up.eof && up.len == 0 && !up.shut) {
    /* smtpd sees the end of input; it may still answer */
    up.shut = 1;
    if (shutdown(PLAIN, SHUT_WR) == -1 && errno != ENOTCONN) return -1;
  }
  /* smtpd -> client */
  if (!down.eof && down.len == 0) {
    do r = read(PLAIN, down.buf, sizeof down.buf); while (r == -1 && errno == EINTR);
    if (r > 0) { down.len = (size_t)r; down.pos = 0; moved = 1; }
    else if (r == 0) { down.eof = 1; moved = 1; }
    else if (errno != EAGAIN) down.eof = 1, moved = 1;
  }
  if (down.pos < down.len) {
    r = tls_write(conn, down.buf + down.pos, down.len - down.pos);
    if (r > 0) {
      down.pos += (size_t)r;
      if (down.pos == down.len) down.len = down.pos = 0;
      moved = 1;
    } else if (r == TLS_WANT_POLLIN) *netwant |= POLLIN;
    else if (r == TLS_WANT_POLLOUT) *netwant |= POLLOUT;
    else return -1;                      /* the client is gone */
  }
  /* smtpd has said all it will: the session is over */
  if (down.eof && down.len == 0) return -1;
  return moved;
}

static void tlsd_relay(void)
{
  int idle_ms = 0;
  for (;;) {
    struct pollfd p[3];
    short netwant;
    int n = 0, r;

    r = tlsd_step(&netwant);
    if (r == -1) return;
    if (r == 1) { idle_ms = 0; continue; }
    if (netwant & POLLIN) { p[n].fd = 0; p[n].events = POLLIN; p[n++].revents = 0; }
    if (netwant & POLLOUT) { p[n].fd = 1; p[n].events = POLLOUT; p[n++].revents = 0; }
    p[n].fd = PLAIN;
    p[n].events = (short)((!down.eof && down.len == 0 ? POLLIN : 0) | (up.pos < up.len ? POLLOUT : 0));
    p[n++].revents = 0;
    /* smtpd keeps the session's timeouts; this one only ends a
     * connection on which nothing at all moves, on either side */
    do r = poll(p, (nfds_t)n, 1000); while (r == -1 && errno == EINTR);
    if (r == -1) return;
    if (r == 0 && (idle_ms += 1000) > 2 * tlsd_timeoutms()) return;
    if (r > 0) idle_ms = 0;
  }
}

static void tlsd_close(void)
{
  int r;
  struct pollfd p;
  /* close_notify, so the client can tell our end from a truncation */
  while ((r = tls_close(conn)) == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT) {
    p.fd = r == TLS_WANT_POLLOUT ? 1 : 0;
    p.events = r == TLS_WANT_POLLOUT ? POLLOUT : POLLIN;
    if (poll(&p, 1, CLOSE_MS) <= 0) break;
  }
}

int main(void)
{
  static stralloc err;
  const char *nothing[] = { NULL };
  int r;

  signal(SIGPIPE, SIG_IGN);
  if (fcntl(PLAIN, F_GETFD) == -1) _exit(EX_USAGE);   /* not started by smtpd */
  if (!config_load(&cfg, &err)) {
    if (!stralloc_0(&err)) _exit(EX_TEMPFAIL);
    tlsd_fail(EX_CONFIG, "configuration: ", err.s);
  }
  if (!cfg.tls_cert.len) tlsd_fail(EX_CONFIG, "no tls_cert in the configuration", NULL);
  if (!smtpd_tls_prepare(cfg.tls_cert.s, cfg.tls_key.s, &err) || !stralloc_0(&err))
    tlsd_fail(EX_CONFIG, err.len ? err.s : "certificate or key", NULL);
  /* the key is loaded: from now on no file is opened again */
  if (!SANDBOX_OFF) {
    r = sandbox_files(nothing, NULL, &err);
    if (r == -1) { stralloc_0(&err); tlsd_fail(EX_OSERR, "sandbox: ", err.s); }
    r = sandbox_syscalls_smtpd(&err);
    if (r == -1) { stralloc_0(&err); tlsd_fail(EX_OSERR, "sandbox: ", err.s); }
  }
  /* smtpd now answers 220 and the client starts the handshake */
  tlsd_status('R', NULL, NULL);
  if (!smtpd_tls_start(cfg.tls_cert.s, cfg.tls_key.s, tlsd_timeoutms(), &err) || !stralloc_0(&err))
    tlsd_fail(0, err.len ? err.s : "handshake failed", NULL);
  conn = smtpd_tls_conn();
  if (!tlsd_nonblock(PLAIN)) tlsd_fail(EX_OSERR, "fcntl failed", NULL);
  tlsd_status('T', smtpd_tls_version(), smtpd_tls_cipher());
  tlsd_relay();
  tlsd_close();
  return 0;
}
