/* Delivery status notifications (RFC 3464, RFC 3461): one report per
 * message and pass covers every recipient whose notice is owed:
 * failures, successes the peer could not report itself (NOTIFY=SUCCESS
 * to a peer without DSN, or a local delivery), and delay warnings.  It
 * goes from <> to the envelope sender through deliver, like any mail.
 *
 * A message from <> is never bounced (no bounce loops): its failures
 * are logged and dropped, or with double_bounce = postmaster reported
 * to the postmaster, once; such a report carries the MAIL parameter
 * XDOUBLEBOUNCE in the queue, and its own failure is only logged. */
#include <sys/types.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <byte.h>
#include <case.h>
#include <fmt.h>
#include <str.h>
#include <stralloc.h>
#include "date.h"
#include "log.h"
#include "xtext.h"
#include "relay.h"

enum kind { K_NONE = 0, K_FAILED, K_SUCCESS, K_DELAYED };

struct report {
  struct msg *m;
  enum kind *k;           /* per recipient */
  int nfailed, nsuccess, ndelayed;
  const char *to;         /* the sender, or "postmaster" */
  int topm;               /* to the postmaster: a double bounce */
  stralloc boundary;
};

/* ASCII only, no control bytes: for the header-like report fields */
static int bounce_ascii(struct spawn *s, const char *t, size_t len)
{
  char buf[1024];
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)t[i];
    if (n == sizeof buf) {
      if (spawn_put(s, buf, n) == -1) return -1;
      n = 0;
    }
    buf[n++] = c < ' ' || c >= 127 ? '?' : (char)c;
  }
  return spawn_put(s, buf, n);
}

static int bounce_sa(struct spawn *s, const stralloc *sa)
{
  return bounce_ascii(s, sa->s, sa->len);
}

/* "smtp; 550 ..." when the text is a reply, else our own words */
static int bounce_diag(struct spawn *s, const struct qinfo_rcpt *r)
{
  const char *t = r->text.s;
  size_t n = r->text.len;
  int smtp = n >= 3 && t[0] >= '2' && t[0] <= '5' && t[1] >= '0' && t[1] <= '9' &&
             t[2] >= '0' && t[2] <= '9' && (n == 3 || t[3] == ' ');
  if (spawn_puts(s, smtp ? "Diagnostic-Code: smtp; " : "Diagnostic-Code: X-Dopis; ") == -1 ||
      bounce_ascii(s, t, n) == -1)
    return -1;
  return spawn_puts(s, "\n");
}

/* "mx.example.com[192.0.2.1]" -> "mx.example.com", "[192.0.2.1]" stays */
static size_t bounce_hostlen(const stralloc *h)
{
  size_t b = byte_chr(h->s, h->len, '[');
  return b == 0 ? h->len : b;
}

static int bounce_human(struct spawn *s, struct report *rp)
{
  struct msg *m = rp->m;
  if (spawn_puts(s, "This is the mail system at host ") == -1 ||
      spawn_puts(s, cfg.hostname.s) == -1 || spawn_puts(s, ".\n\n") == -1)
    return -1;
  if (rp->nfailed && spawn_puts(s,
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.  The reasons are below.\n\n") == -1)
    return -1;
  if (rp->ndelayed && spawn_puts(s,
        "Your message could not be delivered yet to the recipients below.\n"
        "It is still in the queue and will be tried again; you need not\n"
        "send it again.  You will be told if it cannot be delivered.\n\n") == -1)
    return -1;
  if (rp->nsuccess && spawn_puts(s,
        "Your message was delivered to the recipients below, as you asked\n"
        "to be told.  Further notices may not come from their systems.\n\n") == -1)
    return -1;
  for (size_t i = 0; i < m->qi.n; i++) {
    const struct qinfo_rcpt *r = &m->qi.r[i];
    if (!rp->k[i]) continue;
    if (spawn_puts(s, "<") == -1 || bounce_ascii(s, r->addr, str_len(r->addr)) == -1 ||
        spawn_puts(s, rp->k[i] == K_FAILED ? ">: failed" :
                      rp->k[i] == K_DELAYED ? ">: delayed" : ">: delivered") == -1)
      return -1;
    if (r->remote.len && (spawn_puts(s, ", host ") == -1 || bounce_sa(s, &r->remote) == -1 ||
                          spawn_puts(s, " said") == -1))
      return -1;
    if (r->text.len && (spawn_puts(s, ":\n    ") == -1 || bounce_sa(s, &r->text) == -1))
      return -1;
    if (spawn_puts(s, "\n\n") == -1) return -1;
  }
  return 0;
}

static int bounce_fields(struct spawn *s, struct report *rp)
{
  static stralloc x;
  struct msg *m = rp->m;
  char date[DATE_RFC5322];

  date_rfc5322(date, (time_t)(m->qi.created));
  if (spawn_puts(s, "Reporting-MTA: dns; ") == -1 || spawn_puts(s, cfg.hostname.s) == -1 ||
      spawn_puts(s, "\nX-Dopis-Queue-ID: ") == -1 || spawn_puts(s, m->qid.s) == -1)
    return -1;
  /* a value that is not valid xtext is left out */
  if (m->envid && xtext_decode(m->envid, str_len(m->envid), &x)) {
    if (spawn_puts(s, "\nOriginal-Envelope-Id: ") == -1 || bounce_sa(s, &x) == -1) return -1;
  }
  if (spawn_puts(s, "\nArrival-Date: ") == -1 || spawn_puts(s, date) == -1 ||
      spawn_puts(s, "\n") == -1)
    return -1;
  for (size_t i = 0; i < m->qi.n; i++) {
    const struct qinfo_rcpt *r = &m->qi.r[i];
    const char *status;
    if (!rp->k[i]) continue;
    if (spawn_puts(s, "\nFinal-Recipient: rfc822; ") == -1 ||
        bounce_ascii(s, r->addr, str_len(r->addr)) == -1 || spawn_puts(s, "\n") == -1)
      return -1;
    if (r->orcpt && byte_chr(r->orcpt, str_len(r->orcpt), ';') < str_len(r->orcpt) &&
        xtext_decode(r->orcpt, str_len(r->orcpt), &x)) {
      if (spawn_puts(s, "Original-Recipient: ") == -1 || bounce_sa(s, &x) == -1 ||
          spawn_puts(s, "\n") == -1)
        return -1;
    }
    status = rp->k[i] == K_FAILED ? "failed" : rp->k[i] == K_DELAYED ? "delayed"
             : r->remote.len ? "relayed" : "delivered";
    if (spawn_puts(s, "Action: ") == -1 || spawn_puts(s, status) == -1 ||
        spawn_puts(s, "\nStatus: ") == -1)
      return -1;
    if (r->status.len) {
      if (bounce_sa(s, &r->status) == -1) return -1;
    } else if (spawn_puts(s, rp->k[i] == K_FAILED ? "5.0.0" : rp->k[i] == K_DELAYED ? "4.0.0" : "2.0.0") == -1)
      return -1;
    if (spawn_puts(s, "\n") == -1) return -1;
    if (r->remote.len && (spawn_puts(s, "Remote-MTA: dns; ") == -1 ||
                          bounce_ascii(s, r->remote.s, bounce_hostlen(&r->remote)) == -1 ||
                          spawn_puts(s, "\n") == -1))
      return -1;
    if (r->text.len && bounce_diag(s, r) == -1) return -1;
    if (r->first) {
      date_rfc5322(date, (time_t)(relay_now()));
      if (spawn_puts(s, "Last-Attempt-Date: ") == -1 || spawn_puts(s, date) == -1 ||
          spawn_puts(s, "\n") == -1)
        return -1;
    }
    if (rp->k[i] == K_DELAYED) {
      date_rfc5322(date, (time_t)(m->qi.created + cfg.max_queue_lifetime));
      if (spawn_puts(s, "Will-Retry-Until: ") == -1 || spawn_puts(s, date) == -1 ||
          spawn_puts(s, "\n") == -1)
        return -1;
    }
  }
  return 0;
}

/* The original: its header (up to the empty line) or all of it. */
static int bounce_original(struct spawn *s, struct msg *m, int full)
{
  static stralloc why;
  char buf[65536];
  int fd = msg_open(m, &why), nl = 1, ok = 0;

  if (fd == -1) return -1;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    size_t n;
    if (r == -1) {
      if (errno == EINTR) continue;
      goto out;
    }
    if (r == 0) break;
    n = (size_t)r;
    if (!full) {
      /* stop after the line that ends the header */
      for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
          if (nl) { n = i; ok = 2; break; }
          nl = 1;
        } else {
          nl = 0;
        }
      }
    }
    if (spawn_put(s, buf, n) == -1) goto out;
    if (ok == 2) break;
  }
  /* the part ends with a line end */
  ok = nl || spawn_puts(s, "\n") == 0;
out:
  close(fd);
  return ok ? 0 : -1;
}

static int bounce_fill(struct spawn *s, void *arg)
{
  struct report *rp = arg;
  struct msg *m = rp->m;
  char date[DATE_RFC5322];
  char num[FMT_ULONG];
  int full = (m->flags & MSG_RETFULL) != 0;
  int eight = (m->flags & (MSG_8BIT | MSG_SMTPUTF8 | MSG_BINARY)) != 0;

  date_rfc5322(date, (time_t)(relay_now()));
  num[fmt_ulong(num, (unsigned long)getpid())] = 0;
  if (spawn_puts(s, "From: Mail Delivery System <MAILER-DAEMON@") == -1 ||
      spawn_puts(s, cfg.hostname.s) == -1 ||
      spawn_puts(s, ">\nTo: <") == -1 || bounce_ascii(s, rp->to, str_len(rp->to)) == -1 ||
      spawn_puts(s, ">\nSubject: ") == -1 ||
      spawn_puts(s, rp->nfailed ? "Undelivered Mail Returned to Sender"
                    : rp->ndelayed ? "Delayed Mail (still being retried)"
                    : "Successful Mail Delivery Report") == -1 ||
      spawn_puts(s, "\nDate: ") == -1 || spawn_puts(s, date) == -1 ||
      spawn_puts(s, "\nMessage-ID: <") == -1 || spawn_puts(s, m->qid.s) == -1 ||
      spawn_puts(s, ".dsn.") == -1 || spawn_puts(s, num) == -1 ||
      spawn_puts(s, "@") == -1 || spawn_puts(s, cfg.hostname.s) == -1 ||
      spawn_puts(s, ">\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n"
                    "Content-Type: multipart/report; report-type=delivery-status;\n"
                    "\tboundary=\"") == -1 ||
      spawn_put(s, rp->boundary.s, rp->boundary.len) == -1 ||
      spawn_puts(s, eight ? "\"\nContent-Transfer-Encoding: 8bit\n\n"
                          : "\"\n\n") == -1 ||
      spawn_puts(s, "This is a MIME-encapsulated message.\n\n--") == -1 ||
      spawn_put(s, rp->boundary.s, rp->boundary.len) == -1 ||
      spawn_puts(s, "\nContent-Description: Notification\n"
                    "Content-Type: text/plain; charset=us-ascii\n\n") == -1 ||
      bounce_human(s, rp) == -1 ||
      spawn_puts(s, "--") == -1 || spawn_put(s, rp->boundary.s, rp->boundary.len) == -1 ||
      spawn_puts(s, "\nContent-Description: Delivery report\n"
                    "Content-Type: message/delivery-status\n\n") == -1 ||
      bounce_fields(s, rp) == -1 ||
      spawn_puts(s, "\n--") == -1 || spawn_put(s, rp->boundary.s, rp->boundary.len) == -1 ||
      spawn_puts(s, full ? "\nContent-Description: Undelivered Message\n"
                           "Content-Type: message/rfc822\n"
                         : "\nContent-Description: Undelivered Message Headers\n"
                           "Content-Type: text/rfc822-headers\n") == -1 ||
      spawn_puts(s, eight ? "Content-Transfer-Encoding: 8bit\n\n" : "\n") == -1 ||
      bounce_original(s, m, full) == -1 ||
      spawn_puts(s, "\n--") == -1 || spawn_put(s, rp->boundary.s, rp->boundary.len) == -1 ||
      spawn_puts(s, "--\n") == -1)
    return -1;
  return 0;
}

static int bounce_deliver(struct report *rp, stralloc *why)
{
  static stralloc rcpts, params;
  struct msg *m = rp->m;
  if (!stralloc_copys(&rcpts, "T") || !stralloc_cats(&rcpts, rp->to) || !stralloc_0(&rcpts))
    return -1;
  stralloc_zero(&params);
  if ((m->flags & (MSG_8BIT | MSG_BINARY | MSG_SMTPUTF8)) &&
      (!stralloc_cats(&params, "BODY=8BITMIME") || !stralloc_0(&params)))
    return -1;
  if ((m->flags & MSG_SMTPUTF8) && (!stralloc_cats(&params, "SMTPUTF8") || !stralloc_0(&params)))
    return -1;
  if (rp->topm &&
      (!stralloc_cats(&params, "XDOUBLEBOUNCE") || !stralloc_0(&params)))
    return -1;
  return spawn_deliver("", &rcpts, &params, -1, 0, bounce_fill, rp, why);
}

static void bounce_log(struct msg *m, const char *event, const char *to,
                       int status, const stralloc *why)
{
  log_start();
  log_str("id", m->qid.s);
  log_str("event", event);
  if (to) log_str("to", to);
  if (status >= 0) log_ulong("deliver", (unsigned long)status);
  if (why && why->len) log_buf("error", why->s, why->len);
  log_end();
}

int bounce_send(struct msg *m, int delay)
{
  static const char postmaster[] = "postmaster";
  static stralloc why;
  struct report rp;
  unsigned long now = relay_now();
  int changed = 0, r;
  const char *sender = m->qi.sender;

  byte_zero(&rp, sizeof rp);
  rp.m = m;
  rp.k = calloc(m->qi.n ? m->qi.n : 1, sizeof *rp.k);
  if (!rp.k) return -1;
  for (size_t i = 0; i < m->qi.n; i++) {
    struct qinfo_rcpt *rc = &m->qi.r[i];
    int n = msg_notify(rc);
    if (rc->state == QINFO_FAILED) {
      changed = 1;
      if (n & NOTIFY_GIVEN ? (n & NOTIFY_FAILURE) != 0 : 1) { rp.k[i] = K_FAILED; rp.nfailed++; }
    } else if (rc->state == QINFO_RELAYED) {
      changed = 1;
      if (*sender) { rp.k[i] = K_SUCCESS; rp.nsuccess++; }
    } else if (delay && rc->state == QINFO_PENDING && rc->attempts &&
               !(rc->flags & QINFO_WARNED) && now >= m->qi.created + cfg.delay_warning &&
               (n & NOTIFY_GIVEN ? (n & NOTIFY_DELAY) != 0 : 1) && *sender) {
      changed = 1;
      rp.k[i] = K_DELAYED;
      rp.ndelayed++;
    }
  }
  if (!changed) { free(rp.k); return 0; }
  rp.to = sender;
  if (!*sender) {
    /* no bounce to <>; only failures may go to the postmaster, once */
    rp.nsuccess = rp.ndelayed = 0;
    for (size_t i = 0; i < m->qi.n; i++)
      if (rp.k[i] != K_FAILED) rp.k[i] = K_NONE;
    if (rp.nfailed && (!cfg.double_bounce_postmaster || (m->flags & MSG_DOUBLEBOUNCE))) {
      bounce_log(m, "double-bounce-dropped", NULL, -1, NULL);
      rp.nfailed = 0;
    }
    rp.to = postmaster;
    rp.topm = 1;
  }
  if (rp.nfailed || rp.nsuccess || rp.ndelayed) {
    if (!stralloc_copys(&rp.boundary, m->qid.s) || !stralloc_cats(&rp.boundary, "/") ||
        !stralloc_cats(&rp.boundary, cfg.hostname.s)) {
      free(rp.k);
      return -1;
    }
    stralloc_zero(&why);
    r = bounce_deliver(&rp, &why);
    if (r == -1 || r == 75) {
      /* try again in the next pass; nothing changes */
      bounce_log(m, "dsn-deferred", rp.to, r, &why);
      free(rp.k);
      stralloc_free(&rp.boundary);
      return -1;
    }
    if (r != 0 && !rp.topm && cfg.double_bounce_postmaster) {
      /* the sender is gone for good: the postmaster hears of it */
      bounce_log(m, "dsn-failed", rp.to, r, &why);
      rp.to = postmaster;
      rp.topm = 1;
      r = bounce_deliver(&rp, &why);
      if (r == -1 || r == 75) {
        bounce_log(m, "dsn-deferred", rp.to, r, &why);
        free(rp.k);
        stralloc_free(&rp.boundary);
        return -1;
      }
    }
    bounce_log(m, r == 0 ? "dsn-sent" : "dsn-dropped", rp.to, r, &why);
    stralloc_free(&rp.boundary);
  }
  for (size_t i = 0; i < m->qi.n; i++) {
    struct qinfo_rcpt *r2 = &m->qi.r[i];
    if (r2->state == QINFO_FAILED) r2->state = QINFO_BOUNCED;
    else if (r2->state == QINFO_RELAYED) r2->state = QINFO_DELIVERED;
    else if (rp.k[i] == K_DELAYED) r2->flags |= QINFO_WARNED;
  }
  free(rp.k);
  return 1;
}
