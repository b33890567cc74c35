/* smtpd: one SMTP session on fd 0 (in) and fd 1 (out), started per
 * connection by tcpserver, systemd (Accept=yes) or inetd.  It parses
 * hostile input and does nothing else: every accepted message goes
 * through a pipe to deliver, and 250 is said only after deliver has
 * stored it durably.  See dopis-smtpd(8). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <buffer.h>
#include <byte.h>
#include <case.h>
#include <fmt.h>
#include <scan.h>
#include <str.h>
#include <stralloc.h>
#include <textcode.h>
#include <openreadclose.h>
#include "address.h"
#include "config.h"
#include "date.h"
#include "deliverpipe.h"
#include "envelope.h"
#include "id.h"
#include "log.h"
#include "route.h"
#include "sandbox.h"
#include "passwd.h"
#include "sibling.h"
#include "smtpd.h"
#include "xtext.h"


#define LINE_MAX_RFC 512     /* RFC 5321 4.5.3.1.4, with CRLF */
#define LINE_MAX_MAIL (512 + 26 + 100)  /* + RFC 1870 SIZE, RFC 3461 RET/ENVID */
#define LINE_MAX_RCPT (512 + 500)       /* + RFC 3461 NOTIFY/ORCPT */
#define ENVID_MAX 100
#define LINE_BUF 1024
#define MAX_ERRORS 20
#define MAX_AUTHFAIL 3
#define LINE_MAX_AUTH 1000        /* an AUTH line, within LINE_BUF */
#define AUTH_MAXDECODED 700       /* decoded AUTH response */

enum state { S_GREET, S_READY, S_MAIL, S_RCPT, S_BDAT };

static struct config cfg;
static char session[ID_LEN];
static const char *remoteip;     /* NULL: a local client on a pipe */
static const char *remotehost;
static int relayok, relaybase;
static int submission;           /* DOPIS_MODE submission/submissions: AUTH first */
static int local;                /* DOPIS_MODE=local: a local user on a Unix socket */
static unsigned long peeruid;    /* local: the peer's uid (SO_PEERCRED) */
/* TLS runs in dopis-tlsd (tlsd/tlsd.c): once it has made the handshake,
 * fds 0 and 1 are a plaintext socket to it, and these say what it made */
static int tlson;
static char tlsversion[32], tlscipher[96];
static stralloc peername;        /* local: its name in /etc/passwd, "" if none */
static stralloc peeraddr;        /* local: name@hostname, for restricted; "" if none */
static stralloc authuser;        /* who authenticated, "" if nobody */
static int authfails;
static int errors;
static unsigned long messages;

static enum state state = S_GREET;
static int esmtp;
static stralloc helo;

/* the transaction */
static stralloc sender;
static stralloc rcpts;           /* envelope records: T<addr>, N<notify>, O<orcpt> */
static stralloc firstrcpt;
static stralloc envid;           /* xtext, as sent */
static struct route_list routes; /* every target so far: the limit is per message */
static int ret;                  /* 0, 'F'ULL or 'H'DRS */
static unsigned long nrcpts;
static int smtputf8, binarymime, eightbit;
static char msgid[ID_LEN];

/* the deliver child while a message streams to it */
static struct deliverpipe dp = { -1, -1, -1 };
static buffer msgbuf;
static char msgspace[65536];
static struct data data;

static char inspace[8192], outspace[8192];
static ssize_t smtpd_read(int fd, char *buf, size_t len);
static ssize_t smtpd_write(int fd, const char *buf, size_t len);
static buffer in = BUFFER_INIT(smtpd_read, 0, inspace, sizeof inspace);
static buffer out = BUFFER_INIT(smtpd_write, 1, outspace, sizeof outspace);

static void smtpd_exit(int code) __attribute__((noreturn));

/* Starts a log line of this session: "smtpd session=ID event=EVENT";
 * the caller adds fields and ends it with log_end(). */
static void smtpd_log(const char *event)
{
  log_start();
  log_str("session", session);
  log_str("event", event);
}
static ssize_t smtpd_getline(char *line, size_t max, size_t *kept);

/* ---- replies: every reply goes through here ---- */

static void reply_put(const char *s)
{
  if (buffer_puts(&out, s) == -1) smtpd_exit(EX_IOERR);
}

/* code "250", enhanced "2.1.0" (or NULL), then text pieces; cont says
 * more lines follow ("250-"). */
static void reply_line(const char *code, int cont, const char *enh, const char *t1, const char *t2)
{
  reply_put(code);
  reply_put(cont ? "-" : " ");
  if (enh) { reply_put(enh); reply_put(" "); }
  if (t1) reply_put(t1);
  if (t2) reply_put(t2);
  reply_put("\r\n");
}

static void reply(const char *code, const char *enh, const char *text)
{
  reply_line(code, 0, enh, text, NULL);
  if ((code[0] == '4' || code[0] == '5') && str_diff(code, "421") && ++errors >= MAX_ERRORS) {
    reply_line("421", 0, "4.7.0", cfg.hostname.s, " Too many errors, closing connection");
    smtpd_log("too-many-errors");
    log_end();
    smtpd_exit(0);
  }
}

/* ---- input and output with a timeout; output is flushed whenever
 * input would have to be waited for (RFC 2920 pipelining) ---- */

static void smtpd_timeout(void) __attribute__((noreturn));
static void smtpd_timeout(void)
{
  reply_line("421", 0, "4.4.2", cfg.hostname.s, " Timeout, closing connection");
  smtpd_log("timeout");
  log_end();
  smtpd_exit(0);
}

/* While a command line is being read, the whole line must arrive
 * within the timeout, however it trickles in: a client sending a byte
 * a second must not hold a connection slot for ever (slowloris). */
static struct timespec linedeadline;
static int linedeadline_on;

static int smtpd_timeoutms(void)
{
  int ms = cfg.timeout ? (int)(cfg.timeout * 1000) : 300000;
  if (linedeadline_on) {
    struct timespec now;
    long left;
    clock_gettime(CLOCK_MONOTONIC, &now);
    left = (linedeadline.tv_sec - now.tv_sec) * 1000 + (linedeadline.tv_nsec - now.tv_nsec) / 1000000;
    if (left < ms) ms = left < 0 ? 0 : (int)left;
  }
  return ms;
}

static int smtpd_wait(int fd, short ev)
{
  struct pollfd p = { fd, ev, 0 };
  int ms = smtpd_timeoutms();
  for (;;) {
    int r = poll(&p, 1, ms);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return 1;  /* let the read or write report it */
  }
}

static ssize_t smtpd_read(int fd, char *buf, size_t len)
{
  ssize_t r;
  if (buffer_flush(&out) == -1) smtpd_exit(EX_IOERR);
  if (!smtpd_wait(fd, POLLIN)) smtpd_timeout();
  do r = read(fd, buf, len); while (r == -1 && errno == EINTR);
  return r;
}

static int outdead;   /* the client stopped reading: never wait on it again */

static ssize_t smtpd_write(int fd, const char *buf, size_t len)
{
  ssize_t r;
  if (outdead) { errno = EPIPE; return -1; }
  if (!smtpd_wait(fd, POLLOUT)) { errno = ETIMEDOUT; r = -1; }
  else do r = write(fd, buf, len); while (r == -1 && errno == EINTR);
  if (r == -1) outdead = 1;
  return r;
}

#ifdef DOPIS_FUZZ
/* fuzz/fuzz_smtpd.c runs session after session in one process: the
 * end of a session returns to the harness instead of ending the
 * process, an AUTH failure costs no time, and smtpd_fuzz_reset puts
 * every static back as a new process would find it. */
void smtpd_fuzz_exit(int code) __attribute__((noreturn));
unsigned smtpd_fuzz_sleep(unsigned secs);
#define _exit(code) smtpd_fuzz_exit(code)
#define sleep(secs) smtpd_fuzz_sleep(secs)
void smtpd_fuzz_reset(void);
void smtpd_fuzz_reset(void)
{
  static const buffer in0 = BUFFER_INIT(smtpd_read, 0, inspace, sizeof inspace);
  static const buffer out0 = BUFFER_INIT(smtpd_write, 1, outspace, sizeof outspace);
  config_free(&cfg);
  stralloc_free(&authuser);
  stralloc_free(&helo);
  stralloc_free(&sender);
  stralloc_free(&rcpts);
  stralloc_free(&firstrcpt);
  stralloc_free(&envid);
  route_list_free(&routes);
  stralloc_free(&peername);
  stralloc_free(&peeraddr);
  remoteip = remotehost = NULL;
  relayok = relaybase = submission = local = authfails = errors = 0;
  peeruid = 0;
  esmtp = ret = smtputf8 = binarymime = eightbit = outdead = 0;
  messages = nrcpts = 0;
  state = S_GREET;
  in = in0;
  out = out0;
}
#endif

/* ---- the deliver child ---- */

/* A deliver that stops reading (a hung disk) must not hold the
 * session past its timeout. */
static ssize_t smtpd_pipewrite(int fd, const char *buf, size_t len)
{
  ssize_t r;
  if (!smtpd_wait(fd, POLLOUT)) { errno = ETIMEDOUT; return -1; }
  do r = write(fd, buf, len); while (r == -1 && errno == EINTR);
  return r;
}

/* Starts deliver and sends it the envelope; the message follows
 * through msgbuf. */
static int deliver_start(void)
{
  buffer eb;
  char espace[4096];
  int ok;

  if (!deliverpipe_start(&dp, cfg.deliver.s, -1)) return 0;
  buffer_init(&eb, smtpd_pipewrite, dp.envfd, espace, sizeof espace);
  ok = envelope_put(&eb, 'I', msgid, str_len(msgid)) && envelope_put(&eb, 'F', sender.s, sender.len);
  if (ok && binarymime) ok = envelope_put(&eb, 'P', "BODY=BINARYMIME", 15);
  else if (ok && eightbit) ok = envelope_put(&eb, 'P', "BODY=8BITMIME", 13);
  if (ok && smtputf8) ok = envelope_put(&eb, 'P', "SMTPUTF8", 8);
  if (ok && ret) ok = envelope_put(&eb, 'P', ret == 'F' ? "RET=FULL" : "RET=HDRS", 8);
  if (ok && envid.len) ok = buffer_put(&eb, "PENVID=", 7) == 0 && buffer_put(&eb, envid.s, envid.len) == 0 &&
                            buffer_put(&eb, "", 1) == 0;
  /* the recipients are kept as records already */
  if (ok) ok = buffer_put(&eb, rcpts.s, rcpts.len) == 0;
  if (ok) ok = buffer_put(&eb, "", 1) == 0 && buffer_flush(&eb) == 0;
  buffer_init(&msgbuf, smtpd_pipewrite, dp.msgfd, msgspace, sizeof msgspace);
  return 1;  /* an envelope write error shows up as deliver's exit status */
}

/* Closes the pipes without the commit record: deliver removes what it
 * wrote.  Waited for, so that nothing runs on behind the session. */
static void deliver_abort(void)
{
  deliverpipe_abort(&dp);
}

/* Ends the message, commits it, and returns deliver's exit status. */
static int deliver_commit(unsigned long size)
{
  int flushed = buffer_flush(&msgbuf) == 0;
  int status = deliverpipe_commit(&dp, size);
  return !flushed && status == 0 ? -1 : status;
}

static void smtpd_exit(int code)
{
  deliver_abort();
  buffer_flush(&out);
  if (tlson) {
    /* dopis-tlsd sees the end, says close_notify and exits; the
     * connection lives until it has */
    close(0);
    close(1);
    deliverpipe_tlswait();
  }
  smtpd_log("disconnect");
  log_ulong("messages", messages);
  log_ulong("errors", (unsigned long)errors);
  log_end();
  _exit(code);
}

/* ---- the transaction ---- */

static void txn_reset(void)
{
  deliver_abort();
  stralloc_zero(&sender);
  stralloc_zero(&rcpts);
  stralloc_zero(&firstrcpt);
  stralloc_zero(&envid);
  route_list_free(&routes);
  nrcpts = 0;
  smtputf8 = binarymime = eightbit = ret = 0;
  if (state != S_GREET) state = S_READY;
}

/* Who sent it, after "Received: from ": a local user by the uid the
 * kernel gave (and its name), anyone else by its HELO name and
 * address. */
static int received_client(stralloc *h)
{
  char num[FMT_ULONG];
  if (local) {
    if (!stralloc_cats(h, "local uid ") || !stralloc_catb(h, num, fmt_ulong(num, peeruid))) return 0;
    return !peername.len || (stralloc_cats(h, " (user ") && stralloc_cat(h, &peername) && stralloc_cats(h, ")"));
  }
  /* the client's HELO name as far as it could be a domain or address
   * literal; anything else (";", "(", control bytes) would let it
   * forge parts of the Received line, so it is replaced */
  for (size_t i = 0; i < helo.len; i++) {
    char c = helo.s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          byte_chr(".-_:[]", 6, c) < 6))
      c = '?';
    if (!stralloc_append(h, &c)) return 0;
  }
  if (remoteip) {
    if (!stralloc_cats(h, " (")) return 0;
    if (remotehost && *remotehost && (!stralloc_cats(h, remotehost) || !stralloc_cats(h, " "))) return 0;
    if (!stralloc_cats(h, "[") || !stralloc_cats(h, remoteip) || !stralloc_cats(h, "])")) return 0;
  }
  return 1;
}

/* The Received line (RFC 5321 4.4), LF-terminated as stored. */
static int smtpd_received(stralloc *h)
{
  char date[DATE_RFC5322];
  /* RFC 3848 and RFC 6531: S for TLS, A for authenticated */
  const char *with = smtputf8 ? "UTF8SMTP" : esmtp ? "ESMTP" : "SMTP";
  const char *sa = tlson ? (authuser.len ? "SA" : "S") : authuser.len ? "A" : "";
  date_rfc5322(date, time(NULL));
  if (!stralloc_copys(h, "Received: from ")) return 0;
  if (!received_client(h)) return 0;
  if (authuser.len && (!stralloc_cats(h, "\n\t(authenticated as ") || !stralloc_cat(h, &authuser) ||
                       !stralloc_cats(h, ")")))
    return 0;
  if (tlson && (!stralloc_cats(h, "\n\t(using ") || !stralloc_cats(h, tlsversion) ||
                             !stralloc_cats(h, " with cipher ") || !stralloc_cats(h, tlscipher) ||
                             !stralloc_cats(h, ")")))
    return 0;
  if (!stralloc_cats(h, "\n\tby ") || !stralloc_cat(h, &cfg.hostname) || !stralloc_cats(h, " (dopis) with ") ||
      !stralloc_cats(h, with) || !stralloc_cats(h, sa) || !stralloc_cats(h, " id ") || !stralloc_cats(h, msgid))
    return 0;
  if (nrcpts == 1 && (!stralloc_cats(h, "\n\tfor <") || !stralloc_cat(h, &firstrcpt) || !stralloc_cats(h, ">")))
    return 0;
  if (!stralloc_cats(h, ";\n\t") || !stralloc_cats(h, date) || !stralloc_cats(h, "\n")) return 0;
  if (binarymime) {
    /* a binary message is stored as sent, CRLF line ends and all: so is
     * its Received line */
    stralloc crlf = {0};
    for (size_t i = 0; i < h->len; i++)
      if ((h->s[i] == '\n' && !stralloc_append(&crlf, "\r")) || !stralloc_append(&crlf, h->s + i)) {
        stralloc_free(&crlf);
        return 0;
      }
    stralloc_free(h);
    *h = crlf;
  }
  return 1;
}

static void log_txn(const char *event, const char *status, unsigned long size)
{
  smtpd_log(event);
  log_str("id", msgid);
  log_buf("from", sender.s, sender.len);
  if (authuser.len) log_buf("auth", authuser.s, authuser.len);
  if (local) log_ulong("uid", peeruid);
  if (tlson) log_str("tls", tlsversion);
  log_ulong("rcpts", nrcpts);
  log_ulong("size", size);
  log_str("status", status);
  log_end();
}

/* After the data: what deliver said, or why it was refused. */
static void txn_finish(void)
{
  enum data_verdict v = data_verdict(&data);
  int r;
  if (v == DATA_IOERR) v = DATA_OK;  /* deliver stopped: ask it why */
  if (v != DATA_OK) {
    deliver_abort();
    switch (v) {
    case DATA_TOOBIG: reply("552", "5.3.4", "Message size exceeds fixed limit"); break;
    case DATA_BARE: reply("554", "5.6.0", "Message contains bare CR or LF"); break;
    case DATA_LOOP: reply("554", "5.4.6", "Too many Received headers: mail loop"); break;
    default: reply("451", "4.3.0", "Temporary failure, try again later"); break;
    }
    log_txn("rejected", v == DATA_TOOBIG ? "552" : v == DATA_BARE ? "554" : v == DATA_LOOP ? "554" : "451",
            data.size);
    txn_reset();
    return;
  }
  r = deliver_commit(data.written);
  if (r == 0) {
    reply_line("250", 0, "2.0.0", "Ok: ", msgid);
    messages++;
    log_txn("accepted", "250", data.size);
  } else if (r == EX_TEMPFAIL || r == -1) {
    reply("451", "4.3.0", "Temporary failure, try again later");
    log_txn("failed", "451", data.size);
  } else {
    reply("554", "5.3.0", "Delivery failed");
    log_txn("failed", "554", data.size);
  }
  txn_reset();
}

/* ---- commands ---- */

static void cmd_helo(char *arg, size_t len)
{
  if (!len) { reply("501", "5.5.4", "Syntax: HELO hostname"); return; }
  txn_reset();
  if (!stralloc_copyb(&helo, arg, len)) { reply("451", "4.3.0", "Out of memory"); return; }
  esmtp = 0;
  state = S_READY;
  reply_line("250", 0, NULL, cfg.hostname.s, NULL);
}

/* Neither TLS nor AUTH for a local user on the Unix socket: the
 * kernel has said who it is, and nothing crosses a network. */
static int smtpd_tlsoffered(void) { return !local && cfg.tls_cert.len && !tlson; }
/* AUTH only where the password cannot be read on the way: inside TLS,
 * or from a local program on a pipe */
static int smtpd_authoffered(void) { return !local && !authuser.len && (tlson || !remoteip); }

static void cmd_ehlo(char *arg, size_t len)
{
  char num[FMT_ULONG + 1];
  if (!len) { reply("501", "5.5.4", "Syntax: EHLO hostname"); return; }
  txn_reset();
  if (!stralloc_copyb(&helo, arg, len)) { reply("451", "4.3.0", "Out of memory"); return; }
  esmtp = 1;
  state = S_READY;
  num[fmt_ulong(num, cfg.max_message_size)] = 0;
  reply_line("250", 1, NULL, cfg.hostname.s, NULL);
  reply_line("250", 1, NULL, "PIPELINING", NULL);
  reply_line("250", 1, NULL, "SIZE ", num);
  reply_line("250", 1, NULL, "8BITMIME", NULL);
  reply_line("250", 1, NULL, "ENHANCEDSTATUSCODES", NULL);
  reply_line("250", 1, NULL, "DSN", NULL);
  reply_line("250", 1, NULL, "SMTPUTF8", NULL);
  reply_line("250", 1, NULL, "CHUNKING", NULL);
  if (smtpd_tlsoffered()) reply_line("250", 1, NULL, "STARTTLS", NULL);
  if (smtpd_authoffered()) reply_line("250", 1, NULL, "AUTH PLAIN LOGIN", NULL);
  reply_line("250", 0, NULL, "BINARYMIME", NULL);
}

/* "FROM:" / "TO:" then optional blanks (common, if not RFC), then the path */
static size_t smtpd_pathstart(char *arg, size_t len, const char *prefix)
{
  size_t n = str_len(prefix), i;
  if (len < n || !case_equalb(arg, n, prefix)) return 0;
  for (i = n; i < len && arg[i] == ' '; i++);
  return i;
}

static int smtpd_has8bit(const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++) if ((unsigned char)s[i] >= 0x80) return 1;
  return 0;
}

static void reply_addrerror(enum address_error why, const char *enh)
{
  if (why == ADDRESS_ETOOLONG) reply("501", "5.5.4", "Address too long");
  else if (why == ADDRESS_E8BIT) reply("553", "5.6.7", "Non-ASCII address needs SMTPUTF8");
  else reply("501", enh, enh[4] == '7' ? "Bad sender address syntax" : "Bad recipient address syntax");
}

/* The ESMTP parameters after a path: "KEY[=VALUE]" separated by blanks. */
static int smtpd_nextparam(char **p, size_t *len, char **key, size_t *klen, char **val, size_t *vlen)
{
  char *s = *p;
  size_t n = *len, i = 0, eq;
  while (i < n && s[i] == ' ') i++;
  if (i == n) return 0;
  *key = s + i;
  while (i < n && s[i] != ' ') i++;
  *klen = (size_t)(s + i - *key);
  eq = byte_chr(*key, *klen, '=');
  *val = eq < *klen ? *key + eq + 1 : NULL;
  *vlen = eq < *klen ? *klen - eq - 1 : 0;
  *klen = eq;
  *p = s + i;
  *len = n - i;
  return 1;
}

static void cmd_mail(char *arg, size_t len)
{
  size_t start = smtpd_pathstart(arg, len, "FROM:"), n;
  enum address_error why;
  char *p, *key, *val;
  size_t plen, klen, vlen;
  unsigned long size = 0;
  int gotsize = 0, gotbody = 0, utf8 = 0, bin = 0, eight = 0, gotret = 0;
  stralloc decoded = {0};

  if (submission && !authuser.len) { reply("530", "5.7.0", "Authentication required"); return; }
  if (authuser.len && config_isrestricted(&cfg, authuser.s, authuser.len)) {
    reply("550", "5.7.1", "Sender address rejected");
    return;
  }
  /* a local user is known as name@hostname, as an authenticated one
   * by its login */
  if (local && peeraddr.len && config_isrestricted(&cfg, peeraddr.s, peeraddr.len)) {
    reply("550", "5.7.1", "Sender address rejected");
    smtpd_log("reject");
    log_ulong("uid", peeruid);
    log_str("status", "550");
    log_end();
    return;
  }
  if (!start) { reply("501", "5.5.4", "Syntax: MAIL FROM:<address>"); return; }
  n = address_scanpath(arg + start, len - start, ADDRESS_NULL | ADDRESS_UTF8, &sender, &why);
  if (!n) { reply_addrerror(why, "5.1.7"); stralloc_zero(&sender); return; }
  p = arg + start + n;
  plen = len - start - n;
  if (plen && *p != ' ') { reply("501", "5.1.7", "Bad sender address syntax"); stralloc_zero(&sender); return; }
  while (smtpd_nextparam(&p, &plen, &key, &klen, &val, &vlen)) {
    if (!esmtp) { reply("555", "5.5.4", "Parameters need EHLO"); goto bad; }
    if (klen == 4 && case_equalb(key, 4, "SIZE") && val && !gotsize) {
      size_t k = 0;
      while (k < vlen && val[k] >= '0' && val[k] <= '9') k++;
      if (!vlen || k != vlen) { reply("501", "5.5.4", "Bad SIZE"); goto bad; }
      /* digits beyond what fits are simply too big */
      if (vlen > 18) size = ~0UL;
      else scan_ulong(val, &size);
      gotsize = 1;
    } else if (klen == 4 && case_equalb(key, 4, "BODY") && val && !gotbody) {
      if (vlen == 4 && case_equalb(val, 4, "7BIT")) ;
      else if (vlen == 8 && case_equalb(val, 8, "8BITMIME")) eight = 1;
      else if (vlen == 10 && case_equalb(val, 10, "BINARYMIME")) bin = 1;
      else { reply("501", "5.5.4", "Bad BODY"); goto bad; }
      gotbody = 1;
    } else if (klen == 8 && case_equalb(key, 8, "SMTPUTF8") && !val && !utf8) {
      utf8 = 1;
    } else if (klen == 3 && case_equalb(key, 3, "RET") && val && !gotret) {
      if (vlen == 4 && case_equalb(val, 4, "FULL")) gotret = 'F';
      else if (vlen == 4 && case_equalb(val, 4, "HDRS")) gotret = 'H';
      else { reply("501", "5.5.4", "Bad RET"); goto bad; }
    } else if (klen == 5 && case_equalb(key, 5, "ENVID") && val && !envid.len) {
      if (!vlen || vlen > ENVID_MAX || !xtext_decode(val, vlen, &decoded)) {
        reply("501", "5.5.4", "Bad ENVID");
        goto bad;
      }
      if (!stralloc_copyb(&envid, val, vlen)) { reply("451", "4.3.0", "Out of memory"); goto bad; }
    } else {
      reply("555", "5.5.4", "Unsupported parameter");
      goto bad;
    }
  }
  if (!utf8 && smtpd_has8bit(sender.s, sender.len)) { reply("553", "5.6.7", "Non-ASCII address needs SMTPUTF8"); goto bad; }
  if (gotsize && size > cfg.max_message_size) { reply("552", "5.3.4", "Message size exceeds fixed limit"); goto bad; }
  if (sender.len && config_isrestricted(&cfg, sender.s, sender.len)) {
    reply("550", "5.7.1", "Sender address rejected");
    smtpd_log("reject");
    log_buf("from", sender.s, sender.len);
    log_str("status", "550");
    log_end();
    goto bad;
  }
  smtputf8 = utf8;
  binarymime = bin;
  eightbit = eight;
  ret = gotret;
  id_make(msgid);
  state = S_MAIL;
  stralloc_free(&decoded);
  reply("250", "2.1.0", "Ok");
  return;
bad:
  stralloc_free(&decoded);
  stralloc_zero(&sender);
  stralloc_zero(&envid);
}

/* NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1) */
static int smtpd_notifyok(const char *v, size_t len)
{
  static const char *const words[] = { "SUCCESS", "FAILURE", "DELAY" };
  unsigned seen = 0;
  if (len == 5 && case_equalb(v, 5, "NEVER")) return 1;
  for (size_t i = 0; i < len;) {
    size_t n = byte_chr(v + i, len - i, ','), k;
    for (k = 0; k < 3; k++)
      if (n == str_len(words[k]) && case_equalb(v + i, n, words[k])) break;
    if (k == 3 || (seen & (1u << k))) return 0;
    seen |= 1u << k;
    i += n + 1;
    if (i == len) return 0;  /* a trailing comma */
  }
  return len > 0;
}

/* ORCPT=addr-type;xtext (RFC 3461 4.2) */
static int smtpd_orcptok(const char *v, size_t len, stralloc *decoded)
{
  size_t semi = byte_chr(v, len, ';');
  if (semi == 0 || semi >= len - 1) return 0;
  for (size_t i = 0; i < semi; i++) {
    char c = v[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
      return 0;
  }
  return xtext_decode(v + semi + 1, len - semi - 1, decoded);
}

static void log_rcpt(const char *addr, size_t len, const char *status)
{
  smtpd_log("reject");
  log_buf("from", sender.s, sender.len);
  log_buf("rcpt", addr, len);
  log_str("status", status);
  log_end();
}

static void cmd_rcpt(char *arg, size_t len)
{
  size_t start = smtpd_pathstart(arg, len, "TO:"), n;
  enum address_error why;
  stralloc addr = {0};
  enum route_result r;
  size_t before;
  stralloc decoded = {0};
  char *p, *key, *val, *notify = NULL, *orcpt = NULL;
  size_t plen, klen, vlen, notifylen = 0, orcptlen = 0;

  if (!start) { reply("501", "5.5.4", "Syntax: RCPT TO:<address>"); return; }
  n = address_scanpath(arg + start, len - start, ADDRESS_POSTMASTER | (smtputf8 ? ADDRESS_UTF8 : 0), &addr, &why);
  if (!n) { reply_addrerror(why, "5.1.3"); goto out; }
  p = arg + start + n;
  plen = len - start - n;
  if (plen && *p != ' ') { reply("501", "5.1.3", "Bad recipient address syntax"); goto out; }
  while (smtpd_nextparam(&p, &plen, &key, &klen, &val, &vlen)) {
    if (!esmtp) { reply("555", "5.5.4", "Parameters need EHLO"); goto out; }
    if (klen == 6 && case_equalb(key, 6, "NOTIFY") && val && !notify) {
      if (!smtpd_notifyok(val, vlen)) { reply("501", "5.5.4", "Bad NOTIFY"); goto out; }
      notify = val;
      notifylen = vlen;
    } else if (klen == 5 && case_equalb(key, 5, "ORCPT") && val && !orcpt) {
      if (!smtpd_orcptok(val, vlen, &decoded)) { reply("501", "5.5.4", "Bad ORCPT"); goto out; }
      orcpt = val;
      orcptlen = vlen;
    } else {
      reply("555", "5.5.4", "Unsupported parameter");
      goto out;
    }
  }
  if (nrcpts >= cfg.max_recipients) { reply("452", "4.5.3", "Too many recipients"); goto out; }
  if (address_at(addr.s, addr.len) < addr.len && config_isrestricted(&cfg, addr.s, addr.len)) {
    reply("550", "5.7.1", "Recipient address rejected");
    log_rcpt(addr.s, addr.len, "550");
    goto out;
  }
  before = routes.n;
  r = route_resolve(&cfg, addr.s, addr.len, &routes);
  if (r != ROUTE_OK && r != ROUTE_REMOTE) {
    /* undo what a failed expansion added */
    for (size_t k = before; k < routes.n; k++) {
      free(routes.t[k].addr);
      free(routes.t[k].maildir);
      free(routes.t[k].notify);
      free(routes.t[k].orcpt);
    }
    routes.n = before;
  }
  if (r == ROUTE_REMOTE && !relayok && routes.n > before) {
    free(routes.t[routes.n - 1].addr);
    routes.n--;
  }
  switch (r) {
  case ROUTE_OK: break;
  case ROUTE_REMOTE:
    if (relayok) break;
    reply("550", "5.7.1", "Relaying denied");
    log_rcpt(addr.s, addr.len, "550");
    goto out;
  case ROUTE_UNKNOWN:
    reply("550", "5.1.1", "No such user here");
    log_rcpt(addr.s, addr.len, "550");
    goto out;
  case ROUTE_LOOP:
    reply("550", "5.4.6", "Alias loop");
    log_rcpt(addr.s, addr.len, "550");
    goto out;
  case ROUTE_TOOMANY: reply("452", "4.5.3", "Too many recipients"); goto out;
  default: reply("451", "4.3.0", "Temporary failure, try again later"); goto out;
  }
  if (!stralloc_append(&rcpts, "T") || !stralloc_cat(&rcpts, &addr) || !stralloc_0(&rcpts) ||
      (notify && (!stralloc_append(&rcpts, "N") || !stralloc_catb(&rcpts, notify, notifylen) ||
                  !stralloc_0(&rcpts))) ||
      (orcpt && (!stralloc_append(&rcpts, "O") || !stralloc_catb(&rcpts, orcpt, orcptlen) ||
                 !stralloc_0(&rcpts))) ||
      (!nrcpts && !stralloc_copy(&firstrcpt, &addr))) {
    reply("451", "4.3.0", "Out of memory");
    goto out;
  }
  nrcpts++;
  state = S_RCPT;
  reply("250", "2.1.5", "Ok");
out:
  stralloc_free(&addr);
  stralloc_free(&decoded);
}

/* Starts deliver and sends it our Received line: the start of every
 * message, by DATA or BDAT. */
static int txn_begin(int bdat)
{
  if (!deliver_start()) {
    smtpd_log("deliver-failed");
    log_str("deliver", cfg.deliver.s);
    log_str("error", strerror(errno));
    log_end();
    return 0;
  }
  static stralloc h;
  data_init(&data, &msgbuf, bdat, binarymime, cfg.max_message_size);
  if (!smtpd_received(&h) || buffer_put(&msgbuf, h.s, h.len) == -1) data.writefail = 1;
  /* the commit record counts every byte deliver is given */
  data.written = h.len;
  return 1;
}

static void cmd_data(char *arg, size_t len)
{
  int started;
  if (len) { reply("501", "5.5.4", "No arguments allowed"); return; }
  if (state == S_BDAT) { reply("503", "5.5.1", "DATA not allowed after BDAT"); return; }
  if (state != S_RCPT) { reply("503", "5.5.1", state == S_MAIL ? "Need RCPT first" : "Need MAIL first"); return; }
  if (binarymime) { reply("503", "5.5.1", "BINARYMIME needs BDAT"); return; }
  /* Without deliver the data is still taken, then refused: a client
   * that does not wait for 354 must not see its data run as commands. */
  started = txn_begin(0);
  if (!started) data_init(&data, NULL, 0, 0, cfg.max_message_size);
  reply("354", NULL, "End data with <CR><LF>.<CR><LF>");
  while (!data.done) {
    ssize_t n = buffer_feed(&in);
    if (n <= 0) smtpd_exit(0);  /* the client vanished: nothing is delivered */
    buffer_seek(&in, data_feed(&data, buffer_peek(&in), (size_t)n));
  }
  if (started) {
    txn_finish();
    return;
  }
  reply("451", "4.3.0", "Temporary failure, try again later");
  log_txn("failed", "451", data.size);
  txn_reset();
}

/* Reads and drops a chunk: a refused BDAT still sends its bytes. */
static void bdat_skip(unsigned long size)
{
  while (size) {
    ssize_t n = buffer_feed(&in);
    if (n <= 0) smtpd_exit(0);
    if ((unsigned long)n > size) n = (ssize_t)size;
    buffer_seek(&in, (size_t)n);
    size -= (unsigned long)n;
  }
}

/* A refused BDAT ends the transaction (RFC 3030 3.2), after its
 * chunk has been read: the chunk's bytes are never commands. */
static void bdat_refuse(unsigned long skip, const char *code, const char *enh, const char *text)
{
  bdat_skip(skip);
  txn_reset();
  reply(code, enh, text);
}

/* A BDAT whose size cannot be read leaves no way to know where its
 * chunk ends: the bytes would be taken for commands.  End at once. */
static void bdat_unreadable(void) __attribute__((noreturn));
static void bdat_unreadable(void)
{
  reply_line("421", 0, "4.5.4", cfg.hostname.s, " Unreadable BDAT size, closing connection");
  smtpd_log("bdat-unreadable");
  log_end();
  smtpd_exit(0);
}

static void cmd_bdat(char *arg, size_t len)
{
  unsigned long size = 0, chunk;
  size_t n = 0, z = 0, i;
  int last = 0;
  char num[FMT_ULONG + 1];

  while (z < len && arg[z] == '0') z++;  /* 1*DIGIT: leading zeros are fine */
  for (n = z; n < len && arg[n] >= '0' && arg[n] <= '9'; n++);
  if (n == 0 || n - z > 18 || (n < len && arg[n] != ' ')) bdat_unreadable();
  if (n > z) scan_ulong(arg + z, &size);
  for (i = n; i < len && arg[i] == ' '; i++);
  if (i < len) {
    if (len - i != 4 || !case_equalb(arg + i, 4, "LAST")) {
      bdat_refuse(size, "501", "5.5.4", "Syntax: BDAT size [LAST]");
      return;
    }
    last = 1;
  }
  if (state != S_RCPT && state != S_BDAT) {
    bdat_refuse(size, "503", "5.5.1",
                state == S_GREET ? "Send HELO or EHLO first" : state == S_MAIL ? "Need RCPT first" : "Need MAIL first");
    return;
  }
  if (state == S_RCPT) {
    if (!txn_begin(1)) {
      bdat_refuse(size, "451", "4.3.0", "Temporary failure, try again later");
      return;
    }
    state = S_BDAT;
  }
  for (chunk = size; size;) {
    ssize_t got = buffer_feed(&in);
    size_t take;
    if (got <= 0) smtpd_exit(0);
    take = (unsigned long)got > size ? (size_t)size : (size_t)got;
    data_feed(&data, buffer_peek(&in), take);
    buffer_seek(&in, take);
    size -= take;
  }
  if (last) {
    data_finish(&data);
    txn_finish();
    return;
  }
  if (data_verdict(&data) != DATA_OK && data_verdict(&data) != DATA_IOERR) {
    txn_finish();  /* refused at once; the transaction is over */
    return;
  }
  num[fmt_ulong(num, chunk)] = 0;
  reply_line("250", 0, "2.0.0", num, " octets received");
}

static void cmd_rset(char *arg, size_t len)
{
  txn_reset();
  reply("250", "2.0.0", "Ok");
}

static void cmd_noop(char *arg, size_t len) { reply("250", "2.0.0", "Ok"); }

static void cmd_quit(char *arg, size_t len)
{
  reply_line("221", 0, "2.0.0", "Bye", NULL);
  smtpd_exit(0);
}

static void cmd_vrfy(char *arg, size_t len)
{
  if (!len) { reply("501", "5.5.4", "Syntax: VRFY address"); return; }
  reply("252", "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

/* One line from dopis-tlsd on fd, read a byte at a time so that
 * nothing after it is taken: "R", "T<version> <cipher>" or
 * "F<reason>".  Returns its length (without LF), or -1. */
static int tls_line(int fd, char *line, size_t size)
{
  size_t n = 0;
  for (;;) {
    ssize_t r;
    char c;
    if (!smtpd_wait(fd, POLLIN)) return -1;
    do r = read(fd, &c, 1); while (r == -1 && errno == EINTR);
    if (r != 1) return -1;
    if (c == '\n') break;
    if (n + 1 < size) line[n++] = c;
  }
  line[n] = 0;
  return (int)n;
}

static void tls_failed(const char *why)
{
  smtpd_log("tls-failed");
  log_str("error", why);
  log_end();
}

/* What a line that is not the one expected says went wrong. */
static const char *tls_why(const char *line, int n)
{
  return n > 1 && line[0] == 'F' ? line + 1 : n < 0 ? "dopis-tlsd ended" : "dopis-tlsd said nonsense";
}

/* Starts dopis-tlsd on the client's connection and waits until it has
 * its certificate and key.  Returns the plaintext socket to it, or -1
 * (logged): the client still talks to us in plaintext then. */
static int tls_begin(void)
{
  char line[400];
  int n, plain = deliverpipe_tls();
  if (plain == -1) {
    tls_failed(strerror(errno));
    return -1;
  }
  n = tls_line(plain, line, sizeof line);
  if (n != 1 || line[0] != 'R') {
    tls_failed(tls_why(line, n));
    close(plain);
    deliverpipe_tlswait();
    return -1;
  }
  return plain;
}

/* The client's connection becomes dopis-tlsd's: fds 0 and 1 the
 * plaintext socket.  Returns 1 once the handshake is made, or 0
 * (logged): the session is over then, no reply can reach the client. */
static int tls_finish(int plain)
{
  char line[400];
  int n;
  size_t v;
  if (dup2(plain, 0) == -1 || dup2(plain, 1) == -1) {
    tls_failed(strerror(errno));
    return 0;
  }
  close(plain);
  tlson = 1;      /* from now on the connection is dopis-tlsd's to end */
  n = tls_line(0, line, sizeof line);
  if (n < 2 || line[0] != 'T') {
    tls_failed(tls_why(line, n));
    return 0;
  }
  v = str_chr(line + 1, ' ');
  if (!line[1 + v] || v >= sizeof tlsversion || str_len(line + 2 + v) >= sizeof tlscipher) {
    tls_failed("dopis-tlsd said nonsense");
    return 0;
  }
  byte_copy(tlsversion, v, line + 1);
  tlsversion[v] = 0;
  byte_copy(tlscipher, str_len(line + 2 + v) + 1, line + 2 + v);
  return 1;
}

static void cmd_starttls(char *arg, size_t len)
{
  size_t pending;
  int plain;
  if (!cfg.tls_cert.len || local) { reply("502", "5.5.1", "STARTTLS not available"); return; }
  if (tlson) { reply("503", "5.5.1", "TLS already active"); return; }
  if (len) { reply("501", "5.5.4", "Syntax: STARTTLS"); return; }
  if ((plain = tls_begin()) == -1) {
    reply("454", "4.7.0", "TLS not available due to temporary reason");
    return;
  }
  reply("220", "2.0.0", "Ready to start TLS");
  if (buffer_flush(&out) == -1) { close(plain); smtpd_exit(EX_IOERR); }
  /* Whatever the client sent after STARTTLS in plaintext is dropped:
   * it must never run inside the TLS session (CVE-2011-0411). */
  pending = in.n - in.p;
  in.p = in.n = 0;
  if (!tls_finish(plain)) smtpd_exit(0);
  smtpd_log("starttls");
  log_str("version", tlsversion);
  log_str("cipher", tlscipher);
  if (pending) log_ulong("discarded", pending);
  log_end();
  /* RFC 3207 4.2: forget everything learnt before TLS */
  txn_reset();
  stralloc_zero(&helo);
  stralloc_zero(&authuser);
  esmtp = 0;
  relayok = relaybase;
  state = S_GREET;
}

/* base64 of at most max bytes; "=" is empty (RFC 4954).  Returns 1. */
static int smtpd_unbase64(const char *s, size_t len, char *dec, size_t max, size_t *outlen)
{
  size_t n, pad = 0;
  *outlen = 0;
  if (len == 1 && s[0] == '=') return 1;
  if (len == 0 || len % 4) return 0;
  while (pad < 2 && s[len - 1 - pad] == '=') pad++;
  /* the exact decoded size, checked before anything is written */
  if (len / 4 * 3 - pad > max) return 0;
  n = scan_base64(s, dec, outlen);
  return n == len && *outlen <= max;
}

/* One continuation line of AUTH: 1, or 0 when the exchange ended
 * (cancelled, or a reply was given). */
static int smtpd_authline(const char *prompt, char *dec, size_t max, size_t *declen)
{
  static char l[LINE_BUF];
  size_t kept;
  ssize_t sent;
  reply_line("334", 0, NULL, prompt, NULL);
  sent = smtpd_getline(l, sizeof l, &kept);
  if (sent < 0) smtpd_exit(0);
  if (kept && l[kept - 1] == '\n') kept--;
  if (kept && l[kept - 1] == '\r') kept--;
  if ((size_t)sent > LINE_MAX_AUTH) { reply("500", "5.5.6", "Line too long"); return 0; }
  if (kept == 1 && l[0] == '*') { reply("501", "5.0.0", "Authentication cancelled"); return 0; }
  if (!smtpd_unbase64(l, kept, dec, max, declen)) { reply("501", "5.5.2", "Bad base64"); return 0; }
  return 1;
}

static void smtpd_authfail(const char *mech)
{
  authfails++;
  smtpd_log("auth-failed");
  log_str("mech", mech);
  log_ulong("failures", (unsigned long)authfails);
  log_end();
  /* each failure costs time: guessing gets slow */
  if (buffer_flush(&out) == -1) smtpd_exit(EX_IOERR);
  sleep((unsigned)authfails);
  reply("535", "5.7.8", "Authentication credentials invalid");
  if (authfails >= MAX_AUTHFAIL) {
    reply_line("421", 0, "4.7.0", cfg.hostname.s, " Too many authentication failures, closing connection");
    smtpd_exit(0);
  }
}

static void cmd_auth(char *arg, size_t len)
{
  static char dec[AUTH_MAXDECODED + 3], pass[AUTH_MAXDECODED + 3];
  stralloc err = {0};
  size_t mlen = byte_chr(arg, len, ' '), declen, passlen, userlen;
  const char *ir = NULL, *mech, *user;
  size_t irlen = 0;
  int r;

  if (local) { reply("502", "5.5.1", "AUTH not available: the local user is known by its uid"); return; }
  if (authuser.len) { reply("503", "5.5.1", "Already authenticated"); return; }
  if (!esmtp) { reply("503", "5.5.1", "Send EHLO first"); return; }
  if (!smtpd_authoffered()) { reply("538", "5.7.11", "Encryption required for authentication"); return; }
  if (mlen < len) {
    ir = arg + mlen + 1;
    irlen = len - mlen - 1;
  }
  if (mlen == 5 && case_equalb(arg, 5, "PLAIN")) {
    size_t a, b;
    mech = "PLAIN";
    if (ir) {
      if (!smtpd_unbase64(ir, irlen, dec, AUTH_MAXDECODED, &declen)) { reply("501", "5.5.2", "Bad base64"); return; }
    } else if (!smtpd_authline("", dec, AUTH_MAXDECODED, &declen)) {
      return;
    }
    /* authzid NUL authcid NUL password (RFC 4616) */
    a = byte_chr(dec, declen, 0);
    b = a < declen ? a + 1 + byte_chr(dec + a + 1, declen - a - 1, 0) : declen;
    if (b >= declen || byte_chr(dec + b + 1, declen - b - 1, 0) < declen - b - 1) {
      reply("501", "5.5.2", "Bad PLAIN response");
      return;
    }
    user = dec + a + 1;
    userlen = b - a - 1;
    if (a && (a != userlen || !case_equalb(dec, a, user))) { smtpd_authfail(mech); return; }
    passlen = declen - b - 1;
    byte_copy(pass, passlen, dec + b + 1);
  } else if (mlen == 5 && case_equalb(arg, 5, "LOGIN")) {
    mech = "LOGIN";
    if (ir) {
      if (!smtpd_unbase64(ir, irlen, dec, AUTH_MAXDECODED, &declen)) { reply("501", "5.5.2", "Bad base64"); return; }
    } else if (!smtpd_authline("VXNlcm5hbWU6", dec, AUTH_MAXDECODED, &declen)) {  /* "Username:" */
      return;
    }
    user = dec;
    userlen = declen;
    if (!smtpd_authline("UGFzc3dvcmQ6", pass, AUTH_MAXDECODED, &passlen)) return;  /* "Password:" */
  } else {
    reply("504", "5.5.4", "Unrecognized authentication mechanism");
    return;
  }
  r = passwd_check(&cfg, user, userlen, pass, passlen, &err);
  byte_zero(pass, sizeof pass);
  if (r == -1) {
    byte_zero(dec, sizeof dec);
    if (!stralloc_0(&err)) err.s = "out of memory";
    smtpd_log("auth-error");
    log_str("error", err.s);
    log_end();
    stralloc_free(&err);
    reply("454", "4.7.0", "Temporary authentication failure");
    return;
  }
  if (r == 0) {
    byte_zero(dec, sizeof dec);
    smtpd_authfail(mech);
    return;
  }
  if (!address_key(user, userlen, &authuser)) { reply("454", "4.7.0", "Temporary authentication failure"); return; }
  byte_zero(dec, sizeof dec);
  relayok = 1;
  smtpd_log("auth");
  log_str("mech", mech);
  log_buf("user", authuser.s, authuser.len);
  log_end();
  reply("235", "2.7.0", "Authentication successful");
}

static void cmd_expn(char *arg, size_t len) { reply("502", "5.5.1", "EXPN not available"); }

static void cmd_help(char *arg, size_t len)
{
  reply("214", "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY; see RFC 5321");
}

/* ---- the command table ---- */

#define ANY ((1 << S_GREET) | (1 << S_READY) | (1 << S_MAIL) | (1 << S_RCPT) | (1 << S_BDAT))
#define AFTERHELO (ANY & ~(1 << S_GREET))

static const struct command {
  const char *verb;
  void (*fn)(char *, size_t);
  unsigned states;         /* where the command is allowed */
  const char *badseq;      /* the 503 text elsewhere (after HELO) */
  size_t maxline;
} commands[] = {
  { "EHLO", cmd_ehlo, ANY, NULL, LINE_MAX_RFC },
  { "HELO", cmd_helo, ANY, NULL, LINE_MAX_RFC },
  { "MAIL", cmd_mail, 1 << S_READY, "Sender already given", LINE_MAX_MAIL },
  { "RCPT", cmd_rcpt, (1 << S_MAIL) | (1 << S_RCPT), "Need MAIL first", LINE_MAX_RCPT },
  { "DATA", cmd_data, AFTERHELO, NULL, LINE_MAX_RFC },
  { "BDAT", cmd_bdat, ANY, NULL, LINE_MAX_RFC },
  { "RSET", cmd_rset, ANY, NULL, LINE_MAX_RFC },
  { "NOOP", cmd_noop, ANY, NULL, LINE_MAX_RFC },
  { "QUIT", cmd_quit, ANY, NULL, LINE_MAX_RFC },
  { "VRFY", cmd_vrfy, ANY, NULL, LINE_MAX_RFC },
  { "EXPN", cmd_expn, ANY, NULL, LINE_MAX_RFC },
  { "HELP", cmd_help, ANY, NULL, LINE_MAX_RFC },
  { "STARTTLS", cmd_starttls, ANY & ~(1 << S_BDAT), NULL, LINE_MAX_RFC },
  { "AUTH", cmd_auth, (1 << S_GREET) | (1 << S_READY), "AUTH not allowed during a mail transaction", LINE_MAX_AUTH },
};

/* A web browser or proxy talking to port 25: end at once (a
 * cross-protocol attack gets no second line). */
static int smtpd_ishttp(const char *l, size_t len)
{
  static const char *const verbs[] = { "GET ", "POST ", "HEAD ", "PUT ", "CONNECT ", "OPTIONS ", "DELETE " };
  for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++) {
    size_t n = str_len(verbs[i]);
    if (len >= n && byte_equal(l, n, verbs[i])) return 1;
  }
  return 0;
}

/* Reads one command line into line (without CRLF).  Returns its length
 * as sent (possibly more than fits), or -1 at end of input. */
static ssize_t smtpd_getline(char *line, size_t max, size_t *kept)
{
  size_t total = 0;
  *kept = 0;
  clock_gettime(CLOCK_MONOTONIC, &linedeadline);
  linedeadline.tv_sec += (time_t)(cfg.timeout ? cfg.timeout : 300);
  for (;;) {
    ssize_t n;
    char *p;
    size_t lf, take;
    linedeadline_on = 1;
    n = buffer_feed(&in);
    linedeadline_on = 0;
    if (n <= 0) return -1;
    p = buffer_peek(&in);
    lf = byte_chr(p, (size_t)n, '\n');
    take = lf < (size_t)n ? lf + 1 : (size_t)n;
    for (size_t i = 0; i < take && *kept < max; i++) line[(*kept)++] = p[i];
    total += take;
    buffer_seek(&in, take);
    if (lf < (size_t)n) return (ssize_t)total;
  }
}

static void smtpd_command(char *line, size_t len, size_t sent)
{
  size_t vlen, i;
  const struct command *c = NULL;
  char *arg;

  /* line ends "\r\n" (or a lone "\n", which we tolerate for commands) */
  if (len && line[len - 1] == '\n') len--;
  if (len && line[len - 1] == '\r') len--;
  if (byte_chr(line, len, 0) < len || byte_chr(line, len, '\r') < len) {
    reply("500", "5.5.2", "Syntax error");
    return;
  }
  vlen = byte_chr(line, len, ' ');
  for (i = 0; i < sizeof commands / sizeof *commands; i++)
    if (vlen == str_len(commands[i].verb) && case_equalb(line, vlen, commands[i].verb)) { c = &commands[i]; break; }
  if (!c) {
    if (smtpd_ishttp(line, len)) {
      reply_line("421", 0, "4.7.0", cfg.hostname.s, " Not an SMTP client, closing connection");
      smtpd_log("not-smtp");
      log_end();
      smtpd_exit(0);
    }
    if (sent > LINE_MAX_RFC) reply("500", "5.5.6", "Line too long");
    else reply("500", "5.5.2", "Unknown command");
    return;
  }
  if (sent > c->maxline) {
    if (c->fn == cmd_bdat) bdat_unreadable();  /* its chunk cannot be found */
    reply("500", "5.5.6", "Line too long");
    return;
  }
  if (smtpd_has8bit(line, vlen)) { reply("500", "5.5.2", "Syntax error"); return; }
  arg = line + vlen;
  i = len - vlen;
  while (i && *arg == ' ') { arg++; i--; }
  while (i && arg[i - 1] == ' ') i--;
  if (c->fn != cmd_mail && c->fn != cmd_rcpt && smtpd_has8bit(arg, i)) {
    reply("501", "5.5.4", "Non-ASCII argument");
    return;
  }
  if (!(c->states & (1u << state))) {
    if (state == S_GREET) reply("503", "5.5.1", "Send HELO or EHLO first");
    else if (state == S_BDAT) reply("503", "5.5.1", "Not allowed during BDAT; RSET first");
    else reply("503", "5.5.1", c->badseq);
    return;
  }
  c->fn(arg, i);
}

/* Who the client is.  Only a descriptor that is no socket at all (a
 * pipe: a local program) or a Unix socket is local; a TCP socket whose
 * peer cannot be named (a client that already reset the connection)
 * is refused, never taken for local: that would let it relay. */
static int smtpd_client(void)
{
  const char *ip = getenv("TCPREMOTEIP");
  unsigned char addr[16];
  if (!ip || !*ip) ip = getenv("REMOTE_ADDR");
  if (!ip || !*ip) {
    static char buf[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ip = NULL;
    if (getpeername(0, (struct sockaddr *)&ss, &sl) == 0) {
      if (ss.ss_family == AF_INET)
        ip = inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, sizeof buf);
      else if (ss.ss_family == AF_INET6)
        ip = inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, sizeof buf);
      else if (ss.ss_family != AF_UNIX)
        return 0;
      if (!ip && ss.ss_family != AF_UNIX) return 0;
    } else if (errno != ENOTSOCK) {
      return 0;
    }
  }
  remoteip = ip;
  remotehost = getenv("TCPREMOTEHOST");
  if (getenv("RELAYCLIENT")) relayok = 1;
  else if (!remoteip) relayok = 1;  /* a local program on a pipe */
  else if (config_parseip(remoteip, addr) && config_isrelayclient(&cfg, addr)) relayok = 1;
  return 1;
}

/* The name of uid in /etc/passwd, read directly: smtpd is linked
 * statically, where getpwuid would load NSS modules.  A name that
 * could forge parts of the Received line is not used.  Returns 1, 0
 * when out of memory (a missing name is no error). */
static int smtpd_peername(unsigned long uid)
{
  static stralloc pw;
  size_t i, next;
  if (openreadclose("/etc/passwd", &pw, 4096) != 1) return 1;
  for (i = 0; i < pw.len; i = next) {
    const char *l = pw.s + i;
    size_t len = byte_chr(l, pw.len - i, '\n'), c1, c2, c3;
    unsigned long u;
    next = i + len + 1;
    c1 = byte_chr(l, len, ':');
    if (c1 == 0 || c1 > 32 || c1 >= len) continue;
    c2 = c1 + 1 + byte_chr(l + c1 + 1, len - c1 - 1, ':');
    if (c2 >= len) continue;
    c3 = c2 + 1 + byte_chr(l + c2 + 1, len - c2 - 1, ':');
    if (c3 == c2 + 1 || scan_ulong(l + c2 + 1, &u) != c3 - c2 - 1 || u != uid) continue;
    for (size_t k = 0; k < c1; k++) {
      char ch = l[k];
      if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            byte_chr("._-", 3, ch) < 3))
        return 1;
    }
    if (!stralloc_copyb(&peername, l, c1)) return 0;
    return stralloc_copy(&peeraddr, &peername) && stralloc_append(&peeraddr, "@") &&
           stralloc_cat(&peeraddr, &cfg.hostname);
  }
  return 1;
}

/* DOPIS_MODE=local: fd 0 is a Unix stream socket (systemd's
 * dopis-submit.socket, Accept=yes) and the kernel says who is at the
 * other end (SO_PEERCRED: the uid when it connected).  Anything else
 * -- a pipe, a TCP connection -- is refused: its uid would be made up.
 * Called before the sandbox, which allows neither getsockopt nor
 * /etc/passwd.  Returns 1, or 0 with errno set. */
static int smtpd_local(void)
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  struct ucred uc;
  socklen_t ul = sizeof uc;
  if (getsockname(0, (struct sockaddr *)&ss, &sl) == -1) return 0;
  if (ss.ss_family != AF_UNIX) { errno = EPROTONOSUPPORT; return 0; }
  if (getsockopt(0, SOL_SOCKET, SO_PEERCRED, &uc, &ul) == -1) return 0;
  if (ul != sizeof uc || uc.uid == (uid_t)-1) { errno = ENOTCONN; return 0; }
  peeruid = (unsigned long)uc.uid;
  if (!smtpd_peername(peeruid)) { errno = ENOMEM; return 0; }
  remoteip = remotehost = NULL;
  /* a local user may send anywhere, like an authenticated one */
  relayok = 1;
  return 1;
}

/* From here on smtpd reads hostile input: it gives up everything it
 * does not need.  deliver and dopis-tlsd are started by the broker
 * forked before, so smtpd itself may execute nothing and write nothing;
 * it may read only the passwd file (in local mode not even that).  The
 * TLS key never enters this process: dopis-tlsd loads it. */
static void smtpd_sandbox(void)
{
  static stralloc passwd, why;
  const char *readable[2];
  int n = 0, r;
  if (SANDBOX_OFF) return;
  /* a local user gets neither AUTH nor TLS: nothing to read at all */
  if (!local && (!stralloc_copy(&passwd, &cfg.dir) || !stralloc_cats(&passwd, "/passwd") || !stralloc_0(&passwd)))
    smtpd_exit(EX_TEMPFAIL);
  if (!local) readable[n++] = passwd.s;
  readable[n] = NULL;
  r = sandbox_files(readable, NULL, &why);
  if (r != -1) {
    /* without Landlock (an old kernel) the session runs on, as said */
    if (r == 0) {
      if (!stralloc_0(&why)) why.s = "out of memory";
      smtpd_log("sandbox-unavailable");
      log_str("error", why.s);
      log_end();
    }
    r = sandbox_syscalls_smtpd(&why);
  }
  if (r != 1) {
    if (!stralloc_0(&why)) why.s = "out of memory";
    smtpd_log(r == 0 ? "sandbox-unavailable" : "sandbox-failed");
    log_str("error", why.s);
    log_end();
    if (r == -1) {
      buffer_putsflush(&out, "421 4.3.0 Temporary failure, try again later\r\n");
      _exit(EX_OSERR);
    }
  }
}

int main(void)
{
  stralloc err = {0};
  static char line[LINE_BUF];
  const char *mode;

  signal(SIGPIPE, SIG_IGN);
  log_init("smtpd");
  id_make(session);
  if (!config_load(&cfg, &err)) {
    if (!stralloc_0(&err)) err.s = "out of memory";
    smtpd_log("config-error");
    log_str("error", err.s);
    log_end();
    buffer_putsflush(&out, "421 4.3.0 Configuration error, try again later\r\n");
    _exit(EX_CONFIG);
  }
  mode = getenv("DOPIS_MODE");
  if (!mode || !*mode || !str_diff(mode, "smtp")) mode = "smtp";
  else if (!str_diff(mode, "submission")) submission = 1;
  else if (!str_diff(mode, "submissions")) submission = 2;
  else if (!str_diff(mode, "local")) local = 1;
  else {
    smtpd_log("config-error");
    log_str("error", "DOPIS_MODE is not smtp, submission, submissions or local");
    log_end();
    buffer_putsflush(&out, "421 4.3.0 Configuration error, try again later\r\n");
    _exit(EX_CONFIG);
  }
  if (local ? !smtpd_local() : !smtpd_client()) {
    smtpd_log("no-peer");
    if (local) log_str("mode", mode);
    log_str("error", strerror(errno));
    log_end();
    buffer_putsflush(&out, local ? "421 4.3.0 Local mode needs a Unix socket, closing connection\r\n"
                                 : "421 4.3.0 Cannot identify the client, closing connection\r\n");
    _exit(local ? EX_CONFIG : 0);
  }
  relaybase = relayok;
  if (cfg.tls_cert.len && !local) {
    static stralloc tlsd;
    if (!sibling_path("tlsd", &tlsd)) {
      buffer_putsflush(&out, "421 4.3.0 Temporary failure, try again later\r\n");
      _exit(EX_TEMPFAIL);
    }
    deliverpipe_tlsprogram(tlsd.s);
  }
  if (!deliverpipe_broker(cfg.deliver.s)) {
    smtpd_log("broker-failed");
    log_str("error", strerror(errno));
    log_end();
    buffer_putsflush(&out, "421 4.3.0 Temporary failure, try again later\r\n");
    _exit(EX_TEMPFAIL);
  }
  smtpd_sandbox();
  if (submission == 2) {
    /* implicit TLS (RFC 8314): the handshake comes before the greeting */
    int plain;
    if (!cfg.tls_cert.len) {
      tls_failed("DOPIS_MODE=submissions needs tls_cert and tls_key");
      _exit(EX_CONFIG);
    }
    if ((plain = tls_begin()) == -1) smtpd_exit(EX_TEMPFAIL);
    if (!tls_finish(plain)) smtpd_exit(0);
  }
  smtpd_log("connect");
  log_str("mode", mode);
  if (tlson) log_str("tls", tlsversion);
  log_str("ip", remoteip ? remoteip : "local");
  if (local) {
    log_ulong("uid", peeruid);
    if (peername.len) log_buf("user", peername.s, peername.len);
  }
  log_str("relay", relayok ? "yes" : "no");
  log_end();
  reply_line("220", 0, NULL, cfg.hostname.s, " ESMTP dopis");
  for (;;) {
    size_t kept;
    ssize_t sent = smtpd_getline(line, sizeof line, &kept);
    if (sent < 0) smtpd_exit(0);
    smtpd_command(line, kept, (size_t)sent);
  }
}
