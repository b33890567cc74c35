/* relay: one pass over the queue, then exit.  Started by a timer (or
 * by hand, or by the queue tool); never a resident daemon.
 *
 *   relay [-f] [-i ID]
 *
 * Takes the queue's lock (a second relay exits at once), reads every
 * info file, hands due local recipients to deliver, groups the due
 * remote ones by destination domain and works up to max_connections
 * destinations at once in one poll loop: one connection per domain,
 * one transaction per message.  Each transaction's result is written
 * to the message's info file before anything else happens; at the end
 * DSNs are sent and finished messages removed.  See dopis-relay(8). */
#include <sys/types.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <byte.h>
#include <case.h>
#include <fmt.h>
#include <ip4.h>
#include <ip6.h>
#include <scan.h>
#include <str.h>
#include <stralloc.h>
#include "log.h"
#include "relay.h"

struct config cfg;
const char *queuedir;


static unsigned long nowcache;
static int flush;
static const char *onlyid;

static struct msg *msgs;
static size_t nmsgs;

static struct dest *dests, *pending;
static unsigned long active;

/* the smarthost, parsed */
static stralloc smart;            /* host name, NUL-terminated, or "" */
static struct hostaddr smartaddr; /* when it is an address */
static int smartisaddr;
static unsigned short smartport = 25;
static unsigned short mxport = 25;

unsigned long relay_now(void)
{
  if (!nowcache) {
    const char *s = getenv("DOPIS_NOW");
    unsigned long n;
    if (s && *s && scan_ulong(s, &n) == str_len(s) && n) nowcache = n;
    else nowcache = (unsigned long)time(NULL);
  }
  return nowcache;
}

unsigned long long relay_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

static void __attribute__((noreturn)) relay_die(int code, const char *event,
                                               const char *what, size_t len)
{
  log_start();
  log_str("event", event);
  if (what) log_buf("error", what, len);
  log_end();
  _exit(code);
}

static void __attribute__((noreturn)) relay_nomem(void)
{
  relay_die(EX_TEMPFAIL, "failed", "out of memory", 13);
}

/* ---- destinations: what mx.c and client.c call ---- */

static void dest_hostname(struct dest *d)
{
  char ip[FMT_IP6];
  const struct sockaddr_storage *sa = &d->addr[d->iaddr].sa;
  size_t n;
  if (sa->ss_family == AF_INET)
    n = fmt_ip4(ip, (const char *)&((const struct sockaddr_in *)sa)->sin_addr);
  else
    n = fmt_ip6(ip, (const char *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
  if (!stralloc_copys(&d->host, d->kind == DEST_LITERAL ? "" : d->mxname[d->imx]) ||
      !stralloc_cats(&d->host, "[") || !stralloc_catb(&d->host, ip, n) ||
      !stralloc_cats(&d->host, "]") || !stralloc_0(&d->host))
    relay_nomem();
}

void dest_connect(struct dest *d)
{
  static stralloc t;
  const struct hostaddr *a = &d->addr[d->iaddr];
  int fd, r;

  dest_hostname(d);
  fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd != -1) {
    /* the client writes whole commands and buffers of data; Nagle
     * would hold the final dot back until the peer acknowledged the
     * data before it, a delayed ACK later (40 ms a message) */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    do r = connect(fd, (const struct sockaddr *)&a->sa, a->len);
    while (r == -1 && errno == EINTR);
    if (r == 0 || errno == EINPROGRESS) {
      d->c = conn_new(d, fd);
      if (d->c) return;
      errno = ENOMEM;
    }
    r = errno;
    close(fd);
    errno = r;
  }
  if (!stralloc_copys(&t, "connect to ") || !stralloc_cats(&t, d->host.s) ||
      !stralloc_cats(&t, ": ") || !stralloc_cats(&t, strerror(errno)))
    relay_nomem();
  dest_nexthost(d, 0, "4.4.1", t.s, t.len);
}

void dest_nexthost(struct dest *d, int perm, const char *status,
                   const char *text, size_t len)
{
  d->tried = 1;
  d->lastperm = perm;
  if (!stralloc_copys(&d->laststatus, status) || !stralloc_0(&d->laststatus) ||
      !stralloc_copyb(&d->lasttext, text, len) || !stralloc_0(&d->lasttext))
    relay_nomem();
  d->laststatus.len--;
  d->lasttext.len--;
  if (!stralloc_copy(&d->lasthost, &d->host)) relay_nomem();
  log_start();
  log_str("event", "host-failed");
  log_str("domain", d->domain.s);
  log_str("host", d->host.len ? d->host.s : "-");
  log_buf("reply", text, len);
  log_end();
  if (d->c) { conn_free(d->c); d->c = NULL; }
  if (d->iaddr + 1 < d->naddr) {
    d->iaddr++;
    dest_connect(d);
    return;
  }
  if (d->kind != DEST_LITERAL && d->imx + 1 < d->nmx) {
    d->imx++;
    mx_host(d);
    return;
  }
  dest_giveup(d, perm, status, text, len);
}

void dest_giveup(struct dest *d, int perm, const char *status,
                 const char *text, size_t len)
{
  const char *host = d->lasthost.len ? d->lasthost.s : NULL;
  for (struct task *t = d->tasks; t; t = t->next) {
    if (t->done) continue;
    for (size_t k = 0; k < t->n; k++)
      msg_result(t->m, t->rcpt[k], perm ? RES_FAIL : RES_DEFER, status, host,
                 text, len, 0);
    t->done = 1;
    msg_save(t->m);
  }
  dest_done(d);
}

void dest_done(struct dest *d)
{
  if (d->finished) return;
  if (d->c) { conn_free(d->c); d->c = NULL; }
  for (struct task *t = d->tasks; t; t = t->next) {
    if (t->done) continue;
    /* cannot happen: every task ends with a result; never lose one */
    for (size_t k = 0; k < t->n; k++)
      msg_result(t->m, t->rcpt[k], RES_DEFER, "4.3.0", NULL, "not attempted", 13, 0);
    t->done = 1;
    msg_save(t->m);
  }
  d->finished = 1;
  active--;
}

int dest_nexttask(struct dest *d)
{
  for (struct task *t = d->tasks; t; t = t->next)
    if (!t->done) { d->cur = t; return 1; }
  d->cur = NULL;
  return 0;
}

/* ---- the pass ---- */

/* One due remote recipient, for sorting into destinations. */
struct due {
  const char *domain;     /* lower case */
  size_t msg, rcpt;
};

static int due_cmp(const void *a, const void *b)
{
  const struct due *x = a, *y = b;
  int r = strcmp(x->domain, y->domain);
  if (r) return r;
  if (x->msg != y->msg) return x->msg < y->msg ? -1 : 1;
  return x->rcpt < y->rcpt ? -1 : x->rcpt > y->rcpt;
}

static int relay_isdue(const struct msg *m, const struct qinfo_rcpt *r, unsigned long now)
{
  if (flush && r->state == QINFO_PENDING) return 1;
  return qinfo_due(&m->qi, r, now, cfg.retry_max, cfg.max_queue_lifetime);
}

static int relay_namecmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void relay_load(void)
{
  static stralloc p;
  char **names = NULL;
  size_t n = 0, a = 0;
  DIR *dir;
  struct dirent *e;

  if (onlyid) {
    names = malloc(sizeof *names);
    if (!names || !(names[0] = strdup(onlyid))) relay_nomem();
    n = 1;
  } else {
    if (!stralloc_copys(&p, queuedir) || !stralloc_cats(&p, "/info") || !stralloc_0(&p))
      relay_nomem();
    dir = opendir(p.s);
    if (!dir) {
      if (errno == ENOENT) return;   /* nothing was ever queued */
      relay_die(EX_TEMPFAIL, "failed", strerror(errno), str_len(strerror(errno)));
    }
    while ((e = readdir(dir))) {
      if (e->d_name[0] == '.') continue;
      if (n == a) {
        char **nn;
        a = a ? a * 2 : 64;
        nn = realloc(names, a * sizeof *nn);
        if (!nn) relay_nomem();
        names = nn;
      }
      if (!(names[n] = strdup(e->d_name))) relay_nomem();
      n++;
    }
    closedir(dir);
    /* oldest ids first: the id starts with the time in hex */
    if (n) qsort(names, n, sizeof *names, relay_namecmp);
  }
  msgs = calloc(n ? n : 1, sizeof *msgs);
  if (!msgs) relay_nomem();
  for (size_t i = 0; i < n; i++) {
    if (msg_load(&msgs[nmsgs], names[i]) == 0) nmsgs++;
    else msg_free(&msgs[nmsgs]);
    free(names[i]);
  }
  free(names);
  if (onlyid && !nmsgs) relay_die(EX_NOINPUT, "no-such-message", onlyid, str_len(onlyid));
}

/* Local recipients (a local delivery that failed for the moment while
 * others of the message succeeded) go back through deliver. */
static void relay_local(struct msg *m, unsigned long now)
{
  static stralloc rcpts, params, why;
  size_t idx[RELAY_MAXRCPTS * 10], n = 0;
  int fd, r;
  enum result res;
  const char *status, *text;

  stralloc_zero(&rcpts);
  for (size_t i = 0; i < m->qi.n && n < sizeof idx / sizeof *idx; i++) {
    const struct qinfo_rcpt *rc = &m->qi.r[i];
    const char *addr = rc->addr;
    size_t len = str_len(addr), at = byte_rchr(addr, len, '@');
    if (!relay_isdue(m, rc, now)) continue;
    if (at == len || !config_islocaldomain(&cfg, addr + at + 1, len - at - 1)) continue;
    /* with its DSN parameters: an alias may send it on to the queue */
    if (!stralloc_cats(&rcpts, "T") || !stralloc_cats(&rcpts, addr) || !stralloc_0(&rcpts) ||
        (rc->notify && (!stralloc_cats(&rcpts, "N") || !stralloc_cats(&rcpts, rc->notify) ||
                        !stralloc_0(&rcpts))) ||
        (rc->orcpt && (!stralloc_cats(&rcpts, "O") || !stralloc_cats(&rcpts, rc->orcpt) ||
                       !stralloc_0(&rcpts))))
      relay_nomem();
    idx[n++] = i;
  }
  if (!n) return;
  stralloc_zero(&params);
  for (size_t i = 0; i < m->qi.head.len; i += str_len(m->qi.head.s + i) + 1)
    if (m->qi.head.s[i] == 'P' &&
        (!stralloc_cats(&params, m->qi.head.s + i + 1) || !stralloc_0(&params)))
      relay_nomem();
  fd = msg_open(m, &why);
  r = fd == -1 ? -1 : spawn_deliver(m->qi.sender, &rcpts, &params, fd, m->size,
                                    NULL, NULL, &why);
  if (fd != -1) close(fd);
  if (r == 0) { res = RES_OK; status = "2.0.0"; text = "delivered locally"; }
  else if (r == -1 || r == EX_TEMPFAIL) { res = RES_DEFER; status = "4.3.0"; text = "local delivery failed for now"; }
  else if (r == EX_NOUSER) { res = RES_FAIL; status = "5.1.1"; text = "no such local user"; }
  else { res = RES_FAIL; status = "5.3.0"; text = "local delivery failed"; }
  /* deliver logs its reason; ours names what happened */
  for (size_t k = 0; k < n; k++)
    msg_result(m, idx[k], res, status, NULL, text, str_len(text), 0);
  msg_save(m);
}

static struct dest *relay_newdest(const char *domain)
{
  struct dest *d = calloc(1, sizeof *d);
  if (!d || !stralloc_copys(&d->domain, domain) || !stralloc_0(&d->domain)) relay_nomem();
  d->selfpref = -1;
  if (cfg.smarthost.len) {
    d->kind = DEST_SMARTHOST;
    d->port = smartport;
    if (smartisaddr) {
      d->addr[0] = smartaddr;
      d->naddr = 1;
      d->mxname[0] = strdup("");
    } else {
      d->mxname[0] = strdup(smart.s);
    }
    if (!d->mxname[0]) relay_nomem();
    d->nmx = 1;
  } else {
    d->kind = domain[0] == '[' ? DEST_LITERAL : DEST_MX;
    d->port = mxport;
  }
  d->next = dests;
  dests = d;
  return d;
}

static void relay_addtask(struct dest *d, struct msg *m, const size_t *rcpt, size_t n)
{
  struct task *t = calloc(1, sizeof *t);
  if (!t) relay_nomem();
  t->m = m;
  t->n = n;
  t->rcpt = malloc(n * sizeof *t->rcpt);
  t->accepted = calloc(n, sizeof *t->accepted);
  if (!t->rcpt || !t->accepted) relay_nomem();
  byte_copy(t->rcpt, n * sizeof *t->rcpt, rcpt);
  if (d->last) d->last->next = t; else d->tasks = t;
  d->last = t;
}

/* Due remote recipients, grouped: a destination per domain (one for
 * everything with a smarthost), a task per message, at most
 * RELAY_MAXRCPTS recipients a task. */
static void relay_group(unsigned long now)
{
  struct due *due = NULL;
  size_t n = 0, a = 0, i, j;
  stralloc lower = {0};
  char **domains = NULL;

  for (i = 0; i < nmsgs; i++) {
    struct msg *m = &msgs[i];
    if (m->broken) continue;
    for (j = 0; j < m->qi.n; j++) {
      const char *addr = m->qi.r[j].addr;
      size_t len = str_len(addr), at = byte_rchr(addr, len, '@');
      if (!relay_isdue(m, &m->qi.r[j], now)) continue;
      if (at < len && config_islocaldomain(&cfg, addr + at + 1, len - at - 1)) continue;
      if (n == a) {
        a = a ? 2 * a : 64;
        due = realloc(due, a * sizeof *due);
        domains = realloc(domains, a * sizeof *domains);
        if (!due || !domains) relay_nomem();
      }
      if (cfg.smarthost.len) {
        if (!stralloc_copys(&lower, "")) relay_nomem();
      } else {
        if (at == len) at = 0; else at++;   /* no domain: fails at the MX lookup */
        if (!stralloc_copyb(&lower, addr + at, len - at)) relay_nomem();
        case_lowerb(lower.s, lower.len);
      }
      if (!stralloc_0(&lower) || !(domains[n] = strdup(lower.s))) relay_nomem();
      due[n].domain = domains[n];
      due[n].msg = i;
      due[n].rcpt = j;
      n++;
    }
  }
  stralloc_free(&lower);
  if (n) qsort(due, n, sizeof *due, due_cmp);
  for (i = 0; i < n; ) {
    struct dest *d = relay_newdest(due[i].domain);
    size_t k = i;
    while (k < n && !strcmp(due[k].domain, due[i].domain)) k++;
    /* [i, k) is one domain, sorted by message */
    for (j = i; j < k; ) {
      size_t rc[RELAY_MAXRCPTS], m = 0, l = j;
      while (l < k && due[l].msg == due[j].msg && m < RELAY_MAXRCPTS) rc[m++] = due[l++].rcpt;
      relay_addtask(d, &msgs[due[j].msg], rc, m);
      j = l;
    }
    i = k;
  }
  for (i = 0; i < n; i++) free(domains[i]);
  free(domains);
  free(due);
  /* in the order of the list: the newest domain first is as good as any */
  pending = dests;
}

static void relay_start(void)
{
  while (pending && active < cfg.max_connections) {
    struct dest *d = pending;
    pending = d->next;
    d->active = 1;
    active++;
    mx_start(d);
  }
}

static void relay_loop(void)
{
  struct pollfd *pfd = calloc(cfg.max_connections + 1, sizeof *pfd);
  struct dest **who = calloc(cfg.max_connections + 1, sizeof *who);
  if (!pfd || !who) relay_nomem();

  for (;;) {
    unsigned long long now, next = 0;
    int n = 0, dnsfd, ms, r;

    conn_reap();
    relay_start();
    /* what this turn finished is durable before we wait again */
    msg_sync();
    if (!active) break;
    dnsfd = mx_active() ? mx_fd() : -1;
    if (dnsfd != -1) {
      pfd[n].fd = dnsfd;
      pfd[n].events = POLLIN;
      who[n++] = NULL;
    }
    for (struct dest *d = dests; d; d = d->next) {
      if (!d->active || d->finished || !d->c || conn_fd(d->c) == -1) continue;
      if ((size_t)n > cfg.max_connections) break;
      pfd[n].fd = conn_fd(d->c);
      pfd[n].events = conn_events(d->c);
      who[n++] = d;
      if (!next || conn_deadline(d->c) < next) next = conn_deadline(d->c);
    }
    now = relay_ms();
    ms = -1;
    if (next) ms = next > now ? (int)(next - now < 3600000 ? next - now : 3600000) : 0;
    r = mx_timeouts();
    if (r >= 0 && (ms < 0 || r * 1000 < ms)) ms = r * 1000;
    if (ms < 0) ms = 1000;   /* nothing to wait for: cannot happen, look again */
    r = poll(pfd, (nfds_t)n, ms);
    if (r == -1 && errno != EINTR) relay_die(EX_OSERR, "failed", "poll", 4);
    for (int i = 0; r > 0 && i < n; i++) {
      if (!pfd[i].revents) continue;
      if (!who[i]) { mx_io(); continue; }
      /* an earlier event may have moved this destination on */
      if (who[i]->c && conn_fd(who[i]->c) == pfd[i].fd) conn_io(who[i]->c, pfd[i].revents);
    }
    mx_timeouts();
    now = relay_ms();
    for (struct dest *d = dests; d; d = d->next)
      if (d->active && !d->finished && d->c && conn_fd(d->c) != -1 &&
          conn_deadline(d->c) <= now)
        conn_timeout(d->c);
  }
  free(pfd);
  free(who);
}

/* smarthost = host[:port], [address][:port], or a bare IPv6 address */
static void relay_smarthost(void)
{
  const char *s = cfg.smarthost.s;
  size_t len = cfg.smarthost.len, hlen = len, colon;
  unsigned long port = 25;
  char ip[16];

  if (!len) return;
  if (s[0] == '[') {
    hlen = byte_chr(s, len, ']');
    if (hlen == len) goto bad;
    colon = hlen + 1;
    s++;
    hlen--;
    if (colon < len && s[colon - 1] != ':') goto bad;
    if (colon < len) {
      if (scan_ulong(s + colon, &port) != len - colon - 1) goto bad;
    }
  } else if (byte_chr(s, len, ':') == len || byte_rchr(s, len, ':') != byte_chr(s, len, ':')) {
    hlen = len;   /* no port, or a bare IPv6 address */
  } else {
    hlen = byte_chr(s, len, ':');
    if (scan_ulong(s + hlen + 1, &port) != len - hlen - 1) goto bad;
  }
  if (!port || port > 65535 || !hlen) goto bad;
  smartport = (unsigned short)port;
  if (!stralloc_copyb(&smart, s, hlen) || !stralloc_0(&smart)) relay_nomem();
  if (scan_ip4(smart.s, ip) == hlen) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&smartaddr.sa;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(smartport);
    byte_copy(&sin->sin_addr, 4, ip);
    smartaddr.len = sizeof *sin;
    smartisaddr = 1;
  } else if (byte_chr(smart.s, hlen, ':') < hlen) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&smartaddr.sa;
    if (scan_ip6(smart.s, ip) != hlen) goto bad;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(smartport);
    byte_copy(&sin6->sin6_addr, 16, ip);
    smartaddr.len = sizeof *sin6;
    smartisaddr = 1;
  }
  return;
bad:
  relay_die(EX_CONFIG, "config-error", "smarthost: expected host[:port]", 31);
}

/* Files left in tmp/ by a crash, older than a day, are garbage. */
static void relay_cleantmp(void)
{
  static stralloc p;
  DIR *dir;
  struct dirent *e;
  time_t old = time(NULL) - 86400;
  size_t base;

  if (!stralloc_copys(&p, queuedir) || !stralloc_cats(&p, "/tmp/")) return;
  base = p.len;
  if (!stralloc_0(&p) || !(dir = opendir(p.s))) return;
  while ((e = readdir(dir))) {
    struct stat st;
    if (e->d_name[0] == '.') continue;
    p.len = base;
    if (!stralloc_cats(&p, e->d_name) || !stralloc_0(&p)) break;
    if (lstat(p.s, &st) == 0 && S_ISREG(st.st_mode) && st.st_mtime < old) unlink(p.s);
  }
  closedir(dir);
}

static int relay_lock(void)
{
  static stralloc p;
  int fd;
  if (!stralloc_copys(&p, queuedir) || !stralloc_cats(&p, "/lock") || !stralloc_0(&p))
    relay_nomem();
  fd = open(p.s, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd == -1) {
    if (errno == ENOENT) return -1;   /* no queue yet: nothing to do */
    relay_die(EX_TEMPFAIL, "failed", strerror(errno), str_len(strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK) {
      log_start();
      log_str("event", "busy");
      log_str("reason", "another relay holds the queue lock");
      log_end();
      _exit(0);
    }
    relay_die(EX_TEMPFAIL, "failed", strerror(errno), str_len(strerror(errno)));
  }
  return fd;   /* held until exit */
}

static void __attribute__((noreturn)) relay_usage(void)
{
  relay_die(EX_USAGE, "usage", "relay [-f] [-i id]", 18);
}

int main(int argc, char **argv)
{
  stralloc err = {0};
  unsigned long now;
  const char *port;
  int opt;

  signal(SIGPIPE, SIG_IGN);
  log_init("relay");
  while ((opt = getopt(argc, argv, "fi:")) != -1) {
    if (opt == 'f') flush = 1;
    else if (opt == 'i') onlyid = optarg;
    else relay_usage();
  }
  if (optind != argc) relay_usage();
  if (onlyid && (!*onlyid || onlyid[0] == '.' || onlyid[str_chr(onlyid, '/')]))
    relay_die(EX_USAGE, "usage", "bad id", 6);
  /* -i works one message now: the queue tool's "send this" */
  if (onlyid) flush = 1;
  if (!config_load(&cfg, &err)) relay_die(EX_CONFIG, "config-error", err.s, err.len);
  queuedir = cfg.queue.s;
  relay_smarthost();
  /* the smarthost's password, read once: a config error exits now */
  if (auth_init(&err) == -1) relay_die(EX_CONFIG, "config-error", err.s, err.len);
  port = getenv("DOPIS_RELAY_PORT");
  if (port && *port) {
    unsigned long p;
    if (scan_ulong(port, &p) != str_len(port) || !p || p > 65535)
      relay_die(EX_USAGE, "usage", "DOPIS_RELAY_PORT is not a port", 30);
    mxport = (unsigned short)p;
  }
  now = relay_now();

  if (relay_lock() == -1) {
    log_start();
    log_str("event", "idle");
    log_str("reason", "no queue");
    log_end();
    return 0;
  }
  relay_cleantmp();
  relay_load();
  for (size_t i = 0; i < nmsgs; i++)
    if (!msgs[i].broken) relay_local(&msgs[i], now);
  relay_group(now);
  if (dests) {
    if (mx_init(&err) == -1) relay_die(EX_OSERR, "failed", err.s, err.len);
    if (ctls_init(&err) == -1) relay_die(EX_TEMPFAIL, "failed", err.s, err.len);
    relay_loop();
  }
  msg_sync();
  for (size_t i = 0; i < nmsgs; i++) msg_finish(&msgs[i]);
  msg_sync();
  log_start();
  log_str("event", "pass-done");
  log_ulong("messages", nmsgs);
  log_end();
  return 0;
}
