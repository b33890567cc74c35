#!/usr/bin/python3
"""Robustness: seeded random sessions - valid commands mixed with random
bytes, NULs, 8-bit bytes, bare CR/LF, over-long lines and addresses,
BDAT with wrong sizes, pipelined in one write - piped into smtpd.  Every
session must end with smtpd exiting on its own (no signal, no hang), its
output must be well-formed CRLF-terminated reply lines, nothing may be
left in any tmp/, and under the sanitizer build nothing may be reported.
The seed is fixed, so a failure is reproducible: the failing input is
kept in tests/work/PASS/interop_fuzz/NNN.input.
"""

import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_fuzz")
R = T.Results()
SESSIONS = 400

ADDRS = [b"<alice@example.org>", b"<bob@example.org>", b"<team@example.org>", b"<>",
         b"<Postmaster>", b"<x@remote.test>", b"<loop1@example.org>", b"<\"q u\"@example.org>",
         b"<@a.test,@b.test:alice@example.org>", b"<carol+tag@example.net>",
         b"<j\xc3\xb6rg@example.org>", b"<x@[192.0.2.1]>", b"<x@[IPv6:2001:db8::1]>",
         b"<spammer@evil.test>", b"<a%b@example.org>", b"<b!a@example.org>", b"<alice"]
PARAMS = [b"", b" SIZE=100", b" SIZE=99999999999999999999999", b" BODY=8BITMIME",
          b" BODY=BINARYMIME", b" SMTPUTF8", b" FOO=bar", b" NOTIFY=NEVER",
          b" ORCPT=rfc822;a+2Bb@x.test", b" RET=HDRS", b" ENVID=a+00b", b" SIZE="]


def junk(rnd, n):
    return bytes(rnd.choice(b"\0\r\n\t .:<>@\"\\\x7f\x80\xff\xc3\xb6aZ9") for _ in range(n))


def noise(rnd):
    k = rnd.random()
    if k < 0.3:
        return rnd.choice([b"RSET", b"NOOP", b"VRFY alice", b"EXPN team", b"HELP", b"VRFY",
                           b"QUIT", b"GET / HTTP/1.1", b"XYZZY", b"DATA", b"EHLO x"]) + b"\r\n"
    if k < 0.6:
        return junk(rnd, rnd.randint(1, 80)) + b"\r\n"
    if k < 0.8:
        return b"MAIL FROM:<" + b"a" * rnd.randint(60, 2000) + b"@x.test>\r\n"
    return b"NOOP " + b"x" * rnd.randint(400, 3000) + rnd.choice([b"\r\n", b"\n", b""])


def body(rnd):
    return rnd.choice([b"Subject: x\r\n\r\nbody\r\n", b"..dot\r\n.\r\n", b"a\nb\r\n",
                       b"c\rd\r\n", b"Received: x\r\n" * rnd.randint(0, 120),
                       b"x" * rnd.randint(0, 12000) + b"\r\n", junk(rnd, 50),
                       b"Subject: \xc3\xb6\xff\0\r\n\r\n\x80\r\n"])


def transaction(rnd):
    """A mostly valid transaction, now and then bent."""
    out = [b"MAIL FROM:" + rnd.choice(ADDRS) + rnd.choice(PARAMS) + b"\r\n"]
    for _ in range(rnd.randint(0, 4)):
        out.append(b"RCPT TO:" + rnd.choice(ADDRS[:7]) + rnd.choice(PARAMS[:1] * 5 + PARAMS) + b"\r\n")
    if rnd.random() < 0.6:
        end = rnd.choice([b".\r\n"] * 6 + [b"\n.\n", b"\r\n.\r", b""])
        b = body(rnd)
        if not b.endswith(b"\r\n") and end == b".\r\n":
            b += b"\r\n"
        out.append(b"DATA\r\n" + b + end)
    else:
        for _ in range(rnd.randint(1, 3)):
            chunk = body(rnd)
            size = len(chunk) + rnd.choice([0, 0, 0, 0, -3, 5])
            out.append(b"BDAT %d\r\n" % max(size, 0) + chunk)
        out.append(rnd.choice([b"BDAT 0 LAST\r\n", b"BDAT 2 last\r\nx\n", b"BDAT 1 FIRST\r\nx", b""]))
    k = rnd.randint(0, len(out))
    if rnd.random() < 0.3:
        out.insert(k, noise(rnd))
    return out


def session(rnd):
    out = [rnd.choice([b"EHLO client.test\r\n"] * 8 + [b"HELO client.test\r\n", b""])]
    for _ in range(rnd.randint(1, 4)):
        out += transaction(rnd)
    if rnd.random() < 0.7:
        out.append(b"QUIT\r\n")
    return b"".join(out)


def main():
    rnd = random.Random(20261122)
    tmp = os.path.join(BASE, "conf")
    confdir = T.setup(tmp, DELIVER, {"timeout": "5"})
    env = T.base_env(confdir, SANITIZED)
    env["RELAYCLIENT"] = ""
    probs = []
    for n in range(SESSIONS):
        data = session(rnd)
        try:
            p = subprocess.run([SMTPD], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, timeout=30, cwd=tmp)
        except subprocess.TimeoutExpired:
            probs.append("session %d: smtpd did not exit" % n)
            keep(n, data)
            continue
        err = p.stderr.decode("latin-1")
        bad = []
        if p.returncode < 0:
            bad.append("died of signal %d" % -p.returncode)
        rep = T.sanitizer_report(err) if SANITIZED else ""
        if rep:
            bad.append("sanitizer:\n" + rep)
        text = p.stdout.decode("latin-1")
        if text and not text.endswith("\r\n"):
            bad.append("output does not end with CRLF")
        for line in text.split("\r\n")[:-1]:
            if not re.fullmatch(r"\d{3}[ -][\x20-\x7e]*", line):
                bad.append("malformed reply line %r" % line)
                break
        if bad:
            keep(n, data)
            probs.append("session %d (input kept in %s): %s" % (n, os.path.relpath(
                os.path.join(BASE, "%03d.input" % n), T.TOP), "; ".join(bad)))
    probs += T.maildir_problems(tmp) + T.queue_problems(tmp)
    delivered = sum(len(T.maildir_files(md)) for md in T.all_maildirs(tmp))
    if delivered < 30:
        probs.append("only %d messages were delivered: the sessions are too broken to "
                     "reach the deep paths" % delivered)
    R.run("fuzz-%d-sessions" % SESSIONS, lambda: probs)
    R.exit()


def keep(n, data):
    with open(os.path.join(BASE, "%03d.input" % n), "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
