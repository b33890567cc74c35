/* xtext (RFC 3461 section 4): ENVID and ORCPT travel encoded. */
#ifndef DOPIS_XTEXT_H
#define DOPIS_XTEXT_H

#include <stddef.h>
#include <stralloc.h>

/* Decodes s into out.  Returns 1, or 0 when s is not xtext or decodes
 * to a control character (CR, LF and NUL among them): such a value
 * could split a header or a record later, so it is refused here. */
int xtext_decode(const char *s, size_t len, stralloc *out);
/* Appends the xtext form of s to out.  Returns 0 on out of memory. */
int xtext_encode(const char *s, size_t len, stralloc *out);

#endif
