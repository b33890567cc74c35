#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <byte.h>
#include <case.h>
#include <fmt.h>
#include <ip4.h>
#include <ip6.h>
#include <openreadclose.h>
#include <scan.h>
#include <str.h>
#include <stralloc.h>
#include "address.h"
#include "config.h"
#include "sibling.h"

#define CONFIG_MAXLINE 4096

/* The position being parsed, for "file:line: problem". */
struct config_pos {
  stralloc *err;
  const char *path;
  unsigned long line;
};

static int config_fail(struct config_pos *p, const char *what, const char *s, size_t len)
{
  char num[FMT_ULONG];
  stralloc_copys(p->err, p->path);
  if (p->line) {
    stralloc_cats(p->err, ":");
    stralloc_catb(p->err, num, fmt_ulong(num, p->line));
  }
  stralloc_cats(p->err, ": ");
  stralloc_cats(p->err, what);
  if (s) {
    stralloc_cats(p->err, ": ");
    /* the offending text, made printable and short */
    for (size_t i = 0; i < len && i < 80; i++) {
      char c = (unsigned char)s[i] < 32 || s[i] == 127 ? '?' : s[i];
      stralloc_append(p->err, &c);
    }
  }
  return 0;
}

static int config_nomem(struct config_pos *p) { return config_fail(p, "out of memory", NULL, 0); }

static int config_isspace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Joins the configuration directory and a path from a file, unless
 * the path is absolute. */
static int config_path(const struct config *c, stralloc *out, const char *s, size_t len)
{
  if (len && s[0] == '/') return stralloc_copyb(out, s, len);
  return stralloc_copy(out, &c->dir) && stralloc_cats(out, "/") && stralloc_catb(out, s, len);
}

/* Calls fn for each line of file with comments and surrounding blanks
 * removed; blank lines are skipped.  A missing file is an empty list
 * unless required. */
static int config_eachline(struct config *c, const char *name, int required, stralloc *err,
                           int (*fn)(struct config *, struct config_pos *, char *, size_t))
{
  stralloc path = {0}, data = {0};
  struct config_pos p = { err, NULL, 0 };
  int ok = 0, r;
  size_t i, start;

  if (!stralloc_copy(&path, &c->dir) || !stralloc_cats(&path, "/") ||
      !stralloc_cats(&path, name) || !stralloc_0(&path)) {
    p.path = name;
    config_nomem(&p);
    goto out;
  }
  p.path = path.s;
  r = openreadclose(path.s, &data, 1024);
  if (r == 0 || (r == -1 && errno == ENOENT)) {
    ok = required ? config_fail(&p, "missing", NULL, 0) : 1;
    goto out;
  }
  if (r == -1) {
    config_fail(&p, "cannot read", strerror(errno), strlen(strerror(errno)));
    goto out;
  }
  for (i = start = 0; i <= data.len; i++) {
    char *l;
    size_t len, k;
    if (i < data.len && data.s[i] != '\n') continue;
    p.line++;
    l = data.s + start;
    len = i - start;
    start = i + 1;
    if (len > CONFIG_MAXLINE) { config_fail(&p, "line too long", NULL, 0); goto out; }
    if (byte_chr(l, len, 0) < len) { config_fail(&p, "NUL byte in line", NULL, 0); goto out; }
    /* "#" starts a comment at the start of a line or after a blank */
    for (k = 0; k < len; k++)
      if (l[k] == '#' && (k == 0 || config_isspace(l[k - 1]))) break;
    len = k;
    while (len && config_isspace(l[len - 1])) len--;
    while (len && config_isspace(*l)) { l++; len--; }
    if (!len) continue;
    l[len] = 0;  /* safe: the byte was '\n', '#', a blank or past the data */
    if (!fn(c, &p, l, len)) goto out;
  }
  ok = 1;
out:
  stralloc_free(&path);
  stralloc_free(&data);
  return ok;
}

static int config_entrycmp(const void *a, const void *b)
{
  return strcmp(((const struct config_entry *)a)->key, ((const struct config_entry *)b)->key);
}

static int config_add(struct config_table *t, struct config_pos *p, const char *key, size_t keylen,
                      const char *value, size_t valuelen)
{
  struct config_entry *e;
  if (t->n == t->a) {
    size_t a = t->a ? t->a * 2 : 16;
    struct config_entry *ne = realloc(t->e, a * sizeof *ne);
    if (!ne) return config_nomem(p);
    t->e = ne;
    t->a = a;
  }
  e = &t->e[t->n];
  e->key = malloc(keylen + 1);
  e->value = malloc(valuelen + 1);
  if (!e->key || !e->value) { free(e->key); free(e->value); return config_nomem(p); }
  byte_copy(e->key, keylen, key);
  e->key[keylen] = 0;
  case_lowerb(e->key, keylen);
  byte_copy(e->value, valuelen, value);
  e->value[valuelen] = 0;
  e->valuelen = valuelen;
  e->line = p->line;
  t->n++;
  return 1;
}

/* Sorts a table; a key listed twice is an error, since one of the two
 * lines would otherwise be silently ignored. */
static int config_sort(const struct config *c, struct config_table *t, const char *name, stralloc *err)
{
  stralloc path = {0};
  struct config_pos p = { err, name, 0 };
  int ok = 1;
  if (t->n) qsort(t->e, t->n, sizeof *t->e, config_entrycmp);
  for (size_t i = 1; i < t->n && ok; i++)
    if (!strcmp(t->e[i - 1].key, t->e[i].key)) {
      const struct config_entry *later = t->e[i].line > t->e[i - 1].line ? &t->e[i] : &t->e[i - 1];
      if (stralloc_copy(&path, &c->dir) && stralloc_cats(&path, "/") && stralloc_cats(&path, name) &&
          stralloc_0(&path))
        p.path = path.s;
      p.line = later->line;
      ok = config_fail(&p, "listed twice", later->key, strlen(later->key));
    }
  stralloc_free(&path);
  return ok;
}

const struct config_entry *config_find(const struct config_table *t, const char *key, size_t len)
{
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const char *k = t->e[mid].key;
    int d = strncmp(k, key, len);
    if (d == 0) d = k[len] ? 1 : 0;
    if (d == 0) return &t->e[mid];
    if (d < 0) lo = mid + 1; else hi = mid;
  }
  return NULL;
}

/* A domain as it may appear in a list file (no address literals). */
static int config_domainok(const char *s, size_t len)
{
  stralloc tmp = {0}, out = {0};
  enum address_error why;
  int ok;
  if (!len || !stralloc_copys(&tmp, "<x@") || !stralloc_catb(&tmp, s, len) || !stralloc_cats(&tmp, ">"))
    return 0;
  ok = s[0] != '[' && address_scanpath(tmp.s, tmp.len, ADDRESS_UTF8, &out, &why) == tmp.len;
  stralloc_free(&tmp);
  stralloc_free(&out);
  return ok;
}

/* An address local@domain as written in a list file. */
static int config_addressok(const char *s, size_t len)
{
  stralloc tmp = {0}, out = {0};
  enum address_error why;
  int ok;
  if (!stralloc_copys(&tmp, "<") || !stralloc_catb(&tmp, s, len) || !stralloc_cats(&tmp, ">"))
    return 0;
  ok = address_scanpath(tmp.s, tmp.len, ADDRESS_UTF8, &out, &why) == tmp.len;
  stralloc_free(&tmp);
  stralloc_free(&out);
  return ok;
}

static int config_keylocal(struct config_table *t, struct config_pos *p, const char *a, size_t len,
                           const char *value, size_t valuelen)
{
  stralloc key = {0};
  int ok;
  if (!address_key(a, len, &key)) return config_nomem(p);
  ok = config_add(t, p, key.s, key.len, value, valuelen);
  stralloc_free(&key);
  return ok;
}

static int config_line_localdomains(struct config *c, struct config_pos *p, char *l, size_t len)
{
  if (!config_domainok(l, len)) return config_fail(p, "not a domain", l, len);
  if (!c->firstdomain.len && !stralloc_copyb(&c->firstdomain, l, len)) return config_nomem(p);
  case_lowerb(c->firstdomain.s, c->firstdomain.len);
  return config_add(&c->localdomains, p, l, len, "", 0);
}

static int config_line_users(struct config *c, struct config_pos *p, char *l, size_t len)
{
  size_t alen = 0, at;
  stralloc dir = {0};
  int ok;
  while (alen < len && !config_isspace(l[alen])) alen++;
  at = address_at(l, alen);
  if (at == alen || at == 0 || !config_addressok(l, alen))
    return config_fail(p, "not an address user@domain", l, alen);
  if (!config_islocaldomain(c, l + at + 1, alen - at - 1))
    return config_fail(p, "domain not in localdomains", l + at + 1, alen - at - 1);
  if (alen == len) {
    /* the default Maildir is named after the user: keep it a plain name */
    if (byte_chr(l, at, '/') < at || l[0] == '.' || l[0] == '"')
      return config_fail(p, "user name unfit for a directory name; give a Maildir path", l, alen);
    return config_keylocal(&c->users, p, l, alen, "", 0);
  }
  {
    char *m = l + alen;
    size_t mlen = len - alen;
    while (mlen && config_isspace(*m)) { m++; mlen--; }
    if (byte_chr(m, mlen, ' ') < mlen || byte_chr(m, mlen, '\t') < mlen)
      return config_fail(p, "trailing text after the Maildir path", m, mlen);
    if (!config_path(c, &dir, m, mlen)) return config_nomem(p);
    while (dir.len > 1 && dir.s[dir.len - 1] == '/') dir.len--;
  }
  ok = config_keylocal(&c->users, p, l, alen, dir.s, dir.len);
  stralloc_free(&dir);
  return ok;
}

static int config_line_aliases(struct config *c, struct config_pos *p, char *l, size_t len)
{
  size_t colon = byte_chr(l, len, ':');
  size_t klen = colon, i;
  stralloc targets = {0};
  int ok = 0;

  /* the key may be a quoted local part holding ':', so find the colon
   * that follows the domain */
  if (l[0] == '"') {
    size_t q = 1;
    while (q < len && l[q] != '"') q += l[q] == '\\' ? 2 : 1;
    colon = q + byte_chr(l + q, len > q ? len - q : 0, ':');
    klen = colon;
  }
  if (colon >= len) return config_fail(p, "missing ':' after the alias", l, len);
  while (klen && config_isspace(l[klen - 1])) klen--;
  if (klen > 1 && l[0] == '@') {
    if (!config_domainok(l + 1, klen - 1)) return config_fail(p, "not a domain", l + 1, klen - 1);
    if (!config_islocaldomain(c, l + 1, klen - 1))
      return config_fail(p, "domain not in localdomains", l + 1, klen - 1);
  } else {
    size_t at = address_at(l, klen);
    if (at == klen || !config_addressok(l, klen)) return config_fail(p, "not an address", l, klen);
    if (!config_islocaldomain(c, l + at + 1, klen - at - 1))
      return config_fail(p, "domain not in localdomains", l + at + 1, klen - at - 1);
  }
  for (i = colon + 1; i <= len;) {
    size_t start, end;
    while (i < len && config_isspace(l[i])) i++;
    start = i;
    while (i < len && l[i] != ',') i++;
    end = i;
    while (end > start && config_isspace(l[end - 1])) end--;
    if (end == start) { config_fail(p, "empty alias target", l, len); goto out; }
    if (!config_addressok(l + start, end - start) || address_at(l + start, end - start) == end - start) {
      config_fail(p, "alias target is not an address", l + start, end - start);
      goto out;
    }
    if (!stralloc_catb(&targets, l + start, end - start) || !stralloc_0(&targets)) {
      config_nomem(p);
      goto out;
    }
    i++;
  }
  if (l[0] == '@')
    ok = config_add(&c->aliases, p, l, klen, targets.s, targets.len);
  else
    ok = config_keylocal(&c->aliases, p, l, klen, targets.s, targets.len);
out:
  stralloc_free(&targets);
  return ok;
}

static int config_line_restricted(struct config *c, struct config_pos *p, char *l, size_t len)
{
  if (l[0] == '@') {
    if (!config_domainok(l + 1, len - 1)) return config_fail(p, "not a domain", l + 1, len - 1);
    return config_add(&c->restricted, p, l, len, "", 0);
  }
  if (address_at(l, len) == len || !config_addressok(l, len))
    return config_fail(p, "not an address user@domain or a domain @domain", l, len);
  return config_keylocal(&c->restricted, p, l, len, "", 0);
}

int config_parseip(const char *s, unsigned char ip[16])
{
  char tmp[16];
  size_t len = strlen(s);
  if (byte_chr(s, len, ':') < len) {
    if (scan_ip6(s, tmp) != len) return 0;
    byte_copy(ip, 16, tmp);
    return 1;
  }
  if (scan_ip4(s, tmp) != len || len < 7) return 0;
  byte_zero(ip, 10);
  ip[10] = ip[11] = 0xff;
  byte_copy(ip + 12, 4, tmp);
  return 1;
}

static int config_line_relayclients(struct config *c, struct config_pos *p, char *l, size_t len)
{
  size_t slash = byte_chr(l, len, '/');
  struct config_net net;
  unsigned long prefix;
  int v4;
  char save = l[slash];

  l[slash] = 0;
  v4 = byte_chr(l, slash, ':') == slash;
  if (!config_parseip(l, net.addr)) { l[slash] = save; return config_fail(p, "not an IP address", l, len); }
  l[slash] = save;
  prefix = v4 ? 32 : 128;
  if (slash < len) {
    size_t n = scan_ulong(l + slash + 1, &prefix);
    if (n == 0 || slash + 1 + n != len || prefix > (v4 ? 32UL : 128UL))
      return config_fail(p, "bad prefix length", l, len);
  }
  net.prefix = (unsigned int)prefix + (v4 ? 96 : 0);
  if (c->nrelayclients % 16 == 0) {
    struct config_net *nn = realloc(c->relayclients, (c->nrelayclients + 16) * sizeof *nn);
    if (!nn) return config_nomem(p);
    c->relayclients = nn;
  }
  c->relayclients[c->nrelayclients++] = net;
  return 1;
}

/* dopis.conf */
static stralloc seenkeys;
static int config_setpath(struct config *c, struct config_pos *p, stralloc *out, const char *v, size_t len)
{
  if (!config_path(c, out, v, len)) return config_nomem(p);
  /* trailing slashes would make names like "mail//x" */
  while (out->len > 1 && out->s[out->len - 1] == '/') out->len--;
  return 1;
}

static int config_setnum(struct config_pos *p, unsigned long *out, const char *v, size_t len,
                         unsigned long min, unsigned long max)
{
  unsigned long n;
  if (scan_ulong(v, &n) != len || n < min || n > max) return config_fail(p, "not a number in range", v, len);
  *out = n;
  return 1;
}

static int config_line_main(struct config *c, struct config_pos *p, char *l, size_t len)
{
  size_t eq = byte_chr(l, len, '='), klen = eq;
  char *v;
  size_t vlen;

  if (eq == len) return config_fail(p, "expected key = value", l, len);
  while (klen && config_isspace(l[klen - 1])) klen--;
  v = l + eq + 1;
  vlen = len - eq - 1;
  while (vlen && config_isspace(*v)) { v++; vlen--; }
  if (!vlen) return config_fail(p, "empty value", l, klen);
  /* a key given twice would silently lose one of its values */
  for (size_t i = 0; i < seenkeys.len; i += str_len(seenkeys.s + i) + 1)
    if (str_len(seenkeys.s + i) == klen && byte_equal(seenkeys.s + i, klen, l))
      return config_fail(p, "key given twice", l, klen);
  if (!stralloc_catb(&seenkeys, l, klen) || !stralloc_0(&seenkeys)) return config_nomem(p);
#define KEY(k) (klen == sizeof(k) - 1 && byte_equal(l, klen, k))
  if (KEY("hostname")) {
    if (!config_domainok(v, vlen)) return config_fail(p, "hostname is not a domain name", v, vlen);
    return stralloc_copyb(&c->hostname, v, vlen) ? 1 : config_nomem(p);
  }
  if (KEY("mailroot")) return config_setpath(c, p, &c->mailroot, v, vlen);
  if (KEY("queue")) return config_setpath(c, p, &c->queue, v, vlen);
  if (KEY("deliver")) return config_setpath(c, p, &c->deliver, v, vlen);
  if (KEY("submit_socket")) return config_setpath(c, p, &c->submit_socket, v, vlen);
  if (KEY("tls_cert")) return config_setpath(c, p, &c->tls_cert, v, vlen);
  if (KEY("tls_key")) return config_setpath(c, p, &c->tls_key, v, vlen);
  if (KEY("max_message_size")) return config_setnum(p, &c->max_message_size, v, vlen, 1024, 1UL << 40);
  if (KEY("max_recipients")) return config_setnum(p, &c->max_recipients, v, vlen, 1, 100000);
  if (KEY("timeout")) return config_setnum(p, &c->timeout, v, vlen, 1, 86400);
  if (KEY("smarthost")) return stralloc_copyb(&c->smarthost, v, vlen) ? 1 : config_nomem(p);
  if (KEY("smarthost_tls")) {
    if (vlen == 2 && byte_equal(v, 2, "no")) c->smarthost_tls = CONFIG_SMARTHOST_TLS_NO;
    else if (vlen == 3 && byte_equal(v, 3, "yes")) c->smarthost_tls = CONFIG_SMARTHOST_TLS_YES;
    else if (vlen == 6 && byte_equal(v, 6, "verify")) c->smarthost_tls = CONFIG_SMARTHOST_TLS_VERIFY;
    else return config_fail(p, "smarthost_tls is no, yes or verify", v, vlen);
    return 1;
  }
  if (KEY("smarthost_user")) {
    /* it goes into AUTH PLAIN: no control byte, no NUL */
    for (size_t i = 0; i < vlen; i++)
      if ((unsigned char)v[i] < 32 || v[i] == 127)
        return config_fail(p, "control character in smarthost_user", NULL, 0);
    return stralloc_copyb(&c->smarthost_user, v, vlen) ? 1 : config_nomem(p);
  }
  if (KEY("smarthost_password_file")) return config_setpath(c, p, &c->smarthost_password_file, v, vlen);
  if (KEY("tls_ca_file")) return config_setpath(c, p, &c->tls_ca_file, v, vlen);
  if (KEY("max_connections")) return config_setnum(p, &c->max_connections, v, vlen, 1, 1000);
  if (KEY("timeout_connect")) return config_setnum(p, &c->timeout_connect, v, vlen, 1, 86400);
  if (KEY("timeout_greeting")) return config_setnum(p, &c->timeout_greeting, v, vlen, 1, 86400);
  if (KEY("timeout_mail")) return config_setnum(p, &c->timeout_mail, v, vlen, 1, 86400);
  if (KEY("timeout_rcpt")) return config_setnum(p, &c->timeout_rcpt, v, vlen, 1, 86400);
  if (KEY("timeout_data")) return config_setnum(p, &c->timeout_data, v, vlen, 1, 86400);
  if (KEY("timeout_data_block")) return config_setnum(p, &c->timeout_data_block, v, vlen, 1, 86400);
  if (KEY("timeout_dot")) return config_setnum(p, &c->timeout_dot, v, vlen, 1, 86400);
  if (KEY("retry_min")) return config_setnum(p, &c->retry_min, v, vlen, 1, 1UL << 30);
  if (KEY("retry_max")) return config_setnum(p, &c->retry_max, v, vlen, 1, 1UL << 30);
  if (KEY("max_queue_lifetime")) return config_setnum(p, &c->max_queue_lifetime, v, vlen, 0, 1UL << 30);
  if (KEY("delay_warning")) return config_setnum(p, &c->delay_warning, v, vlen, 0, 1UL << 30);
  if (KEY("double_bounce")) {
    if (vlen == 4 && byte_equal(v, 4, "drop")) c->double_bounce_postmaster = 0;
    else if (vlen == 10 && byte_equal(v, 10, "postmaster")) c->double_bounce_postmaster = 1;
    else return config_fail(p, "double_bounce is drop or postmaster", v, vlen);
    return 1;
  }
#undef KEY
  return config_fail(p, "unknown key", l, klen);
}

int config_load(struct config *c, stralloc *err)
{
  const char *dir = getenv("DOPIS_CONF");
  char host[256];
  stralloc_zero(err);
  byte_zero(c, sizeof *c);
  if (!dir || !*dir) dir = CONFIG_DEFAULT_DIR;
  if (!stralloc_copys(&c->dir, dir)) goto nomem;
  while (c->dir.len > 1 && c->dir.s[c->dir.len - 1] == '/') c->dir.len--;
  stralloc_zero(&seenkeys);
  c->max_message_size = 26214400;
  c->max_recipients = 100;
  c->timeout = 300;
  c->max_connections = 20;
  c->timeout_connect = 60;
  c->timeout_greeting = 300;
  c->timeout_mail = 300;
  c->timeout_rcpt = 300;
  c->timeout_data = 120;
  c->timeout_data_block = 180;
  c->timeout_dot = 600;
  c->retry_min = 300;
  c->retry_max = 3600;
  c->max_queue_lifetime = 432000;
  if (!config_eachline(c, "dopis.conf", 1, err, config_line_main)) return 0;
  if (!c->hostname.len) {
    if (gethostname(host, sizeof host - 1) == -1) return stralloc_copys(err, "gethostname failed"), 0;
    host[sizeof host - 1] = 0;
    if (!stralloc_copys(&c->hostname, host)) goto nomem;
  }
  if (!c->mailroot.len && !stralloc_copys(&c->mailroot, "/var/lib/dopis/mail")) goto nomem;
  if (!c->queue.len && !stralloc_copys(&c->queue, "/var/spool/dopis")) goto nomem;
  if (!c->deliver.len) {
    /* the deliver program beside this one */
    if (!sibling_path("deliver", &c->deliver)) goto nomem;
  }
  if (!c->submit_socket.len && !stralloc_copys(&c->submit_socket, CONFIG_SUBMIT_SOCKET)) goto nomem;
  if (!c->tls_cert.len != !c->tls_key.len) {
    struct config_pos p = { err, "dopis.conf", 0 };
    return config_fail(&p, "tls_cert and tls_key go together", NULL, 0);
  }
  if (!c->smarthost_user.len != !c->smarthost_password_file.len) {
    struct config_pos p = { err, "dopis.conf", 0 };
    return config_fail(&p, "smarthost_user and smarthost_password_file go together", NULL, 0);
  }
  if (!c->smarthost.len && (c->smarthost_user.len || c->smarthost_tls)) {
    struct config_pos p = { err, "dopis.conf", 0 };
    return config_fail(&p, "smarthost_tls and smarthost_user need a smarthost", NULL, 0);
  }
  if (!c->tls_ca_file.len && !stralloc_copys(&c->tls_ca_file, CONFIG_CA_FILE)) goto nomem;
  if (!stralloc_0(&c->hostname) || !stralloc_0(&c->mailroot) || !stralloc_0(&c->queue) ||
      !stralloc_0(&c->deliver) || !stralloc_0(&c->submit_socket) || !stralloc_0(&c->dir) || !stralloc_0(&c->smarthost) ||
      !stralloc_0(&c->tls_cert) || !stralloc_0(&c->tls_key) ||
      !stralloc_0(&c->smarthost_user) || !stralloc_0(&c->smarthost_password_file) ||
      !stralloc_0(&c->tls_ca_file))
    goto nomem;
  /* keep .len the string length; the NUL stays after it for C calls */
  c->hostname.len--; c->mailroot.len--; c->queue.len--; c->deliver.len--; c->submit_socket.len--; c->dir.len--;
  c->smarthost.len--; c->tls_cert.len--; c->tls_key.len--;
  c->smarthost_user.len--; c->smarthost_password_file.len--; c->tls_ca_file.len--;
  if (c->retry_max < c->retry_min) c->retry_max = c->retry_min;

  if (!config_eachline(c, "localdomains", 0, err, config_line_localdomains)) return 0;
  if (!config_sort(c, &c->localdomains, "localdomains", err)) return 0;
  if (!config_eachline(c, "users", 0, err, config_line_users)) return 0;
  if (!config_sort(c, &c->users, "users", err)) return 0;
  if (!config_eachline(c, "aliases", 0, err, config_line_aliases)) return 0;
  if (!config_sort(c, &c->aliases, "aliases", err)) return 0;
  if (!config_eachline(c, "restricted", 0, err, config_line_restricted)) return 0;
  if (!config_sort(c, &c->restricted, "restricted", err)) return 0;
  if (!config_eachline(c, "relayclients", 0, err, config_line_relayclients)) return 0;
  if (!stralloc_0(&c->firstdomain)) goto nomem;
  c->firstdomain.len--;
  return 1;
nomem:
  stralloc_copys(err, "out of memory");
  return 0;
}

static void config_freetable(struct config_table *t)
{
  for (size_t i = 0; i < t->n; i++) { free(t->e[i].key); free(t->e[i].value); }
  free(t->e);
}

void config_free(struct config *c)
{
  stralloc_free(&c->dir);
  stralloc_free(&c->hostname);
  stralloc_free(&c->mailroot);
  stralloc_free(&c->queue);
  stralloc_free(&c->deliver);
  stralloc_free(&c->submit_socket);
  stralloc_free(&c->tls_cert);
  stralloc_free(&c->tls_key);
  stralloc_free(&c->firstdomain);
  stralloc_free(&c->smarthost);
  stralloc_free(&c->smarthost_user);
  stralloc_free(&c->smarthost_password_file);
  stralloc_free(&c->tls_ca_file);
  config_freetable(&c->localdomains);
  config_freetable(&c->users);
  config_freetable(&c->aliases);
  config_freetable(&c->restricted);
  free(c->relayclients);
  byte_zero(c, sizeof *c);
}

static int config_findlower(const struct config_table *t, const char *s, size_t len)
{
  char small[512];
  if (len >= sizeof small) return 0;   /* longer than any valid key */
  byte_copy(small, len, s);
  case_lowerb(small, len);
  return config_find(t, small, len) != NULL;
}

int config_islocaldomain(const struct config *c, const char *dom, size_t len)
{
  return config_findlower(&c->localdomains, dom, len);
}

int config_isrestricted(const struct config *c, const char *addr, size_t len)
{
  stralloc key = {0};
  size_t at = address_at(addr, len), plus;
  int r = 0;
  if (at < len && config_findlower(&c->restricted, addr + at, len - at)) return 1;
  if (!address_key(addr, len, &key)) return 1;  /* fail closed */
  if (config_find(&c->restricted, key.s, key.len)) r = 1;
  /* user+tag@domain is as restricted as user@domain */
  at = address_at(key.s, key.len);
  plus = byte_chr(key.s, at, '+');
  if (!r && plus < at) {
    char *k = key.s;
    size_t rest = key.len - at;
    byte_copy(k + plus, rest, k + at);
    if (config_find(&c->restricted, k, plus + rest)) r = 1;
  }
  stralloc_free(&key);
  return r;
}

int config_isrelayclient(const struct config *c, const unsigned char ip[16])
{
  for (size_t i = 0; i < c->nrelayclients; i++) {
    const struct config_net *n = &c->relayclients[i];
    unsigned int bits = n->prefix, k = 0;
    for (; bits >= 8; bits -= 8, k++)
      if (ip[k] != n->addr[k]) break;
    if (bits >= 8) continue;
    if (bits && ((ip[k] ^ n->addr[k]) & (0xff00 >> bits) & 0xff)) continue;
    return 1;
  }
  return 0;
}
