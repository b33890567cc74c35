/* smtpd's message-data filter: turns the client's DATA or BDAT bytes
 * into the stored form (CRLF -> LF, dot-unstuffed) while checking them.
 * It never holds the message: bytes go straight to the deliver pipe. */
#ifndef DOPIS_SMTPD_H
#define DOPIS_SMTPD_H

#include <stddef.h>
#include <buffer.h>

#define DATA_MAXRECEIVED 100   /* more Received: lines is a mail loop */

struct data {
  buffer *out;              /* the deliver pipe; NULL once writing stopped */
  int bdat;                 /* BDAT: no dot handling, no end marker */
  int binary;               /* BODY=BINARYMIME: stored raw, CRLF and all */
  int state;
  int done;                 /* DATA: the final CRLF.CRLF was consumed */
  int bare;                 /* a bare CR or LF was seen */
  int writefail;            /* the deliver pipe broke */
  int inheader, hdrpos, hdrmatch;
  unsigned long received;   /* Received: header lines */
  unsigned long size;       /* octets as on the wire, CRLF counting 2 */
  unsigned long max;
  unsigned long written;    /* bytes given to out */
};

void data_init(struct data *d, buffer *out, int bdat, int binary, unsigned long max);
/* Consumes input; returns the bytes consumed.  In DATA mode it stops
 * right after the end marker and sets done. */
size_t data_feed(struct data *d, const char *s, size_t len);
/* BDAT LAST: a CR still waiting for its LF is a bare CR. */
void data_finish(struct data *d);
/* Whether the message may be delivered: 0 yes, else the reason. */
enum data_verdict { DATA_OK = 0, DATA_TOOBIG, DATA_BARE, DATA_LOOP, DATA_IOERR };
enum data_verdict data_verdict(const struct data *d);

#endif
