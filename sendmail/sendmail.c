/* sendmail: the sendmail(8) command, for local programs (cron, mailx,
 * git send-email, PHP's mail()).  It reads one message on stdin, adds
 * what a submission needs (a Received line, and Date, Message-ID and
 * From when missing), and hands it to deliver as smtpd does; -bs, -bp
 * and -q run smtpd, the queue tool and relay instead.  It never runs a
 * shell: addresses only ever travel in the envelope.  See
 * dopis-sendmail(8). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <sys/stat.h>
#include <buffer.h>
#include <byte.h>
#include <case.h>
#include <str.h>
#include <stralloc.h>
#include <fmt.h>
#include "address.h"
#include "config.h"
#include "date.h"
#include "deliverpipe.h"
#include "envelope.h"
#include "id.h"
#include "log.h"
#include "sibling.h"
#include "xtext.h"
#include "sendmail.h"

#define ENVID_MAX 100   /* RFC 3461 4.4 */

extern char **environ;

static struct config cfg;
static char msgid[ID_LEN];
static unsigned long uid;      /* who runs us, before any change */
static stralloc user;          /* their address, "" when unknown */
static stralloc sender;        /* the envelope sender, "" for <> */
static stralloc rcpts;         /* envelope records: T, and N after each */
static unsigned long nrcpts;
static stralloc notify;        /* -N as RFC 3461 NOTIFY, or "" */
static stralloc params;        /* P records from -R and -V, NUL-terminated */
static int verbose;

ssize_t sendmail_read(int fd, char *buf, size_t len)
{
  ssize_t r;
  do r = read(fd, buf, len); while (r == -1 && errno == EINTR);
  return r;
}

ssize_t sendmail_write(int fd, const char *buf, size_t len)
{
  ssize_t r;
  do r = write(fd, buf, len); while (r == -1 && errno == EINTR);
  return r;
}

static char inspace[65536];
static buffer in = BUFFER_INIT(sendmail_read, 0, inspace, sizeof inspace);

/* The one log line of a failure; key=val says about what (may be
 * NULL). */
static void __attribute__((noreturn))
sendmail_fail(int status, const char *reason, const char *key, const char *val, size_t len)
{
  log_start();
  log_str("id", msgid);
  log_str("event", status == EX_USAGE ? "usage" : "failed");
  log_ulong("status", (unsigned long)status);
  log_ulong("uid", uid);
  log_str("reason", reason);
  if (key) log_buf(key, val, len);
  log_end();
  exit(status);
}

static void __attribute__((noreturn)) sendmail_nomem(void)
{
  sendmail_fail(EX_TEMPFAIL, "out of memory", NULL, NULL, 0);
}

/* opt: the option at fault, or 0 */
static void __attribute__((noreturn)) sendmail_usage(const char *reason, int opt)
{
  static const char usage[] = "sendmail [-t] [-i] [-f sender] [-F name] [--] [recipient ...]";
  char o[2] = { (char)opt, 0 };
  if (opt) sendmail_fail(EX_USAGE, reason, "option", o, 1);
  sendmail_fail(EX_USAGE, reason, "usage", usage, sizeof usage - 1);
}

/* A descriptor 0, 1 or 2 that is closed would be taken by the next
 * open: the spool file would become our stderr. */
static void sendmail_fds(void)
{
  for (int fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF && open("/dev/null", O_RDWR) != fd) _exit(EX_OSERR);
}

/* Run by root (cron, a boot script), deliver would leave files in the
 * mailroot and the queue that their owner, the unprivileged user of
 * dopis, could not read: become that owner first. */
static void sendmail_dropprivs(void)
{
  struct stat st;
  gid_t g;
  if (geteuid() != 0) return;
  if (stat(cfg.mailroot.s, &st) == -1 && stat(cfg.queue.s, &st) == -1)
    sendmail_fail(EX_TEMPFAIL, strerror(errno), "mailroot", cfg.mailroot.s, cfg.mailroot.len);
  if (st.st_uid == 0) return;
  g = st.st_gid;
  if (setgroups(1, &g) == -1 || setgid(g) == -1 || setuid(st.st_uid) == -1 || setuid(0) != -1)
    sendmail_fail(EX_OSERR, "cannot become the owner of the mailroot", NULL, NULL, 0);
}

/* Whether we may start deliver ourselves: we own the mailroot (or,
 * with none, the queue), as root has become its owner by now.  Any
 * other user goes through smtpd's local socket. */
static int sendmail_isowner(void)
{
  struct stat st;
  if (stat(cfg.mailroot.s, &st) == -1 && stat(cfg.queue.s, &st) == -1) return 0;
  return st.st_uid == geteuid();
}

/* -bs, -bp, -q: another program does the work, as we would have. */
static void __attribute__((noreturn)) sendmail_exec(const char *name, const char *arg)
{
  static stralloc path;
  char *av[3];
  if (!sibling_path(name, &path)) sendmail_nomem();
  av[0] = path.s;
  av[1] = (char *)arg;
  av[2] = NULL;
  execve(path.s, av, environ);
  sendmail_fail(EX_UNAVAILABLE, strerror(errno), "program", path.s, path.len);
}

/* One address as written (a bare local part qualified with dom) into
 * its RFC 5321 form in out.  Returns 1, or 0 when it is none. */
static int sendmail_address(const char *a, size_t len, const stralloc *dom, stralloc *out)
{
  static stralloc path;
  enum address_error why;
  /* bare: no "@" at all, or only inside a quoted local part */
  int bare = len && (a[len - 1] == '"' || byte_chr(a, len, '@') == len);
  if (!stralloc_copys(&path, "<") || !stralloc_catb(&path, a, len) ||
      (bare && (!stralloc_append(&path, "@") || !stralloc_cat(&path, dom))) ||
      !stralloc_append(&path, ">"))
    sendmail_nomem();
  return address_scanpath(path.s, path.len, ADDRESS_UTF8, out, &why) == path.len;
}

/* A bare recipient is meant for this system: the first local domain
 * (the one <Postmaster> belongs to), else the hostname. */
static const stralloc *sendmail_rcptdomain(void)
{
  return cfg.firstdomain.len ? &cfg.firstdomain : &cfg.hostname;
}

/* Adds every address of the list s (an argument, or a header field's
 * value) to the envelope; bad is the status for a bad one. */
static void sendmail_rcpts(const char *s, size_t len, int bad, const char *what)
{
  static stralloc list, addr;
  int r;
  stralloc_zero(&list);
  /* a NUL would cut an address in two later */
  r = byte_chr(s, len, 0) < len ? 0 : addrlist_parse(s, len, &list);
  if (r == -1) sendmail_nomem();
  if (r == 0) sendmail_fail(bad, "bad address list", what, s, len);
  for (size_t i = 0; i < list.len; i += str_len(list.s + i) + 1) {
    const char *a = list.s + i;
    size_t alen = str_len(a);
    if (!sendmail_address(a, alen, sendmail_rcptdomain(), &addr))
      sendmail_fail(bad, "bad address", what, a, alen);
    if (config_isrestricted(&cfg, addr.s, addr.len))
      sendmail_fail(EX_NOPERM, "restricted recipient", "rcpt", addr.s, addr.len);
    if (!stralloc_append(&rcpts, "T") || !stralloc_cat(&rcpts, &addr) || !stralloc_0(&rcpts) ||
        (notify.len && (!stralloc_append(&rcpts, "N") || !stralloc_cat(&rcpts, &notify) ||
                        !stralloc_0(&rcpts))))
      sendmail_nomem();
    nrcpts++;
  }
}

/* The user who runs us, user@hostname: the default sender.  Left ""
 * when the uid has no name. */
static void sendmail_user(void)
{
  static stralloc local;
  struct passwd *pw = getpwuid((uid_t)uid);
  const char *name;
  if (!pw || !pw->pw_name || !*pw->pw_name) return;
  name = pw->pw_name;
  if (address_isdotstring(name, str_len(name))) {
    if (!stralloc_copys(&local, name)) sendmail_nomem();
  } else {
    if (!stralloc_copys(&local, "\"")) sendmail_nomem();
    for (; *name; name++)
      if (((*name == '"' || *name == '\\') && !stralloc_append(&local, "\\")) || !stralloc_append(&local, name))
        sendmail_nomem();
    if (!stralloc_append(&local, "\"")) sendmail_nomem();
  }
  if (!sendmail_address(local.s, local.len, &cfg.hostname, &user)) stralloc_zero(&user);
}

/* -f: one address, qualified like the default sender; "" or "<>" is
 * the null sender. */
static void sendmail_sender(const char *arg)
{
  static stralloc list;
  size_t alen;
  int r;
  if (!arg) {
    if (!user.len) sendmail_fail(EX_NOUSER, "no user name for this uid, and no -f", NULL, NULL, 0);
    if (!stralloc_copy(&sender, &user)) sendmail_nomem();
  } else {
    stralloc_zero(&list);
    r = addrlist_parse(arg, str_len(arg), &list);
    if (r == -1) sendmail_nomem();
    alen = r == 1 && list.len ? str_len(list.s) : 0;
    if (r == 0 || (list.len && alen + 1 != list.len))
      sendmail_fail(EX_USAGE, "-f needs one address", "sender", arg, str_len(arg));
    stralloc_zero(&sender);
    if (alen && !sendmail_address(list.s, alen, &cfg.hostname, &sender))
      sendmail_fail(EX_USAGE, "bad sender address", "sender", arg, str_len(arg));
  }
  if (sender.len && config_isrestricted(&cfg, sender.s, sender.len))
    sendmail_fail(EX_NOPERM, "restricted sender", "sender", sender.s, sender.len);
}

/* -N: "never", or a list of success, failure and delay (RFC 3461). */
static void sendmail_notify(const char *arg)
{
  static const char *const words[] = { "never", "success", "failure", "delay" };
  unsigned int seen = 0;
  const char *p = arg;
  stralloc_zero(&notify);
  for (;;) {
    size_t n = str_chr(p, ','), k;
    for (k = 0; k < 4; k++)
      if (str_len(words[k]) == n && case_equalb(p, n, words[k])) break;
    if (k == 4 || (seen & (1u << k))) sendmail_usage("-N takes never, or success, failure and delay", 'N');
    seen |= 1u << k;
    if ((notify.len && !stralloc_append(&notify, ",")) || !stralloc_catb(&notify, p, n)) sendmail_nomem();
    if (!p[n]) break;
    p += n + 1;
  }
  if ((seen & 1) && seen != 1) sendmail_usage("-N never goes alone", 'N');
  for (size_t i = 0; i < notify.len; i++)
    if (notify.s[i] >= 'a' && notify.s[i] <= 'z') notify.s[i] -= 32;
}

/* The message: the header section, what we add, the body.  Returns
 * the spool, rewound, ready to be deliver's fd 0. */
static void sendmail_message(struct spool *s, int opt_t, int dotend, const char *fullname)
{
  static struct header h;
  static stralloc add;
  struct header_field f;
  struct body b;
  char date[DATE_RFC5322], num[FMT_ULONG];
  const char *why;
  size_t pos;
  int r, resent = 0, hasdate = 0, hasmsgid = 0, hasfrom = 0;
  unsigned long received = 0;

  if (!spool_open(s, cfg.max_message_size))
    sendmail_fail(EX_TEMPFAIL, strerror(errno), "spool", "TMPDIR", 6);
  if ((r = header_read(&in, dotend, &h, &why))) sendmail_fail(r, why, NULL, NULL, 0);

  /* RFC 5322 3.6.6: a resent message goes to its Resent- recipients */
  for (pos = 0; header_next(&h, &pos, &f);) {
    if (header_is(&f, "resent-to") || header_is(&f, "resent-cc") || header_is(&f, "resent-bcc")) resent = 1;
    else if (header_is(&f, "received")) received++;
    else if (header_is(&f, "date")) hasdate = 1;
    else if (header_is(&f, "message-id")) hasmsgid = 1;
    else if (header_is(&f, "from")) hasfrom = 1;
  }
  if (received > SENDMAIL_MAXRECEIVED) sendmail_fail(EX_DATAERR, "too many Received headers: mail loop", NULL, NULL, 0);
  if (opt_t)
    for (pos = 0; header_next(&h, &pos, &f);)
      if (resent ? header_is(&f, "resent-to") || header_is(&f, "resent-cc") || header_is(&f, "resent-bcc")
                 : header_is(&f, "to") || header_is(&f, "cc") || header_is(&f, "bcc"))
        sendmail_rcpts(f.value, f.valuelen, EX_DATAERR, "header");
  if (!nrcpts) sendmail_usage("no recipients", 0);

  date_rfc5322(date, time(NULL));
  if (!stralloc_copys(&add, "Received: by ") || !stralloc_cat(&add, &cfg.hostname) ||
      !stralloc_cats(&add, " (dopis sendmail, from local uid ") ||
      !stralloc_catb(&add, num, fmt_ulong(num, uid)) || !stralloc_cats(&add, ")\n\tid ") ||
      !stralloc_cats(&add, msgid) || !stralloc_cats(&add, "; ") || !stralloc_cats(&add, date) ||
      !stralloc_cats(&add, "\n"))
    sendmail_nomem();
  spool_putraw(s, add.s, add.len);

  /* Bcc is blind: it never goes out, with -t or without */
  for (pos = 0; header_next(&h, &pos, &f);)
    if (!header_is(&f, "bcc") && !header_is(&f, "resent-bcc")) spool_put(s, f.s, f.len);

  /* added at the end: the trace fields at the top stay together */
  stralloc_zero(&add);
  if (!hasdate && (!stralloc_cats(&add, "Date: ") || !stralloc_cats(&add, date) || !stralloc_cats(&add, "\n")))
    sendmail_nomem();
  if (!hasmsgid && (!stralloc_cats(&add, "Message-ID: <") || !stralloc_cats(&add, msgid) ||
                    !stralloc_append(&add, "@") || !stralloc_cat(&add, &cfg.hostname) ||
                    !stralloc_cats(&add, ">\n")))
    sendmail_nomem();
  if (!hasfrom) {
    const stralloc *from = sender.len ? &sender : &user;
    if (!from->len) sendmail_fail(EX_NOUSER, "no user name for this uid, and no From:", NULL, NULL, 0);
    if (!compose_from(&add, fullname, from->s, from->len)) sendmail_nomem();
  }
  spool_put(s, add.s, add.len);

  if (h.end == HEADER_BLANK || h.end == HEADER_BODY) {
    spool_put(s, "\n", 1);
    body_init(&b, dotend);
    body_feed(&b, s, h.first.s, h.first.len);
    while (!b.done && !s->toobig && !s->error) {
      ssize_t n = buffer_feed(&in);
      if (n < 0) sendmail_fail(EX_IOERR, "cannot read the message", "error", strerror(errno), str_len(strerror(errno)));
      if (n == 0) { body_end(&b, s); break; }
      buffer_seek(&in, body_feed(&b, s, buffer_peek(&in), (size_t)n));
    }
  }
  if (s->toobig) {
    num[fmt_ulong(num, cfg.max_message_size)] = 0;
    sendmail_fail(EX_DATAERR, "message exceeds max_message_size", "max", num, str_len(num));
  }
  if (!spool_finish(s)) sendmail_fail(EX_TEMPFAIL, strerror(errno), "spool", "TMPDIR", 6);
}

/* Copies deliver's log lines to our stderr. */
static void sendmail_showlog(int fd)
{
  char buf[4096];
  ssize_t n;
  if (lseek(fd, 0, SEEK_SET) == -1) return;
  while ((n = sendmail_read(fd, buf, sizeof buf)) > 0)
    if (sendmail_write(2, buf, (size_t)n) != n) return;
}

/* RFC 6531: an address that is not ASCII needs SMTPUTF8 */
static int sendmail_utf8(void)
{
  int utf8 = 0;
  for (size_t i = 0; i < sender.len; i++) utf8 |= (unsigned char)sender.s[i] >= 0x80;
  for (size_t i = 0; i < rcpts.len; i++) utf8 |= (unsigned char)rcpts.s[i] >= 0x80;
  return utf8;
}

/* deliver stores the message or says why not; its exit status is
 * ours (sysexits, as ours). */
static int sendmail_deliver(struct spool *s)
{
  struct deliverpipe dp;
  buffer eb;
  char espace[4096];
  int logfd = -1, saved = -1, started, err, status, ok, utf8 = sendmail_utf8();

  /* deliver logs a line per recipient; they are shown when it fails
   * (or with -v), so that a cron job's mail does not come back as
   * cron mail about the mail */
  if (!verbose && (logfd = spool_tmp()) != -1) {
    saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if (saved == -1 || dup2(logfd, 2) == -1) {
      if (saved != -1) close(saved);
      close(logfd);
      saved = logfd = -1;   /* it logs to our stderr then */
    }
  }
  started = deliverpipe_start(&dp, cfg.deliver.s, s->fd);
  err = errno;
  if (saved != -1) {
    if (dup2(saved, 2) == -1) _exit(EX_OSERR);
    close(saved);
  }
  if (!started) sendmail_fail(EX_TEMPFAIL, strerror(err), "deliver", cfg.deliver.s, cfg.deliver.len);

  buffer_init(&eb, sendmail_write, dp.envfd, espace, sizeof espace);
  ok = envelope_put(&eb, 'I', msgid, str_len(msgid)) && envelope_put(&eb, 'F', sender.s, sender.len);
  if (ok && s->eightbit) ok = envelope_put(&eb, 'P', "BODY=8BITMIME", 13);
  if (ok && utf8) ok = envelope_put(&eb, 'P', "SMTPUTF8", 8);
  if (ok) ok = buffer_put(&eb, params.s, params.len) == 0;
  if (ok) ok = buffer_put(&eb, rcpts.s, rcpts.len) == 0;
  if (ok) ok = buffer_put(&eb, "", 1) == 0 && buffer_flush(&eb) == 0;
  /* an envelope cut short (deliver refused it and left) shows up in
   * deliver's exit status */
  status = deliverpipe_commit(&dp, s->size);
  if (status == -1) status = EX_TEMPFAIL;
  if (status && logfd != -1) sendmail_showlog(logfd);
  if (logfd != -1) close(logfd);
  return status;
}

/* smtpd refused, or the session broke: the one log line, with its
 * reply, and the status.  what: the command; addr: the address it
 * named, or NULL. */
static void __attribute__((noreturn))
sendmail_refused(struct submit *sm, int code, const char *what, const char *addr, size_t alen)
{
  int status;
  const char *reason;
  /* RFC 3463: x.7.x is policy (restricted, relaying), as 77 says here */
  int policy = sm->text.len >= 8 && byte_equal(sm->text.s + 4, 4, "5.7.");
  if (code == 0) { status = EX_TEMPFAIL; reason = "connection to smtpd lost"; }
  else if (code < 0) { status = EX_PROTOCOL; reason = "unreadable reply from smtpd"; }
  else if (code >= 400 && code < 500) { status = EX_TEMPFAIL; reason = "temporary failure"; }
  else if (code < 500) { status = EX_PROTOCOL; reason = "unexpected reply"; }
  else if (policy) { status = EX_NOPERM; reason = "refused by policy"; }
  else if (!str_diff(what, "RCPT")) { status = EX_NOUSER; reason = "recipient refused"; }
  else if (!str_diff(what, "MAIL") || !str_diff(what, "DATA")) { status = EX_DATAERR; reason = "message refused"; }
  else { status = EX_PROTOCOL; reason = "session refused"; }
  log_start();
  log_str("id", msgid);
  log_str("event", "failed");
  log_ulong("status", (unsigned long)status);
  log_ulong("uid", uid);
  log_str("reason", reason);
  log_str("during", what);
  if (addr) log_buf(!str_diff(what, "RCPT") ? "rcpt" : "from", addr, alen);
  if (code > 0) log_buf("reply", sm->text.s, sm->text.len);
  else if (code == 0) log_str("error", strerror(errno));
  log_str("socket", cfg.submit_socket.s);
  log_end();
  exit(status);
}

/* The command in cmd, and its reply of class want (2: 2xx, 3: 3xx). */
static void sendmail_command(struct submit *sm, const stralloc *cmd, int want, const char *what,
                             const char *addr, size_t alen)
{
  int code = submit_command(sm, cmd->s, cmd->len);
  if (code / 100 != want) sendmail_refused(sm, code, what, addr, alen);
}

/* For a user who does not own the mailroot: the message by SMTP to
 * smtpd on the local socket, which knows the user by its uid and
 * starts deliver as the owner.  One transaction, one RCPT a recipient;
 * the first refusal ends it, so nothing is stored unless everything is
 * (as with deliver).  Returns 0, or exits with the status. */
static int sendmail_submit(struct spool *s)
{
  static stralloc cmd;
  struct submit sm;
  int code;
  size_t i, next;

  if (!submit_connect(&sm, cfg.submit_socket.s, cfg.timeout_dot))
    sendmail_fail(EX_TEMPFAIL, strerror(errno), "socket", cfg.submit_socket.s, cfg.submit_socket.len);
  code = submit_reply(&sm);
  if (code / 100 != 2) sendmail_refused(&sm, code, "greeting", NULL, 0);
  if (!stralloc_copys(&cmd, "EHLO ") || !stralloc_cat(&cmd, &cfg.hostname)) sendmail_nomem();
  sendmail_command(&sm, &cmd, 2, "EHLO", NULL, 0);

  if (!stralloc_copys(&cmd, "MAIL FROM:<") || !stralloc_cat(&cmd, &sender) || !stralloc_append(&cmd, ">") ||
      (s->eightbit && !stralloc_cats(&cmd, " BODY=8BITMIME")) ||
      (sendmail_utf8() && !stralloc_cats(&cmd, " SMTPUTF8")))
    sendmail_nomem();
  /* -R and -V: P records, "PRET=FULL", "PENVID=xtext" */
  for (i = 0; i < params.len; i = next) {
    next = i + str_len(params.s + i) + 1;
    if (!stralloc_append(&cmd, " ") || !stralloc_cats(&cmd, params.s + i + 1)) sendmail_nomem();
  }
  sendmail_command(&sm, &cmd, 2, "MAIL", sender.s, sender.len);

  /* T<addr> records, each maybe followed by N<notify> */
  for (i = 0; i < rcpts.len; i = next) {
    const char *a = rcpts.s + i + 1;
    size_t alen = str_len(a);
    next = i + alen + 2;
    if (!stralloc_copys(&cmd, "RCPT TO:<") || !stralloc_catb(&cmd, a, alen) || !stralloc_append(&cmd, ">"))
      sendmail_nomem();
    if (next < rcpts.len && rcpts.s[next] == 'N') {
      if (!stralloc_cats(&cmd, " NOTIFY=") || !stralloc_cats(&cmd, rcpts.s + next + 1)) sendmail_nomem();
      next += str_len(rcpts.s + next) + 1;
    }
    sendmail_command(&sm, &cmd, 2, "RCPT", a, alen);
  }

  if (!stralloc_copys(&cmd, "DATA")) sendmail_nomem();
  sendmail_command(&sm, &cmd, 3, "DATA", NULL, 0);
  code = submit_data(&sm, s->fd);
  if (code == -2) sendmail_fail(EX_TEMPFAIL, strerror(errno), "spool", "TMPDIR", 6);
  if (code / 100 != 2) sendmail_refused(&sm, code, "DATA", NULL, 0);
  if (verbose) {
    log_start();
    log_str("id", msgid);
    log_str("event", "submitted");
    log_str("socket", cfg.submit_socket.s);
    log_buf("reply", sm.text.s, sm.text.len);
    log_end();
  }
  /* the message is stored: what QUIT gets no longer matters */
  if (stralloc_copys(&cmd, "QUIT")) submit_command(&sm, cmd.s, cmd.len);
  close(sm.fd);
  stralloc_free(&sm.text);
  return 0;
}

/* -bs for a user who does not own the mailroot: the SMTP session goes
 * to smtpd's local socket as it is. */
static void __attribute__((noreturn)) sendmail_bs(void)
{
  struct submit sm;
  if (!submit_connect(&sm, cfg.submit_socket.s, 0))
    sendmail_fail(EX_TEMPFAIL, strerror(errno), "socket", cfg.submit_socket.s, cfg.submit_socket.len);
  if (!submit_proxy(sm.fd)) sendmail_fail(EX_IOERR, strerror(errno), "socket", cfg.submit_socket.s, cfg.submit_socket.len);
  exit(0);
}

int main(int argc, char **argv)
{
  static stralloc err;
  struct spool s;
  const char *fromarg = NULL, *fullname = NULL;
  int opt, opt_t = 0, opt_i = 0, mode = 'm', status, owner;

  sendmail_fds();
  log_init("sendmail");
  id_make(msgid);
  uid = (unsigned long)getuid();
  /* DOPIS_CONF and TMPDIR are the caller's: set-uid, they would let
   * any user choose what deliver does with the owner's rights */
  if (getuid() != geteuid() || getgid() != getegid())
    sendmail_fail(EX_CONFIG, "installed set-uid or set-gid: refused", NULL, NULL, 0);

  opterr = 0;
  /* "+": options end at the first recipient; "--" ends them too */
  while ((opt = getopt(argc, argv, "+:A:B:b:F:f:Gh:iL:mN:no:q::R:r:tUvV:")) != -1) {
    switch (opt) {
    case 't': opt_t = 1; break;
    case 'i': opt_i = 1; break;
    case 'f': case 'r': fromarg = optarg; break;
    case 'F':
      if (!compose_fullnameok(optarg, str_len(optarg))) sendmail_usage("-F takes a printable UTF-8 name of at most 256 bytes", 'F');
      fullname = optarg;
      break;
    case 'v': verbose = 1; break;
    case 'N': sendmail_notify(optarg); break;
    case 'R':
      if (case_equals(optarg, "full")) { if (!stralloc_cats(&params, "PRET=FULL") || !stralloc_0(&params)) sendmail_nomem(); }
      else if (case_equals(optarg, "hdrs")) { if (!stralloc_cats(&params, "PRET=HDRS") || !stralloc_0(&params)) sendmail_nomem(); }
      else sendmail_usage("-R takes full or hdrs", 'R');
      break;
    case 'V': {
      static stralloc x;
      if (!xtext_encode(optarg, str_len(optarg), &x)) sendmail_nomem();
      if (!*optarg || x.len > ENVID_MAX) sendmail_usage("-V takes an envelope id of at most 100 characters", 'V');
      if (!stralloc_cats(&params, "PENVID=") || !stralloc_cat(&params, &x) || !stralloc_0(&params)) sendmail_nomem();
      break;
    }
    case 'b':
      if (optarg[0] && !optarg[1] && byte_chr("msp", 3, optarg[0]) < 3) mode = optarg[0];
      else sendmail_usage("unsupported -b mode: only -bm, -bs and -bp", 'b');
      break;
    case 'q':
      if (optarg) sendmail_usage("-q with an interval: dopis has no daemon (use the relay timer)", 'q');
      mode = 'q';
      break;
    case 'o':
      /* -oi; error, queue and delivery modes mean nothing here */
      if (!str_diff(optarg, "i")) opt_i = 1;
      else if (byte_chr("eQd", 3, optarg[0]) == 3 && str_diff(optarg, "m") && str_diff(optarg, "o"))
        sendmail_usage("unsupported -o option", 'o');
      break;
    case 'A': case 'B': case 'G': case 'h': case 'L': case 'm': case 'n': case 'U':
      break;   /* harmless: see the man page */
    case ':': sendmail_usage("option needs an argument", optopt);
    default: sendmail_usage("unknown option", optopt);
    }
  }
  if (mode != 'm' && optind != argc) sendmail_usage("-bs, -bp and -q take no recipients", 0);

  if (!config_load(&cfg, &err)) sendmail_fail(EX_CONFIG, "configuration error", "error", err.s, err.len);
  sendmail_user();
  sendmail_dropprivs();
  owner = sendmail_isowner();
  if (mode == 's' && !owner) {
    signal(SIGPIPE, SIG_IGN);
    sendmail_bs();
  }
  if (mode == 's') {
    /* a local client on a pipe, whatever a web server or tcpserver
     * put into our environment; on a socket smtpd asks the socket */
    unsetenv("TCPREMOTEIP");
    unsetenv("TCPREMOTEHOST");
    unsetenv("REMOTE_ADDR");
    unsetenv("DOPIS_MODE");
    sendmail_exec("smtpd", NULL);
  }
  if (mode == 'p') sendmail_exec("queue", NULL);
  if (mode == 'q') sendmail_exec("relay", "-f");

  signal(SIGPIPE, SIG_IGN);
  sendmail_sender(fromarg);
  for (int i = optind; i < argc; i++) sendmail_rcpts(argv[i], str_len(argv[i]), EX_USAGE, "rcpt");
  if (!opt_t && !nrcpts) sendmail_usage("no recipients", 0);
  sendmail_message(&s, opt_t, !opt_i, fullname);
  status = owner ? sendmail_deliver(&s) : sendmail_submit(&s);
  if (status || verbose) {
    log_start();
    log_str("id", msgid);
    log_str("event", status ? "failed" : "accepted");
    if (status) log_ulong("status", (unsigned long)status);
    log_ulong("uid", uid);
    log_buf("from", sender.s, sender.len);
    log_ulong("rcpts", nrcpts);
    log_ulong("size", (unsigned long)s.size);
    if (status) log_str("reason", status == EX_NOUSER ? "unknown recipient" : "deliver failed");
    log_end();
  }
  exit(status);
}
