#!/usr/bin/python3
"""Interop: smtpd under systemd-socket-activate --accept --inetd (one
smtpd per connection, the socket as stdin/stdout, as a systemd socket
unit with Accept=yes runs it).  systemd-socket-activate passes only the
variables named with -E, and (systemd 252) sets no REMOTE_ADDR, so smtpd
finds the client with getpeername(0): 127.0.0.1, a remote client that
may not relay.  Driven by swaks and smtplib; Maildir read back with
mblaze and mailbox.Maildir.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_socket_activate")
R = T.Results()


def start(tmp):
    confdir = T.setup(tmp, DELIVER)
    return T.start_socket_activate(tmp, confdir, SMTPD, SANITIZED)


def test_swaks(tmp, port):
    msg = (b"From: x@remote.test\r\nTo: alice@example.org\r\nSubject: socket activated\r\n"
           b"\r\nbody line 1\r\n.dot line\r\nbody line 3\r\n")
    rc, out = T.swaks_message(tmp, port, msg, "--from", "x@remote.test", "--to", "alice@example.org")
    if rc != 0 or "250 2.0.0 Ok:" not in out:
        return ["swaks exited %d:\n%s" % (rc, out)]
    path = T.one_message(tmp, "alice@example.org")
    probs = T.check_message(path, "x@remote.test", "alice@example.org", msg,
                            helo="client.test", ip="127.0.0.1", rcpt="alice@example.org")
    rc, out = T.mblaze(tmp, "mlist", T.maildir_of(tmp, "alice@example.org"))
    if out.split() != [path]:
        probs.append("mlist lists %r, expected %r" % (out, path))
    rc, out = T.mblaze(tmp, "mhdr", "-h", "Subject", path)
    if out.strip() != "socket activated":
        probs.append("mhdr -h Subject: %r" % out)
    m = T.maildir_messages(tmp, "alice@example.org")[0]
    if m.get_payload() != "body line 1\n.dot line\nbody line 3\n":
        probs.append("mailbox.Maildir body %r" % m.get_payload())
    return probs


def test_not_local(tmp, port):
    """The socket's peer is a remote client: no relaying, although no
    TCPREMOTEIP or REMOTE_ADDR is set."""
    rc, out = T.swaks(port, "--from", "x@remote.test", "--to", "someone@remote.test")
    probs = []
    if "550 5.7.1" not in out:
        probs.append("relaying from 127.0.0.1 under systemd-socket-activate: swaks exited %d:\n%s" % (rc, out))
    if T.queue_count(tmp):
        probs.append("the message was queued")
    return probs


def test_smtplib(tmp, port):
    wire = b"Subject: two\r\n\r\nto alice and bob\r\n"
    with T.smtp(port) as s:
        s.sendmail("", ["alice@example.org", "bob@example.org"], wire)
        code, _ = s.noop()
    probs = [] if code == 250 else ["NOOP: %d" % code]
    for rcpt in ("alice@example.org", "bob@example.org"):
        probs += T.check_message(T.one_message(tmp, rcpt), "", rcpt, wire,
                                 helo="py.client.test", ip="127.0.0.1")
    return probs


def main():
    T.run_server_tests(R, BASE, "socket-activate-",
                       [("swaks", test_swaks), ("no-relay", test_not_local),
                        ("smtplib", test_smtplib)], start, SANITIZED, log_lines=12)
    R.exit()


if __name__ == "__main__":
    main()
