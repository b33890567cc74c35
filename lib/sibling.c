#include <limits.h>
#include <unistd.h>
#include <str.h>
#include <stralloc.h>
#include "sibling.h"

int sibling_path(const char *name, stralloc *out)
{
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  size_t slash;
  if (n <= 0) {
    /* no /proc: the installed layout */
    return stralloc_copys(out, "/usr/local/sbin/dopis-") && stralloc_cats(out, name) &&
           stralloc_0(out) && (out->len--, 1);
  }
  self[n] = 0;
  slash = str_rchr(self, '/');
  if (!stralloc_copyb(out, self, slash + 1)) return 0;
  if (str_start(self + slash + 1, "dopis-") && !stralloc_cats(out, "dopis-")) return 0;
  if (!stralloc_cats(out, name) || !stralloc_0(out)) return 0;
  out->len--;
  return 1;
}
