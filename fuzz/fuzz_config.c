/* libFuzzer harness: lib/config.c, the configuration directory, and
 * lib/route.c on what it loaded (aliases nest, loop and fan out).
 *
 * Input: the files dopis.conf, localdomains, users, aliases, restricted
 * and relayclients, in that order, separated by one byte 0xff (never in
 * UTF-8); the files the input does not reach are absent.  They are
 * written to a directory on tmpfs, which DOPIS_CONF names.  Checked:
 *   - refused: one line of reason, no newline in it;
 *   - loaded: the strings NUL-terminated at their length, hostname set;
 *     every table sorted with unique keys, each found by config_find,
 *     with no ASCII capital; every local domain found by
 *     config_islocaldomain in upper case too; relayclients prefixes at
 *     most 128 bits;
 *   - route_resolve of every user, alias, restricted key and some fixed
 *     addresses: the result one of the enum, the targets at most
 *     ROUTE_MAXTARGETS, each local one with a Maildir.
 *   - config_isrestricted of the restricted keys themselves: true. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stralloc.h>
#include "config.h"
#include "route.h"
#include "fuzz.h"

static const char *const files[] = {
  "dopis.conf", "localdomains", "users", "aliases", "restricted", "relayclients"
};
#define NFILES (sizeof files / sizeof *files)

static const char *dir;
static stralloc err;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc; (void)argv;
  dir = fuzz_dir();
  setenv("DOPIS_CONF", dir, 1);
  return 0;
}

static void fuzz_route(const struct config *c, const char *a, size_t len)
{
  struct route_list l = {0};
  enum route_result r = route_resolve(c, a, len, &l);
  FUZZ_CHECK(r >= ROUTE_OK && r <= ROUTE_NOMEM, "route result %d", (int)r);
  FUZZ_CHECK(l.n <= ROUTE_MAXTARGETS, "%zu targets", l.n);
  for (size_t i = 0; i < l.n; i++) FUZZ_CHECK(l.t[i].addr != NULL, "target without address");
  route_list_free(&l);
}

static void fuzz_table(const struct config *c, const struct config_table *t, const char *name, int route)
{
  for (size_t i = 0; i < t->n; i++) {
    const char *k = t->e[i].key;
    size_t klen = strlen(k);
    FUZZ_CHECK(i == 0 || strcmp(t->e[i - 1].key, k) < 0, "%s not sorted or a key twice", name);
    FUZZ_CHECK(config_find(t, k, klen) == &t->e[i], "%s: config_find misses %s", name, k);
    for (size_t j = 0; j < klen; j++) FUZZ_CHECK(k[j] < 'A' || k[j] > 'Z', "%s: capital in key %s", name, k);
    FUZZ_CHECK(t->e[i].value[t->e[i].valuelen] == 0, "%s: value not NUL-terminated", name);
    if (route) fuzz_route(c, k, klen);
  }
}

static void fuzz_str(const stralloc *sa, const char *name)
{
  FUZZ_CHECK(sa->s && sa->s[sa->len] == 0 && strlen(sa->s) == sa->len, "%s not a C string of its length", name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct fuzz_part p[NFILES];
  size_t n = fuzz_split(data, size, (char)0xff, p, NFILES);
  struct config c;
  static const char *const probes[] = {
    "postmaster", "alice@example.org", "alice+tag@example.org", "x@remote.test", "\"a b\"@example.org"
  };

  for (size_t i = 0; i < NFILES; i++) {
    if (i < n) fuzz_write(dir, files[i], p[i].s, p[i].len);
    else unlink(fuzz_path(dir, files[i]));
  }
  if (!config_load(&c, &err)) {
    FUZZ_CHECK(err.len > 0 && !memchr(err.s, '\n', err.len), "refused without one line of reason");
    config_free(&c);
    return 0;
  }
  fuzz_str(&c.hostname, "hostname");
  fuzz_str(&c.mailroot, "mailroot");
  fuzz_str(&c.queue, "queue");
  fuzz_str(&c.deliver, "deliver");
  fuzz_str(&c.dir, "dir");
  fuzz_str(&c.smarthost, "smarthost");
  fuzz_str(&c.tls_cert, "tls_cert");
  fuzz_str(&c.tls_key, "tls_key");
  fuzz_str(&c.firstdomain, "firstdomain");
  FUZZ_CHECK(c.hostname.len > 0, "no hostname");
  FUZZ_CHECK(!c.tls_cert.len == !c.tls_key.len, "tls_cert without tls_key");
  FUZZ_CHECK(c.retry_min <= c.retry_max, "retry_min > retry_max");
  for (size_t i = 0; i < c.nrelayclients; i++) FUZZ_CHECK(c.relayclients[i].prefix <= 128, "prefix > 128");
  fuzz_table(&c, &c.localdomains, "localdomains", 0);
  for (size_t i = 0; i < c.localdomains.n; i++) {
    const struct config_entry *e = &c.localdomains.e[i];
    size_t len = strlen(e->key);
    char *up = fuzz_dup(e->key, len);
    for (size_t j = 0; j < len; j++) if (up[j] >= 'a' && up[j] <= 'z') up[j] -= 32;
    FUZZ_CHECK(config_islocaldomain(&c, up, len), "local domain %s not found in upper case", e->key);
    free(up);
  }
  fuzz_table(&c, &c.users, "users", 1);
  fuzz_table(&c, &c.aliases, "aliases", 1);
  fuzz_table(&c, &c.restricted, "restricted", 0);
  for (size_t i = 0; i < c.restricted.n; i++) {
    const char *k = c.restricted.e[i].key;
    /* a key from a quoted local part may not be its own key: "\"x\""@y
     * gives "x"@y, whose key is x@y */
    if (k[0] != '@' && !strpbrk(k, "\"\\")) FUZZ_CHECK(config_isrestricted(&c, k, strlen(k)), "restricted %s not restricted", k);
  }
  for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
    char *a = fuzz_dup(probes[i], strlen(probes[i]));
    fuzz_route(&c, a, strlen(probes[i]));
    (void)config_isrestricted(&c, a, strlen(probes[i]));
    free(a);
  }
  {
    unsigned char ip[16] = {0};
    (void)config_isrelayclient(&c, ip);
    ip[10] = ip[11] = 0xff;
    ip[12] = 10; ip[13] = 1;
    (void)config_isrelayclient(&c, ip);
  }
  config_free(&c);
  return 0;
}
