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

/* For dopis-check: reads the file as passwd_check does and calls
 * report for every problem, "file:line: problem" or "file: problem"
 * (warning set, and "warning: " at the problem's start, for what is
 * only unwise): a malformed line, a hash no password can match, a
 * user listed twice (passwd_check would use the first line), a legacy
 * hash method (warning), a file everyone may read (warning).  A
 * missing file is no problem: then no one may log in.  Returns the
 * number of errors. */
int passwd_verify(const struct config *c,
                  void (*report)(int warning, const char *problem, void *arg), void *arg);

#endif
