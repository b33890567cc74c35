#ifndef DOPIS_ID_H
#define DOPIS_ID_H
/* A message or session id unique on this host: time in microseconds,
 * pid and a counter, in lower-case hex.  Needs 40 bytes. */
#define ID_LEN 40
void id_make(char out[ID_LEN]);
#endif
