#include <sys/time.h>
#include <unistd.h>
#include <fmt.h>
#include "id.h"

void id_make(char out[ID_LEN])
{
  static unsigned long counter;
  struct timeval tv;
  size_t n = 0;

  gettimeofday(&tv, NULL);
  n += fmt_xlong(out + n, (unsigned long)tv.tv_sec);
  out[n++] = '.';
  n += fmt_xlong(out + n, (unsigned long)tv.tv_usec);
  out[n++] = '.';
  n += fmt_xlong(out + n, (unsigned long)getpid());
  out[n++] = '.';
  n += fmt_xlong(out + n, counter++);
  out[n] = 0;
}
