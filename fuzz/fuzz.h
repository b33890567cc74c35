/* What the libFuzzer harnesses of fuzz/ share: a scratch directory on
 * tmpfs, files written into it, inputs cut into parts, and the one
 * way to report a broken invariant (an abort, which libFuzzer treats
 * as a crash and saves the input of).  See fuzz/README. */
#ifndef DOPIS_FUZZ_H
#define DOPIS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* a fresh directory, removed at exit; the same one for every call */
const char *fuzz_dir(void);
/* writes dir/name (made absent first) with s; aborts on failure */
void fuzz_write(const char *dir, const char *name, const char *s, size_t len);
/* dir/name, in a static buffer */
const char *fuzz_path(const char *dir, const char *name);

/* Cuts data at every sep into at most max parts (the last takes the
 * rest, separators and all); returns how many. */
struct fuzz_part { const char *s; size_t len; };
size_t fuzz_split(const uint8_t *data, size_t size, char sep, struct fuzz_part *p, size_t max);

/* a copy in a heap block of exactly len bytes, so that AddressSanitizer
 * sees any read past its end; free() it */
char *fuzz_dup(const void *s, size_t len);

void fuzz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
#define FUZZ_CHECK(cond, ...) do { if (!(cond)) fuzz_fail(__VA_ARGS__); } while (0)

#endif
