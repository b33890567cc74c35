/* Where a recipient goes: through aliases (recursively, with loop
 * detection) and users to local Maildirs, or to remote addresses. */
#ifndef DOPIS_ROUTE_H
#define DOPIS_ROUTE_H

#include <stddef.h>
#include "config.h"

#define ROUTE_MAXDEPTH 10     /* alias nesting */
#define ROUTE_MAXTARGETS 1000 /* targets one envelope may expand into */

struct route_target {
  char *addr;     /* local: key form user[+tag]@domain; remote: as given */
  char *maildir;  /* local: absolute folder (with .tag when it exists);
                     NULL for a remote address */
  char *notify;   /* DSN NOTIFY and ORCPT (RFC 3461) of the envelope */
  char *orcpt;    /* recipient it came from, or NULL: set by deliver */
};

struct route_list {
  struct route_target *t;
  size_t n, a;
};

enum route_result {
  ROUTE_OK = 0,      /* targets were appended */
  ROUTE_UNKNOWN,     /* local domain, no such user or alias: 550 5.1.1 */
  ROUTE_REMOTE,      /* not a local domain; the address was appended as
                        a remote target */
  ROUTE_LOOP,        /* aliases nest too deep or loop */
  ROUTE_TOOMANY,     /* more than ROUTE_MAXTARGETS */
  ROUTE_NOMEM
};

/* Resolves addr ("local@domain" as from address_scanpath, or
 * "postmaster") and appends its targets to out, skipping targets
 * already there (same Maildir, or same remote address). */
enum route_result route_resolve(const struct config *c, const char *addr,
                                size_t len, struct route_list *out);
void route_list_free(struct route_list *l);

#endif
