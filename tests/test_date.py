#!/usr/bin/python3
"""lib/date.c against Python's time.gmtime/strftime: the RFC 5322 date
in Received, Date and bounce headers, for every day from 1970 to 2400
(at a time of day that moves through the day), the ends of leap and
century years, and the largest 32-bit and some 64-bit times.

    test_date.py REPO BINDIR      (as run.py runs tests/test_*.py)
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def want(t):
    s = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))
    return "%d %s" % (len(s), s)


def check():
    tmp = os.path.join(T.WORK, "test_date")
    os.makedirs(tmp, exist_ok=True)
    exe = os.path.join(tmp, "date_probe")
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(REPO, "lib"),
                    "-o", exe, os.path.join(REPO, "tests", "date_probe.c"),
                    os.path.join(REPO, "lib", "date.c")], check=True)
    day = 86400
    times = [d * day + (d * 7919) % day for d in range(0, 157000)]       # to 2399
    for y0 in (951782400, 4107542400, 4102444800):     # 2000-02-29, 2100-03-01, 2100-01-01
        times += [y0 + k for k in (-day - 1, -1, 0, 1, day - 1, day)]
    times += [0, 59, 3599, 2**31 - 1, 2**31, 2**32, 253402300799]        # ... 9999-12-31 23:59:59
    p = subprocess.run([exe], input="".join("%d\n" % t for t in times).encode(),
                       capture_output=True, timeout=60)
    got = p.stdout.decode().splitlines()
    if p.returncode != 0 or len(got) != len(times):
        return ["date_probe exited %d with %d lines for %d times" % (p.returncode, len(got), len(times))]
    probs = []
    for t, g in zip(times, got):
        if g != want(t):
            probs.append("%d: %r, expected %r" % (t, g, want(t)))
            if len(probs) > 10:
                break
    return probs


def main():
    R = T.Results()
    R.run("date-rfc5322", check)
    R.exit()


if __name__ == "__main__":
    main()
