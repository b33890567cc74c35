/* The SMTP client: one non-blocking connection to one host of one
 * destination, driven by the poll loop of relay.c.  It carries every
 * task (message) of the destination in turn, one transaction each,
 * with PIPELINING when offered, and applies each reply to the
 * recipients it concerns; the info file is rewritten after each
 * transaction.  Everything the peer sends is bounded: reply lines,
 * lines per reply; EHLO keywords are only looked at, never stored.
 *
 * When the peer offers STARTTLS, the session goes into TLS (tls.c)
 * before any mail, and EHLO is said again.  A certificate that fails
 * its check still gets the mail, encrypted; a handshake that fails
 * gets the host another connection in plain text, once per pass.  The
 * smarthost may be required to take TLS (smarthost_tls), and gets AUTH
 * PLAIN inside TLS when credentials are configured; it is never sent
 * anything in clear then. */
#include <sys/types.h>
#include <sys/socket.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <byte.h>
#include <case.h>
#include <fmt.h>
#include <scan.h>
#include <str.h>
#include <stralloc.h>
#include "log.h"
#include "relay.h"

#define OUT_LOW 65536         /* refill message data below this */
#define QUIT_WAIT 10          /* seconds: the reply to QUIT is a courtesy */

/* per recipient of the transaction */
#define TX_OPEN 0             /* no answer yet */
#define TX_ACCEPTED 1         /* RCPT took it; the data decides */
#define TX_DONE 2             /* its result is recorded */

enum cstate {
  C_CONNECT, C_GREETING, C_EHLO, C_HELO, C_STARTTLS, C_HANDSHAKE, C_AUTH,
  C_TXN, C_BODY, C_DOT, C_RSET, C_QUIT, C_DEAD
};

struct conn {
  struct dest *d;
  int fd;
  enum cstate st;
  unsigned long long deadline;
  const char *waitfor;    /* for the timeout message */

  stralloc out;
  size_t outpos;

  char line[REPLY_MAXLINE];
  size_t linelen;
  int nlines;             /* of the reply being read */
  int code;
  stralloc text;          /* the reply: "550 5.1.1 text text..." */

  int pipelining, eightbit, smtputf8, dsn, chunking, binarymime;
  int hassize;
  unsigned long long maxsize;   /* SIZE n; 0 for no fixed limit */
  int starttls, authplain;      /* offered by the last EHLO */

  struct ctls *tls;       /* after STARTTLS; NULL in plain text */
  int verified;           /* the certificate's chain and name are good */
  int authsent;           /* the credentials went into out */

  struct task *t;
  int step;               /* replies received in this transaction */
  int nsent;              /* commands sent in this transaction */
  int mailok, naccepted;
  int bdat;               /* the data goes by BDAT (BINARYMIME) */
  int dummy;              /* "." sent only to end a pointless DATA */
  int msgfd, eof;
  struct wire w;
  int needrset;

  struct conn *nextdead;
};

static struct conn *dead;

static unsigned long long conn_after(unsigned long secs)
{
  return relay_ms() + (unsigned long long)secs * 1000;
}

static void conn_wait(struct conn *c, enum cstate st, unsigned long secs,
                      const char *what)
{
  c->st = st;
  c->deadline = conn_after(secs);
  c->waitfor = what;
}

struct conn *conn_new(struct dest *d, int fd)
{
  struct conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->d = d;
  c->fd = fd;
  c->msgfd = -1;
  conn_wait(c, C_CONNECT, cfg.timeout_connect, "connect");
  return c;
}

/* Closed now, freed by conn_reap (the caller's stack may still hold it). */
void conn_free(struct conn *c)
{
  if (!c || c->st == C_DEAD) return;
  ctls_free(c->tls);
  c->tls = NULL;
  if (c->fd != -1) close(c->fd);
  if (c->msgfd != -1) close(c->msgfd);
  c->fd = c->msgfd = -1;
  c->st = C_DEAD;
  c->nextdead = dead;
  dead = c;
}

void conn_reap(void)
{
  while (dead) {
    struct conn *c = dead;
    dead = c->nextdead;
    /* the credentials, base64 or not, leave no copy behind */
    if (c->authsent && c->out.s) byte_zero(c->out.s, c->out.a);
    stralloc_free(&c->out);
    stralloc_free(&c->text);
    free(c);
  }
}

int conn_fd(const struct conn *c) { return c->st == C_DEAD ? -1 : c->fd; }
unsigned long long conn_deadline(const struct conn *c) { return c->deadline; }

short conn_events(const struct conn *c)
{
  int pending;
  if (c->st == C_DEAD) return 0;
  if (c->st == C_CONNECT) return POLLOUT;
  if (c->st == C_HANDSHAKE) return ctls_want(c->tls);
  pending = c->outpos < c->out.len || (c->st == C_BODY && !c->eof);
  if (c->tls) return ctls_events(c->tls, pending);
  return (short)(POLLIN | (pending ? POLLOUT : 0));
}

static int conn_send(struct conn *c, const char *s)
{
  return stralloc_cats(&c->out, s);
}

/* ---- results ---- */

static enum result conn_class(int code)
{
  if (code >= 200 && code < 300) return RES_OK;
  if (code >= 500 && code < 600) return RES_FAIL;
  return RES_DEFER;
}

static void conn_result(struct conn *c, size_t k, enum result r,
                        const char *status, const char *text, size_t len)
{
  struct task *t = c->t;
  struct msg_tls how = { NULL, NULL, "none" };
  if (t->accepted[k] == TX_DONE) return;
  if (c->tls) {
    how.version = ctls_version(c->tls);
    how.cipher = ctls_cipher(c->tls);
    how.verify = c->verified ? "ok" : "failed";
  }
  msg_result_tls(t->m, t->rcpt[k], r, status, c->d->host.s, text, len, c->dsn, &how);
  t->accepted[k] = TX_DONE;
}

/* Every recipient still open (or also the accepted ones) gets r. */
static void conn_resultall(struct conn *c, int accepted, enum result r,
                           const char *status, const char *text, size_t len)
{
  for (size_t k = 0; k < c->t->n; k++)
    if (c->t->accepted[k] == TX_OPEN ||
        (accepted && c->t->accepted[k] == TX_ACCEPTED))
      conn_result(c, k, r, status, text, len);
}

static void conn_replyresult(struct conn *c, int accepted)
{
  char st[16];
  reply_status(c->code, &c->text, st);
  conn_resultall(c, accepted, conn_class(c->code), st, c->text.s, c->text.len);
}

/* The transaction is over: what is still open is deferred, the info
 * file rewritten. */
static void conn_endtxn(struct conn *c, const char *text)
{
  struct task *t = c->t;
  if (!t) return;
  if (!text) text = "transaction not completed";
  conn_resultall(c, 1, RES_DEFER, "4.4.2", text, str_len(text));
  t->done = 1;
  msg_save(t->m);
  c->t = NULL;
  if (c->msgfd != -1) close(c->msgfd);
  c->msgfd = -1;
}

/* Connection trouble: the transaction in flight is deferred, and the
 * destination goes on with its next host. */
static void conn_fail(struct conn *c, int perm, const char *status,
                      const char *text, size_t len)
{
  static stralloc t;
  struct dest *d = c->d;
  if (!stralloc_copyb(&t, text, len) || !stralloc_0(&t)) {
    stralloc_copys(&t, "connection trouble");
    stralloc_0(&t);
  }
  if (c->t) conn_endtxn(c, t.s);
  conn_free(c);
  d->c = NULL;
  dest_nexthost(d, perm, status, t.s, str_len(t.s));
}

static void conn_failmsg(struct conn *c, const char *what)
{
  static stralloc t;
  if (!stralloc_copys(&t, what) || !stralloc_cats(&t, " (") ||
      !stralloc_cats(&t, c->d->host.s) || !stralloc_cats(&t, ")"))
    stralloc_copys(&t, what);
  conn_fail(c, 0, "4.4.2", t.s, t.len);
}

static void conn_tlsbroken(struct conn *c, const char *err, int chain);

void conn_timeout(struct conn *c)
{
  static stralloc t;
  if (c->st == C_HANDSHAKE) {
    conn_tlsbroken(c, "timeout in the TLS handshake", 0);
    return;
  }
  if (c->st == C_QUIT) {
    struct dest *d = c->d;
    conn_free(c);
    d->c = NULL;
    dest_done(d);
    return;
  }
  if (!stralloc_copys(&t, "timeout waiting for ") ||
      !stralloc_cats(&t, c->waitfor ? c->waitfor : "the peer") ||
      !stralloc_0(&t))
    return;
  conn_failmsg(c, t.s);
}

/* ---- the transaction ---- */

/* A parameter value from the queue goes on the wire only when it
 * cannot break the command line. */
static int conn_paramok(const char *s)
{
  if (!s || !*s) return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 127) return 0;
  return 1;
}

static int conn_mailcmd(struct conn *c, const struct msg *m)
{
  char num[FMT_ULONG];
  if (!conn_send(c, "MAIL FROM:<") || !conn_send(c, m->qi.sender) ||
      !conn_send(c, ">"))
    return 0;
  if (c->hassize) {
    num[fmt_ulonglong(num, m->wiresize)] = 0;
    if (!conn_send(c, " SIZE=") || !conn_send(c, num)) return 0;
  }
  if ((m->flags & MSG_BINARY) && !conn_send(c, " BODY=BINARYMIME")) return 0;
  if ((m->flags & MSG_8BIT) && c->eightbit && !conn_send(c, " BODY=8BITMIME")) return 0;
  if ((m->flags & MSG_SMTPUTF8) && !conn_send(c, " SMTPUTF8")) return 0;
  if (c->dsn) {
    if ((m->flags & MSG_RETFULL) && !conn_send(c, " RET=FULL")) return 0;
    if ((m->flags & MSG_RETHDRS) && !conn_send(c, " RET=HDRS")) return 0;
    if (conn_paramok(m->envid) &&
        (!conn_send(c, " ENVID=") || !conn_send(c, m->envid)))
      return 0;
  }
  return conn_send(c, "\r\n");
}

static int conn_rcptcmd(struct conn *c, const struct qinfo_rcpt *r)
{
  if (!conn_send(c, "RCPT TO:<") || !conn_send(c, r->addr) || !conn_send(c, ">"))
    return 0;
  if (c->dsn) {
    if (conn_paramok(r->notify) &&
        (!conn_send(c, " NOTIFY=") || !conn_send(c, r->notify)))
      return 0;
    if (conn_paramok(r->orcpt) &&
        (!conn_send(c, " ORCPT=") || !conn_send(c, r->orcpt)))
      return 0;
  }
  return conn_send(c, "\r\n");
}

/* Sends the command for step k: 0 MAIL, 1..n RCPT, n+1 DATA. */
static int conn_step(struct conn *c, int k)
{
  struct task *t = c->t;
  c->nsent = k + 1;
  if (k == 0) return conn_mailcmd(c, t->m);
  if ((size_t)k <= t->n) return conn_rcptcmd(c, &t->m->qi.r[t->rcpt[k - 1]]);
  return conn_send(c, "DATA\r\n");
}

/* The steps that exist: with BDAT there is no DATA command. */
static int conn_nsteps(const struct conn *c)
{
  return (int)c->t->n + (c->bdat ? 1 : 2);
}

static void conn_nexttask(struct conn *c);

/* Results decided before a word is sent (SIZE, SMTPUTF8, BINARYMIME). */
static int conn_precheck(struct conn *c, struct task *t)
{
  static stralloc why;
  struct msg *m = t->m;
  char a[FMT_ULONG], b[FMT_ULONG];

  c->t = t;
  if ((c->hassize || (m->flags & MSG_BINARY)) && msg_count(m, &why) == -1) {
    conn_resultall(c, 1, RES_DEFER, "4.3.0", why.s, why.len);
    return 0;
  }
  if (c->hassize && c->maxsize && m->wiresize > c->maxsize) {
    a[fmt_ulonglong(a, m->wiresize)] = 0;
    b[fmt_ulonglong(b, c->maxsize)] = 0;
    if (!stralloc_copys(&why, "message size ") || !stralloc_cats(&why, a) ||
        !stralloc_cats(&why, " exceeds the limit of the peer (SIZE ") ||
        !stralloc_cats(&why, b) || !stralloc_cats(&why, ")"))
      stralloc_copys(&why, "message too big for the peer");
    conn_resultall(c, 1, RES_FAIL, "5.3.4", why.s, why.len);
    return 0;
  }
  if ((m->flags & MSG_SMTPUTF8) && !c->smtputf8) {
    static const char s[] = "the peer does not support SMTPUTF8 (RFC 6531)";
    conn_resultall(c, 1, RES_FAIL, "5.6.7", s, sizeof s - 1);
    return 0;
  }
  if ((m->flags & MSG_BINARY) && !(c->chunking && c->binarymime)) {
    static const char s[] = "the peer does not support BINARYMIME (RFC 3030)";
    conn_resultall(c, 1, RES_FAIL, "5.6.3", s, sizeof s - 1);
    return 0;
  }
  c->msgfd = msg_open(m, &why);
  if (c->msgfd == -1) {
    conn_resultall(c, 1, RES_DEFER, "4.3.0", why.s, why.len);
    return 0;
  }
  return 1;
}

/* Returns 0 when the task was decided without a transaction. */
static int conn_starttxn(struct conn *c, struct task *t)
{
  int k;
  for (size_t i = 0; i < t->n; i++) t->accepted[i] = TX_OPEN;
  if (!conn_precheck(c, t)) {
    conn_endtxn(c, NULL);
    return 0;
  }
  c->step = 0;
  c->mailok = 0;
  c->naccepted = 0;
  c->dummy = 0;
  c->eof = 0;
  c->bdat = (t->m->flags & MSG_BINARY) != 0;
  c->needrset = 1;       /* until a final reply ends it */
  if (c->pipelining) {
    for (k = 0; k < conn_nsteps(c); k++)
      if (!conn_step(c, k)) { conn_failmsg(c, "out of memory"); return 1; }
  } else if (!conn_step(c, 0)) {
    conn_failmsg(c, "out of memory");
    return 1;
  }
  conn_wait(c, C_TXN, cfg.timeout_mail, "the reply to MAIL");
  return 1;
}

static void conn_nexttask(struct conn *c)
{
  struct dest *d = c->d;
  for (;;) {
    if (!dest_nexttask(d)) {
      if (!conn_send(c, "QUIT\r\n")) { conn_failmsg(c, "out of memory"); return; }
      conn_wait(c, C_QUIT, QUIT_WAIT, "the reply to QUIT");
      return;
    }
    if (c->needrset) {
      /* the last transaction did not end with a final reply */
      if (!conn_send(c, "RSET\r\n")) { conn_failmsg(c, "out of memory"); return; }
      conn_wait(c, C_RSET, cfg.timeout_mail, "the reply to RSET");
      return;
    }
    if (conn_starttxn(c, d->cur)) return;
  }
}

/* The data: after DATA's 354, or after the RCPT replies with BDAT. */
static void conn_startbody(struct conn *c)
{
  if (c->bdat) {
    char num[FMT_ULONG];
    num[fmt_ulonglong(num, c->t->m->wiresize)] = 0;
    if (!conn_send(c, "BDAT ") || !conn_send(c, num) || !conn_send(c, " LAST\r\n")) {
      conn_failmsg(c, "out of memory");
      return;
    }
  }
  wire_init(&c->w, !c->bdat, c->bdat);
  conn_wait(c, C_BODY, cfg.timeout_data_block, "the peer to take data");
}

/* A reply within the transaction, in the order of the commands. */
static void conn_txnreply(struct conn *c)
{
  struct task *t = c->t;
  int k = c->step++;
  char st[16];

  reply_status(c->code, &c->text, st);
  if (k == 0) {
    c->mailok = c->code >= 200 && c->code < 300;
    /* a refused MAIL decides for every recipient */
    if (!c->mailok) conn_resultall(c, 1, conn_class(c->code), st, c->text.s, c->text.len);
  } else if ((size_t)k <= t->n) {
    if (c->mailok) {
      if (c->code >= 200 && c->code < 300) {
        t->accepted[k - 1] = TX_ACCEPTED;
        c->naccepted++;
      } else {
        conn_result(c, (size_t)k - 1, conn_class(c->code), st, c->text.s, c->text.len);
      }
    }
  } else {
    /* the reply to DATA */
    if (c->code == 354) {
      if (c->mailok && c->naccepted) { conn_startbody(c); return; }
      /* nobody to send to, yet the peer wants data: end it empty */
      c->dummy = 1;
      if (!conn_send(c, ".\r\n")) { conn_failmsg(c, "out of memory"); return; }
      conn_wait(c, C_DOT, cfg.timeout_dot, "the reply to the final dot");
      return;
    }
    conn_replyresult(c, 1);
  }
  if (!c->pipelining && c->step == c->nsent) {
    /* without pipelining: the next command, if it is worth sending */
    if (!c->mailok) goto over;
    if ((size_t)c->step <= t->n) {
      if (!conn_step(c, c->step)) { conn_failmsg(c, "out of memory"); return; }
      conn_wait(c, C_TXN, cfg.timeout_rcpt, "the reply to RCPT");
      return;
    }
    if ((size_t)c->step == t->n + 1 && !c->bdat) {
      if (!c->naccepted) goto over;
      if (!conn_step(c, c->step)) { conn_failmsg(c, "out of memory"); return; }
      conn_wait(c, C_TXN, cfg.timeout_data, "the reply to DATA");
      return;
    }
  }
  if (c->step < conn_nsteps(c)) {
    conn_wait(c, C_TXN, (size_t)c->step <= t->n ? cfg.timeout_rcpt : cfg.timeout_data,
              (size_t)c->step <= t->n ? "the reply to RCPT" : "the reply to DATA");
    return;
  }
  if (c->bdat && c->mailok && c->naccepted) { conn_startbody(c); return; }
over:
  conn_endtxn(c, NULL);
  conn_nexttask(c);
}

/* ---- replies ---- */

static int conn_isself(const struct conn *c)
{
  const char *s = c->text.s + 4;
  size_t len = c->text.len > 4 ? c->text.len - 4 : 0, n = 0;
  while (n < len && s[n] != ' ') n++;
  if (n && s[n - 1] == '.') n--;
  return n == cfg.hostname.len && case_equalb(s, n, cfg.hostname.s);
}

static void conn_ehloline(struct conn *c, const char *s, size_t len)
{
  unsigned long long n = 0;
  switch (reply_ehlo(s, len, &n)) {
  case EXT_PIPELINING: c->pipelining = 1; break;
  case EXT_8BITMIME: c->eightbit = 1; break;
  case EXT_SMTPUTF8: c->smtputf8 = 1; break;
  case EXT_DSN: c->dsn = 1; break;
  case EXT_CHUNKING: c->chunking = 1; break;
  case EXT_BINARYMIME: c->binarymime = 1; break;
  case EXT_STARTTLS: c->starttls = 1; break;
  case EXT_AUTHPLAIN: c->authplain = 1; break;
  case EXT_SIZE: c->hassize = 1; c->maxsize = n; break;
  case EXT_OTHER: break;
  }
}

/* ---- TLS and AUTH ---- */

/* The smarthost must take TLS: smarthost_tls says so, or a password
 * would go to it.  With a password, or smarthost_tls = verify, its
 * certificate must verify too: else whoever sits in the middle gets
 * the password (or the mail). */
static const char *conn_needtls(const struct conn *c)
{
  if (c->d->kind != DEST_SMARTHOST) return NULL;
  if (auth_wanted()) return "smarthost_user is set: the password goes only into verified TLS";
  if (cfg.smarthost_tls == CONFIG_SMARTHOST_TLS_VERIFY)
    return "smarthost_tls = verify: TLS with a verified certificate is required";
  if (cfg.smarthost_tls == CONFIG_SMARTHOST_TLS_YES) return "smarthost_tls = yes: TLS is required";
  return NULL;
}

static int conn_needverify(const struct conn *c)
{
  return c->d->kind == DEST_SMARTHOST &&
         (auth_wanted() || cfg.smarthost_tls == CONFIG_SMARTHOST_TLS_VERIFY);
}

/* TLS (or AUTH) is required and cannot be had: deferred, nothing sent
 * in clear.  The text says why it was required. */
static void conn_tlsfail(struct conn *c, const char *what, const char *why)
{
  static stralloc t;
  const char *need = conn_needtls(c);
  if (!stralloc_copys(&t, what) ||
      (why && *why && (!stralloc_cats(&t, ": ") || !stralloc_cats(&t, why))) ||
      (need && (!stralloc_cats(&t, "; ") || !stralloc_cats(&t, need))) ||
      !stralloc_cats(&t, " (") || !stralloc_cats(&t, c->d->host.s) || !stralloc_cats(&t, ")"))
    stralloc_copys(&t, what);
  conn_fail(c, 0, "4.7.0", t.s, t.len);
}

/* The name the certificate must carry: the MX's (or the smarthost's),
 * else the address, from "name[address]". */
static const char *conn_tlsname(const struct conn *c)
{
  static stralloc n;
  const struct dest *d = c->d;
  size_t i, j;
  if (d->kind != DEST_LITERAL && d->mxname[d->imx] && d->mxname[d->imx][0])
    return d->mxname[d->imx];
  i = str_chr(d->host.s, '[');
  j = str_chr(d->host.s, ']');
  if (!d->host.s[i] || j < i) return d->host.s;
  if (!stralloc_copyb(&n, d->host.s + i + 1, j - i - 1) || !stralloc_0(&n)) return d->host.s;
  return n.s;
}

static void conn_ehlo(struct conn *c)
{
  if (!conn_send(c, "EHLO ") || !conn_send(c, cfg.hostname.s) || !conn_send(c, "\r\n")) {
    conn_failmsg(c, "out of memory");
    return;
  }
  conn_wait(c, C_EHLO, cfg.timeout_mail, "the reply to EHLO");
}

/* The handshake failed.  The host gets one more connection (this pass
 * remembers it): without the chain check when the chain failed, else
 * in plain text.  A smarthost that must take TLS is deferred instead. */
static void conn_tlsbroken(struct conn *c, const char *err, int chain)
{
  static stralloc why;
  struct dest *d = c->d;
  int next;
  if (!stralloc_copys(&why, err) || !stralloc_0(&why)) {
    conn_failmsg(c, "out of memory");
    return;
  }
  if (chain && !conn_needverify(c)) {
    next = CTLS_NOCHECK;
  } else if (conn_needtls(c)) {
    conn_tlsfail(c, chain ? "the certificate is not verified" : "the TLS handshake failed", why.s);
    return;
  } else {
    next = CTLS_PLAIN;
  }
  ctls_remember(d->host.s, next, why.s);
  log_start();
  log_str("event", "tls-failed");
  log_str("domain", d->domain.s);
  log_str("host", d->host.s);
  log_str("reason", why.s);
  log_str("retry", next == CTLS_PLAIN ? "plain" : "unverified");
  log_end();
  conn_free(c);
  d->c = NULL;
  dest_connect(d);
}

static void conn_handshake(struct conn *c)
{
  static stralloc why;
  struct dest *d = c->d;
  const char *name = conn_tlsname(c);
  int r = ctls_handshake(c->tls);

  if (r == 0) return;   /* again, when ctls_want's events come */
  if (r == -1) {
    conn_tlsbroken(c, ctls_error(c->tls), ctls_chainfailed(c->tls));
    return;
  }
  c->verified = 0;
  stralloc_zero(&why);
  if (!ctls_checked(c->tls)) {
    const char *w = ctls_nocafile();
    if (!stralloc_copys(&why, w ? w : ctls_why(d->host.s))) goto nomem;
  } else if (!ctls_nameok(c->tls, name)) {
    if (!stralloc_copys(&why, "name `") || !stralloc_cats(&why, name) ||
        !stralloc_cats(&why, "' not present in the certificate"))
      goto nomem;
  } else {
    c->verified = 1;
  }
  if (!stralloc_0(&why)) goto nomem;
  log_start();
  log_str("event", "tls");
  log_str("domain", d->domain.s);
  log_str("host", d->host.s);
  log_str("tls", ctls_version(c->tls));
  log_str("cipher", ctls_cipher(c->tls));
  log_str("verify", c->verified ? "ok" : "failed");
  if (!c->verified) log_str("reason", why.s);
  log_end();
  if (!c->verified && conn_needverify(c)) {
    conn_tlsfail(c, "the certificate is not verified", why.s);
    return;
  }
  /* RFC 3207 4.2: what the peer said before TLS counts no more */
  c->pipelining = c->eightbit = c->smtputf8 = c->dsn = 0;
  c->chunking = c->binarymime = c->hassize = 0;
  c->starttls = c->authplain = 0;
  c->maxsize = 0;
  conn_ehlo(c);
  return;
nomem:
  conn_failmsg(c, "out of memory");
}

/* The reply to STARTTLS. */
static void conn_starttls(struct conn *c)
{
  static stralloc why;
  struct dest *d = c->d;
  int check;
  if (c->code != 220) {
    /* refused: the session goes on in plain text, where it was */
    if (conn_needtls(c)) {
      conn_tlsfail(c, "STARTTLS refused", c->text.s);
      return;
    }
    log_start();
    log_str("event", "tls-refused");
    log_str("domain", d->domain.s);
    log_str("host", d->host.s);
    log_buf("reply", c->text.s, c->text.len);
    log_end();
    c->needrset = 0;
    conn_nexttask(c);
    return;
  }
  check = ctls_policy(d->host.s) == CTLS_CHECK && !ctls_nocafile();
  c->tls = ctls_new(c->fd, conn_tlsname(c), check, &why);
  if (!c->tls) {
    /* taken for a failed handshake: a CA file libtls cannot use
     * must not hold all mail back */
    if (!stralloc_0(&why)) { conn_failmsg(c, "out of memory"); return; }
    conn_tlsbroken(c, why.s, check);
    return;
  }
  conn_wait(c, C_HANDSHAKE, cfg.timeout_mail, "the TLS handshake");
  conn_handshake(c);
}

/* The reply to AUTH. */
static void conn_authed(struct conn *c)
{
  char st[16];
  /* the command is written: no copy of it stays in the buffer */
  if (c->out.s) byte_zero(c->out.s + c->out.len, c->out.a - c->out.len);
  if (c->code == 235) {
    c->needrset = 0;
    conn_nexttask(c);
    return;
  }
  /* refused credentials (535 5.7.8) are our configuration's trouble,
   * never the recipients': deferred, never bounced */
  reply_status(c->code, &c->text, st);
  if (st[0] == '5') st[0] = '4';
  conn_fail(c, 0, st, c->text.s, c->text.len);
}

/* After EHLO (or HELO): STARTTLS when the peer offers it and this pass
 * has not given TLS up for the host; inside TLS, AUTH to the smarthost.
 * Returns 1 when it took the connection on (or ended it), 0 when the
 * mail may go. */
static int conn_secure(struct conn *c)
{
  const char *need = conn_needtls(c);
  if (!c->tls) {
    if (c->starttls && (need || ctls_policy(c->d->host.s) != CTLS_PLAIN)) {
      if (!conn_send(c, "STARTTLS\r\n")) { conn_failmsg(c, "out of memory"); return 1; }
      conn_wait(c, C_STARTTLS, cfg.timeout_mail, "the reply to STARTTLS");
      return 1;
    }
    if (need) {
      conn_tlsfail(c, "the peer does not offer STARTTLS", NULL);
      return 1;
    }
    return 0;
  }
  if (c->d->kind == DEST_SMARTHOST && auth_wanted()) {
    if (!c->authplain) {
      conn_tlsfail(c, "the smarthost offers no AUTH PLAIN inside TLS", NULL);
      return 1;
    }
    c->authsent = 1;
    if (!auth_put(&c->out)) { conn_failmsg(c, "out of memory"); return 1; }
    conn_wait(c, C_AUTH, cfg.timeout_mail, "the reply to AUTH");
    return 1;
  }
  return 0;
}

static void conn_greeted(struct conn *c)
{
  struct dest *d = c->d;
  if (c->code < 200 || c->code >= 300) {
    char st[16];
    reply_status(c->code, &c->text, st);
    conn_fail(c, c->code >= 500, st, c->text.s, c->text.len);
    return;
  }
  if (d->kind != DEST_SMARTHOST && conn_isself(c)) {
    conn_free(c);
    d->c = NULL;
    mx_loop(d, "the peer greets with my hostname");
    return;
  }
  conn_ehlo(c);
}

static void conn_reply(struct conn *c)
{
  char st[16];
  switch (c->st) {
  case C_GREETING:
    conn_greeted(c);
    return;
  case C_EHLO:
    if (c->code >= 200 && c->code < 300) {
      if (conn_secure(c)) return;
      c->needrset = 0;
      conn_nexttask(c);
      return;
    }
    if (c->code >= 500) {
      /* an SMTP-only server: HELO, and none of the extensions */
      c->pipelining = c->eightbit = c->smtputf8 = c->dsn = 0;
      c->chunking = c->binarymime = c->hassize = 0;
      c->starttls = c->authplain = 0;
      c->maxsize = 0;
      if (!conn_send(c, "HELO ") || !conn_send(c, cfg.hostname.s) || !conn_send(c, "\r\n")) {
        conn_failmsg(c, "out of memory");
        return;
      }
      conn_wait(c, C_HELO, cfg.timeout_mail, "the reply to HELO");
      return;
    }
    reply_status(c->code, &c->text, st);
    conn_fail(c, 0, st, c->text.s, c->text.len);
    return;
  case C_HELO:
    if (c->code >= 200 && c->code < 300) {
      if (conn_secure(c)) return;
      c->needrset = 0;
      conn_nexttask(c);
      return;
    }
    reply_status(c->code, &c->text, st);
    conn_fail(c, c->code >= 500, st, c->text.s, c->text.len);
    return;
  case C_STARTTLS:
    conn_starttls(c);
    return;
  case C_AUTH:
    conn_authed(c);
    return;
  case C_TXN:
    conn_txnreply(c);
    return;
  case C_BODY:
    /* a reply before the data is all sent: the peer gave up on it */
    if (!c->dummy) conn_replyresult(c, 1);
    conn_failmsg(c, "reply before the end of data");
    return;
  case C_DOT:
    if (!c->dummy) conn_replyresult(c, 1);
    c->needrset = c->dummy;
    conn_endtxn(c, NULL);
    conn_nexttask(c);
    return;
  case C_RSET:
    if (c->code < 200 || c->code >= 300) {
      reply_status(c->code, &c->text, st);
      conn_fail(c, 0, st, c->text.s, c->text.len);
      return;
    }
    c->needrset = 0;
    conn_nexttask(c);
    return;
  case C_QUIT: {
    struct dest *d = c->d;
    conn_free(c);
    d->c = NULL;
    dest_done(d);
    return;
  }
  default:
    conn_failmsg(c, "unexpected reply");
  }
}

/* One line of a reply.  Returns 1 when the reply is complete, 0 when
 * more lines follow, -1 on a protocol error. */
static int conn_line(struct conn *c, const char *s, size_t len)
{
  int later = c->nlines > 0;   /* not the reply's first line */
  int r = reply_line(&c->code, &c->nlines, &c->text, s, len);
  /* every line of the EHLO reply but the first names an extension */
  if (r != -1 && later && c->st == C_EHLO && len > 4) conn_ehloline(c, s + 4, len - 4);
  return r;
}

static void conn_read(struct conn *c)
{
  char buf[4096];
  struct ctls *tls = c->tls;
  ssize_t r;
  size_t i;

again:
  if (tls)
    r = ctls_read(tls, buf, sizeof buf);
  else
    do r = read(c->fd, buf, sizeof buf); while (r == -1 && errno == EINTR);
  if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (r <= 0) {
    if (c->st == C_QUIT) { conn_reply(c); return; }
    conn_failmsg(c, r == 0 ? "connection closed by the peer"
                           : tls ? ctls_error(tls) : strerror(errno));
    return;
  }
  for (i = 0; i < (size_t)r; i++) {
    int done;
    if (buf[i] != '\n') {
      if (c->linelen >= sizeof c->line) { conn_failmsg(c, "reply line too long"); return; }
      c->line[c->linelen++] = buf[i];
      continue;
    }
    if (c->linelen && c->line[c->linelen - 1] == '\r') c->linelen--;
    done = conn_line(c, c->line, c->linelen);
    c->linelen = 0;
    if (done == -1) { conn_failmsg(c, "malformed reply"); return; }
    if (done == 1) {
      if (c->st == C_CONNECT || c->st == C_DEAD) return;
      conn_reply(c);
      /* the reply may have ended this connection */
      if (c->st == C_DEAD) return;
      /* STARTTLS's 220: what came after it in plain text is no reply
       * of the TLS session, but an injection (RFC 3207 section 6) */
      if (c->tls != tls) { c->linelen = 0; return; }
    }
  }
  /* decrypted data may wait inside libtls, where poll cannot see it */
  if (tls) goto again;
}

/* Fills the output with message data up to OUT_LOW or the end, so
 * that a small message and its final dot leave in one segment. */
static int conn_fill(struct conn *c)
{
  char buf[65536];
  ssize_t r;
  if (c->st != C_BODY || c->eof || c->out.len - c->outpos >= OUT_LOW) return 0;
  if (c->outpos) {
    /* drop what is written; the rest moves to the front */
    size_t left = c->out.len - c->outpos;
    byte_copy(c->out.s, left, c->out.s + c->outpos);
    c->out.len = left;
    c->outpos = 0;
  }
  while (!c->eof && c->out.len < OUT_LOW) {
    do r = read(c->msgfd, buf, sizeof buf); while (r == -1 && errno == EINTR);
    if (r == -1) return -1;
    if (r == 0) {
      c->eof = 1;
      return wire_end(&c->w, &c->out) ? 0 : -1;
    }
    if (!wire_put(&c->w, &c->out, buf, (size_t)r)) return -1;
  }
  return 0;
}

static void conn_write(struct conn *c)
{
  for (;;) {
    ssize_t r;
    if (conn_fill(c) == -1) {
      /* our own trouble: defer, and never send a partial message */
      conn_failmsg(c, "cannot read the queued message");
      return;
    }
    if (c->outpos >= c->out.len) break;
    if (c->tls)
      r = ctls_write(c->tls, c->out.s + c->outpos, c->out.len - c->outpos);
    else
      do r = send(c->fd, c->out.s + c->outpos, c->out.len - c->outpos, MSG_NOSIGNAL);
      while (r == -1 && errno == EINTR);
    if (r == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      conn_failmsg(c, c->tls ? ctls_error(c->tls) : strerror(errno));
      return;
    }
    c->outpos += (size_t)r;
    if (c->st == C_BODY) c->deadline = conn_after(cfg.timeout_data_block);
  }
  c->out.len = c->outpos = 0;
  if (c->st == C_BODY && c->eof)
    conn_wait(c, C_DOT, cfg.timeout_dot, "the reply to the end of data");
}

void conn_io(struct conn *c, short revents)
{
  if (c->st == C_DEAD) return;
  if (c->st == C_CONNECT) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) err = errno;
    if (err) {
      static stralloc t;
      if (!stralloc_copys(&t, "connect to ") || !stralloc_cats(&t, c->d->host.s) ||
          !stralloc_cats(&t, ": ") || !stralloc_cats(&t, strerror(err)))
        stralloc_copys(&t, "connect failed");
      conn_fail(c, 0, "4.4.1", t.s, t.len);
      return;
    }
    if (!(revents & POLLOUT)) return;
    conn_wait(c, C_GREETING, cfg.timeout_greeting, "the greeting");
    return;
  }
  if (c->st == C_HANDSHAKE) {
    conn_handshake(c);
    return;
  }
  /* TLS: a read may wait for POLLOUT; one more read costs an EAGAIN */
  if (revents & (POLLIN | POLLHUP | POLLERR) || (c->tls && revents)) {
    conn_read(c);
    if (c->st == C_DEAD) return;
  }
  if (c->outpos < c->out.len || (c->st == C_BODY && !c->eof)) conn_write(c);
}
