#!/usr/bin/python3
"""Interop: load (issue 6) against smtpd under tcpserver -c 50.

concurrent   200 client threads (smtplib; 80 in the sanitizer build), 2
             messages each, all at once against tcpserver -c 50.  A
             sampler reads /proc every 10 ms: the number of smtpd
             processes never exceeds 50 (the excess clients wait in the
             listen queue), and the peak VmHWM of any smtpd is reported
             (under 4 MiB required in the normal build).  Every message
             answered 250 is in the Maildir exactly once.
slowloris    20 clients that send one byte a second hold sessions while
             another client delivers a message promptly (within 5 s);
             with timeout = 3 a slow client that stops sending gets
             421 4.4.2 and is closed; a client that keeps dripping a byte
             a second must be closed too (a whole-command deadline).

Run by tests/run.py (once per build); alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_load.py
"""

import os
import re
import smtplib
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_load")
R = T.Results()

LIMIT = 50
CLIENTS = 80 if SANITIZED else 200
PER_CLIENT = 2
RSS_LIMIT_KB = 4096


def start_limited(tmp, confdir, timeout=None):
    """tcpserver -c LIMIT -b 300 (a listen backlog for all the clients)."""
    port = T.free_port()
    with open(os.path.join(tmp, "server.stderr"), "wb") as errf:
        srv = subprocess.Popen(["tcpserver", "-q", "-H", "-R", "-c", str(LIMIT), "-b", "300",
                                "-l", T.HOSTNAME, "127.0.0.1", str(port), SMTPD],
                               env=T.base_env(confdir, SANITIZED), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=errf)
    T.wait_port(port, srv)
    return srv, port


def smtpd_pids(server_pid):
    """Children of tcpserver that are (still) smtpd."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        rest = st.rsplit(")", 1)
        if len(rest) != 2:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        fields = rest[1].split()
        if comm == "smtpd" and int(fields[1]) == server_pid and fields[0] != "Z":
            out.append(int(p))
    return out


class Sampler(threading.Thread):
    def __init__(self, server_pid):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.peak = 0
        self.hwm_kb = 0
        self.rss_kb = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            pids = smtpd_pids(self.server_pid)
            self.peak = max(self.peak, len(pids))
            for p in pids:
                try:
                    with open("/proc/%d/status" % p) as f:
                        st = f.read()
                except OSError:
                    continue
                m = re.search(r"^VmHWM:\s+(\d+) kB", st, re.M)
                if m:
                    self.hwm_kb = max(self.hwm_kb, int(m.group(1)))
                m = re.search(r"^VmRSS:\s+(\d+) kB", st, re.M)
                if m:
                    self.rss_kb = max(self.rss_kb, int(m.group(1)))
            time.sleep(0.01)


def test_concurrent():
    tmp = os.path.join(BASE, "concurrent")
    confdir = T.setup(tmp, DELIVER, {"timeout": "30"})
    srv = None
    try:
        srv, port = start_limited(tmp, confdir)
        sampler = Sampler(srv.pid)
        sampler.start()

        def check():
            probs = []
            results = {}
            lock = threading.Lock()
            go = threading.Event()

            def client(i):
                go.wait()
                for j in range(PER_CLIENT):
                    mid = "<load-%d-%d@remote.test>" % (i, j)
                    msg = ("From: c%d@remote.test\r\nTo: alice@example.org\r\nSubject: load %d %d\r\n"
                           "Message-ID: %s\r\n\r\nbody of %s\r\n" % (i, i, j, mid, mid)).encode()
                    try:
                        s = smtplib.SMTP("127.0.0.1", port, "load.client.test", timeout=60)
                        try:
                            s.sendmail("c%d@remote.test" % i, ["alice@example.org"], msg)
                            r = 250
                            # a session that lingers (as over a real network)
                            # so that the clients really meet the limit
                            time.sleep(0.2)
                        finally:
                            s.quit()
                    except smtplib.SMTPResponseException as e:
                        r = e.smtp_code
                    except (smtplib.SMTPException, OSError) as e:
                        r = repr(e)
                    with lock:
                        results[mid] = r
            threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            t0 = time.time()
            go.set()
            for t in threads:
                t.join(120)
            took = time.time() - t0
            sampler.stop_ev.set()
            sampler.join()
            ok = [m for m, r in results.items() if r == 250]
            other = {m: r for m, r in results.items() if r != 250}
            seen = {}
            for f in T.maildir_files(T.maildir_of(tmp, "alice@example.org")):
                with open(f, "rb") as fh:
                    m = re.search(rb"^Message-ID: (<load-[\d-]+@remote.test>)", fh.read(), re.M)
                if m:
                    seen[m.group(1).decode()] = seen.get(m.group(1).decode(), 0) + 1
            lost = [m for m in ok if seen.get(m, 0) == 0]
            dups = [m for m, n in seen.items() if n > 1]
            print("    load: %d clients x %d messages in %.1f s under tcpserver -c %d: answered 250 %d, "
                  "other %d, delivered %d, lost %d, duplicates %d; peak concurrent smtpd %d; "
                  "peak smtpd VmHWM %d KiB (VmRSS %d KiB)" % (
                      CLIENTS, PER_CLIENT, took, LIMIT, len(ok), len(other), sum(seen.values()),
                      len(lost), len(dups), sampler.peak, sampler.hwm_kb, sampler.rss_kb))
            if other:
                probs.append("%d messages not answered 250: %r" % (len(other), list(other.items())[:5]))
            if lost:
                probs.append("%d messages answered 250 are not delivered: %s" % (len(lost), lost[:5]))
            if dups:
                probs.append("delivered twice: %s" % dups[:5])
            if sampler.peak > LIMIT:
                probs.append("%d smtpd processes at once, over the limit %d" % (sampler.peak, LIMIT))
            if sampler.peak < LIMIT // 2:
                probs.append("only %d smtpd at once: the load did not reach the limit" % sampler.peak)
            if not SANITIZED and sampler.hwm_kb > RSS_LIMIT_KB:
                probs.append("an smtpd session peaked at %d KiB (VmHWM), over %d KiB" % (
                    sampler.hwm_kb, RSS_LIMIT_KB))
            return probs
        ok = R.run("load-concurrent", lambda: check() + T.maildir_problems(tmp) + T.queue_problems(tmp))
    except Exception as e:
        ok = R.run("load-concurrent", lambda: ["could not start the server: %r" % e])
    finally:
        T.stop(srv)
    report(tmp, "load-concurrent", ok)


def report(tmp, name, ok):
    err = T.server_log(tmp)
    rep = T.sanitizer_report(err) if SANITIZED else ""
    if rep:
        R.run(name + "-sanitizer", lambda: ["sanitizer report:\n" + rep])
    elif not ok:
        print("    server log:\n" + "\n".join("      " + l for l in err.splitlines()[-10:]))


def test_slowloris():
    tmp = os.path.join(BASE, "slowloris")
    confdir = T.setup(tmp, DELIVER, {"timeout": "3"})
    srv = None
    try:
        srv, port = start_limited(tmp, confdir)

        def slow(kind, out):
            """kind "drip": a byte a second for 15 s; "stall": 3 bytes,
            then silence.  out: (reply, seconds until it came)."""
            t0 = time.time()
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=20)
                f = s.makefile("rb")
                f.readline()                           # greeting
                data = b"EHLO slow.client.test\r\n" * 3
                n = 15 if kind == "drip" else 3
                for i in range(n):
                    try:
                        s.send(data[i:i + 1])
                    except OSError:
                        break
                    time.sleep(1)
                    s.setblocking(False)
                    try:
                        peek = s.recv(1, socket.MSG_PEEK)
                    except BlockingIOError:
                        peek = None
                    s.setblocking(True)
                    s.settimeout(20)
                    if peek is not None:
                        break
                line = f.readline()
                out.append((line.decode("latin-1").rstrip("\r\n"), time.time() - t0))
                s.close()
            except OSError as e:
                out.append((repr(e), time.time() - t0))

        def check():
            probs = []
            drips, stalls = [], []
            th = [threading.Thread(target=slow, args=("drip", drips)) for _ in range(10)] + \
                 [threading.Thread(target=slow, args=("stall", stalls)) for _ in range(10)]
            for t in th:
                t.start()
            time.sleep(1.5)
            t0 = time.time()
            msg = b"From: a@remote.test\r\nSubject: prompt\r\n\r\nthrough the slow ones\r\n"
            try:
                with T.smtp(port) as s:
                    s.sendmail("a@remote.test", ["alice@example.org"], msg)
            except smtplib.SMTPException as e:
                probs.append("the prompt client: %r" % e)
            prompt = time.time() - t0
            for t in th:
                t.join(30)
            print("    slowloris: a message delivered in %.2f s beside 20 slow clients; "
                  "stalled ones: %s; dripping ones: %s" % (
                      prompt, sorted(set("%s after %.0f s" % (r[:13], t) for r, t in stalls)),
                      sorted(set("%s after %.0f s" % (r[:13], t) for r, t in drips))))
            if prompt > 5:
                probs.append("the prompt client took %.1f s" % prompt)
            if len(T.maildir_files(T.maildir_of(tmp, "alice@example.org"))) != 1:
                probs.append("the prompt message is not delivered")
            for r, t in stalls:
                if not r.startswith("421 4.4.2") or t > 10:
                    probs.append("stalled client: %r after %.1f s, expected 421 4.4.2 in ~6 s" % (r, t))
            for r, t in drips:
                if not r.startswith("421 4.4.2") or t > 12:
                    probs.append("dripping client (a byte a second): %r after %.1f s, expected "
                                 "421 4.4.2 within 12 s" % (r, t))
            return probs
        ok = R.run("load-slowloris", lambda: check() + T.maildir_problems(tmp) + T.queue_problems(tmp))
    except Exception as e:
        ok = R.run("load-slowloris", lambda: ["could not start the server: %r" % e])
    finally:
        T.stop(srv)
    report(tmp, "load-slowloris", ok)


def main():
    test_concurrent()
    test_slowloris()
    R.exit()


if __name__ == "__main__":
    main()
