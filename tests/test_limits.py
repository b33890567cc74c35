#!/usr/bin/python3
"""Memory stays bounded whatever the client sends: smtpd under an
address-space limit (ulimit -v 64 MiB) is fed 64 MiB without a line end,
once as a command and once inside DATA, and must neither die nor stop
answering.  (Sanitizer builds reserve terabytes of address space, so
there the limit is left off and only the outcome is checked.)

    /usr/bin/python3 tests/test_limits.py [REPO [BINDIR]]
"""

import os
import resource
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

LIMIT = 64 << 20
FLOOD = 64 << 20


def run(tmp, smtpd, deliver, sanitized, head, tail):
    T.setup(tmp, deliver)
    env = T.base_env(os.path.join(tmp, "conf"), sanitized)
    env["TCPREMOTEIP"] = "192.0.2.9"

    def limit():
        if not sanitized:
            resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    p = subprocess.Popen([smtpd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, preexec_fn=limit)
    out = []
    t = threading.Thread(target=lambda: out.append(p.stdout.read()))
    t.start()
    e = threading.Thread(target=lambda: p.stderr.read())
    e.start()
    try:
        p.stdin.write(head)
        chunk = b"A" * (1 << 20)
        for _ in range(FLOOD >> 20):
            p.stdin.write(chunk)
        p.stdin.write(tail)
        p.stdin.close()
    except BrokenPipeError:
        pass
    p.wait(120)
    t.join(30)
    e.join(30)
    replies = out[0].decode("latin-1").split("\r\n") if out else []
    probs = []
    if p.returncode != 0:
        probs.append("smtpd exit status %d (killed or out of memory?)" % p.returncode)
    return probs, replies


def flood_command(tmp, smtpd, deliver, sanitized):
    probs, replies = run(tmp, smtpd, deliver, sanitized, b"EHLO x\r\nNOOP ", b"\r\nQUIT\r\n")
    if "500 5.5.6 Line too long" not in replies or "221 2.0.0 Bye" not in replies:
        probs.append("expected 500 5.5.6 then 221 after the flood; got %r" % replies[-4:])
    return probs


def flood_data(tmp, smtpd, deliver, sanitized):
    head = b"EHLO x\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
    probs, replies = run(tmp, smtpd, deliver, sanitized, head, b"\r\n.\r\nQUIT\r\n")
    if not any(r.startswith("552 5.3.4") for r in replies) or "221 2.0.0 Bye" not in replies:
        probs.append("expected 552 5.3.4 then 221 after the flood; got %r" % replies[-4:])
    return probs + T.maildir_problems(tmp) + (
        ["something was delivered"] if T.all_maildirs(tmp) and any(
            T.maildir_files(m) for m in T.all_maildirs(tmp)) else [])


def main():
    name, smtpd, deliver, sanitized = T.this_build()
    if len(sys.argv) > 2:
        smtpd = os.path.abspath(os.path.join(sys.argv[2], "smtpd"))
        deliver = os.path.abspath(os.path.join(sys.argv[2], "deliver"))
    base = os.path.join(T.WORK, name, "test_limits")
    res = T.Results()
    for test, fn in (("limits-flood-command", flood_command), ("limits-flood-data", flood_data)):
        tmp = os.path.join(base, test)
        T.fresh_dir(tmp)
        res.run(test, fn, tmp, smtpd, deliver, sanitized)
    res.exit()


if __name__ == "__main__":
    main()
