/* Envelope records, the language between smtpd (or sendmail) and
 * deliver, and of the queue's info files: a type byte, text, a NUL.
 * See dopis-deliver(8). */
#ifndef DOPIS_ENVELOPE_H
#define DOPIS_ENVELOPE_H

#include <stddef.h>
#include <buffer.h>
#include <stralloc.h>

#define ENVELOPE_MAXRECORD 2048

/* Returns 1 or 0 on a write error. */
int envelope_put(buffer *b, char type, const char *s, size_t len);
/* Reads one record into rec (type byte first, no NUL).  Returns 1 for
 * a record, 0 for the empty record that ends a section, -1 on end of
 * input, a read error, or a record longer than max. */
int envelope_get(buffer *b, stralloc *rec, size_t max);

#endif
