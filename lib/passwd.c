#include <crypt.h>
#include <errno.h>
#include <string.h>
#include <byte.h>
#include <fmt.h>
#include <openreadclose.h>
#include <stralloc.h>
#include "address.h"
#include "passwd.h"

#define PASSWD_MAXPASS 512

static int passwd_fail(stralloc *err, const stralloc *path, unsigned long line, const char *what)
{
  char num[FMT_ULONG] = "";
  size_t n = fmt_ulong(num, line);
  stralloc_copyb(err, path->s, path->len ? path->len - 1 : 0);
  if (line) { stralloc_cats(err, ":"); stralloc_catb(err, num, n); }
  stralloc_cats(err, ": ");
  stralloc_cats(err, what);
  return -1;
}

/* Compares without stopping at the first difference. */
static int passwd_equal(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = la != lb;
  for (size_t i = 0; i < la && i < lb; i++) d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

int passwd_check(const struct config *c, const char *user, size_t userlen,
                 const char *pass, size_t passlen, stralloc *err)
{
  static struct crypt_data cd;   /* large: not on the stack */
  static stralloc path, data, key, pw, hash;
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  const char *computed;
  unsigned long line = 0;
  int found = 0, ok = 0;
  size_t i, start;

  if (!stralloc_copy(&path, &c->dir) || !stralloc_cats(&path, "/passwd") || !stralloc_0(&path))
    return passwd_fail(err, &path, 0, "out of memory");
  switch (openreadclose(path.s, &data, 1024)) {
  case 1: break;
  case 0: return passwd_fail(err, &path, 0, "missing");
  default: return passwd_fail(err, &path, 0, strerror(errno));
  }
  if (passlen > PASSWD_MAXPASS || byte_chr(pass, passlen, 0) < passlen) passlen = 0, found = -1;
  if (!address_key(user, userlen, &key)) return passwd_fail(err, &path, 0, "out of memory");
  for (i = start = 0; i <= data.len; i++) {
    char *l;
    size_t len, colon;
    if (i < data.len && data.s[i] != '\n') continue;
    line++;
    l = data.s + start;
    len = i - start;
    start = i + 1;
    while (len && (l[len - 1] == ' ' || l[len - 1] == '\t' || l[len - 1] == '\r')) len--;
    while (len && (*l == ' ' || *l == '\t')) { l++; len--; }
    if (!len || *l == '#') continue;
    colon = byte_chr(l, len, ':');
    if (colon == len || colon == 0 || address_at(l, colon) == colon || colon + 1 >= len ||
        l[colon + 1] != '$' || byte_chr(l, len, 0) < len)
      return passwd_fail(err, &path, line, "expected user@domain:$crypt-hash");
    if (found) continue;
    if (!address_key(l, colon, &pw)) return passwd_fail(err, &path, 0, "out of memory");
    if (pw.len == key.len && byte_equal(pw.s, pw.len, key.s)) {
      if (!stralloc_copyb(&hash, l + colon + 1, len - colon - 1) || !stralloc_0(&hash))
        return passwd_fail(err, &path, 0, "out of memory");
      found = 1;
    }
  }
  if (!stralloc_copyb(&pw, pass, passlen) || !stralloc_0(&pw)) return passwd_fail(err, &path, 0, "out of memory");
  if (found != 1) {
    /* an unknown user costs the same as a known one */
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting)) return 0;
    crypt_r(pw.s, setting, &cd);
  } else {
    computed = crypt_r(pw.s, hash.s, &cd);
    ok = computed && computed[0] == '$' && passwd_equal(computed, hash.s);
  }
  byte_zero(pw.s, pw.len);
  byte_zero(&cd, sizeof cd);
  return ok;
}
