/* Where a domain's mail goes (RFC 5321 section 5.1), asked of DNS
 * through udns's asynchronous API so that many domains resolve at
 * once: the MX records sorted by preference, equal ones shuffled; no
 * MX means the domain itself (implicit MX); a null MX (RFC 7505) or a
 * domain that does not exist fails for good; any temporary DNS trouble
 * only defers.  Hosts are resolved one at a time, in order, AAAA and A
 * together; IPv6 addresses are tried first.
 *
 * Never ourselves: an MX named like our hostname drops itself and
 * every MX of the same or a higher preference; a host whose address is
 * one of this machine's interface addresses ends the list there. */
#include <sys/types.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <udns.h>
#include <byte.h>
#include <case.h>
#include <ip4.h>
#include <ip6.h>
#include <str.h>
#include <stralloc.h>
#include "log.h"
#include "relay.h"

#define MX_MAXLOCAL 256

static unsigned char locals[MX_MAXLOCAL][16];  /* IPv4 as ::ffff:a.b.c.d */
static size_t nlocals;
static int dnsok;

/* the 16-byte form of a socket address; 0 when neither family */
static int mx_key(const struct sockaddr *sa, unsigned char out[16])
{
  if (sa->sa_family == AF_INET) {
    byte_zero(out, 10);
    out[10] = out[11] = 0xff;
    byte_copy(out + 12, 4, &((const struct sockaddr_in *)sa)->sin_addr);
    return 1;
  }
  if (sa->sa_family == AF_INET6) {
    byte_copy(out, 16, &((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 1;
  }
  return 0;
}

int mx_islocal(const struct sockaddr *sa)
{
  static const unsigned char any4[16] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff,0,0,0,0 };
  static const unsigned char any6[16];
  unsigned char k[16];
  if (!mx_key(sa, k)) return 0;
  /* 0.0.0.0 and :: reach this host too */
  if (byte_equal(k, 16, any4) || byte_equal(k, 16, any6)) return 1;
  for (size_t i = 0; i < nlocals; i++)
    if (byte_equal(k, 16, locals[i])) return 1;
  return 0;
}

int mx_init(stralloc *why)
{
  struct ifaddrs *ifa, *p;
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  srandom((unsigned)ts.tv_nsec ^ (unsigned)getpid() ^ (unsigned)ts.tv_sec);
  if (getifaddrs(&ifa) == -1) {
    stralloc_copys(why, "getifaddrs: ");
    stralloc_cats(why, strerror(errno));
    return -1;
  }
  for (p = ifa; p && nlocals < MX_MAXLOCAL; p = p->ifa_next)
    if (p->ifa_addr && mx_key(p->ifa_addr, locals[nlocals])) nlocals++;
  freeifaddrs(ifa);
  /* udns reads /etc/resolv.conf, and NAMESERVERS from the environment */
  dnsok = dns_init(NULL, 1) >= 0;
  if (!dnsok) {
    log_start();
    log_str("event", "dns-unavailable");
    log_end();
  }
  return 0;
}

int mx_fd(void) { return dnsok ? dns_sock(NULL) : -1; }
int mx_active(void) { return dnsok ? dns_active(NULL) : 0; }
void mx_io(void) { if (dnsok) dns_ioevent(NULL, 0); }
int mx_timeouts(void) { return dnsok ? dns_timeouts(NULL, -1, 0) : -1; }

static int mx_isself(const char *name)
{
  size_t n = str_len(name);
  if (n && name[n - 1] == '.') n--;
  return n == cfg.hostname.len && case_equalb(name, n, cfg.hostname.s);
}

/* Our own host in the list: the hosts before it were tried and failed
 * (defer, they may come back), or there were none (a mail loop). */
void mx_loop(struct dest *d, const char *why)
{
  static stralloc t;
  if (d->tried) {
    dest_giveup(d, d->lastperm, d->laststatus.s, d->lasttext.s, d->lasttext.len);
    return;
  }
  if (!stralloc_copys(&t, "mail for ") || !stralloc_cats(&t, d->domain.s) ||
      !stralloc_cats(&t, " loops back to myself (") || !stralloc_cats(&t, why) ||
      !stralloc_cats(&t, ")"))
    stralloc_copys(&t, "mail loops back to myself");
  dest_giveup(d, 1, "5.4.6", t.s, t.len);
}

static void mx_addrs(struct dest *d);

static void mx_a4(struct dns_ctx *ctx, struct dns_rr_a4 *rr, void *data)
{
  struct dest *d = data;
  d->q[0] = NULL;
  if (!rr) {
    int st = dns_status(ctx);
    if (st == DNS_E_NXDOMAIN || st == DNS_E_NODATA) d->dnsnx++;
    else d->dnstemp++;
  } else {
    for (int i = 0; i < rr->dnsa4_nrr && d->naddr < RELAY_MAXADDR; i++) {
      struct sockaddr_in *sin = (struct sockaddr_in *)&d->addr[d->naddr].sa;
      byte_zero(sin, sizeof *sin);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(d->port);
      sin->sin_addr = rr->dnsa4_addr[i];
      d->addr[d->naddr++].len = sizeof *sin;
    }
    free(rr);
  }
  if (--d->dnswait == 0) mx_addrs(d);
}

static void mx_a6(struct dns_ctx *ctx, struct dns_rr_a6 *rr, void *data)
{
  struct dest *d = data;
  d->q[1] = NULL;
  if (!rr) {
    int st = dns_status(ctx);
    if (st == DNS_E_NXDOMAIN || st == DNS_E_NODATA) d->dnsnx++;
    else d->dnstemp++;
  } else {
    for (int i = 0; i < rr->dnsa6_nrr && d->naddr < RELAY_MAXADDR; i++) {
      struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&d->addr[d->naddr].sa;
      byte_zero(sin6, sizeof *sin6);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(d->port);
      sin6->sin6_addr = rr->dnsa6_addr[i];
      d->addr[d->naddr++].len = sizeof *sin6;
    }
    free(rr);
  }
  if (--d->dnswait == 0) mx_addrs(d);
}

/* Both answers are in: IPv6 first, then IPv4; then connect. */
static void mx_addrs(struct dest *d)
{
  static stralloc t;
  struct hostaddr tmp[RELAY_MAXADDR];
  int n = 0;

  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < d->naddr; i++)
      if ((d->addr[i].sa.ss_family == AF_INET6) == (pass == 0)) tmp[n++] = d->addr[i];
  byte_copy(d->addr, sizeof tmp[0] * (size_t)n, tmp);
  d->iaddr = 0;
  if (d->naddr == 0) {
    int perm = !d->dnstemp && d->implicit;
    if (!stralloc_copys(&t, "no address for ") ||
        !stralloc_cats(&t, d->mxname[d->imx]) ||
        !stralloc_cats(&t, d->dnstemp ? " (DNS temporary failure)" : ""))
      stralloc_copys(&t, "no address");
    /* an implicit MX without address: the domain takes no mail */
    dest_nexthost(d, perm, perm ? "5.4.4" : "4.4.3", t.s, t.len);
    return;
  }
  if (d->kind != DEST_SMARTHOST)
    for (int i = 0; i < d->naddr; i++)
      if (mx_islocal((struct sockaddr *)&d->addr[i].sa)) {
        mx_loop(d, "an address of this host");
        return;
      }
  dest_connect(d);
}

/* Resolves host d->mxname[d->imx]. */
void mx_host(struct dest *d)
{
  const char *name = d->mxname[d->imx];
  d->naddr = d->iaddr = 0;
  d->dnsnx = d->dnstemp = 0;
  if (!dnsok) {
    dest_giveup(d, 0, "4.4.3", "DNS resolver unavailable", 24);
    return;
  }
  d->dnswait = 2;
  d->q[0] = dns_submit_a4(NULL, name, DNS_NOSRCH, mx_a4, d);
  if (!d->q[0]) { d->dnswait--; d->dnstemp++; }
  d->q[1] = dns_submit_a6(NULL, name, DNS_NOSRCH, mx_a6, d);
  if (!d->q[1]) { d->dnswait--; d->dnstemp++; }
  if (d->dnswait == 0) mx_addrs(d);
}

static int mx_cmp(const void *a, const void *b)
{
  const struct dns_mx *x = a, *y = b;
  return x->priority < y->priority ? -1 : x->priority > y->priority;
}

static void mx_answer(struct dns_ctx *ctx, struct dns_rr_mx *rr, void *data)
{
  static stralloc t;
  struct dest *d = data;
  int n, i, j;

  d->q[0] = NULL;
  d->dnswait = 0;
  if (!rr) {
    int st = dns_status(ctx);
    if (st == DNS_E_NXDOMAIN) {
      if (!stralloc_copys(&t, "domain ") || !stralloc_cats(&t, d->domain.s) ||
          !stralloc_cats(&t, " does not exist (NXDOMAIN)"))
        stralloc_copys(&t, "domain does not exist");
      dest_giveup(d, 1, "5.1.2", t.s, t.len);
      return;
    }
    if (st != DNS_E_NODATA) {
      if (!stralloc_copys(&t, "DNS temporary failure for MX of ") ||
          !stralloc_cats(&t, d->domain.s) || !stralloc_cats(&t, ": ") ||
          !stralloc_cats(&t, dns_strerror(st)))
        stralloc_copys(&t, "DNS temporary failure");
      dest_giveup(d, 0, "4.4.3", t.s, t.len);
      return;
    }
    /* no MX: the domain is its own mail host (implicit MX) */
    d->mxname[0] = strdup(d->domain.s);
    if (!d->mxname[0]) { dest_giveup(d, 0, "4.3.0", "out of memory", 13); return; }
    d->mxpref[0] = 0;
    d->implicit = 1;
    d->nmx = 1;
    d->imx = 0;
    mx_host(d);
    return;
  }
  /* RFC 7505: "0 ." alone says the domain takes no mail at all */
  for (i = 0; i < rr->dnsmx_nrr; i++)
    if (rr->dnsmx_mx[i].name[0] && str_diff(rr->dnsmx_mx[i].name, ".")) break;
  if (i == rr->dnsmx_nrr) {
    free(rr);
    if (!stralloc_copys(&t, "556 5.1.10 domain ") || !stralloc_cats(&t, d->domain.s) ||
        !stralloc_cats(&t, " does not accept mail (null MX)"))
      stralloc_copys(&t, "556 5.1.10 null MX");
    dest_giveup(d, 1, "5.1.10", t.s, t.len);
    return;
  }
  n = rr->dnsmx_nrr;
  qsort(rr->dnsmx_mx, (size_t)n, sizeof *rr->dnsmx_mx, mx_cmp);
  /* shuffle each run of equal preference (Fisher-Yates) */
  for (i = 0; i < n; i = j) {
    for (j = i + 1; j < n && rr->dnsmx_mx[j].priority == rr->dnsmx_mx[i].priority; j++);
    for (int k = j - 1; k > i; k--) {
      int r = i + (int)(random() % (k - i + 1));
      struct dns_mx x = rr->dnsmx_mx[k];
      rr->dnsmx_mx[k] = rr->dnsmx_mx[r];
      rr->dnsmx_mx[r] = x;
    }
  }
  d->selfpref = -1;
  for (i = 0; i < n; i++)
    if (mx_isself(rr->dnsmx_mx[i].name)) { d->selfpref = rr->dnsmx_mx[i].priority; break; }
  d->nmx = 0;
  for (i = 0; i < n && d->nmx < RELAY_MAXMX; i++) {
    const struct dns_mx *x = &rr->dnsmx_mx[i];
    if (!x->name[0] || !str_diff(x->name, ".")) continue;
    /* RFC 5321 5.1: only hosts preferred over ourselves */
    if (d->selfpref >= 0 && x->priority >= d->selfpref) break;
    d->mxname[d->nmx] = strdup(x->name);
    if (!d->mxname[d->nmx]) break;
    d->mxpref[d->nmx++] = x->priority;
  }
  free(rr);
  if (d->nmx == 0) {
    if (d->selfpref >= 0) mx_loop(d, "MX points to my hostname");
    else dest_giveup(d, 0, "4.3.0", "out of memory", 13);
    return;
  }
  d->imx = 0;
  mx_host(d);
}

/* [192.0.2.1] or [IPv6:2001:db8::1] */
static int mx_literal(struct dest *d)
{
  const char *s = d->domain.s + 1;
  size_t len = str_len(s);
  char ip[16], tmp[64];
  if (!len || s[len - 1] != ']' || len >= sizeof tmp) return 0;
  byte_copy(tmp, len - 1, s);
  tmp[len - 1] = 0;
  if (len - 1 > 5 && case_equalb(tmp, 5, "ipv6:")) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&d->addr[0].sa;
    if (scan_ip6(tmp + 5, ip) != len - 6) return 0;
    byte_zero(sin6, sizeof *sin6);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(d->port);
    byte_copy(&sin6->sin6_addr, 16, ip);
    d->addr[0].len = sizeof *sin6;
  } else {
    struct sockaddr_in *sin = (struct sockaddr_in *)&d->addr[0].sa;
    if (scan_ip4(tmp, ip) != len - 1) return 0;
    byte_zero(sin, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(d->port);
    byte_copy(&sin->sin_addr, 4, ip);
    d->addr[0].len = sizeof *sin;
  }
  d->naddr = 1;
  d->iaddr = 0;
  return 1;
}

/* The smarthost's name is looked up the system's way, once, blocking:
 * it may well be in /etc/hosts ("localhost"), which udns does not read. */
static void mx_smarthost(struct dest *d)
{
  static stralloc t;
  struct addrinfo hints, *res, *p;
  int r;

  byte_zero(&hints, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  r = getaddrinfo(d->mxname[0], NULL, &hints, &res);
  if (r != 0) {
    if (!stralloc_copys(&t, "cannot resolve the smarthost ") ||
        !stralloc_cats(&t, d->mxname[0]) || !stralloc_cats(&t, ": ") ||
        !stralloc_cats(&t, gai_strerror(r)))
      stralloc_copys(&t, "cannot resolve the smarthost");
    dest_giveup(d, 0, "4.4.3", t.s, t.len);
    return;
  }
  for (p = res; p && d->naddr < RELAY_MAXADDR; p = p->ai_next) {
    if ((p->ai_family != AF_INET && p->ai_family != AF_INET6) ||
        p->ai_addrlen > sizeof d->addr[0].sa)
      continue;
    byte_copy(&d->addr[d->naddr].sa, p->ai_addrlen, p->ai_addr);
    d->addr[d->naddr].len = p->ai_addrlen;
    if (p->ai_family == AF_INET)
      ((struct sockaddr_in *)&d->addr[d->naddr].sa)->sin_port = htons(d->port);
    else
      ((struct sockaddr_in6 *)&d->addr[d->naddr].sa)->sin6_port = htons(d->port);
    d->naddr++;
  }
  freeaddrinfo(res);
  mx_addrs(d);
}

void mx_start(struct dest *d)
{
  if (d->kind == DEST_LITERAL) {
    d->mxname[0] = strdup(d->domain.s);
    d->nmx = d->mxname[0] ? 1 : 0;
    if (!mx_literal(d)) {
      dest_giveup(d, 1, "5.1.2", "bad address literal", 19);
      return;
    }
    if (mx_islocal((struct sockaddr *)&d->addr[0].sa)) {
      mx_loop(d, "an address of this host");
      return;
    }
    dest_connect(d);
    return;
  }
  if (d->kind == DEST_SMARTHOST) {
    /* relay.c filled mxname[0] (a name) or addr[0] (an address) */
    if (!d->naddr) mx_smarthost(d);
    else dest_connect(d);
    return;
  }
  if (!dnsok) {
    dest_giveup(d, 0, "4.4.3", "DNS resolver unavailable", 24);
    return;
  }
  d->dnswait = 1;
  d->q[0] = dns_submit_mx(NULL, d->domain.s, DNS_NOSRCH, mx_answer, d);
  if (!d->q[0]) {
    d->dnswait = 0;
    dest_giveup(d, 0, "4.4.3", "DNS query failed", 16);
  }
}
