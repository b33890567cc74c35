#!/usr/bin/python3
"""Interop: smtpd under tcpserver (ucspi-tcp, which sets TCPREMOTEIP) on
a loopback port, driven by swaks and by Python's smtplib; the Maildirs
are read back with mblaze (mlist, mhdr, mshow) and Python's
mailbox.Maildir, and every delivered file is checked byte for byte.

Run by tests/run.py (once per build); alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_tcpserver.py
"""

import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_tcpserver")
R = T.Results()


def start(tmp):
    files = T.default_files(tmp)
    # list files are written as latin-1 (one char a byte): UTF-8 here
    files["users"] = files["users"] + ["jörg@example.org".encode().decode("latin-1")]
    confdir = T.setup(tmp, DELIVER, {}, files)
    return T.start_tcpserver(tmp, confdir, SMTPD, SANITIZED)


def test_swaks(tmp, port):
    msg = (b"From: X <x@remote.test>\r\n"
           b"To: alice@example.org\r\n"
           b"Subject: swaks test\r\n"
           b"Message-ID: <swaks-1@remote.test>\r\n"
           b"\r\n"
           b"Hello from swaks.\r\n"
           b".a line that starts with a dot\r\n"
           b"..two dots\r\n"
           b"last line\r\n")
    rc, out = T.swaks_message(tmp, port, msg, "--from", "x@remote.test", "--to", "alice@example.org")
    if rc != 0 or "250 2.0.0 Ok:" not in out:
        return ["swaks exited %d:\n%s" % (rc, out)]
    md = T.maildir_of(tmp, "alice@example.org")
    probs = []
    listed = [l for l in T.mblaze(tmp, "mlist", md)[1].splitlines() if l]
    if len(listed) != 1:
        return ["mlist %s lists %r, expected one message" % (md, listed)]
    path = listed[0]
    probs += T.check_message(path, "x@remote.test", "alice@example.org", msg,
                             helo="client.test", ip="127.0.0.1", rcpt="alice@example.org")
    for h, want in (("Subject", "swaks test"), ("Return-Path", "<x@remote.test>"),
                    ("Delivered-To", "alice@example.org"),
                    ("Message-ID", "<swaks-1@remote.test>")):
        got = T.mblaze(tmp, "mhdr", "-h", h, path)[1].rstrip("\n")
        if got != want:
            probs.append("mhdr -h %s: %r, expected %r" % (h, got, want))
    rc, raw = T.mblaze(tmp, "mshow", "-n", "-r", path)
    if "Hello from swaks.\n.a line that starts with a dot\n..two dots\nlast line\n" not in raw:
        probs.append("mshow -r shows the body as %r" % raw)
    msgs = T.maildir_messages(tmp, "alice@example.org")
    if len(msgs) != 1:
        probs.append("mailbox.Maildir sees %d messages" % len(msgs))
    else:
        m = msgs[0]
        if m["Subject"] != "swaks test" or len(m.get_all("Received")) != 1:
            probs.append("mailbox.Maildir: Subject %r, Received %r" % (m["Subject"], m.get_all("Received")))
        if m.get_payload() != "Hello from swaks.\n.a line that starts with a dot\n..two dots\nlast line\n":
            probs.append("mailbox.Maildir body %r" % m.get_payload())
    return probs


def test_smtplib_multi(tmp, port):
    msg = T.email_message([("From", "Sender <sender@remote.test>"),
                           ("To", "alice@example.org, bob@example.org, carol@example.net"),
                           ("Subject", "smtplib to three"),
                           ("Message-ID", "<smtplib-1@remote.test>")],
                          "Hello three.\n. a dot line\nBye.\n")
    with T.smtp(port) as s:
        refused = s.send_message(msg, from_addr="sender@remote.test",
                                 to_addrs=["alice@example.org", "nobody@example.org",
                                           "bob@example.org", "carol@example.net"])
    probs = []
    if list(refused) != ["nobody@example.org"] or refused["nobody@example.org"][0] != 550:
        probs.append("refused recipients %r, expected nobody@example.org with 550" % refused)
    wire = T.wire_bytes(msg)
    for rcpt in ("alice@example.org", "bob@example.org", "carol@example.net"):
        path = T.one_message(tmp, rcpt)
        probs += ["%s: %s" % (rcpt, p) for p in T.check_message(
            path, "sender@remote.test", rcpt, wire, helo="py.client.test", ip="127.0.0.1")]
    m = T.maildir_messages(tmp, "bob@example.org")[0]
    if m["Subject"] != "smtplib to three" or m.get_payload() != "Hello three.\n. a dot line\nBye.\n":
        probs.append("mailbox.Maildir reads %r / %r" % (m["Subject"], m.get_payload()))
    return probs


def test_smtplib_8bit(tmp, port):
    body = ("Grüße aus Köln.\n".encode("utf-8") + b"Latin-1 \xe9\xe8 \xff\n" +
            b".\n..\n.dot\nend\n")
    wire = (b"From: x@remote.test\r\nTo: dave@example.org\r\nSubject: 8bit\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body.replace(b"\n", b"\r\n"))
    with T.smtp(port) as s:
        s.ehlo()
        if not s.has_extn("8bitmime"):
            return ["the EHLO reply does not list 8BITMIME: %r" % s.esmtp_features]
        s.sendmail("x@remote.test", ["dave@example.org"], wire, mail_options=["BODY=8BITMIME"])
    path = T.one_message(tmp, "dave@example.org")
    probs = T.check_message(path, "x@remote.test", "dave@example.org", wire,
                            helo="py.client.test", ip="127.0.0.1", rcpt="dave@example.org")
    m = T.maildir_messages(tmp, "dave@example.org")[0]
    if m.get_payload(decode=True) != body:
        probs.append("mailbox.Maildir decodes the body as %r" % m.get_payload(decode=True))
    return probs


def test_smtplib_smtputf8(tmp, port):
    msg = T.email_message([("From", "Señor <señor@remote.test>"), ("To", "jörg@example.org"),
                           ("Subject", "Grüße")], "Hallo Jörg.\n")
    with T.smtp(port) as s:
        s.send_message(msg)   # non-ASCII addresses: smtplib uses SMTPUTF8
    wire = T.wire_bytes(msg, msg.policy.clone(utf8=True))
    path = T.one_message(tmp, "jörg@example.org")
    return T.check_message(path, "señor@remote.test", "jörg@example.org", wire,
                           helo="py.client.test", ip="127.0.0.1",
                           with_="UTF8SMTP|UTF8ESMTP|ESMTP",
                           rcpt="jörg@example.org".encode().decode("latin-1"))


def test_smtplib_refusals(tmp, port):
    probs = []
    with T.smtp(port) as s:
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
    if T.maildir_files(T.maildir_of(tmp, "alice@example.org")):
        probs.append("something was delivered to alice")
    if T.queue_count(tmp):
        probs.append("something was queued")
    return probs


def main():
    tests = [("swaks", test_swaks), ("smtplib-multi", test_smtplib_multi),
             ("smtplib-8bit", test_smtplib_8bit), ("smtplib-smtputf8", test_smtplib_smtputf8),
             ("smtplib-refusals", test_smtplib_refusals)]
    T.run_server_tests(R, BASE, "tcpserver-", tests, start, SANITIZED)
    R.exit()


if __name__ == "__main__":
    main()
