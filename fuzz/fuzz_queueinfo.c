/* libFuzzer harness: lib/queueinfo.c, the reader (and writer) of the
 * queue's info files, which the relay and the queue tool read back
 * after a crash, a full disk or a hand edit.
 *
 * Input: the file, as info/fuzz of a queue directory on tmpfs.
 * Checked, when qinfo_read takes it:
 *   - a sender and at least one recipient, each with its T address;
 *     the parts no longer than the file; every state known;
 *   - qinfo_write then qinfo_read gives back the same: the head, each
 *     recipient's records and state, status, remote and text (a
 *     pending, never tried recipient has no state record: its other
 *     fields come back empty);
 *   - qinfo_settext with the text of the file leaves only printable
 *     bytes, cut to QINFO_MAXTEXT.
 * Refused files must say why. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stralloc.h>
#include "queueinfo.h"
#include "fuzz.h"

static const char *qdir;
static stralloc why;

static int fuzz_params(const char *p, size_t len, void *arg)
{
  size_t *n = arg;
  FUZZ_CHECK(strlen(p) == len, "P record length");
  (*n)++;
  return 0;
}

static int fuzz_same(const stralloc *a, const stralloc *b)
{
  return a->len == b->len && (a->len == 0 || !memcmp(a->s, b->s, a->len));
}

/* what a rewrite keeps of a recipient's state */
static int fuzz_nostate(const struct qinfo_rcpt *r)
{
  return r->state == QINFO_PENDING && !r->attempts && !r->flags && !r->next;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc; (void)argv;
  qdir = fuzz_dir();
  mkdir(fuzz_path(qdir, "info"), 0700);
  mkdir(fuzz_path(qdir, "tmp"), 0700);
  mkdir(fuzz_path(qdir, "mess"), 0700);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct qinfo q, q2;
  char path[512], path2[512];
  size_t np = 0;

  strcpy(path, fuzz_path(qdir, "info/fuzz"));
  strcpy(path2, fuzz_path(qdir, "info/fuzz2"));
  fuzz_write(qdir, "info/fuzz", (const char *)data, size);
  if (qinfo_read(&q, path, &why) == -1) {
    FUZZ_CHECK(why.len > 0, "refused without a reason");
    FUZZ_CHECK(errno == EINVAL || errno == ENOENT || errno == ENOMEM, "refused with errno %d", errno);
    qinfo_free(&q);
    return 0;
  }
  FUZZ_CHECK(q.n > 0 && q.sender && q.id, "taken without sender or recipient");
  FUZZ_CHECK(q.head.len <= size, "head longer than the file");
  for (size_t i = 0; i < q.n; i++) {
    const struct qinfo_rcpt *r = &q.r[i];
    FUZZ_CHECK(r->addr && r->addr[-1] == 'T', "recipient %zu without its T record", i);
    FUZZ_CHECK(r->raw.len <= size, "recipient longer than the file");
    FUZZ_CHECK((unsigned)r->state <= QINFO_BOUNCED, "state %d", (int)r->state);
    FUZZ_CHECK(strcmp(qinfo_statename(r->state), "?"), "state has no name");
  }
  qinfo_params(&q, fuzz_params, &np);

  if (qinfo_write(&q, qdir, "fuzz2", &why) == -1) fuzz_fail("qinfo_write: %.*s", (int)why.len, why.s);
  if (qinfo_read(&q2, path2, &why) == -1) fuzz_fail("own file refused: %.*s", (int)why.len, why.s);
  FUZZ_CHECK(fuzz_same(&q.head, &q2.head) && q.n == q2.n, "head or recipients changed");
  FUZZ_CHECK(!strcmp(q.id, q2.id) && !strcmp(q.sender, q2.sender) && q.created == q2.created, "I, F or C changed");
  for (size_t i = 0; i < q.n; i++) {
    const struct qinfo_rcpt *a = &q.r[i], *b = &q2.r[i];
    int gone = fuzz_nostate(a);
    FUZZ_CHECK(fuzz_same(&a->raw, &b->raw), "recipient %zu's records changed", i);
    FUZZ_CHECK(!strcmp(a->addr, b->addr), "recipient %zu's address changed", i);
    FUZZ_CHECK(!a->notify == !b->notify && (!a->notify || !strcmp(a->notify, b->notify)), "NOTIFY changed");
    FUZZ_CHECK(!a->orcpt == !b->orcpt && (!a->orcpt || !strcmp(a->orcpt, b->orcpt)), "ORCPT changed");
    FUZZ_CHECK(a->state == b->state && a->attempts == b->attempts && a->next == b->next &&
               a->flags == b->flags, "recipient %zu's state changed", i);
    FUZZ_CHECK(gone ? !b->first && !b->status.len && !b->remote.len && !b->text.len
                    : a->first == b->first && fuzz_same(&a->status, &b->status) &&
                      fuzz_same(&a->remote, &b->remote) && fuzz_same(&a->text, &b->text),
               "recipient %zu's state record changed", i);
  }
  qinfo_free(&q2);

  /* the text of a reply, as the relay records it */
  {
    struct qinfo_rcpt *r = &q.r[0];
    char *t = fuzz_dup(data, size);
    char *st = fuzz_dup(q.sender, strlen(q.sender) + 1);
    FUZZ_CHECK(qinfo_settext(r, st, q.id, t, size), "settext: out of memory");
    FUZZ_CHECK(r->text.len <= QINFO_MAXTEXT && r->text.len == (size < QINFO_MAXTEXT ? size : QINFO_MAXTEXT),
               "text cut wrong");
    for (size_t i = 0; i < r->text.len; i++)
      FUZZ_CHECK((unsigned char)r->text.s[i] >= 32 && r->text.s[i] != 127, "control byte kept in text");
    for (size_t i = 0; i < r->status.len; i++)
      FUZZ_CHECK((unsigned char)r->status.s[i] > 32 && r->status.s[i] != 127, "blank kept in status");
    FUZZ_CHECK(r->status.len <= 300 && r->remote.len <= 300, "field not cut");
    free(st);
    free(t);
  }
  qinfo_free(&q);
  return 0;
}
