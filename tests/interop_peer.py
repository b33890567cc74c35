#!/usr/bin/python3
"""Who the client is, when smtpd must ask the socket (inetd, or
systemd-socket-activate --inetd, which set no TCPREMOTEIP/REMOTE_ADDR).

A client that sends a whole relaying transaction and then resets the
connection leaves its bytes readable on a socket whose peer can no
longer be named (getpeername: ENOTCONN).  smtpd must not take that for
a local program on a pipe, which may relay: it refuses the session and
nothing is queued.  The same bytes on a pipe (a real local program)
are relayed, and on a named TCP peer the relay is refused.

    /usr/bin/python3 tests/interop_peer.py [REPO [BINDIR]]
"""

import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

RELAYING = (b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<victim@remote.test>\r\n"
            b"DATA\r\nSubject: relayed\r\n\r\nhi\r\n.\r\nQUIT\r\n")


def loopback_pair():
    """A connected TCP pair on loopback: (client, server side)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    srv.close()
    return c, s


def run_smtpd(smtpd, confdir, sanitized, stdin_fd, stdout_fd):
    env = T.base_env(confdir, sanitized)
    p = subprocess.run([smtpd], stdin=stdin_fd, stdout=stdout_fd, stderr=subprocess.PIPE,
                       env=env, timeout=30)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def check(tmp, sanitized, err, want_queue):
    probs = []
    rep = T.sanitizer_report(err) if sanitized else ""
    if rep:
        probs.append("sanitizer report:\n" + rep)
    n = T.queue_count(tmp)
    if n != want_queue:
        probs.append("%d message(s) queued, expected %d; log:\n%s" % (n, want_queue, err))
    return probs


def reset_peer(tmp, smtpd, deliver, sanitized):
    T.setup(tmp, deliver)
    c, s = loopback_pair()
    c.sendall(RELAYING)
    time.sleep(0.2)
    # SO_LINGER 0: close sends a RST; the server side keeps the bytes
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    time.sleep(0.2)
    rc, err = run_smtpd(smtpd, os.path.join(tmp, "conf"), sanitized, s.fileno(), s.fileno())
    s.close()
    probs = check(tmp, sanitized, err, 0)
    if "event=no-peer" not in err:
        probs.append("no event=no-peer in the log:\n" + err)
    if "relay=yes" in err:
        probs.append("the reset client was allowed to relay:\n" + err)
    return probs


def named_peer(tmp, smtpd, deliver, sanitized):
    T.setup(tmp, deliver)
    c, s = loopback_pair()
    c.sendall(RELAYING)
    c.shutdown(socket.SHUT_WR)
    rc, err = run_smtpd(smtpd, os.path.join(tmp, "conf"), sanitized, s.fileno(), s.fileno())
    s.close()
    replies = c.recv(65536).decode("latin-1")
    c.close()
    probs = check(tmp, sanitized, err, 0)
    if "550 5.7.1 Relaying denied" not in replies:
        probs.append("expected 550 5.7.1 for the remote recipient; got:\n" + replies)
    if "ip=127.0.0.1" not in err:
        probs.append("the client address was not taken from the socket:\n" + err)
    return probs


def pipe_client(tmp, smtpd, deliver, sanitized):
    T.setup(tmp, deliver)
    r, w = os.pipe()
    os.write(w, RELAYING)
    os.close(w)
    out = os.open(os.devnull, os.O_WRONLY)
    rc, err = run_smtpd(smtpd, os.path.join(tmp, "conf"), sanitized, r, out)
    os.close(r)
    os.close(out)
    return check(tmp, sanitized, err, 1)


def main():
    name, smtpd, deliver, sanitized = T.this_build()
    if len(sys.argv) > 2:
        smtpd = os.path.abspath(os.path.join(sys.argv[2], "smtpd"))
        deliver = os.path.abspath(os.path.join(sys.argv[2], "deliver"))
    base = os.path.join(T.WORK, name, "interop_peer")
    res = T.Results()
    for test, fn in (("peer-reset-no-relay", reset_peer), ("peer-named-no-relay", named_peer),
                     ("peer-pipe-local-relays", pipe_client)):
        tmp = os.path.join(base, test)
        T.fresh_dir(tmp)
        res.run(test, fn, tmp, smtpd, deliver, sanitized)
    res.exit()


if __name__ == "__main__":
    main()
