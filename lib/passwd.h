/* SMTP AUTH credentials: the file passwd in the configuration
 * directory, lines "user@domain:hash" with crypt(3) hashes (yescrypt
 * "$y$", SHA-512-crypt "$6$", ...), never plain text. */
#ifndef DOPIS_PASSWD_H
#define DOPIS_PASSWD_H

#include <stddef.h>
#include <stralloc.h>
#include "config.h"

/* 1: the password is right; 0: wrong password or unknown user (the
 * two take the same time); -1: the file is missing or malformed, with
 * err holding "file:line: problem". */
int passwd_check(const struct config *c, const char *user, size_t userlen,
                 const char *pass, size_t passlen, stralloc *err);

#endif
