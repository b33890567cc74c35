/* TLS for smtpd's session on fds 0 and 1 (libtls): STARTTLS (RFC 3207)
 * and implicit TLS (RFC 8314).  Once started, every byte of the
 * session goes through here. */
#ifndef DOPIS_SMTPD_TLS_H
#define DOPIS_SMTPD_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <stralloc.h>

/* Loads the certificate and key, so that STARTTLS can be refused
 * (454) rather than fail after its 220.  Returns 1, or 0 with err. */
/* Initialises the TLS library, which reads its own configuration:
 * done before the sandbox closes the file system. */
void smtpd_tls_init(void);
int smtpd_tls_prepare(const char *cert, const char *key, stralloc *err);
/* Handshake on fds 0/1 with the certificate and key files (prepared
 * first when not yet); TLS 1.2 and 1.3 only.  Returns 1, or 0 with
 * err set. */
int smtpd_tls_start(const char *cert, const char *key, int timeout_ms, stralloc *err);
int smtpd_tls_active(void);
/* the session, for dopis-tlsd's own loop; NULL before the handshake */
struct tls;
struct tls *smtpd_tls_conn(void);
/* Like read(2)/write(2); -1 with errno ETIMEDOUT after timeout_ms of
 * no progress. */
ssize_t smtpd_tls_read(char *buf, size_t len, int timeout_ms);
ssize_t smtpd_tls_write(const char *buf, size_t len, int timeout_ms);
/* Sends close_notify (waiting at most timeout_ms); TLS ends. */
void smtpd_tls_close(int timeout_ms);
const char *smtpd_tls_version(void);
const char *smtpd_tls_cipher(void);

#endif
