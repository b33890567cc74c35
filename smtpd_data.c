#include <buffer.h>
#include "smtpd.h"

/* line-start states track CRLF "." CRLF; only that ends DATA */
enum { ST_LS, ST_LSDOT, ST_LSDOTCR, ST_MID, ST_CR };

void data_init(struct data *d, buffer *out, int bdat, int binary, unsigned long max)
{
  d->out = out;
  d->bdat = bdat;
  d->binary = binary;
  d->state = bdat ? ST_MID : ST_LS;
  d->done = d->bare = d->writefail = 0;
  d->inheader = 1;
  d->hdrpos = 0;
  d->hdrmatch = 1;
  d->received = 0;
  d->size = 0;
  d->max = max;
  d->written = 0;
}

enum data_verdict data_verdict(const struct data *d)
{
  if (d->size > d->max) return DATA_TOOBIG;
  if (d->bare) return DATA_BARE;
  if (d->received > DATA_MAXRECEIVED) return DATA_LOOP;
  if (d->writefail) return DATA_IOERR;
  return DATA_OK;
}

/* Once the message cannot be delivered, stop feeding deliver: the rest
 * is only read to find its end. */
static int data_writing(struct data *d)
{
  if (!d->out) return 0;
  if (data_verdict(d) != DATA_OK) d->out = NULL;
  return d->out != NULL;
}

static void data_header(struct data *d, const char *s, size_t len)
{
  static const char rcvd[] = "received:";
  for (size_t i = 0; i < len && d->inheader; i++) {
    char c = s[i];
    if (c == '\r') continue;   /* binary bodies keep their CRLF */
    if (c == '\n') {
      if (d->hdrpos == 0) d->inheader = 0;   /* the empty line */
      d->hdrpos = 0;
      d->hdrmatch = 1;
      continue;
    }
    if (d->hdrpos < 9) {
      char l = c >= 'A' && c <= 'Z' ? c + 32 : c;
      if (l != rcvd[d->hdrpos]) d->hdrmatch = 0;
      if (++d->hdrpos == 9 && d->hdrmatch) d->received++;
    }
  }
}

static void data_emit_raw(struct data *d, const char *s, size_t len)
{
  if (d->inheader) data_header(d, s, len);
  if (!data_writing(d)) return;
  if (buffer_put(d->out, s, len) == -1) {
    d->writefail = 1;
    d->out = NULL;
    return;
  }
  d->written += len;
}

/* Stored LF stands for the client's CRLF: it counts 2 (RFC 1870). */
static void data_emit(struct data *d, const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++) d->size += s[i] == '\n' ? 2 : 1;
  data_emit_raw(d, s, len);
}

static void data_bare(struct data *d, const char *c)
{
  d->bare = 1;
}

size_t data_feed(struct data *d, const char *s, size_t len)
{
  size_t i = 0;
  /* BINARYMIME (BDAT only): the bytes are the message, stored as they
   * came, CRLF and all; nothing to normalise, nothing is bare */
  if (d->binary) {
    d->size += len;
    data_emit_raw(d, s, len);
    return len;
  }
  while (i < len && !d->done) {
    char c = s[i];
    switch (d->state) {
    case ST_MID: {
      /* the common case: a run of ordinary bytes */
      size_t j = i;
      while (j < len && s[j] != '\r' && s[j] != '\n') j++;
      if (j > i) { data_emit(d, s + i, j - i); i = j; continue; }
      if (c == '\r') d->state = ST_CR;
      else data_bare(d, "\n");
      i++;
      continue;
    }
    case ST_CR:
      if (c == '\n') {
        data_emit(d, "\n", 1);
        d->state = d->bdat ? ST_MID : ST_LS;
        i++;
        continue;
      }
      data_bare(d, "\r");
      d->state = ST_MID;
      continue;  /* c is looked at again in ST_MID */
    case ST_LS:
      if (c == '.') { d->state = ST_LSDOT; i++; continue; }
      d->state = ST_MID;
      continue;
    case ST_LSDOT:
      if (c == '\r') { d->state = ST_LSDOTCR; i++; continue; }
      d->state = ST_MID;  /* "..x" -> ".x": the first dot is dropped */
      continue;
    case ST_LSDOTCR:
      if (c == '\n') { d->done = 1; i++; continue; }
      /* "." CR then not LF: the dot was content after all, then a bare CR */
      data_bare(d, "\r");
      d->state = ST_MID;
      continue;
    }
  }
  return i;
}

void data_finish(struct data *d)
{
  if (d->state == ST_CR && !d->binary) data_bare(d, "\r");
  d->state = ST_MID;
}
