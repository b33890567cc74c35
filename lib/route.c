#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <byte.h>
#include <case.h>
#include <str.h>
#include <stralloc.h>
#include "address.h"
#include "route.h"

void route_list_free(struct route_list *l)
{
  for (size_t i = 0; i < l->n; i++) {
    free(l->t[i].addr);
    free(l->t[i].maildir);
    free(l->t[i].notify);
    free(l->t[i].orcpt);
  }
  free(l->t);
  l->t = NULL;
  l->n = l->a = 0;
}

static enum route_result route_add(struct route_list *out, const char *addr, size_t len,
                                   const stralloc *maildir)
{
  struct route_target *t;
  for (size_t i = 0; i < out->n; i++) {
    t = &out->t[i];
    if (maildir ? t->maildir && !strcmp(t->maildir, maildir->s)
                : !t->maildir && strlen(t->addr) == len && byte_equal(t->addr, len, addr))
      return ROUTE_OK;
  }
  if (out->n >= ROUTE_MAXTARGETS) return ROUTE_TOOMANY;
  if (out->n == out->a) {
    size_t a = out->a ? out->a * 2 : 8;
    struct route_target *nt = realloc(out->t, a * sizeof *nt);
    if (!nt) return ROUTE_NOMEM;
    out->t = nt;
    out->a = a;
  }
  t = &out->t[out->n];
  t->addr = malloc(len + 1);
  t->maildir = maildir ? strdup(maildir->s) : NULL;
  if (!t->addr || (maildir && !t->maildir)) { free(t->addr); free(t->maildir); return ROUTE_NOMEM; }
  byte_copy(t->addr, len, addr);
  t->addr[len] = 0;
  t->notify = t->orcpt = NULL;
  out->n++;
  return ROUTE_OK;
}

static int route_isdir(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The Maildir of a user entry; with a tag, its Maildir++ folder when
 * that exists.  A tag that could name anything but a folder is ignored. */
static int route_maildir(const struct config *c, const struct config_entry *user,
                         const char *key, size_t at, const char *tag, size_t taglen,
                         stralloc *out)
{
  if (user->valuelen) {
    if (!stralloc_copyb(out, user->value, user->valuelen)) return 0;
  } else {
    if (!stralloc_copy(out, &c->mailroot) || !stralloc_cats(out, "/") ||
        !stralloc_cats(out, key + at + 1) || !stralloc_cats(out, "/") ||
        !stralloc_catb(out, key, at))
      return 0;
  }
  if (taglen && tag[0] != '.' && byte_chr(tag, taglen, '/') == taglen) {
    /* the folder as written (".Work"), else in lower case (".work") */
    size_t base = out->len;
    for (int pass = 0; pass < 2; pass++) {
      out->len = base;
      if (!stralloc_cats(out, "/.") || !stralloc_catb(out, tag, taglen) || !stralloc_0(out)) return 0;
      if (pass) case_lowerb(out->s + base + 2, taglen);
      if (route_isdir(out->s)) {
        out->len--;
        return stralloc_0(out);
      }
    }
    out->len = base;
  }
  return stralloc_0(out);
}

static enum route_result route_local(const struct config *c, const char *addr, size_t len,
                                     struct route_list *out, int depth, int noalias);

static enum route_result route_expand(const struct config *c, const struct config_entry *alias,
                                      struct route_list *out, int depth)
{
  for (size_t i = 0; i < alias->valuelen; i += str_len(alias->value + i) + 1) {
    const char *t = alias->value + i;
    stralloc key = {0};
    enum route_result r;
    int self;
    /* "alice@x: alice@x, archive@y" delivers to alice's own mailbox */
    if (!address_key(t, str_len(t), &key)) return ROUTE_NOMEM;
    self = key.len == str_len(alias->key) && byte_equal(key.s, key.len, alias->key);
    stralloc_free(&key);
    r = route_local(c, t, str_len(t), out, depth + 1, self);
    if (r == ROUTE_REMOTE) r = ROUTE_OK;
    if (r != ROUTE_OK) return r;
  }
  return ROUTE_OK;
}

static enum route_result route_local(const struct config *c, const char *addr, size_t len,
                                     struct route_list *out, int depth, int noalias)
{
  stralloc key = {0}, dir = {0};
  const struct config_entry *e;
  enum route_result r = ROUTE_UNKNOWN;
  size_t at, plus;

  if (depth > ROUTE_MAXDEPTH) return ROUTE_LOOP;
  if (!address_key(addr, len, &key) || !stralloc_0(&key)) { r = ROUTE_NOMEM; goto out; }
  key.len--;
  at = address_at(key.s, key.len);
  if (at == key.len || !config_islocaldomain(c, key.s + at + 1, key.len - at - 1)) {
    r = route_add(out, addr, len, NULL);
    if (r == ROUTE_OK) r = ROUTE_REMOTE;
    goto out;
  }
  /* exact alias, exact user; then the same without +tag; then @domain */
  if (!noalias && (e = config_find(&c->aliases, key.s, key.len))) { r = route_expand(c, e, out, depth); goto out; }
  if ((e = config_find(&c->users, key.s, key.len))) {
    r = route_maildir(c, e, key.s, at, "", 0, &dir) ? route_add(out, key.s, key.len, &dir) : ROUTE_NOMEM;
    goto out;
  }
  plus = byte_chr(key.s, at, '+');
  if (plus < at && plus > 0) {
    stralloc base = {0};
    if (!stralloc_copyb(&base, key.s, plus) || !stralloc_catb(&base, key.s + at, key.len - at) ||
        !stralloc_0(&base)) {
      stralloc_free(&base);
      r = ROUTE_NOMEM;
      goto out;
    }
    base.len--;  /* route_maildir reads the domain as a C string */
    if ((e = config_find(&c->aliases, base.s, base.len))) r = route_expand(c, e, out, depth);
    else if ((e = config_find(&c->users, base.s, base.len))) {
      /* the folder as the client spelt it (".Work", as IMAP clients
       * name it), unless the local part was quoted */
      const char *tag = addr[0] != '"' ? addr + plus + 1 : key.s + plus + 1;
      r = route_maildir(c, e, base.s, plus, tag, at - plus - 1, &dir)
            ? route_add(out, key.s, key.len, &dir) : ROUTE_NOMEM;
    }
    stralloc_free(&base);
    if (e) goto out;
  }
  if ((e = config_find(&c->aliases, key.s + at, key.len - at))) r = route_expand(c, e, out, depth);
out:
  stralloc_free(&key);
  stralloc_free(&dir);
  return r;
}

enum route_result route_resolve(const struct config *c, const char *addr, size_t len,
                                struct route_list *out)
{
  if (address_at(addr, len) == len) {
    /* <Postmaster>: RFC 5321 4.5.1 requires it; it is the postmaster
     * of the first local domain */
    stralloc pm = {0};
    enum route_result r;
    if (!c->firstdomain.len) return ROUTE_UNKNOWN;
    if (!stralloc_copys(&pm, "postmaster@") || !stralloc_cat(&pm, &c->firstdomain)) {
      stralloc_free(&pm);
      return ROUTE_NOMEM;
    }
    r = route_local(c, pm.s, pm.len, out, 0, 0);
    stralloc_free(&pm);
    return r;
  }
  return route_local(c, addr, len, out, 0, 0);
}
