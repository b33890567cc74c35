/* RFC 5321 paths and addresses. */
#ifndef DOPIS_ADDRESS_H
#define DOPIS_ADDRESS_H

#include <stddef.h>
#include <stralloc.h>

/* RFC 5321 section 4.5.3.1 */
#define ADDRESS_MAXLOCAL 64
#define ADDRESS_MAXDOMAIN 255
#define ADDRESS_MAXPATH 256

#define ADDRESS_UTF8 1        /* SMTPUTF8 was given: allow UTF-8 */
#define ADDRESS_POSTMASTER 2  /* allow the bare <Postmaster> (RCPT) */
#define ADDRESS_NULL 4        /* allow <> (MAIL) */

enum address_error {
  ADDRESS_OK = 0,
  ADDRESS_ESYNTAX,    /* 501 5.1.3 / 5.1.7 */
  ADDRESS_ETOOLONG,   /* 501 5.5.4 (a limit of 4.5.3.1) */
  ADDRESS_E8BIT       /* 553 5.6.7 non-ASCII without SMTPUTF8 */
};

/* Scans a path "<...>" at s.  Returns bytes consumed (0 on error, with
 * *why set).  out gets the mailbox as "local@domain": the local part
 * exactly as written (quotes kept), the domain lower-cased, any source
 * route dropped; "" for <>; "postmaster" for <Postmaster>. */
size_t address_scanpath(const char *s, size_t len, int flags,
                        stralloc *out, enum address_error *why);

/* Position of the '@' that separates local part and domain (the last
 * one), or len when there is none. */
size_t address_at(const char *a, size_t len);

/* The key used for every local lookup: local part unquoted and
 * lower-cased, "@", domain lower-cased.  Returns 0 on out of memory. */
int address_key(const char *a, size_t len, stralloc *key);

/* 1 when the local part of a (as written, unquoted) is a valid
 * RFC 5321 dot-string, so that it needs no quoting on the wire. */
int address_isdotstring(const char *local, size_t len);

#endif
