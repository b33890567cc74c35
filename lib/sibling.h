/* The path of another dopis program installed beside this one: in the
 * build tree programs are bin/NAME, installed they are
 * $(PREFIX)/sbin/dopis-NAME; the running program's own name says
 * which. */
#ifndef DOPIS_SIBLING_H
#define DOPIS_SIBLING_H

#include <stralloc.h>

/* Sets out (NUL-terminated, len without the NUL) to the sibling NAME
 * ("deliver", "smtpd", "relay", ...).  Returns 0 on out of memory. */
int sibling_path(const char *name, stralloc *out);

#endif
