/* The queue tool, dopis-queue(8): the queue seen and managed by hand.
 *
 *   queue.c   main: the commands, the queue lock, delete, bounce, flush
 *   show.c    list and show, for people and as JSON
 *   out.c     standard output: escaping for a terminal and for JSON
 *
 * It reads info files with lib/queueinfo (the format is in queue.h
 * and queueinfo.h) and changes the queue only under the relay's lock;
 * sending is left to the relay, which it execs. */
#ifndef DOPIS_QTOOL_H
#define DOPIS_QTOOL_H

#include <stddef.h>
#include <stralloc.h>
#include "config.h"

extern struct config cfg;

/* the unix time: $DOPIS_NOW (for tests, as the relay's) or time(2) */
unsigned long qtool_now(void);
/* "dir/sub/qid", NUL-terminated into p; 0 on out of memory */
int qtool_path(stralloc *p, const char *sub, const char *qid);
/* logs the event with error text and exits with code */
void qtool_die(int code, const char *event, const char *qid, const char *error)
  __attribute__((noreturn));

/* ---- out.c: everything goes through one buffer on fd 1; a failed
 * write is remembered and reported by out_flush, so that the many
 * small puts need no checks of their own ---- */
void out_put(const char *s, size_t len);
void out_puts(const char *s);
void out_ulong(unsigned long long n);
/* bytes shown safely on a terminal: UTF-8 as it is, but control
 * characters, invalid bytes and '\' as \xHH (and \\) */
void out_text(const char *s, size_t len);
void out_texts(const char *s);
/* a JSON string with its quotes; NULL is null.  Bytes that are not
 * UTF-8 become U+FFFD: JSON text is UTF-8 (RFC 8259). */
void out_json(const char *s, size_t len);
void out_jsons(const char *s);
/* the same for a stream: encodes s[0..len) and returns how many bytes
 * it took; fewer than len only when s ends inside a UTF-8 sequence and
 * more is to come (last == 0): the caller passes the rest again with
 * the next bytes.  The quotes are the caller's. */
size_t out_jsonpart(const char *s, size_t len, int last);
/* a duration: "45s", "5m12s", "2h05m", "3d04h" */
void out_age(unsigned long secs);
/* a time in the local zone: "2026-11-22 10:00:00 +0100" */
void out_date(unsigned long t);
/* 0, or -1 when anything could not be written */
int out_flush(void);

/* ---- show.c ---- */
int show_list(int json);               /* exit code */
int show_one(const char *qid, int json);

#endif
