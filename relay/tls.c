/* TLS for the relay's client (libtls): STARTTLS (RFC 3207) on the
 * already connected non-blocking socket, driven by relay.c's poll loop,
 * and what this pass has learnt of each host's TLS.  The names start
 * with ctls_ ("client TLS"), since libtls owns tls_.
 *
 * Certificates are checked against tls_ca_file (the system's CA store
 * by default) and the host's name, but opportunistic TLS must still
 * encrypt when that check fails, and libtls either aborts the handshake
 * on an untrusted chain or skips the chain check altogether.  So the
 * chain is checked by libtls (a failure ends that handshake; the host
 * then gets a second connection whose chain goes unchecked, remembered
 * for the pass), and the name is checked here after the handshake, so
 * that a wrong name costs no second connection. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <tls.h>
#include <str.h>
#include <stralloc.h>
#include "log.h"
#include "relay.h"

struct ctls {
  struct tls *t;
  short want;             /* poll events the last call waits for */
  short rwant, wwant;     /* ... of the last read, of the last write */
  int checked;            /* the chain was verified by libtls */
};

static struct tls_config *verifying, *trusting;
static stralloc nocafile;   /* why chains cannot be checked, or "" */

/* libtls keeps the CA file in memory from here on: it is read once. */
int ctls_init(stralloc *why)
{
  const char *ca = cfg.tls_ca_file.s;
  if (verifying || trusting) return 0;
  if (tls_init() == -1 || !(verifying = tls_config_new()) || !(trusting = tls_config_new()))
    return stralloc_copys(why, "TLS: cannot set up libtls"), -1;
  /* TLS 1.2 and 1.3 only.  "compat" ciphers: a peer limited to older
   * (non-AEAD) ones is still better encrypted than in plain text. */
  if (tls_config_set_protocols(verifying, TLS_PROTOCOL_TLSv1_2 | TLS_PROTOCOL_TLSv1_3) == -1 ||
      tls_config_set_protocols(trusting, TLS_PROTOCOL_TLSv1_2 | TLS_PROTOCOL_TLSv1_3) == -1 ||
      tls_config_set_ciphers(verifying, "compat") == -1 ||
      tls_config_set_ciphers(trusting, "compat") == -1)
    return stralloc_copys(why, "TLS: cannot set protocols and ciphers"), -1;
  /* the name is checked by ctls_nameok, after the handshake */
  tls_config_insecure_noverifyname(verifying);
  tls_config_insecure_noverifycert(trusting);
  tls_config_insecure_noverifyname(trusting);
  tls_config_insecure_noverifytime(trusting);
  errno = 0;
  if (tls_config_set_ca_file(verifying, ca) == -1) {
    /* TLS still encrypts; every certificate is then unverified */
    const char *e = tls_config_error(verifying);
    if (!e) e = strerror(errno ? errno : ENOENT);
    if (!stralloc_copys(&nocafile, "tls_ca_file ") || !stralloc_cats(&nocafile, ca) ||
        !stralloc_cats(&nocafile, ": ") || !stralloc_cats(&nocafile, e) || !stralloc_0(&nocafile))
      return stralloc_copys(why, "out of memory"), -1;
    nocafile.len--;
    log_start();
    log_str("event", "tls-no-ca");
    log_buf("error", nocafile.s, nocafile.len);
    log_end();
  }
  return 0;
}

const char *ctls_nocafile(void) { return nocafile.len ? nocafile.s : NULL; }

struct ctls *ctls_new(int fd, const char *name, int check, stralloc *why)
{
  struct ctls *s = calloc(1, sizeof *s);
  if (!s) return stralloc_copys(why, "out of memory"), NULL;
  if (nocafile.len) check = 0;
  s->checked = check;
  s->want = POLLOUT;
  if (!(s->t = tls_client())) {
    free(s);
    return stralloc_copys(why, "out of memory"), NULL;
  }
  if (tls_configure(s->t, check ? verifying : trusting) == -1 ||
      tls_connect_socket(s->t, fd, name) == -1) {
    const char *e = tls_error(s->t);
    if (!stralloc_copys(why, "TLS: ") || !stralloc_cats(why, e ? e : "cannot start"))
      stralloc_copys(why, "TLS cannot start");
    ctls_free(s);
    return NULL;
  }
  return s;
}

void ctls_free(struct ctls *s)
{
  if (!s) return;
  /* close_notify once, without waiting: the socket is non-blocking
   * and closed next (libtls does not close a socket it was given) */
  if (s->t) {
    tls_close(s->t);
    tls_free(s->t);
  }
  free(s);
}

int ctls_handshake(struct ctls *s)
{
  int r = tls_handshake(s->t);
  if (r == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT) {
    s->want = r == TLS_WANT_POLLIN ? POLLIN : POLLOUT;
    return 0;
  }
  s->want = POLLIN;
  return r == 0 ? 1 : -1;
}

short ctls_want(const struct ctls *s) { return s->want; }

short ctls_events(const struct ctls *s, int pending)
{
  short ev = POLLIN;
  if (s->rwant == POLLOUT) ev |= POLLOUT;
  /* a write that waits for input must not spin on a writable socket */
  if (pending && s->wwant != POLLIN) ev |= POLLOUT;
  return ev;
}

/* Decrypted data may wait inside libtls where poll cannot see it:
 * the caller reads until this says EAGAIN. */
ssize_t ctls_read(struct ctls *s, char *buf, size_t len)
{
  ssize_t r = tls_read(s->t, buf, len);
  s->rwant = 0;
  if (r >= 0) return r;
  if (r == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT) {
    s->rwant = r == TLS_WANT_POLLOUT ? POLLOUT : POLLIN;
    errno = EAGAIN;
    return -1;
  }
  errno = EPROTO;
  return -1;
}

ssize_t ctls_write(struct ctls *s, const char *buf, size_t len)
{
  ssize_t r = tls_write(s->t, buf, len);
  s->wwant = 0;
  if (r >= 0) return r;
  if (r == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT) {
    s->wwant = r == TLS_WANT_POLLOUT ? POLLOUT : POLLIN;
    errno = EAGAIN;
    return -1;
  }
  errno = EPIPE;
  return -1;
}

const char *ctls_error(struct ctls *s)
{
  const char *e = tls_error(s->t);
  return e ? e : "TLS failed";
}

/* libtls says so when the handshake ended on the chain (its verify
 * callback's words).  Should the words ever change, a chain failure
 * is taken for a broken handshake: the host then gets plain text,
 * which is what an unverifiable peer risks anyway. */
int ctls_chainfailed(struct ctls *s)
{
  static const char w[] = "certificate verification failed";
  const char *e = tls_error(s->t);
  return s->checked && e && !strncmp(e, w, sizeof w - 1);
}

int ctls_checked(const struct ctls *s) { return s->checked; }

int ctls_nameok(struct ctls *s, const char *name)
{
  return tls_peer_cert_provided(s->t) && tls_peer_cert_contains_name(s->t, name) == 1;
}

const char *ctls_version(struct ctls *s)
{
  const char *v = tls_conn_version(s->t);
  return v ? v : "TLS";
}

const char *ctls_cipher(struct ctls *s)
{
  const char *c = tls_conn_cipher(s->t);
  return c ? c : "unknown";
}

/* ---- what this pass knows of each host ("name[address]") ---- */

struct ctls_host {
  char *host;
  int policy;             /* CTLS_* */
  char *why;              /* the failure that set it */
  struct ctls_host *next;
};

static struct ctls_host *hosts;

static struct ctls_host *ctls_find(const char *host)
{
  for (struct ctls_host *h = hosts; h; h = h->next)
    if (!strcmp(h->host, host)) return h;
  return NULL;
}

int ctls_policy(const char *host)
{
  const struct ctls_host *h = ctls_find(host);
  return h ? h->policy : CTLS_CHECK;
}

const char *ctls_why(const char *host)
{
  const struct ctls_host *h = ctls_find(host);
  return h && h->why ? h->why : "";
}

void ctls_remember(const char *host, int policy, const char *why)
{
  struct ctls_host *h = ctls_find(host);
  char *w = strdup(why ? why : "");
  if (!h) {
    h = calloc(1, sizeof *h);
    if (!h || !(h->host = strdup(host))) {
      /* out of memory: the host just gets the same chance again */
      free(h);
      free(w);
      return;
    }
    h->next = hosts;
    hosts = h;
  }
  h->policy = policy;
  if (w) {
    free(h->why);
    h->why = w;
  }
}
