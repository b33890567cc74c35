/* SMTP replies as a client reads them (RFC 5321 4.2): lines into one
 * reply, with fixed limits, for the relay and for dopis-sendmail. */
#ifndef DOPIS_SMTPREPLY_H
#define DOPIS_SMTPREPLY_H

#include <stddef.h>
#include <stralloc.h>

#define REPLY_MAXLINE 2048    /* RFC 5321 says 512; be lenient, not unbounded */
#define REPLY_MAXLINES 100
#define REPLY_MAXTEXT 1000    /* kept of a reply, for logs and DSNs */

/* One line of a reply, without its line end.  code, nlines (0 before
 * a reply's first line) and text ("550 5.1.1 text text...", control
 * bytes as blanks, NUL after .len once complete) carry the reply
 * across its lines.  Returns 1 when the reply is complete, 0 when
 * more lines follow, -1 on a protocol error. */
int reply_line(int *code, int *nlines, stralloc *text, const char *s, size_t len);

#endif
