#!/usr/bin/python3
"""Interop: smtpd under tcpserver (ucspi-tcp, which sets TCPREMOTEIP) on
a loopback port, driven by swaks and by Python's smtplib; the Maildirs
are read back with mblaze (mlist, mhdr, mshow) and Python's
mailbox.Maildir, and every delivered file is checked byte for byte.

Run by tests/run.py (once per build); alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_tcpserver.py
"""

import email.generator
import email.message
import email.policy
import io
import mailbox
import os
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_tcpserver")
TMP = BASE    # the running test's directory
R = T.Results()


def flatten(msg):
    """The bytes smtplib.send_message puts on the wire for msg."""
    b = io.BytesIO()
    email.generator.BytesGenerator(b).flatten(msg, linesep="\r\n")
    return b.getvalue()


def mblaze_env():
    env = dict(os.environ)
    env["MBLAZE"] = os.path.join(TMP, "mblaze")
    env["MBLAZE_PAGER"] = "cat"
    env["MBLAZE_NOCOLOR"] = "1"
    os.makedirs(env["MBLAZE"], exist_ok=True)
    return env


def mlist(md):
    rc, out = T.run_cmd(["mlist", md], env=mblaze_env())
    return [l for l in out.splitlines() if l]


def mhdr(path, header):
    rc, out = T.run_cmd(["mhdr", "-h", header, path], env=mblaze_env())
    return out.rstrip("\n")


def test_swaks(port):
    msg = (b"From: X <x@remote.test>\r\n"
           b"To: alice@example.org\r\n"
           b"Subject: swaks test\r\n"
           b"Message-ID: <swaks-1@remote.test>\r\n"
           b"\r\n"
           b"Hello from swaks.\r\n"
           b".a line that starts with a dot\r\n"
           b"..two dots\r\n"
           b"last line\r\n")
    f = os.path.join(TMP, "swaks-msg")
    with open(f, "wb") as fh:
        fh.write(msg[:-2])   # swaks adds the last CRLF before its "."
    rc, out = T.run_cmd(["swaks", "--server", "127.0.0.1:%d" % port, "--helo", "client.test",
                         "--from", "x@remote.test", "--to", "alice@example.org",
                         "--data", "@" + f, "--timeout", "20"])
    if rc != 0 or "250 2.0.0 Ok:" not in out:
        return ["swaks exited %d:\n%s" % (rc, out)]
    md = T.maildir_of(TMP, "alice@example.org")
    probs = []
    listed = mlist(md)
    if len(listed) != 1:
        return ["mlist %s lists %r, expected one message" % (md, listed)]
    path = listed[0]
    probs += T.check_message(path, "x@remote.test", "alice@example.org", msg,
                             helo="client.test", ip="127.0.0.1", rcpt="alice@example.org")
    for h, want in (("Subject", "swaks test"), ("Return-Path", "<x@remote.test>"),
                    ("Delivered-To", "alice@example.org"),
                    ("Message-ID", "<swaks-1@remote.test>")):
        got = mhdr(path, h)
        if got != want:
            probs.append("mhdr -h %s: %r, expected %r" % (h, got, want))
    rc, raw = T.run_cmd(["mshow", "-n", "-r", path], env=mblaze_env())
    if "Hello from swaks.\n.a line that starts with a dot\n..two dots\nlast line\n" not in raw:
        probs.append("mshow -r shows the body as %r" % raw)
    box = mailbox.Maildir(md, factory=None, create=False)
    msgs = list(box)
    if len(msgs) != 1:
        probs.append("mailbox.Maildir sees %d messages" % len(msgs))
    else:
        m = msgs[0]
        if m["Subject"] != "swaks test" or len(m.get_all("Received")) != 1:
            probs.append("mailbox.Maildir: Subject %r, Received %r" % (m["Subject"], m.get_all("Received")))
        if m.get_payload() != "Hello from swaks.\n.a line that starts with a dot\n..two dots\nlast line\n":
            probs.append("mailbox.Maildir body %r" % m.get_payload())
    return probs


def test_smtplib_multi(port):
    msg = email.message.EmailMessage()
    msg["From"] = "Sender <sender@remote.test>"
    msg["To"] = "alice@example.org, bob@example.org, carol@example.net"
    msg["Subject"] = "smtplib to three"
    msg["Message-ID"] = "<smtplib-1@remote.test>"
    msg.set_content("Hello three.\n. a dot line\nBye.\n")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="py.client.test", timeout=20) as s:
        refused = s.send_message(msg, from_addr="sender@remote.test",
                                 to_addrs=["alice@example.org", "nobody@example.org",
                                           "bob@example.org", "carol@example.net"])
    probs = []
    if list(refused) != ["nobody@example.org"] or refused["nobody@example.org"][0] != 550:
        probs.append("refused recipients %r, expected nobody@example.org with 550" % refused)
    wire = flatten(msg)
    for rcpt in ("alice@example.org", "bob@example.org", "carol@example.net"):
        path = T.one_message(TMP, rcpt)
        probs += ["%s: %s" % (rcpt, p) for p in T.check_message(
            path, "sender@remote.test", rcpt, wire, helo="py.client.test", ip="127.0.0.1")]
    md = T.maildir_of(TMP, "bob@example.org")
    m = next(iter(mailbox.Maildir(md, factory=None, create=False)))
    if m["Subject"] != "smtplib to three" or m.get_payload() != "Hello three.\n. a dot line\nBye.\n":
        probs.append("mailbox.Maildir reads %r / %r" % (m["Subject"], m.get_payload()))
    return probs


def test_smtplib_8bit(port):
    body = ("Grüße aus Köln.\n".encode("utf-8") + b"Latin-1 \xe9\xe8 \xff\n" +
            b".\n..\n.dot\nend\n")
    wire = (b"From: x@remote.test\r\nTo: dave@example.org\r\nSubject: 8bit\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body.replace(b"\n", b"\r\n"))
    with smtplib.SMTP("127.0.0.1", port, local_hostname="py.client.test", timeout=20) as s:
        s.ehlo()
        if not s.has_extn("8bitmime"):
            return ["the EHLO reply does not list 8BITMIME: %r" % s.esmtp_features]
        s.sendmail("x@remote.test", ["dave@example.org"], wire, mail_options=["BODY=8BITMIME"])
    path = T.one_message(TMP, "dave@example.org")
    probs = T.check_message(path, "x@remote.test", "dave@example.org", wire,
                            helo="py.client.test", ip="127.0.0.1", rcpt="dave@example.org")
    m = next(iter(mailbox.Maildir(T.maildir_of(TMP, "dave@example.org"), factory=None, create=False)))
    if m.get_payload(decode=True) != body:
        probs.append("mailbox.Maildir decodes the body as %r" % m.get_payload(decode=True))
    return probs


def test_smtplib_smtputf8(port):
    msg = email.message.EmailMessage()
    msg["From"] = "Señor <señor@remote.test>"
    msg["To"] = "jörg@example.org"
    msg["Subject"] = "Grüße"
    msg.set_content("Hallo Jörg.\n")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="py.client.test", timeout=20) as s:
        s.send_message(msg)   # non-ASCII addresses: smtplib uses SMTPUTF8
    wire = io.BytesIO()
    email.generator.BytesGenerator(wire, policy=msg.policy.clone(utf8=True)).flatten(
        msg, linesep="\r\n")
    path = T.one_message(TMP, "jörg@example.org")
    return T.check_message(path, "señor@remote.test", "jörg@example.org", wire.getvalue(),
                           helo="py.client.test", ip="127.0.0.1",
                           with_="UTF8SMTP|UTF8ESMTP|ESMTP",
                           rcpt="jörg@example.org".encode().decode("latin-1"))


def test_smtplib_refusals(port):
    probs = []
    with smtplib.SMTP("127.0.0.1", port, local_hostname="py.client.test", timeout=20) as s:
        try:
            s.sendmail("x@remote.test", ["someone@remote.test"], b"Subject: relay\r\n\r\nno\r\n")
            probs.append("relaying from 127.0.0.1 was accepted")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["someone@remote.test"]
            if code != 550 or not text.startswith(b"5.7.1"):
                probs.append("relay: %d %r, expected 550 5.7.1" % (code, text))
        try:
            s.sendmail("spammer@evil.test", ["alice@example.org"], b"Subject: spam\r\n\r\nno\r\n")
            probs.append("a restricted sender was accepted")
        except smtplib.SMTPSenderRefused as e:
            if e.smtp_code != 550 or not e.smtp_error.startswith(b"5.7.1"):
                probs.append("restricted: %d %r" % (e.smtp_code, e.smtp_error))
        big = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
        try:
            s.sendmail("x@remote.test", ["alice@example.org"], big * 12)  # smtplib sends SIZE=
            probs.append("a message over max_message_size was accepted")
        except smtplib.SMTPSenderRefused as e:
            if e.smtp_code != 552 or not e.smtp_error.startswith(b"5.3.4"):
                probs.append("too big: %d %r, expected 552 5.3.4" % (e.smtp_code, e.smtp_error))
        code, text = s.noop()
        if code != 250:
            probs.append("NOOP after refusals: %d %r" % (code, text))
    if T.maildir_files(T.maildir_of(TMP, "alice@example.org")):
        probs.append("something was delivered to alice")
    if T.queue_count(TMP):
        probs.append("something was queued")
    return probs


def main():
    tests = [("swaks", test_swaks), ("smtplib-multi", test_smtplib_multi),
             ("smtplib-8bit", test_smtplib_8bit), ("smtplib-smtputf8", test_smtplib_smtputf8),
             ("smtplib-refusals", test_smtplib_refusals)]
    for name, fn in tests:
        tmp = os.path.join(BASE, name)
        global_tmp_switch(tmp)
        files = T.default_files(tmp)
        # list files are written as latin-1 (one char a byte): UTF-8 here
        files["users"] = files["users"] + ["jörg@example.org".encode().decode("latin-1")]
        confdir = T.setup(tmp, DELIVER, {}, files)
        port = T.free_port()
        errf = open(os.path.join(tmp, "server.stderr"), "wb")
        srv = None
        try:
            srv = subprocess.Popen(["tcpserver", "-q", "-H", "-R", "-l", "mx.example.org",
                                    "127.0.0.1", str(port), SMTPD],
                                   env=T.base_env(confdir, SANITIZED), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=errf)
            T.wait_port(port, srv)

            def checked(fn=fn, tmp=tmp, port=port):
                probs = fn(port)
                probs += T.maildir_problems(tmp) + T.queue_problems(tmp)
                return probs
            ok = R.run("tcpserver-" + name, checked)
        finally:
            T.stop(srv)
            errf.close()
        with open(os.path.join(tmp, "server.stderr"), encoding="latin-1") as f:
            err = f.read()
        rep = T.sanitizer_report(err) if SANITIZED else ""
        if rep:
            R.run("tcpserver-" + name + "-sanitizer", lambda: ["sanitizer report:\n" + rep])
        elif not ok:
            print("    server log:\n" + "\n".join("      " + l for l in err.splitlines()[-10:]))
    R.exit()


def global_tmp_switch(tmp):
    global TMP
    TMP = tmp


if __name__ == "__main__":
    main()
