/* Prints date_rfc5322 of each timestamp read from stdin, one a line:
 * tests/test_date.py compares the output with Python's. */
#include <stdio.h>
#include <stdlib.h>
#include "date.h"

int main(void)
{
  char line[64], buf[DATE_RFC5322];
  while (fgets(line, sizeof line, stdin)) {
    unsigned n = date_rfc5322(buf, (time_t)strtoll(line, NULL, 10));
    printf("%u %s\n", n, buf);
  }
  return 0;
}
