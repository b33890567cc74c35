#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <tls.h>
#include <stralloc.h>
#include "smtpd_tls.h"

static struct tls *conn;

int smtpd_tls_active(void) { return conn != NULL; }
struct tls *smtpd_tls_conn(void) { return conn; }

/* libtls on non-blocking fds says what it waits for; we wait for it
 * with the session's timeout.  (On blocking fds a read could hang on
 * the network while decrypted bytes wait in the library.) */
static int smtpd_tls_wait(ssize_t want, int timeout_ms)
{
  struct pollfd p;
  int r;
  p.fd = want == TLS_WANT_POLLOUT ? 1 : 0;
  p.events = want == TLS_WANT_POLLOUT ? POLLOUT : POLLIN;
  do r = poll(&p, 1, timeout_ms); while (r == -1 && errno == EINTR);
  if (r == 0) { errno = ETIMEDOUT; return 0; }
  return r > 0;
}

static int smtpd_tls_nonblock(int fd)
{
  int fl = fcntl(fd, F_GETFL);
  return fl != -1 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != -1;
}

static int smtpd_tls_fail(stralloc *err, const char *what, struct tls *t)
{
  const char *e = t ? tls_error(t) : NULL;
  stralloc_copys(err, what);
  if (e) { stralloc_cats(err, ": "); stralloc_cats(err, e); }
  return 0;
}

static struct tls *server;

void smtpd_tls_init(void) { tls_init(); }

int smtpd_tls_prepare(const char *cert, const char *key, stralloc *err)
{
  struct tls_config *cfg;

  if (server) return 1;
  if (tls_init() == -1) return smtpd_tls_fail(err, "tls_init failed", NULL);
  if (!(cfg = tls_config_new())) return smtpd_tls_fail(err, "tls_config_new failed", NULL);
  if (tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 | TLS_PROTOCOL_TLSv1_3) == -1 ||
      tls_config_set_cert_file(cfg, cert) == -1 || tls_config_set_key_file(cfg, key) == -1) {
    stralloc_copys(err, "certificate or key: ");
    stralloc_cats(err, tls_config_error(cfg));
    tls_config_free(cfg);
    return 0;
  }
  if (!(server = tls_server())) { tls_config_free(cfg); return smtpd_tls_fail(err, "tls_server failed", NULL); }
  if (tls_configure(server, cfg) == -1) {
    smtpd_tls_fail(err, "tls_configure", server);
    tls_free(server);
    server = NULL;
    tls_config_free(cfg);
    return 0;
  }
  tls_config_free(cfg);
  return 1;
}

int smtpd_tls_start(const char *cert, const char *key, int timeout_ms, stralloc *err)
{
  int r;

  if (!smtpd_tls_prepare(cert, key, err)) return 0;
  if (!smtpd_tls_nonblock(0) || !smtpd_tls_nonblock(1))
    return smtpd_tls_fail(err, "fcntl O_NONBLOCK failed", NULL);
  if (tls_accept_fds(server, &conn, 0, 1) == -1) return smtpd_tls_fail(err, "tls_accept_fds", server);
  while ((r = tls_handshake(conn)) == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT)
    if (!smtpd_tls_wait(r, timeout_ms)) break;
  if (r != 0) {
    smtpd_tls_fail(err, errno == ETIMEDOUT && r != -1 ? "handshake timed out" : "handshake", conn);
    tls_free(conn);
    conn = NULL;
    return 0;
  }
  return 1;
}

ssize_t smtpd_tls_read(char *buf, size_t len, int timeout_ms)
{
  for (;;) {
    ssize_t r = tls_read(conn, buf, len);
    if (r >= 0) return r;
    if (r != TLS_WANT_POLLIN && r != TLS_WANT_POLLOUT) { errno = EPROTO; return -1; }
    if (!smtpd_tls_wait(r, timeout_ms)) return -1;
  }
}

ssize_t smtpd_tls_write(const char *buf, size_t len, int timeout_ms)
{
  for (;;) {
    ssize_t r = tls_write(conn, buf, len);
    if (r >= 0) return r;
    if (r != TLS_WANT_POLLIN && r != TLS_WANT_POLLOUT) { errno = EPIPE; return -1; }
    if (!smtpd_tls_wait(r, timeout_ms)) return -1;
  }
}

void smtpd_tls_close(int timeout_ms)
{
  int r;
  if (!conn) return;
  /* close_notify, so the client can tell our end from a truncation */
  while ((r = tls_close(conn)) == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT)
    if (!smtpd_tls_wait(r, timeout_ms)) break;
  conn = NULL;
}

const char *smtpd_tls_version(void) { return conn ? tls_conn_version(conn) : NULL; }
const char *smtpd_tls_cipher(void) { return conn ? tls_conn_cipher(conn) : NULL; }
