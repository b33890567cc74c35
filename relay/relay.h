/* The relay: one pass over the queue.  See dopis-relay(8).
 *
 *   relay.c   main: lock, scan, grouping, the poll loop, results
 *   state.c   messages in memory, results applied, info rewritten
 *   mx.c      where a domain's mail goes: udns, RFC 5321 5.1
 *   client.c  the SMTP client, one non-blocking connection
 *   tls.c     STARTTLS for the client (libtls), TLS memory per host
 *   auth.c    the smarthost's credentials, AUTH PLAIN
 *   wire.c    stored message -> SMTP data (CRLF, dot-stuffing)
 *   spawn.c   running deliver (local recipients, DSNs)
 *   bounce.c  RFC 3464 delivery status notifications */
#ifndef DOPIS_RELAY_H
#define DOPIS_RELAY_H

#include <stddef.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <stralloc.h>
#include "config.h"
#include "queueinfo.h"
#include "smtpreply.h"

#define RELAY_MAXRCPTS 100    /* per transaction: RFC 5321 4.5.3.1.8 */
#define RELAY_MAXMX 16        /* MX hosts tried per domain */
#define RELAY_MAXADDR 16      /* addresses tried per host */

extern struct config cfg;
extern const char *queuedir;

/* the unix time of this pass: $DOPIS_NOW (for tests) or time(2) */
unsigned long relay_now(void);
/* a monotonic clock in milliseconds, for timeouts */
unsigned long long relay_ms(void);

/* ---- messages (state.c) ---- */

#define MSG_8BIT 1
#define MSG_BINARY 2
#define MSG_SMTPUTF8 4
#define MSG_RETFULL 8
#define MSG_RETHDRS 16
#define MSG_DOUBLEBOUNCE 32   /* a double-bounce notice: never bounced */

/* NOTIFY bits; none given means FAILURE (and DELAY) */
#define NOTIFY_GIVEN 1
#define NOTIFY_NEVER 2
#define NOTIFY_SUCCESS 4
#define NOTIFY_FAILURE 8
#define NOTIFY_DELAY 16

struct msg {
  stralloc qid;           /* NUL-terminated */
  struct qinfo qi;
  int flags;              /* MSG_* */
  const char *envid;      /* into qi: ENVID xtext, or NULL */
  unsigned long long size;     /* of mess/<qid> */
  unsigned long long wiresize; /* as sent (RFC 1870); 0 until counted */
  int counted;
  int broken;             /* info unreadable or mess missing: left alone */
  int dropped;            /* finished: info removed, mess goes at msg_sync */
};

int msg_notify(const struct qinfo_rcpt *r);
int msg_load(struct msg *m, const char *qid);
void msg_free(struct msg *m);
/* opens mess/<qid> read-only; -1 with why set */
int msg_open(const struct msg *m, stralloc *why);
/* counts wiresize when not yet done; 0 or -1 */
int msg_count(struct msg *m, stralloc *why);

enum result { RES_OK, RES_DEFER, RES_FAIL };

/* One recipient's outcome: state set, log line written.  host may be
 * NULL (none), dsnpeer says the peer took NOTIFY/ORCPT. */
void msg_result(struct msg *m, size_t rcpt, enum result res,
                const char *status, const char *host, const char *text,
                size_t textlen, int dsnpeer);
/* How the connection that gave a result was protected, for its log
 * line: version NULL for plain text. */
struct msg_tls {
  const char *version, *cipher;
  const char *verify;     /* "ok", "failed", or "none" in plain text */
};
/* msg_result, the log line also saying tls=, cipher= and verify= */
void msg_result_tls(struct msg *m, size_t rcpt, enum result res,
                    const char *status, const char *host, const char *text,
                    size_t textlen, int dsnpeer, const struct msg_tls *tls);
/* Rewrites info/<qid>, or removes it when every recipient is final and
 * no report is owed; durable at the next msg_sync.  Logs a failure.
 * Returns 0 or -1. */
int msg_save(struct msg *m);
/* One fsync of info/ for the msg_saves since the last; then removes the
 * mess files of the messages that are done. */
void msg_sync(void);
/* After the pass: DSNs owed, delay warnings, removal when final. */
void msg_finish(struct msg *m);

/* ---- destinations (relay.c, mx.c, client.c) ---- */

struct task {
  struct msg *m;
  size_t *rcpt;           /* indexes into m->qi.r */
  size_t n;
  int *accepted;          /* per rcpt: TX_* of client.c */
  int done;
  struct task *next;
};

struct hostaddr {
  struct sockaddr_storage sa;
  socklen_t len;
};

enum dest_kind { DEST_MX, DEST_LITERAL, DEST_SMARTHOST };

struct conn;

struct dest {
  stralloc domain;        /* lower case, NUL-terminated */
  enum dest_kind kind;
  struct task *tasks, *last, *cur;
  unsigned short port;

  /* the hosts, in the order to try them */
  char *mxname[RELAY_MAXMX];
  int mxpref[RELAY_MAXMX];
  int nmx, imx;
  int selfpref;           /* preference of our own name, or -1 */
  int implicit;           /* no MX: the domain is its own host */
  struct hostaddr addr[RELAY_MAXADDR];
  int naddr, iaddr;
  int dnswait;            /* queries outstanding */
  int dnsnx;              /* NXDOMAIN/NODATA answers seen for the host */
  int dnstemp;            /* temporary DNS failures for the host */
  struct dns_query *q[2];

  struct conn *c;
  int tried;              /* a host was tried (failed) already */
  /* the last trouble, for when no host is left */
  int lastperm;
  stralloc laststatus, lasthost, lasttext;
  stralloc host;          /* "name[ip]" of the current host */
  int active;
  int finished;
  struct dest *next;
};

/* mx.c */
int mx_init(stralloc *why);
void mx_start(struct dest *d);   /* resolves, then calls dest_connect */
void mx_host(struct dest *d);    /* resolves mxname[imx], then connects */
/* our own host found in the list: a loop (5.4.6) or, when hosts were
 * tried before, a deferral with their error */
void mx_loop(struct dest *d, const char *why);
int mx_islocal(const struct sockaddr *sa);
int mx_fd(void);
void mx_io(void);
int mx_timeouts(void);           /* seconds to the next DNS timeout, or -1 */
int mx_active(void);

/* relay.c: what mx.c and client.c report back */
void dest_connect(struct dest *d);            /* try addr[iaddr], or next */
void dest_nexthost(struct dest *d, int perm, const char *status,
                   const char *text, size_t len);
void dest_giveup(struct dest *d, int perm, const char *status,
                 const char *text, size_t len);
void dest_done(struct dest *d);
int dest_nexttask(struct dest *d);            /* 1: d->cur is set */

/* client.c */
struct conn *conn_new(struct dest *d, int fd);
void conn_free(struct conn *c);
int conn_fd(const struct conn *c);
short conn_events(const struct conn *c);
unsigned long long conn_deadline(const struct conn *c);
void conn_io(struct conn *c, short revents);
void conn_timeout(struct conn *c);
void conn_reap(void);      /* frees connections closed meanwhile */

/* reply.c: the peer's replies, apart from client.c for fuzz/; lines
 * into replies with lib/smtpreply.c's reply_line */
/* The RFC 3463 code the reply text carries, or one made from its
 * class ("4.0.0"), into out (10 bytes). */
void reply_status(int code, const stralloc *text, char *out);
/* An EHLO keyword line (what follows "250-"); size gets SIZE's value. */
enum reply_ext { EXT_OTHER, EXT_PIPELINING, EXT_8BITMIME, EXT_SMTPUTF8, EXT_DSN,
                 EXT_CHUNKING, EXT_BINARYMIME, EXT_STARTTLS,
                 EXT_AUTHPLAIN,   /* AUTH with PLAIN among its mechanisms */
                 EXT_SIZE };      /* the last: fuzz/fuzz_reply.c checks the range */
enum reply_ext reply_ehlo(const char *s, size_t len, unsigned long long *size);

/* tls.c: STARTTLS for the client (libtls).  ctls_init reads the CA
 * file once; a missing one only makes every certificate unverified
 * (logged; ctls_nocafile says why). */
struct ctls;
int ctls_init(stralloc *why);
const char *ctls_nocafile(void);
/* TLS on the connected socket fd for host name (SNI); check: verify
 * the chain against tls_ca_file.  NULL with why set. */
struct ctls *ctls_new(int fd, const char *name, int check, stralloc *why);
void ctls_free(struct ctls *s);   /* does not close fd */
/* 1 done, 0 to be called again when ctls_want's events come, -1 failed */
int ctls_handshake(struct ctls *s);
short ctls_want(const struct ctls *s);
/* after the handshake: the poll events to wait for, pending: output waits */
short ctls_events(const struct ctls *s, int pending);
/* as read(2) and write(2); -1 with EAGAIN: wait for ctls_events */
ssize_t ctls_read(struct ctls *s, char *buf, size_t len);
ssize_t ctls_write(struct ctls *s, const char *buf, size_t len);
const char *ctls_error(struct ctls *s);
int ctls_chainfailed(struct ctls *s); /* the handshake failed on the chain */
int ctls_checked(const struct ctls *s); /* the chain was verified */
int ctls_nameok(struct ctls *s, const char *name);
const char *ctls_version(struct ctls *s);
const char *ctls_cipher(struct ctls *s);
/* What this pass learnt of a host ("name[address]"): check its chain,
 * encrypt without checking it (it failed), or plain text (the
 * handshake failed); why: the failure, for the log. */
enum { CTLS_CHECK, CTLS_NOCHECK, CTLS_PLAIN };
int ctls_policy(const char *host);
const char *ctls_why(const char *host);
void ctls_remember(const char *host, int policy, const char *why);

/* auth.c: the smarthost's credentials, read once by auth_init (0, or
 * -1 with why set); auth_put appends the AUTH PLAIN command */
int auth_init(stralloc *why);
int auth_wanted(void);
int auth_put(stralloc *out);

/* wire.c: the SMTP data encoder */
struct wire {
  int bol;                /* at the start of a line */
  int cr;                 /* a CR waits: CRLF or a lone CR */
  int stuff;              /* dot-stuffing (not for BDAT) */
  int binary;             /* BDAT BINARYMIME: a lone CR is data */
};
void wire_init(struct wire *w, int stuff, int binary);
/* appends the encoding of s to out */
int wire_put(struct wire *w, stralloc *out, const char *s, size_t len);
/* the end: a last line end if missing, and "." CRLF when stuffing */
int wire_end(struct wire *w, stralloc *out);
/* bytes of wire_put/wire_end output for s, without stuffing dots */
unsigned long long wire_count(struct wire *w, const char *s, size_t len);
unsigned long long wire_countend(struct wire *w);

/* spawn.c: runs deliver with envelope sender, recipient records
 * (NUL-separated, each with its type byte: T address, then optionally
 * N notify and O orcpt of that recipient), params (NUL-separated, may
 * be NULL); the message comes
 * from fd (from offset 0, size bytes) or, with fd -1, from fill(),
 * which writes it with spawn_put.  Returns deliver's exit status, or
 * -1 with why set. */
struct spawn;
int spawn_deliver(const char *sender, const stralloc *rcpts,
                  const stralloc *params, int fd, unsigned long long size,
                  int (*fill)(struct spawn *, void *), void *arg,
                  stralloc *why);
int spawn_put(struct spawn *s, const char *buf, size_t len);
int spawn_puts(struct spawn *s, const char *str);

/* bounce.c: a DSN for every recipient whose notice is owed (failed,
 * relayed, and when delay is set, pending ones past delay_warning),
 * handed to deliver; the states of those recipients are changed
 * (bounced, delivered, warned).  Returns 1 when states changed, 0 when
 * nothing was owed, -1 when deliver failed (states unchanged). */
int bounce_send(struct msg *m, int delay);

#endif
