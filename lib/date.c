#include "date.h"

static void date_two(char *p, unsigned v)
{
  p[0] = (char)('0' + v / 10 % 10);
  p[1] = (char)('0' + v % 10);
}

unsigned date_rfc5322(char buf[DATE_RFC5322], time_t t)
{
  static const char wday[] = "ThuFriSatSunMonTueWed";   /* 1970-01-01 was a Thursday */
  static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  unsigned long long s = t < 0 ? 0 : (unsigned long long)t;
  unsigned long long days = s / 86400, era, doe, yoe, doy, mp, year;
  unsigned secs = (unsigned)(s % 86400), day, month, i;
  char *p = buf;

  for (i = 0; i < 3; i++) *p++ = wday[days % 7 * 3 + i];
  /* the civil date, counting 400-year eras from 0000-03-01 so that
   * the leap day ends each year */
  days += 719468;
  era = days / 146097;
  doe = days - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
  month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
  year = yoe + era * 400 + (month <= 2);
  if (year > 9999) year = 9999;

  *p++ = ',';
  *p++ = ' ';
  date_two(p, day), p += 2;
  *p++ = ' ';
  for (i = 0; i < 3; i++) *p++ = mon[(month - 1) * 3 + i];
  *p++ = ' ';
  date_two(p, (unsigned)(year / 100)), date_two(p + 2, (unsigned)(year % 100)), p += 4;
  *p++ = ' ';
  date_two(p, secs / 3600), p += 2;
  *p++ = ':';
  date_two(p, secs / 60 % 60), p += 2;
  *p++ = ':';
  date_two(p, secs % 60), p += 2;
  for (i = 0; i < 6; i++) *p++ = " +0000"[i];
  *p = 0;
  return (unsigned)(p - buf);
}
