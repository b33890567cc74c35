/* The parts of dopis-sendmail(8): the header section (header.c), the
 * RFC 5322 address lists in it (addrlist.c), the spool file the
 * message is written to on its way to deliver (spool.c) and the header
 * lines sendmail adds (compose.c), and the SMTP client that submits
 * to smtpd's local socket for users who do not own the mailroot
 * (submit.c). */
#ifndef DOPIS_SENDMAIL_H
#define DOPIS_SENDMAIL_H

#include <stddef.h>
#include <buffer.h>
#include <stralloc.h>

/* The header section is held in memory to find its recipients, so it
 * is bounded; the body never is. */
#define SENDMAIL_MAXHEADER (1024 * 1024)
#define SENDMAIL_MAXHEADERLINES 1000
#define SENDMAIL_MAXRECEIVED 100   /* more is a mail loop, as in smtpd */
#define SENDMAIL_MAXFULLNAME 256

/* ---- header.c ---- */

enum header_end {
  HEADER_BLANK,   /* the empty line: the body follows */
  HEADER_DOT,     /* a line "." ended the message (without -i) */
  HEADER_EOF,     /* the input ended: no body */
  HEADER_BODY     /* a line that is no header field: it starts the body */
};

struct header {
  stralloc text;          /* the header fields, LF line ends */
  stralloc first;         /* HEADER_BODY: that line, raw, maybe cut short */
  enum header_end end;
  unsigned long lines;
};

struct header_field {
  const char *s;          /* the field: name, value, continuation lines, LF */
  size_t len;
  size_t namelen;
  const char *value;      /* after the colon, up to the final LF */
  size_t valuelen;
};

/* Reads the header section from in.  Returns 0, or a sysexits code
 * with *why set. */
int header_read(buffer *in, int dotend, struct header *h, const char **why);
/* The field at *pos (start at 0); returns 0 after the last. */
int header_next(const struct header *h, size_t *pos, struct header_field *f);
/* Whether the field's name is lname (lower case). */
int header_is(const struct header_field *f, const char *lname);

/* ---- addrlist.c ---- */

/* Parses an RFC 5322 address list (display names, comments, groups,
 * folding and the obsolete forms) and appends each address's
 * addr-spec, with comments and white space taken out, and a NUL to
 * out; "<>" gives an empty one.  Returns 1, 0 on a syntax error, -1
 * when out of memory. */
int addrlist_parse(const char *s, size_t len, stralloc *out);

/* ---- spool.c ---- */

struct spool {
  int fd;
  buffer b;
  unsigned long long size;   /* bytes in the file */
  unsigned long long wire;   /* counted bytes, an LF counting 2 (CRLF) */
  unsigned long long max;    /* of wire; more sets toobig */
  int eightbit;              /* a counted byte >= 0x80 */
  int toobig;
  int error;                 /* a write failed: errno says why */
};

/* An unnamed temporary file, read-write: a descriptor or -1. */
int spool_tmp(void);
/* Opens an unnamed temporary file in $TMPDIR or /tmp.  Returns 1, or
 * 0 with errno set. */
int spool_open(struct spool *s, unsigned long long max);
/* Appends; counted (wire size, 8-bit) unless raw.  Returns 1 or 0.
 * Failures are sticky (toobig, error): the caller may check them once,
 * after the last put, and spool_finish fails after a write error. */
int spool_put(struct spool *s, const char *p, size_t len);
int spool_putraw(struct spool *s, const char *p, size_t len);
/* Flushes and rewinds the file for deliver.  Returns 1 or 0. */
int spool_finish(struct spool *s);

enum { BODY_LS, BODY_DOT, BODY_DOTCR, BODY_MID, BODY_CR };
struct body {
  int state;
  int dotend;   /* a line "." ends the message (no -i) */
  int done;     /* it did */
};
/* The body filter: CRLF becomes LF, a line "." ends the message when
 * dotend.  body_feed returns the bytes it consumed (fewer than len
 * only at the end marker); body_end completes the last line at the
 * end of the input. */
void body_init(struct body *b, int dotend);
size_t body_feed(struct body *b, struct spool *s, const char *p, size_t len);
void body_end(struct body *b, struct spool *s);

/* ---- compose.c ---- */

/* Whether a -F value can be a display name: at most
 * SENDMAIL_MAXFULLNAME bytes, no control bytes, UTF-8. */
int compose_fullnameok(const char *s, size_t len);
/* "From: phrase <addr>\n" or "From: addr\n" onto out. */
int compose_from(stralloc *out, const char *fullname, const char *addr, size_t addrlen);

/* ---- sendmail.c ---- */

/* read(2) and write(2), again on EINTR: for libowfat's buffers */
ssize_t sendmail_read(int fd, char *buf, size_t len);
ssize_t sendmail_write(int fd, const char *buf, size_t len);

/* ---- submit.c ---- */

struct submit {
  int fd;
  buffer in, out;
  char inspace[4096], outspace[16384];
  int code, nlines;
  stralloc text;              /* the last reply (lib/smtpreply.h): "550 5.1.1 ..." */
};

/* Connects to the Unix socket at path; every read and write then
 * fails after timeout seconds.  Returns 1, or 0 with errno set. */
int submit_connect(struct submit *s, const char *path, unsigned long timeout);
/* Reads a reply into s->text.  Returns its code, 0 when the
 * connection ended or failed (errno), -1 when the reply is malformed
 * or over the limits (lib/smtpreply.h), or not 2xx to 5xx. */
int submit_reply(struct submit *s);
/* Sends one command line (CRLF added) and reads the reply: as
 * submit_reply. */
int submit_command(struct submit *s, const char *line, size_t len);
/* Sends the spool fd (LF line ends, from its offset) as DATA's
 * content, CRLF and dot-stuffed, then the final dot, and reads the
 * reply: as submit_reply, or -2 when the spool cannot be read. */
int submit_data(struct submit *s, int fd);
/* -bs: copies fd 0 to sock and sock to fd 1 until smtpd closes its
 * end (the end of fd 0 is passed on as a half close).  Returns 1, or
 * 0 on a read or write error (errno). */
int submit_proxy(int sock);

#endif
