/* libFuzzer harness: one whole SMTP session per input, through the
 * real smtpd.c (built with -Dmain=smtpd_main -DDOPIS_FUZZ, see its
 * DOPIS_FUZZ block) and the real configuration, address, route,
 * xtext, passwd and data code.
 *
 * Input: one byte that chooses the session (below), then the bytes the
 * client sends, all at once, then end of input.  The session reads
 * them from fd 0, a memfd, and writes its replies to fd 1, another;
 * the end of the session (smtpd's _exit) comes back here by longjmp.
 *
 * deliver is replaced, at link time, by the recorder below, in
 * memory: deliverpipe_start/commit/abort of lib/deliverpipe.c are
 * defined here, so the library's are never linked.  On every commit
 * the recorder checks the envelope and the message as deliver would
 * get them; after the session the replies are checked:
 *   - the envelope is I, F, P..., then T [N] [O] per recipient, the
 *     empty record, nothing else; every record printable (no CR, LF,
 *     NUL or other control byte: deliver writes them into headers);
 *     every address one address_scanpath takes back unchanged; the
 *     ESMTP values the ones smtpd accepts (xtext that decodes);
 *   - no open relay: a remote client that is no relay client gets
 *     only recipients in the local domains (or <Postmaster>);
 *   - the message starts with smtpd's Received line, has no CR at all
 *     unless BODY=BINARYMIME (CRLF is stored as LF, a bare CR or LF
 *     refuses the message), is no bigger than max_message_size allows,
 *     and the commit's size is its exact length;
 *   - every reply line is "DDD" or "DDD-..." / "DDD ...", CRLF-ended,
 *     at most 512 bytes; the first is the greeting (220, or 421 when
 *     smtpd cannot start), nothing follows 221 or a 421;
 *   - no smuggling: the "250 2.0.0 Ok: <id>" replies are exactly the
 *     messages deliver stored, and their ids are the envelopes' I.
 * A broken one aborts, and libFuzzer keeps the input. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <crypt.h>
#include <sanitizer/allocator_interface.h>
#include <sanitizer/lsan_interface.h>
#include <stralloc.h>
#include "address.h"
#include "deliverpipe.h"
#include "xtext.h"
#include "fuzz.h"

int smtpd_main(void);
void smtpd_fuzz_reset(void);
void smtpd_fuzz_exit(int code) __attribute__((noreturn));
unsigned smtpd_fuzz_sleep(unsigned secs);

/* the first input byte */
#define CLIENT(b) ((b) & 3)          /* who connects: */
#define C_REMOTE 0                   /*   192.0.2.9, may not relay */
#define C_LOCAL 1                    /*   a local program on a pipe */
#define C_RELAYNET 2                 /*   10.1.2.3, in relayclients */
#define C_RELAYENV 3                 /*   192.0.2.9 with $RELAYCLIENT */
#define MODE(b) (((b) >> 2) & 3)     /* DOPIS_MODE: unset, submission,
                                        submissions (no TLS here: 421),
                                        something invalid */
#define DELIVER(b) (((b) >> 4) & 3)  /* deliver: stores (0), exits 75,
                                        exits 1, cannot be started */

#define MAX_MESSAGE 10000            /* max_message_size below */
#define MAX_INPUT (1 << 20)          /* longer inputs are refused */

static int infd = -1, outfd = -1;

/* ---- the recorder: deliver in memory ---- */

static struct {
  int envfd, msgfd;        /* memfds the session writes as deliver's pipes */
  int running;
  int status;              /* what this deliver exits with */
  int nostart;             /* deliver cannot be started */
  int mayrelay;            /* the session may have remote recipients */
  unsigned long stored;    /* messages committed with status 0 */
  stralloc ids;            /* their ids, NUL-terminated, in order */
} rec;

static char *fuzz_readall(int fd, size_t *len)
{
  struct stat st;
  char *s;
  size_t got = 0;
  if (fstat(fd, &st) == -1) fuzz_fail("fstat: %s", strerror(errno));
  s = malloc(st.st_size ? (size_t)st.st_size : 1);
  if (!s) fuzz_fail("out of memory");
  while (got < (size_t)st.st_size) {
    ssize_t r = pread(fd, s + got, (size_t)st.st_size - got, (off_t)got);
    if (r <= 0) fuzz_fail("pread: %s", strerror(errno));
    got += (size_t)r;
  }
  *len = got;
  return s;
}

static void fuzz_truncate(int fd)
{
  if (ftruncate(fd, 0) == -1 || lseek(fd, 0, SEEK_SET) == -1) fuzz_fail("truncate: %s", strerror(errno));
}

int deliverpipe_broker(const char *path)
{
  (void)path;
  return 1;
}

int deliverpipe_start(struct deliverpipe *d, const char *path, int msgsrc)
{
  FUZZ_CHECK(msgsrc == -1, "smtpd starts deliver with a message file");
  FUZZ_CHECK(!rec.running, "deliver started while one runs");
  if (rec.nostart) {
    d->pid = -1;
    d->msgfd = d->envfd = -1;
    errno = EAGAIN;
    return 0;
  }
  fuzz_truncate(rec.envfd);
  fuzz_truncate(rec.msgfd);
  rec.running = 1;
  d->pid = 1;   /* anything but -1 */
  d->msgfd = rec.msgfd;
  d->envfd = rec.envfd;
  return 1;
}

void deliverpipe_abort(struct deliverpipe *d)
{
  rec.running = 0;
  d->pid = -1;
  d->msgfd = d->envfd = -1;
}

/* no dopis-tlsd here: STARTTLS is answered 454 */
int deliverpipe_tls(void)
{
  errno = EPROTO;
  return -1;
}

int deliverpipe_tlswait(void) { return -1; }

void deliverpipe_tlsprogram(const char *path) { (void)path; }

static int fuzz_printable(const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 32 || s[i] == 127) return 0;
  return 1;
}

/* an address as address_scanpath gives it: taken back unchanged */
static int fuzz_addressok(const char *a, size_t len, int flags)
{
  stralloc path = {0}, out = {0};
  enum address_error why;
  int ok;
  if (!stralloc_copys(&path, "<") || !stralloc_catb(&path, a, len) || !stralloc_cats(&path, ">"))
    fuzz_fail("out of memory");
  ok = address_scanpath(path.s, path.len, flags, &out, &why) == path.len && out.len == len &&
       (len == 0 || memcmp(out.s, a, len) == 0);
  stralloc_free(&path);
  stralloc_free(&out);
  return ok;
}

static int fuzz_xtextok(const char *s, size_t len)
{
  stralloc d = {0};
  int ok = len > 0 && xtext_decode(s, len, &d);
  stralloc_free(&d);
  return ok;
}

static int fuzz_islocal(const char *a, size_t len)
{
  size_t at = address_at(a, len);
  const char *d = a + at + 1;
  size_t dlen = at < len ? len - at - 1 : 0;
  if (at == len) return len == 10 && memcmp(a, "postmaster", 10) == 0;
  return (dlen == 11 && memcmp(d, "example.org", 11) == 0) ||
         (dlen == 11 && memcmp(d, "example.net", 11) == 0);
}

/* The envelope records, as dopis-deliver(8) reads them; *id gets the
 * I record's text. */
static void fuzz_envelope(const char *e, size_t len, int *binary, const char **id)
{
  size_t i = 0, n = 0;
  int utf8 = 0, sawt = 0, lastt = 0, sawn = 0, sawo = 0;
  *binary = 0;
  for (;;) {
    const char *r = e + i;
    size_t rlen;
    FUZZ_CHECK(i < len, "envelope cut short after %zu records", n);
    rlen = strnlen(r, len - i);
    FUZZ_CHECK(rlen < len - i, "envelope record %zu has no NUL", n);
    i += rlen + 1;
    if (rlen == 0) break;
    FUZZ_CHECK(fuzz_printable(r + 1, rlen - 1), "envelope record %c holds a control byte", r[0]);
    if (n == 0) {
      FUZZ_CHECK(r[0] == 'I' && rlen > 1, "envelope does not start with I");
      *id = r + 1;
    } else if (n == 1) {
      FUZZ_CHECK(r[0] == 'F', "second envelope record is not F");
      FUZZ_CHECK(rlen == 1 || fuzz_addressok(r + 1, rlen - 1, ADDRESS_UTF8), "bad sender F%.*s", (int)rlen - 1, r + 1);
    } else if (r[0] == 'P') {
      FUZZ_CHECK(!sawt, "P record after the recipients");
      if (rlen - 1 == 15 && !memcmp(r + 1, "BODY=BINARYMIME", 15)) *binary = 1;
      else if (rlen - 1 == 8 && !memcmp(r + 1, "SMTPUTF8", 8)) utf8 = 1;
      else if (rlen - 1 > 6 && !memcmp(r + 1, "ENVID=", 6))
        FUZZ_CHECK(rlen - 7 <= 100 && fuzz_xtextok(r + 7, rlen - 7), "bad ENVID %.*s", (int)rlen - 1, r + 1);
      else
        FUZZ_CHECK((rlen - 1 == 13 && !memcmp(r + 1, "BODY=8BITMIME", 13)) ||
                   (rlen - 1 == 8 && (!memcmp(r + 1, "RET=FULL", 8) || !memcmp(r + 1, "RET=HDRS", 8))),
                   "unknown P record %.*s", (int)rlen - 1, r + 1);
    } else if (r[0] == 'T') {
      sawt = lastt = 1;
      sawn = sawo = 0;
      FUZZ_CHECK(fuzz_addressok(r + 1, rlen - 1, ADDRESS_POSTMASTER | (utf8 ? ADDRESS_UTF8 : 0)),
                 "bad recipient T%.*s", (int)rlen - 1, r + 1);
      FUZZ_CHECK(rec.mayrelay || fuzz_islocal(r + 1, rlen - 1), "open relay: T%.*s from a remote client",
                 (int)rlen - 1, r + 1);
    } else if (r[0] == 'N') {
      FUZZ_CHECK(lastt && !sawn && !sawo && rlen > 1, "N record out of place or empty");
      sawn = 1;
    } else if (r[0] == 'O') {
      const char *semi = memchr(r + 1, ';', rlen - 1);
      FUZZ_CHECK(lastt && !sawo, "O record out of place");
      FUZZ_CHECK(semi && semi > r + 1 && fuzz_xtextok(semi + 1, (size_t)(r + rlen - semi - 1)),
                 "bad ORCPT %.*s", (int)rlen - 1, r + 1);
      sawo = 1;
    } else {
      fuzz_fail("unknown envelope record %c", r[0]);
    }
    n++;
  }
  FUZZ_CHECK(sawt, "envelope without a recipient");
  FUZZ_CHECK(i == len, "%zu bytes after the envelope's end", len - i);
}

int deliverpipe_commit(struct deliverpipe *d, unsigned long long size)
{
  size_t elen, mlen;
  char *e, *m;
  const char *id = NULL;
  int binary;

  FUZZ_CHECK(rec.running && d->pid != -1, "commit without deliver");
  e = fuzz_readall(rec.envfd, &elen);
  m = fuzz_readall(rec.msgfd, &mlen);
  deliverpipe_abort(d);
  fuzz_envelope(e, elen, &binary, &id);
  FUZZ_CHECK(size == mlen, "commit says %llu bytes, deliver got %zu", size, mlen);
  FUZZ_CHECK(mlen >= 15 && !memcmp(m, "Received: from ", 15), "message does not start with Received:");
  FUZZ_CHECK(binary || !memchr(m, '\r', mlen), "CR in a stored message (bare CR smuggled)");
  FUZZ_CHECK(mlen <= MAX_MESSAGE + 4096, "message of %zu bytes stored, limit %d", mlen, MAX_MESSAGE);
  if (rec.status == 0) {
    rec.stored++;
    if (!stralloc_cats(&rec.ids, id) || !stralloc_0(&rec.ids)) fuzz_fail("out of memory");
  }
  free(e);
  free(m);
  return rec.status;
}

/* ---- the session ---- */

static jmp_buf session_end;
static uintptr_t session_top;   /* the stack above smtpd_main */
static int ended;

/* Leaks.  A session ends with _exit(), and the process's memory goes
 * with it.  Here longjmp drops smtpd's frames instead, and what only
 * they still pointed to (a stralloc local to cmd_rcpt when its error
 * was the last one allowed, main's err) would count as leaked: those
 * blocks are kept, LeakSanitizer told to take them as reachable, which
 * is what the exit makes them.  libFuzzer's own leak check (on a run
 * that allocates more than it frees) would then run a whole-heap scan
 * after every such session, a third of the time; so this one counts
 * instead and asks LeakSanitizer only when more blocks stay allocated
 * than the frames kept (run.sh gives -detect_leaks=0). */
#define KEPT_MAX 256
static struct {
  int on;
  long mallocs, frees;
  const volatile void *kept[KEPT_MAX];   /* kept and not freed since */
  size_t nkept;
} lk;

static void fuzz_mallochook(const volatile void *p, size_t n)
{
  (void)p; (void)n;
  if (lk.on) lk.mallocs++;
}

static void fuzz_freehook(const volatile void *p)
{
  if (!lk.on) return;
  lk.frees++;
  for (size_t i = 0; i < lk.nkept; i++)
    if (lk.kept[i] == p) { lk.kept[i] = lk.kept[--lk.nkept]; break; }
}

__attribute__((no_sanitize("address")))
static void fuzz_keepframes(void)
{
  uintptr_t p = (uintptr_t)__builtin_frame_address(0) & ~(uintptr_t)(sizeof(void *) - 1);
  for (; p + sizeof(void *) <= session_top; p += sizeof(void *)) {
    void *v = *(void *const *)p;
    if (!v || !__sanitizer_get_ownership(v)) continue;
    __lsan_ignore_object(v);
    if (lk.nkept < KEPT_MAX) lk.kept[lk.nkept++] = v;
  }
}

void smtpd_fuzz_exit(int code)
{
  (void)code;
  FUZZ_CHECK(!rec.running, "session ended with deliver running");
  fuzz_keepframes();
  ended = 1;
  longjmp(session_end, 1);
}

unsigned smtpd_fuzz_sleep(unsigned secs)
{
  (void)secs;
  return 0;
}

/* passwd.c's decoy hash for an unknown user is yescrypt at its default
 * cost, 25 ms: a few dozen sessions a second.  Here the decoy is
 * MD5-crypt; passwd.c takes the same path. */
char *crypt_gensalt_rn(const char *prefix, unsigned long count, const char *rbytes, int nrbytes,
                       char *output, int output_size)
{
  (void)prefix; (void)count; (void)rbytes; (void)nrbytes;
  if (output_size < 16) return NULL;
  memcpy(output, "$1$dopisfz", 11);
  return output;
}

/* The replies: well-formed, and the 250 Ok: ones the stored messages. */
static void fuzz_replies(const char *o, size_t len)
{
  size_t i = 0, nline = 0, ok = 0;
  const char *ids = rec.ids.s;
  int final = 0;
  while (i < len) {
    const char *l = o + i;
    size_t n = 0;
    while (i + n < len && l[n] != '\r' && l[n] != '\n') n++;
    FUZZ_CHECK(i + n + 1 < len && l[n] == '\r' && l[n + 1] == '\n', "reply line %zu not ended by CRLF", nline);
    FUZZ_CHECK(!final, "a reply after the session's last: %.*s", (int)n, l);
    FUZZ_CHECK(n + 2 <= 512, "reply line of %zu bytes", n + 2);
    FUZZ_CHECK(n >= 3 && l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' &&
               l[2] <= '9' && (n == 3 || l[3] == ' ' || l[3] == '-'),
               "malformed reply %.*s", (int)n, l);
    FUZZ_CHECK(fuzz_printable(l, n), "control byte in reply %zu", nline);
    if (nline == 0)
      FUZZ_CHECK(!memcmp(l, "220 ", 4) || !memcmp(l, "421 ", 4), "greeting %.*s", (int)n, l);
    if (n > 3 && l[3] == ' ' && (!memcmp(l, "221", 3) || !memcmp(l, "421", 3))) final = 1;
    if (n > 14 && !memcmp(l, "250 2.0.0 Ok: ", 14)) {
      FUZZ_CHECK(ok < rec.stored, "250 Ok without a stored message: %.*s", (int)n, l);
      FUZZ_CHECK(strlen(ids) == n - 14 && !memcmp(ids, l + 14, n - 14), "250 Ok names %.*s, deliver got %s",
                 (int)(n - 14), l + 14, ids);
      ids += strlen(ids) + 1;
      ok++;
    }
    i += n + 2;
    nline++;
  }
  FUZZ_CHECK(ok == rec.stored, "%lu messages stored, %zu answered 250 Ok", rec.stored, ok);
}

static int fuzz_memfd(const char *name, int at)
{
  int fd = memfd_create(name, 0);
  if (fd == -1) fuzz_fail("memfd_create: %s", strerror(errno));
  if (at != -1) {
    if (dup2(fd, at) == -1) fuzz_fail("dup2: %s", strerror(errno));
    close(fd);
    fd = at;
  }
  return fd;
}

/* The test configuration of tests/dopistest.py, so that the seeds made
 * of tests/transcripts take the same paths here; passwd has cheap
 * hashes of "secret". */
static void fuzz_config(void)
{
  const char *dir = fuzz_dir();
  char conf[2048], users[1024];
  int n;
  n = snprintf(conf, sizeof conf,
               "hostname = mx.example.org\n"
               "mailroot = %s/mail\n"
               "queue = %s/queue\n"
               "deliver = /nonexistent/dopis-deliver\n"
               "max_message_size = %d\n"
               "max_recipients = 5\n"
               "timeout = 5\n", dir, dir, MAX_MESSAGE);
  mkdir(fuzz_path(dir, "conf"), 0700);
  fuzz_write(dir, "conf/dopis.conf", conf, (size_t)n);
  fuzz_write(dir, "conf/localdomains", "example.org\nexample.net\n", 24);
  n = snprintf(users, sizeof users,
               "alice@example.org\nbob@example.org\ncarol@example.net\n"
               "banned@example.org\ndave@example.org %s/custom/dave/\n", dir);
  fuzz_write(dir, "conf/users", users, (size_t)n);
  {
    static const char aliases[] =
      "postmaster@example.org: alice@example.org\n"
      "team@example.org: alice@example.org, bob@example.org\n"
      "loop1@example.org: loop2@example.org\n"
      "loop2@example.org: loop1@example.org\n"
      "@example.net: carol@example.net\n"
      "fwd@example.org: someone@remote.test\n";
    static const char restricted[] = "spammer@evil.test\n@evil.test\nbanned@example.org\n";
    static const char relayclients[] = "10.1.0.0/16\n2001:db8::/32\n";
    static const char passwd[] =
      "alice@example.org:$1$dopisfz$rjeQwDgPqZ6NmLJqkUpbT1\n"
      "bob@example.org:$5$rounds=1000$dopisfuzz$9pSkfT6YxzN2n9UEzjb5a7PchmchLwvax4Du1GnoUnA\n"
      "banned@example.org:$1$dopisfz$rjeQwDgPqZ6NmLJqkUpbT1\n";
    fuzz_write(dir, "conf/aliases", aliases, sizeof aliases - 1);
    fuzz_write(dir, "conf/restricted", restricted, sizeof restricted - 1);
    fuzz_write(dir, "conf/relayclients", relayclients, sizeof relayclients - 1);
    fuzz_write(dir, "conf/passwd", passwd, sizeof passwd - 1);
  }
  /* alice's Maildir++ folder .news, for user+news@ */
  mkdir(fuzz_path(dir, "mail"), 0700);
  mkdir(fuzz_path(dir, "mail/example.org"), 0700);
  mkdir(fuzz_path(dir, "mail/example.org/alice"), 0700);
  mkdir(fuzz_path(dir, "mail/example.org/alice/.news"), 0700);
  setenv("DOPIS_CONF", fuzz_path(dir, "conf"), 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc; (void)argv;
  if (!__sanitizer_install_malloc_and_free_hooks(fuzz_mallochook, fuzz_freehook)) fuzz_fail("malloc hooks");
  fuzz_config();
  infd = fuzz_memfd("smtpd-in", 0);
  outfd = fuzz_memfd("smtpd-out", 1);
  rec.envfd = fuzz_memfd("deliver-env", -1);
  rec.msgfd = fuzz_memfd("deliver-msg", -1);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t olen;
  char *o;
  uint8_t how;

  if (size < 1 || size > MAX_INPUT) return -1;
  how = data[0];
  fuzz_truncate(infd);
  if (size > 1 && pwrite(infd, data + 1, size - 1, 0) != (ssize_t)(size - 1)) fuzz_fail("pwrite: %s", strerror(errno));
  fuzz_truncate(outfd);

  unsetenv("TCPREMOTEIP");
  unsetenv("RELAYCLIENT");
  unsetenv("DOPIS_MODE");
  switch (CLIENT(how)) {
  case C_REMOTE: setenv("TCPREMOTEIP", "192.0.2.9", 1); break;
  case C_LOCAL: break;
  case C_RELAYNET: setenv("TCPREMOTEIP", "10.1.2.3", 1); break;
  case C_RELAYENV: setenv("TCPREMOTEIP", "192.0.2.9", 1); setenv("RELAYCLIENT", "", 1); break;
  }
  if (MODE(how)) setenv("DOPIS_MODE", MODE(how) == 1 ? "submission" : MODE(how) == 2 ? "submissions" : "pop3", 1);
  rec.mayrelay = CLIENT(how) != C_REMOTE;
  rec.status = DELIVER(how) == 1 ? 75 : DELIVER(how) == 2 ? 1 : 0;
  rec.nostart = DELIVER(how) == 3;
  rec.running = 0;
  rec.stored = 0;
  stralloc_zero(&rec.ids);

  ended = 0;
  lk.mallocs = lk.frees = 0;
  lk.nkept = 0;
  lk.on = 1;
  session_top = (uintptr_t)__builtin_frame_address(0);
  if (setjmp(session_end) == 0) smtpd_main();
  FUZZ_CHECK(ended, "smtpd_main returned");
  /* all freed now, so that a session that leaks nothing ends with as
   * many frees as allocations */
  smtpd_fuzz_reset();
  lk.on = 0;
  if (lk.mallocs - lk.frees > (long)lk.nkept && __lsan_do_recoverable_leak_check())
    fuzz_fail("memory leaked: LeakSanitizer's report is above");

  o = fuzz_readall(outfd, &olen);
  fuzz_replies(o, olen);
  free(o);
  return 0;
}
