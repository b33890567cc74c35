#!/usr/bin/python3
"""Interop: mail from users who do not own the mailroot.  dopis-sendmail
run by such a user cannot start deliver (the mailroot and the queue are
0700, another user's), so it submits by SMTP to smtpd in
DOPIS_MODE=local on a Unix socket, which knows the user by SO_PEERCRED
and runs deliver as the owner -- as dopis-submit.socket and
dopis-submit@.service do under systemd.

Here systemd-socket-activate --accept --inetd listens on a Unix socket
in the test's work directory (mode 0666, as SocketMode=0666) and starts
one smtpd per connection through setpriv as OWNER, a uid that stands
for the dopis user and owns the mailroot and the queue (mode 0700).
sendmail runs through setpriv as nobody (65534) and as a uid without a
name (4242), with submit_socket naming that socket.  Checked:

- the delivered file byte for byte: deliver's head, smtpd's Received
  line naming the uid (and user) the kernel gave, sendmail's own
  Received line, the message with its added fields, dot lines intact
  (dot-stuffed on the wire, unstuffed by smtpd); the file is OWNER's;
- a remote recipient queued with its MAIL and RCPT parameters
  (BODY=8BITMIME, SMTPUTF8, RET, ENVID, NOTIFY), -t and Bcc;
- exit statuses: an unknown local recipient 67 (nothing stored, also
  for the good recipient before it), a local user listed in restricted
  77, smtpd's 451 (no deliver) 75 with its reply on stderr, no socket or
  no server behind it 75;
- -bs through the socket: no AUTH, no STARTTLS, relaying allowed;
- smtpd refuses DOPIS_MODE=local on a TCP connection and on a pipe
  (421 4.3.0), and the owner still delivers directly, without smtpd.

Needs root (setpriv); skipped otherwise.
"""

import datetime
import email.utils
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BIN = os.path.dirname(SMTPD)
SENDMAIL = os.path.join(BIN, "sendmail")
BASE = os.path.join(T.WORK, PASS, "interop_submit")
HOST = T.HOSTNAME.encode()
OWNER = 64999        # stands for the dopis user: owns mailroot and queue
NOBODY = 65534
NONAME = 4242        # a uid without a passwd entry
R = T.Results()
STDERR = []

DATE = (rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
        rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000")


def as_user(uid):
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"]


class Server:
    """smtpd in local mode under systemd-socket-activate on tmp/run/submit,
    each one run as OWNER."""

    def __init__(self, tmp, confdir, mode="local", listen=None):
        self.tmp = tmp
        self.sock = listen or os.path.join(tmp, "run", "submit")
        env = T.base_env(confdir, SANITIZED)
        env["DOPIS_MODE"] = mode
        argv = ["systemd-socket-activate", "--accept", "--inetd", "-l", self.sock]
        for k, v in env.items():
            argv += ["-E", "%s=%s" % (k, v)]
        argv += as_user(OWNER) + [SMTPD]
        self.errf = open(os.path.join(tmp, "server.stderr"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.errf)
        deadline = time.time() + 10
        while "Listening on" not in T.server_log(tmp):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("systemd-socket-activate did not listen: %s" % T.server_log(tmp))
            time.sleep(0.05)
        if not listen:
            os.chmod(self.sock, 0o666)    # SocketMode=0666

    def stop(self):
        T.stop(self.proc)
        self.errf.close()

    def log(self):
        # the sessions write their lines as they end; give the last a moment
        time.sleep(0.2)
        return T.server_log(self.tmp)


def setup(name, conf=None, files=None):
    """A configuration whose submit_socket is tmp/run/submit; the
    mailroot, queue and custom Maildirs OWNER's, mode 0700; TMPDIR for
    sendmail writable by everyone."""
    tmp = os.path.join(BASE, name)
    c = {"submit_socket": "../run/submit", "max_message_size": "100000", "timeout": "20"}
    c.update(conf or {})
    confdir = T.setup(tmp, DELIVER, c, files)
    for d in ("mail", "queue", "custom"):
        os.chown(os.path.join(tmp, d), OWNER, OWNER)
        os.chmod(os.path.join(tmp, d), 0o700)
    for d in ("spool", "run"):
        os.makedirs(os.path.join(tmp, d))
        os.chmod(os.path.join(tmp, d), 0o1777)
    # nobody must reach the socket: every directory above it searchable
    d = tmp
    while d != "/":
        st = os.stat(d)
        if not st.st_mode & stat.S_IXOTH:
            raise RuntimeError("%s is not searchable by others: the socket cannot be reached" % d)
        d = os.path.dirname(d)
    return tmp, confdir


def sendmail(tmp, confdir, args, data=b"", uid=NOBODY, extra_env=None):
    """sendmail as uid; returns (status, stdout, stderr)."""
    env = T.base_env(confdir, SANITIZED)
    env["TMPDIR"] = os.path.join(tmp, "spool")
    env.update(extra_env or {})
    argv = (as_user(uid) if uid is not None else []) + [SENDMAIL] + list(args)
    p = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=120)
    err = p.stderr.decode("latin-1")
    STDERR.append(err)
    return p.returncode, p.stdout, err


def status_is(got, want, err):
    return [] if got == want else ["exit status %s, expected %s; stderr:\n%s" % (got, want, err)]


def smtpd_received(uid, name, rcpt, with_=b"ESMTP"):
    """smtpd's Received line for a local user, as a regular expression."""
    who = b"local uid %d" % uid + (b" (user " + name + b")" if name else b"")
    r = re.escape(b"Received: from " + who + b"\n\tby " + HOST + b" (dopis) with " + with_ + b" id ")
    r += rb"[0-9a-f.]+"
    if rcpt:
        r += re.escape(b"\n\tfor <" + rcpt + b">")
    return r + rb";\n\t" + DATE + rb"\n"


def sendmail_received(uid):
    return (rb"Received: by " + re.escape(HOST) + rb" \(dopis sendmail, from local uid " +
            str(uid).encode() + rb"\)\n\tid (?P<id>[0-9a-f.]+); (?P<date>" + DATE + rb")\n")


def check_file(path, regex):
    with open(path, "rb") as f:
        data = f.read()
    m = re.fullmatch(regex, data)
    if not m:
        return ["%s is not as expected:\n%r\nexpected pattern:\n%r" % (path, data[:3000], regex[:3000])]
    when = email.utils.parsedate_to_datetime(m.group("date").decode())
    if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 3600:
        return ["the date %r is not now" % m.group("date")]
    st = os.stat(path)
    if st.st_uid != OWNER or stat.S_IMODE(st.st_mode) != 0o600:
        return ["%s: uid %d mode %o, expected the owner's, 0600" % (path, st.st_uid, stat.S_IMODE(st.st_mode))]
    return []


def common(tmp):
    probs = T.maildir_problems(tmp) + T.queue_problems(tmp)
    left = os.listdir(os.path.join(tmp, "spool"))
    if left:
        probs.append("left behind in TMPDIR: %s" % left)
    return probs


def nothing_delivered(tmp):
    return ["unexpected mail in %s" % md for md in T.all_maildirs(tmp) if T.maildir_files(md)] + \
        (["a message was queued"] if T.queue_count(tmp) else [])


# ---------------------------------------------------------------- tests

def test_local():
    """nobody's message to a local user: delivered through smtpd, byte
    for byte, smtpd's Received line naming uid 65534 and its user; dot
    lines survive the dot-stuffing; the file is the owner's."""
    tmp, confdir = setup("local")
    srv = Server(tmp, confdir)
    try:
        body = b"\nfirst\n.leading dot\n..two dots\n.\nlast\n"
        rc, out, err = sendmail(tmp, confdir, ["-i", "alice@example.org"], b"Subject: via the socket" + body)
        probs = status_is(rc, 0, err)
        if out or err:
            probs.append("not silent: stdout %r, stderr %r" % (out, err))
        log = srv.log()
    finally:
        srv.stop()
    if rc == 0:
        regex = (re.escape(b"Return-Path: <nobody@%s>\nDelivered-To: alice@example.org\n" % HOST) +
                 smtpd_received(NOBODY, b"nobody", b"alice@example.org") + sendmail_received(NOBODY) +
                 re.escape(b"Subject: via the socket\n") + rb"Date: (?P=date)\n" +
                 rb"Message-ID: <(?P=id)@" + re.escape(HOST) + rb">\n" +
                 re.escape(b"From: nobody@" + HOST + b"\n" + body))
        probs += check_file(T.one_message(tmp, "alice@example.org"), regex)
    if not re.search(r"event=connect mode=local ip=local uid=65534 user=nobody relay=yes", log):
        probs.append("no connect line with uid=65534 in the log:\n%s" % log)
    if not re.search(r"event=accepted .*uid=65534 rcpts=1", log):
        probs.append("no accepted line with uid=65534 in the log:\n%s" % log)
    return probs + common(tmp)


def test_remote_t():
    """-t through the socket: the local copy, the remote recipient
    queued (a local user may relay), Bcc taken out; 8-bit body and a
    UTF-8 address with -N, -R and -V travel as MAIL and RCPT parameters
    into the queue's records."""
    tmp, confdir = setup("remote-t")
    srv = Server(tmp, confdir)
    probs = []
    try:
        msg = (b"To: Alice <alice@example.org>\nCc: someone@remote.test\nBcc: bob@example.org\n"
               b"Subject: -t\n\nreport\n")
        rc, out, err = sendmail(tmp, confdir, ["-t"], msg)
        probs += status_is(rc, 0, err)
        if rc == 0:
            want = b"To: Alice <alice@example.org>\nCc: someone@remote.test\nSubject: -t\n"
            for a in (b"alice@example.org", b"bob@example.org"):
                regex = (re.escape(b"Return-Path: <nobody@%s>\nDelivered-To: %s\n" % (HOST, a)) +
                         smtpd_received(NOBODY, b"nobody", None) + sendmail_received(NOBODY) +
                         re.escape(want) + rb"Date: (?P=date)\nMessage-ID: <(?P=id)@" + re.escape(HOST) +
                         rb">\n" + re.escape(b"From: nobody@" + HOST + b"\n\nreport\n"))
                probs += check_file(T.one_message(tmp, a.decode()), regex)
            recs = T.queue_records(tmp)
            if len(recs) != 1 or "Tsomeone@remote.test" not in recs[0] or \
                    "Fnobody@%s" % T.HOSTNAME not in recs[0] or "PBODY=8BITMIME" in recs[0]:
                probs.append("queue records %r" % recs)
            shutil.rmtree(os.path.join(tmp, "queue", "info"))
            shutil.rmtree(os.path.join(tmp, "queue", "mess"))
        rc, out, err = sendmail(tmp, confdir, ["-N", "success,failure", "-R", "hdrs", "-V", "id 1+",
                                               "-f", "j\u00f6rg@example.org", "x@r\u00e9mote.test"],
                                b"From: j@example.org\nSubject: 8\n\n\xe9t\xe9\n")
        probs += status_is(rc, 0, err)
        recs = T.queue_records(tmp)
        lat = lambda s: s.encode().decode("latin-1")  # noqa: E731
        want = ["F" + lat("j\u00f6rg@example.org"), "PBODY=8BITMIME", "PSMTPUTF8", "PRET=HDRS",
                "PENVID=id+201+2B", "T" + lat("x@r\u00e9mote.test"), "NSUCCESS,FAILURE"]
        if len(recs) != 1 or any(w not in recs[0] for w in want):
            probs.append("records %r, expected among them %r" % (recs, want))
        log = srv.log()
        if "UTF8SMTP" not in open(os.path.join(tmp, "queue", "mess", os.listdir(
                os.path.join(tmp, "queue", "mess"))[0]), "rb").read(300).decode("latin-1"):
            probs.append("smtpd's Received line does not say UTF8SMTP")
    finally:
        srv.stop()
    if log.count("event=accepted") != 2:
        probs.append("smtpd did not accept two messages:\n%s" % log)
    return probs + common(tmp)


def test_noname():
    """A uid without a name: smtpd's Received line has the uid alone;
    sendmail needs -f, as on the direct path (67 without)."""
    tmp, confdir = setup("noname")
    srv = Server(tmp, confdir)
    try:
        rc, out, err = sendmail(tmp, confdir, ["-f", "job@example.org", "bob@example.org"],
                                b"Subject: n\n\nx\n", uid=NONAME)
        probs = status_is(rc, 0, err)
        rc2, out, err2 = sendmail(tmp, confdir, ["bob@example.org"], b"Subject: n\n\nx\n", uid=NONAME)
        probs += status_is(rc2, 67, err2)
    finally:
        srv.stop()
    if rc == 0:
        regex = (re.escape(b"Return-Path: <job@example.org>\nDelivered-To: bob@example.org\n") +
                 smtpd_received(NONAME, None, b"bob@example.org") + sendmail_received(NONAME) +
                 re.escape(b"Subject: n\n") + rb"Date: (?P=date)\nMessage-ID: <(?P=id)@" + re.escape(HOST) +
                 rb">\n" + re.escape(b"From: job@example.org\n\nx\n"))
        probs += check_file(T.one_message(tmp, "bob@example.org"), regex)
    return probs + common(tmp)


def test_refused():
    """An unknown local recipient: 550 5.1.1 at RCPT, exit 67 with the
    reply on stderr, and nothing stored, not even for the good
    recipient before it; nobody listed in restricted (as
    nobody@hostname, the way an authenticated user is listed): 550
    5.7.1 at MAIL, exit 77."""
    files = T.default_files(os.path.join(BASE, "refused"))
    files["restricted"] = files["restricted"] + ["nobody@" + T.HOSTNAME]
    tmp, confdir = setup("refused", files=files)
    srv = Server(tmp, confdir)
    probs = []
    try:
        # -f: the default sender nobody@host is restricted on our side too
        rc, out, err = sendmail(tmp, confdir, ["-f", "x@example.org", "alice@example.org", "nosuch@example.org"],
                                b"Subject: r\n\nx\n", uid=NONAME)
        probs += status_is(rc, 67, err)
        if 'reply="550 5.1.1 No such user here"' not in err or "rcpt=nosuch@example.org" not in err:
            probs.append("the refusal is not on stderr: %r" % err)
        probs += nothing_delivered(tmp)
        rc, out, err = sendmail(tmp, confdir, ["-f", "x@example.org", "alice@example.org"], b"Subject: r\n\nx\n")
        probs += status_is(rc, 77, err)
        if 'reply="550 5.7.1 Sender address rejected"' not in err:
            probs.append("the refusal is not on stderr: %r" % err)
        probs += nothing_delivered(tmp)
    finally:
        srv.stop()
    return probs + common(tmp)


def test_tempfail():
    """smtpd answers 451 (its deliver is missing): exit 75 with the
    reply; the socket without a server behind it, and no socket at all:
    75."""
    tmp, confdir = setup("tempfail", {"deliver": os.path.join(BIN, "no-such-deliver")})
    srv = Server(tmp, confdir)
    probs = []
    try:
        rc, out, err = sendmail(tmp, confdir, ["alice@example.org"], b"Subject: t\n\nx\n")
        probs += status_is(rc, 75, err)
        if 'reply="451 4.3.0 Temporary failure, try again later"' not in err:
            probs.append("the 451 is not on stderr: %r" % err)
    finally:
        srv.stop()
    sock = os.path.join(tmp, "run", "submit")
    if os.path.exists(sock):    # left by systemd-socket-activate: connect is refused
        rc, out, err = sendmail(tmp, confdir, ["alice@example.org"], b"Subject: t\n\nx\n")
        probs += ["server gone: " + p for p in status_is(rc, 75, err)]
        if "Connection refused" not in err:
            probs.append("server gone: %r" % err)
        os.unlink(sock)
    rc, out, err = sendmail(tmp, confdir, ["alice@example.org"], b"Subject: t\n\nx\n")
    probs += ["no socket: " + p for p in status_is(rc, 75, err)]
    if "No such file or directory" not in err or "conf/../run/submit" not in err:
        probs.append("no socket: %r" % err)
    return probs + nothing_delivered(tmp) + common(tmp)


def test_bs():
    """-bs through the socket: smtpd in local mode offers neither AUTH
    nor STARTTLS (even with a certificate configured), refuses AUTH,
    and lets the local user relay."""
    tmp, confdir = setup("bs", {"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"})
    srv = Server(tmp, confdir)
    try:
        session = (b"EHLO x\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\r\nSTARTTLS\r\n"
                   b"MAIL FROM:<cron@example.org>\r\nRCPT TO:<far@remote.test>\r\n"
                   b"RCPT TO:<alice@example.org>\r\nDATA\r\nSubject: via -bs\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        rc, out, err = sendmail(tmp, confdir, ["-bs"], session)
    finally:
        srv.stop()
    probs = status_is(rc, 0, err)
    lines = out.decode("latin-1").split("\r\n")
    codes = [l[:4] for l in lines if l]
    ehlo = [l for l in lines if l.startswith("250")]
    if codes[:2] != ["220 ", "250-"] or [c for c in codes if c[3] == " "] != \
            ["220 ", "250 ", "502 ", "502 ", "250 ", "250 ", "250 ", "354 ", "250 ", "221 "]:
        probs.append("-bs replies %r" % lines)
    if any("AUTH" in l or "STARTTLS" in l for l in ehlo):
        probs.append("AUTH or STARTTLS offered: %r" % ehlo)
    if probs:
        return probs
    data = open(T.one_message(tmp, "alice@example.org"), "rb").read()
    if not re.search(rb"\nReceived: from local uid 65534 \(user nobody\)\n\tby ", data) or \
            not data.endswith(b"\nSubject: via -bs\n\nhi\n"):
        probs.append("delivered %r" % data)
    if len(T.queue_records(tmp)) != 1:
        probs.append("far@remote.test was not queued")
    return probs + common(tmp)


def test_refuse_tcp():
    """DOPIS_MODE=local on a TCP connection, and on a pipe: 421 4.3.0,
    no session; and the owner of the mailroot delivers without smtpd."""
    tmp, confdir = setup("refuse-tcp")
    port = T.free_port()
    srv = Server(tmp, confdir, listen="127.0.0.1:%d" % port)
    probs = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            # nothing sent: smtpd refuses before it reads (unread
            # bytes would make its close a reset)
            got = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        if got != b"421 4.3.0 Local mode needs a Unix socket, closing connection\r\n":
            probs.append("TCP: %r" % got)
        log = srv.log()
        if "event=no-peer mode=local" not in log:
            probs.append("TCP: no no-peer line:\n%s" % log)
    finally:
        srv.stop()
    env = T.base_env(confdir, SANITIZED)
    env["DOPIS_MODE"] = "local"
    p = subprocess.run([SMTPD], input=b"EHLO x\r\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=30)
    STDERR.append(p.stderr.decode("latin-1"))
    if p.stdout != b"421 4.3.0 Local mode needs a Unix socket, closing connection\r\n" or p.returncode != 78:
        probs.append("pipe: status %d, %r" % (p.returncode, p.stdout))
    # the owner: deliver directly (no server runs now)
    rc, out, err = sendmail(tmp, confdir, ["-f", "owner@example.org", "alice@example.org"],
                            b"Subject: o\n\nx\n", uid=OWNER)
    probs += status_is(rc, 0, err)
    if rc == 0:
        data = open(T.one_message(tmp, "alice@example.org"), "rb").read()
        if not re.match(re.escape(b"Return-Path: <owner@example.org>\nDelivered-To: alice@example.org\n") +
                        sendmail_received(OWNER), data):
            probs.append("the owner's message %r" % data[:300])
    return probs + common(tmp)


TESTS = [
    ("local", test_local),
    ("remote-t", test_remote_t),
    ("noname", test_noname),
    ("refused", test_refused),
    ("tempfail", test_tempfail),
    ("bs", test_bs),
    ("refuse-tcp", test_refuse_tcp),
]


def run(name, fn):
    del STDERR[:]

    def checked():
        probs = fn()
        for err in STDERR + [T.server_log(os.path.join(BASE, name))]:
            rep = T.sanitizer_report(err) if SANITIZED else ""
            if rep:
                probs.append("sanitizer report:\n" + rep)
        return probs
    R.run("submit-" + name, checked)


if __name__ == "__main__":
    if os.getuid() != 0 or not shutil.which("setpriv") or not shutil.which("systemd-socket-activate"):
        print("ok submit # skipped: needs root, setpriv and systemd-socket-activate")
        R.exit()
    if not os.access(SENDMAIL, os.X_OK):
        R.run("submit", lambda: ["%s is not built" % SENDMAIL])
        R.exit()
    only = sys.argv[1:]
    for name, fn in TESTS:
        if not only or name in only:
            run(name, fn)
    R.exit()
