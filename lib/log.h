/* One line per event on stderr: "prog key=value key=value ...".
 * Values with spaces, quotes or control bytes are quoted and escaped,
 * so a hostile value can never forge a second line or field. */
#ifndef DOPIS_LOG_H
#define DOPIS_LOG_H

#include <stddef.h>

void log_init(const char *prog);
void log_start(void);
void log_str(const char *key, const char *val);
void log_buf(const char *key, const char *val, size_t len);
void log_ulong(const char *key, unsigned long val);
void log_end(void);   /* writes the line with one write(2) */

#endif
