#!/usr/bin/python3
"""Interop: smtpd under systemd-socket-activate --accept --inetd (one
smtpd per connection, the socket as stdin/stdout, as a systemd socket
unit with Accept=yes runs it).  systemd-socket-activate passes only the
variables named with -E, and (systemd 252) sets no REMOTE_ADDR, so smtpd
finds the client with getpeername(0): 127.0.0.1, a remote client that
may not relay.  Driven by swaks and smtplib; Maildir read back with
mblaze and mailbox.Maildir.
"""

import mailbox
import os
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_socket_activate")
R = T.Results()


def start(tmp):
    confdir = T.setup(tmp, DELIVER)
    port = T.free_port()
    argv = ["systemd-socket-activate", "--accept", "--inetd", "-l", "127.0.0.1:%d" % port]
    for k, v in T.base_env(confdir, SANITIZED).items():
        argv += ["-E", "%s=%s" % (k, v)]
    argv.append(SMTPD)
    errf = open(os.path.join(tmp, "server.stderr"), "wb")
    srv = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    errf.close()
    # no probe connection: each one would start an smtpd; wait for the
    # "Listening on" line instead
    import time
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(os.path.join(tmp, "server.stderr"), encoding="latin-1") as f:
            if "Listening on" in f.read():
                break
        if srv.poll() is not None:
            raise RuntimeError("systemd-socket-activate exited %s" % srv.returncode)
        time.sleep(0.05)
    return srv, port


def server_log(tmp):
    with open(os.path.join(tmp, "server.stderr"), encoding="latin-1") as f:
        return f.read()


def test_swaks(tmp, port):
    msg = (b"From: x@remote.test\r\nTo: alice@example.org\r\nSubject: socket activated\r\n"
           b"\r\nbody line 1\r\n.dot line\r\nbody line 3\r\n")
    f = os.path.join(tmp, "msg")
    with open(f, "wb") as fh:
        fh.write(msg[:-2])   # swaks adds the last CRLF
    rc, out = T.run_cmd(["swaks", "--server", "127.0.0.1:%d" % port, "--helo", "client.test",
                         "--from", "x@remote.test", "--to", "alice@example.org",
                         "--data", "@" + f, "--timeout", "20"])
    if rc != 0 or "250 2.0.0 Ok:" not in out:
        return ["swaks exited %d:\n%s" % (rc, out)]
    path = T.one_message(tmp, "alice@example.org")
    probs = T.check_message(path, "x@remote.test", "alice@example.org", msg,
                            helo="client.test", ip="127.0.0.1", rcpt="alice@example.org")
    env = dict(os.environ, MBLAZE=os.path.join(tmp, "mblaze"))
    rc, out = T.run_cmd(["mlist", T.maildir_of(tmp, "alice@example.org")], env=env)
    if out.split() != [path]:
        probs.append("mlist lists %r, expected %r" % (out, path))
    rc, out = T.run_cmd(["mhdr", "-h", "Subject", path], env=env)
    if out.strip() != "socket activated":
        probs.append("mhdr -h Subject: %r" % out)
    m = next(iter(mailbox.Maildir(T.maildir_of(tmp, "alice@example.org"), factory=None, create=False)))
    if m.get_payload() != "body line 1\n.dot line\nbody line 3\n":
        probs.append("mailbox.Maildir body %r" % m.get_payload())
    return probs


def test_not_local(tmp, port):
    """The socket's peer is a remote client: no relaying, although no
    TCPREMOTEIP or REMOTE_ADDR is set."""
    rc, out = T.run_cmd(["swaks", "--server", "127.0.0.1:%d" % port, "--helo", "client.test",
                         "--from", "x@remote.test", "--to", "someone@remote.test",
                         "--timeout", "20"])
    probs = []
    if "550 5.7.1" not in out:
        probs.append("relaying from 127.0.0.1 under systemd-socket-activate: swaks exited %d:\n%s" % (rc, out))
    if T.queue_count(tmp):
        probs.append("the message was queued")
    return probs


def test_smtplib(tmp, port):
    wire = b"Subject: two\r\n\r\nto alice and bob\r\n"
    with smtplib.SMTP("127.0.0.1", port, local_hostname="py.client.test", timeout=20) as s:
        s.sendmail("", ["alice@example.org", "bob@example.org"], wire)
        code, _ = s.noop()
    probs = [] if code == 250 else ["NOOP: %d" % code]
    for rcpt in ("alice@example.org", "bob@example.org"):
        probs += T.check_message(T.one_message(tmp, rcpt), "", rcpt, wire,
                                 helo="py.client.test", ip="127.0.0.1")
    return probs


def main():
    for name, fn in (("swaks", test_swaks), ("no-relay", test_not_local),
                     ("smtplib", test_smtplib)):
        tmp = os.path.join(BASE, name)
        srv = None
        try:
            os.makedirs(tmp, exist_ok=True)
            srv, port = start(tmp)

            def checked(fn=fn, tmp=tmp, port=port):
                return fn(tmp, port) + T.maildir_problems(tmp) + T.queue_problems(tmp)
            ok = R.run("socket-activate-" + name, checked)
        except Exception as e:
            ok = R.run("socket-activate-" + name, lambda: ["could not start the server: %r" % e])
        finally:
            T.stop(srv)
        err = server_log(tmp) if os.path.exists(os.path.join(tmp, "server.stderr")) else ""
        rep = T.sanitizer_report(err) if SANITIZED else ""
        if rep:
            R.run("socket-activate-" + name + "-sanitizer", lambda: ["sanitizer report:\n" + rep])
        elif not ok:
            print("    server log:\n" + "\n".join("      " + l for l in err.splitlines()[-12:]))
    R.exit()


if __name__ == "__main__":
    main()
