/* The configuration directory ($DOPIS_CONF, default /etc/dopis):
 * dopis.conf plus the list files localdomains, users, aliases,
 * restricted and relayclients.  Everything is loaded once, at start,
 * into sorted tables; lookups are binary searches. */
#ifndef DOPIS_CONFIG_H
#define DOPIS_CONFIG_H

#include <stddef.h>
#include <stralloc.h>

#define CONFIG_DEFAULT_DIR "/etc/dopis"
#define CONFIG_SUBMIT_SOCKET "/run/dopis/submit"

/* One entry of a list file: key is lower-cased where matching is
 * case-insensitive; value is the rest of the line (users: the Maildir
 * path, "" for the default; aliases: targets separated by NUL bytes). */
struct config_entry {
  char *key;
  char *value;
  size_t valuelen;
  unsigned long line;   /* where it was read, for errors */
};

struct config_table {
  struct config_entry *e;
  size_t n, a;
};

struct config_net {
  unsigned char addr[16];   /* IPv4 is stored as ::ffff:a.b.c.d */
  unsigned int prefix;      /* in bits, of the 128-bit form */
};

#define CONFIG_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
/* smarthost_tls: opportunistic like any peer, encrypted, or encrypted
 * with a verified certificate */
#define CONFIG_SMARTHOST_TLS_NO 0
#define CONFIG_SMARTHOST_TLS_YES 1
#define CONFIG_SMARTHOST_TLS_VERIFY 2

struct config {
  stralloc dir;             /* the configuration directory, no trailing / */
  stralloc hostname;
  stralloc mailroot;        /* absolute */
  stralloc queue;           /* absolute */
  stralloc deliver;         /* absolute path of the delivery program */
  stralloc submit_socket;   /* absolute; sendmail's way in for users (dopis-sendmail(8)) */
  stralloc tls_cert, tls_key; /* absolute, NUL after .len; "" when unset */
  stralloc firstdomain;     /* first line of localdomains: <Postmaster> */
  unsigned long max_message_size;
  unsigned long max_recipients;
  unsigned long timeout;
  struct config_table localdomains; /* key: domain */
  struct config_table users;        /* key: local@domain, value: Maildir or "" */
  struct config_table aliases;      /* key: local@domain or @domain */
  struct config_table restricted;   /* key: local@domain or @domain */
  struct config_net *relayclients;
  size_t nrelayclients;
  /* the relay (see dopis-relay(8)); times in seconds */
  stralloc smarthost;       /* "" or host[:port], as written */
  int smarthost_tls;        /* CONFIG_SMARTHOST_TLS_*: what the smarthost's TLS must be */
  stralloc smarthost_user;  /* AUTH PLAIN to the smarthost; "" for none */
  stralloc smarthost_password_file; /* absolute; "" when unset */
  stralloc tls_ca_file;     /* the CAs the relay trusts; absolute */
  unsigned long max_connections;
  unsigned long timeout_connect;
  unsigned long timeout_greeting;   /* RFC 5321 4.5.3.2 */
  unsigned long timeout_mail;
  unsigned long timeout_rcpt;
  unsigned long timeout_data;       /* DATA until 354 */
  unsigned long timeout_data_block; /* each block of data written */
  unsigned long timeout_dot;        /* after the final dot */
  unsigned long retry_min, retry_max;
  unsigned long max_queue_lifetime;
  unsigned long delay_warning;      /* 0: none */
  int double_bounce_postmaster;     /* double_bounce = postmaster */
};

/* Loads everything.  Returns 1, or 0 with err holding one line
 * "file:line: problem" (or "file: problem") without a newline. */
int config_load(struct config *c, stralloc *err);
void config_free(struct config *c);

/* Exact lookup of a lower-case key; NULL when absent. */
const struct config_entry *config_find(const struct config_table *t,
                                       const char *key, size_t len);

int config_islocaldomain(const struct config *c, const char *dom, size_t len);
/* addr is local@domain (any case); true when the address or its
 * domain is listed in restricted. */
int config_isrestricted(const struct config *c, const char *addr, size_t len);
/* ip: 16 bytes, IPv4 mapped as ::ffff:a.b.c.d */
int config_isrelayclient(const struct config *c, const unsigned char ip[16]);

/* Parses a textual IPv4 or IPv6 address into the 16-byte form.
 * Returns 1 on success. */
int config_parseip(const char *s, unsigned char ip[16]);

#endif
