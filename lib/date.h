/* RFC 5322 dates in UTC, for Received, Date and bounce headers.
 * Written here rather than with gmtime_r and strftime: in a static
 * binary those bring in glibc's time-zone reader, sscanf, strtod and
 * the locale code (some 100 KiB that a session would map). */
#ifndef DOPIS_DATE_H
#define DOPIS_DATE_H

#include <time.h>

/* "Mon, 07 Dec 2026 19:08:19 +0000": 31 bytes and the NUL */
#define DATE_RFC5322 32

/* Writes t (seconds since the epoch; before 1970 gives 1970) into buf,
 * NUL-terminated; returns the length. */
unsigned date_rfc5322(char buf[DATE_RFC5322], time_t t);

#endif
