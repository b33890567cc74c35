#!/usr/bin/python3
"""Constant memory: a 50 MB message piped into smtpd (and so through
deliver) is stored byte for byte, and neither process grows beyond a few
MiB (the largest resident size, VmHWM, of smtpd and of its children, sampled from /proc
while they run); a 50 MB
message over the limit is refused (552 5.3.4) in constant memory too.
The RSS bound is checked only for the normal build (ASan's shadow
memory makes the sanitized programs big by design).
"""

import hashlib
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_memory")
R = T.Results()
MAX_RSS_KIB = 10 * 1024
SIZE = 50 * 1024 * 1024


def feed(p, lines, digest):
    """Writes a session with a message of about SIZE bytes to p.stdin."""
    head = (b"EHLO client.test\r\nMAIL FROM:<x@remote.test>\r\n"
            b"RCPT TO:<alice@example.org>\r\nDATA\r\n")
    msg_head = b"Subject: fifty megabytes\r\n\r\n"
    try:
        p.stdin.write(head + msg_head)
        digest.update(msg_head.replace(b"\r\n", b"\n"))
        chunk = []
        for i in range(lines):
            line = b"%08d " % i + b"abcdefghijklmnopqrstuvwxyz0123456789.-" * 2 + b"\r\n"
            if i % 1000 == 7:
                line = b"." + line       # a stuffed dot, stored without it
                digest.update(line[1:].replace(b"\r\n", b"\n"))
            else:
                digest.update(line.replace(b"\r\n", b"\n"))
            chunk.append(line)
            if len(chunk) == 4096:
                p.stdin.write(b"".join(chunk))
                chunk = []
        p.stdin.write(b"".join(chunk) + b".\r\nQUIT\r\n")
        p.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def watch(pid, peak, stop):
    """Samples VmHWM (peak resident KiB) of pid and its children into
    peak (name -> KiB) until stop is set.  (getrusage is no use here: a
    child of Python inherits Python's high-water mark through fork.)"""
    def hwm(p):
        try:
            with open("/proc/%d/status" % p) as f:
                st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
            return st["Name"].strip(), int(st.get("VmHWM", "0 kB").split()[0])
        except (OSError, KeyError, ValueError):
            return None, 0
    while not stop.is_set():
        pids = [pid]
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                            pids.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        for p in pids:
            name, kib = hwm(p)
            if name and kib > peak.get(name, 0):
                peak[name] = kib
        stop.wait(0.02)


def run(tmp, max_size):
    """Pipes the session into smtpd with max_message_size; returns its
    reply lines, the SHA-256 (hex) of the message as it should be
    stored, the peak resident KiB by program name, and its stderr."""
    confdir = T.setup(tmp, DELIVER, {"max_message_size": str(max_size), "timeout": "60"})
    env = T.base_env(confdir, SANITIZED)
    env["TCPREMOTEIP"] = "192.0.2.9"
    p = subprocess.Popen([SMTPD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    digest = hashlib.sha256()
    lines = SIZE // 88
    w = threading.Thread(target=feed, args=(p, lines, digest))
    w.start()
    peak, stop = {}, threading.Event()
    m = threading.Thread(target=watch, args=(p.pid, peak, stop))
    m.start()
    err = []
    t = threading.Thread(target=lambda: err.append(p.stderr.read()))
    t.start()
    out = p.stdout.read()
    p.wait(300)
    w.join()
    t.join()
    stop.set()
    m.join()
    return out.decode("latin-1").split("\r\n"), digest.hexdigest(), peak, err[0].decode("latin-1")


def session(name, max_size, reply, what):
    """Runs the session in BASE/name; returns tmp, the problems with the
    replies (no line starting with reply) and with the peak resident
    sizes, and run's digest and stderr."""
    tmp = os.path.join(BASE, name)
    replies, want, rss, err = run(tmp, max_size)
    probs = []
    if not any(r.startswith(reply) for r in replies):
        probs.append("no %s for %s: %r" % (reply, what, replies[-4:]))
    rss_probs = []
    if not SANITIZED and (not rss or max(rss.values()) > MAX_RSS_KIB):
        rss_probs.append("peak resident KiB %r (limit %d KiB)" % (rss, MAX_RSS_KIB))
    return tmp, probs, rss_probs, want, err


def test_big():
    tmp, probs, rss_probs, want, err = session("big", 60000000, "250 2.0.0 Ok:", "the 50 MB message")
    if not probs:
        path = T.one_message(tmp, "alice@example.org")
        with open(path, "rb") as f:
            head = f.read(4096)
        probs += T.head_problems(head, "x@remote.test", "alice@example.org")
        # the Received header may be folded: compare from the Subject on
        data_start = head.find(b"Subject: fifty megabytes\n")
        if data_start < 0 or T.sha256_file(path, data_start) != want:
            probs.append("the stored 50 MB message differs from what was sent")
        os.unlink(path)
    probs += rss_probs
    if probs:
        probs.append("log:\n" + err[-2000:])
    return probs + T.maildir_problems(tmp)


def test_too_big():
    tmp, probs, rss_probs, want, err = session("too-big", 10000, "552 5.3.4",
                                               "50 MB over a 10000 limit")
    if T.maildir_files(T.maildir_of(tmp, "alice@example.org")):
        probs.append("the message was delivered")
    return probs + rss_probs + T.maildir_problems(tmp)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        R.run("memory-" + sys.argv[1], {"50mb": test_big, "50mb-refused": test_too_big}[sys.argv[1]])
        R.exit()
    rc = 0
    for name in ("50mb", "50mb-refused"):
        rc |= subprocess.call([sys.executable, os.path.abspath(__file__), name])
    sys.exit(1 if rc else 0)
