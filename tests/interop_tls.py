#!/usr/bin/python3
"""Interop: STARTTLS (RFC 3207), implicit TLS (RFC 8314) and SMTP AUTH
(RFC 4954) of smtpd under tcpserver on a loopback port, driven by swaks
(--tls, --tls-on-connect, --auth PLAIN/LOGIN), Python's smtplib
(starttls(), login(), send_message) and "openssl s_client -starttls
smtp"; plus the STARTTLS command-injection test (CVE-2011-0411) over a
raw socket wrapped in Python's ssl.

A throwaway CA and a certificate for mx.example.org (and IP 127.0.0.1)
are made with the openssl command into the test's work directory
(tests/work/PASS/interop_tls/pki, never committed); the passwd file
holds a SHA-512-crypt hash (openssl passwd -6) and a yescrypt one
(libcrypt through Python's crypt module).  tcpserver sets
TCPREMOTEIP=127.0.0.1: the client is a remote one that may not relay
and is offered AUTH only inside TLS.

Run by tests/run.py (once per build); alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_tls.py [REPO BINDIR]
e.g. "/work/main obj/asan/bin" for the ASan build.
"""

import base64
import email.message
import email.utils
import glob
import os
import re
import socket
import smtplib
import ssl
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402


def build():
    """The build under test: run.py's environment, or the arguments
    "REPO BINDIR" (e.g. "/work/main obj/asan/bin": a build of
    T.PASSES, so the ASan build is checked for sanitizer reports)."""
    if len(sys.argv) < 3:
        return T.this_build()
    bindir = os.path.abspath(os.path.join(sys.argv[1], sys.argv[2]))
    for name, smtpd, deliver, sanitized in T.PASSES:
        if os.path.dirname(smtpd) == bindir:
            return name, smtpd, deliver, sanitized
    return (os.path.basename(bindir), os.path.join(bindir, "smtpd"),
            os.path.join(bindir, "deliver"), os.environ.get("DOPIS_SANITIZED") == "1")


PASS, SMTPD, DELIVER, SANITIZED = build()
BASE = os.path.join(T.WORK, PASS, "interop_tls")
PKI = os.path.join(BASE, "pki")
CA = os.path.join(PKI, "ca.pem")
MISSING_KEY = os.path.join(PKI, "missing.key")
R = T.Results()

ALICE, ALICE_PW = "alice@example.org", "Alice-s3cret-Qx7"      # SHA-512-crypt
BOB, BOB_PW = "bob@example.org", "bob yescrypt pw 9Z"         # yescrypt
BANNED, BANNED_PW = "banned@example.org", "banned-pw-K2"     # in "restricted"
REMOTE = "someone@remote.test"
PASSWORDS = [ALICE_PW, BANNED_PW]
PASSWD = []          # lines of the passwd file
LOGIN_USER = None    # (user, password) for the LOGIN tests: bob if yescrypt works
STDERRS = []         # every server's captured stderr, for the password check


# ---------------------------------------------------------------- set-up

def openssl(*args):
    return T.openssl(PKI, *args)


def make_pki():
    """A CA and a server certificate signed by it (P-256 keys)."""
    T.make_pki(PKI, "mx.example.org", dns=["mx.example.org"], ips=["127.0.0.1"])


def yescrypt(pw):
    """A yescrypt hash of pw: libcrypt through Python's crypt module
    (which has no METHOD for it: "$y$" + parameters "j9T", libxcrypt's
    default, + salt), else mkpasswd -m yescrypt (Debian's whois), else
    None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt   # gone in Python 3.13
        salt = crypt.mksalt(crypt.METHOD_SHA512)[3:19]
        y = crypt.crypt(pw, "$y$j9T$" + salt)
        if y and y.startswith("$y$j9T$"):
            return y
    except ImportError:
        pass
    try:
        p = subprocess.run(["mkpasswd", "-m", "yescrypt", "--stdin"], input=pw.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
        y = p.stdout.decode().strip()
        return y if p.returncode == 0 and y.startswith("$y$") else None
    except OSError:
        return None


def make_passwd():
    global LOGIN_USER
    h = openssl("passwd", "-6", ALICE_PW).strip()
    if not h.startswith("$6$"):
        raise RuntimeError("openssl passwd -6 gave %r" % h)
    PASSWD.append("# test users: SHA-512-crypt and yescrypt")
    PASSWD.append("%s:%s" % (ALICE, h))
    PASSWD.append("%s:%s" % (BANNED, openssl("passwd", "-6", BANNED_PW).strip()))
    y = yescrypt(BOB_PW)
    if y and y.startswith("$y$"):
        PASSWD.append("%s:%s" % (BOB, y))
        PASSWORDS.append(BOB_PW)
        LOGIN_USER = (BOB, BOB_PW)
    else:
        print("note: neither Python's crypt nor mkpasswd makes yescrypt here: no yescrypt user")
        LOGIN_USER = (ALICE, ALICE_PW)


def client_context(hostname_check=True):
    ctx = ssl.create_default_context(cafile=CA)
    ctx.check_hostname = hostname_check
    return ctx


class Server:
    """smtpd under tcpserver on a free loopback port, in a fresh test
    directory with the certificate and the passwd file configured."""

    def __init__(self, name, mode, conf=None, wrap=None):
        self.name = name
        self.mode = mode
        self.tmp = os.path.join(BASE, name)
        c = {"tls_cert": os.path.join(PKI, "server.pem"),
             "tls_key": os.path.join(PKI, "server.key")}
        c.update(conf or {})
        files = T.default_files(self.tmp)
        files["passwd"] = list(PASSWD)
        self.confdir = T.setup(self.tmp, DELIVER, c, files)
        self.port = T.free_port()
        self.errpath = os.path.join(self.tmp, "server.stderr")
        self.errf = open(self.errpath, "wb")
        env = T.base_env(self.confdir, SANITIZED)
        env["DOPIS_MODE"] = mode
        if wrap and SANITIZED:
            # LeakSanitizer cannot run under a tracer
            env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"].replace("detect_leaks=1", "detect_leaks=0")
        self.proc = subprocess.Popen(
            ["tcpserver", "-q", "-R", "-H", "-l", "mx.example.org", "127.0.0.1",
             str(self.port)] + [a.replace("$TMP", self.tmp) for a in wrap or []] + [SMTPD],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.errf)
        try:
            T.wait_port(self.port, self.proc)   # the probe is one smtpd session too
        except BaseException:
            T.stop(self.proc)
            self.errf.close()
            raise

    def children(self):
        out = []
        for st in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(st) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                out.append(int(st.split("/")[2]))
        return out

    def close(self):
        """Waits for the smtpd sessions to end (their log and any
        sanitizer report are written at exit), then stops tcpserver.
        Returns problems."""
        probs = []
        deadline = time.time() + 15
        while self.children() and time.time() < deadline:
            time.sleep(0.05)
        left = self.children()
        if left:
            probs.append("smtpd session(s) %s still running 15 s after the test" % left)
            for pid in left:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        T.stop(self.proc)
        self.errf.close()
        return probs

    def settled(self):
        """The log once the sessions so far have ended (each one's log
        lines are complete then)."""
        deadline = time.time() + 10
        while self.children() and time.time() < deadline:
            time.sleep(0.02)
        return self.log()

    def log(self):
        with open(self.errpath, encoding="latin-1") as f:
            return f.read()


LOG_FIELD = re.compile(r' (\w+)=([^\s"]+|"(?:[^"\\]|\\.)*")')


def log_lines(text):
    """smtpd's log lines as dicts of fields (lib/log.h)."""
    out = []
    for line in text.splitlines():
        if not line.startswith("smtpd "):
            continue
        d = {}
        for m in LOG_FIELD.finditer(line):
            v = m.group(2)
            if v.startswith('"'):
                v = re.sub(r"\\(.)", r"\1", v[1:-1])
            d[m.group(1)] = v
        out.append(d)
    return out


def has_log(text, **fields):
    return any(all(d.get(k) == v for k, v in fields.items()) for d in log_lines(text))


def received_header(path):
    """The first Received header of a stored message, unfolded, and the
    file's text."""
    with open(path, "rb") as f:
        text = f.read().decode("latin-1")
    lines = text.split("\n")
    for i, l in enumerate(lines):
        if l.startswith("Received:"):
            hdr, _ = T.split_received(lines, i)
            return re.sub(r"[ \t]+", " ", " ".join(hdr)), text
        if l == "":
            break
    return None, text


def check_auth_received(path, helo, user, rcpt=None, proto=r"TLSv1\.3"):
    """The Received header of a message submitted with TLS and AUTH:

      Received: from HELO ([127.0.0.1])
              (authenticated as USER)
              (using TLSv1.3 with cipher CIPHER)
              by mx.example.org (dopis) with ESMTPSA id ID
              for <RCPT>; DATE
    """
    hdr, text = received_header(path)
    if hdr is None:
        return ["no Received header in %s:\n%s" % (path, text[:600])]
    pat = (r"Received: from %s \((?:[^()\s]+ )?\[127\.0\.0\.1\]\)"
           r" \(authenticated as %s\)"
           r" \(using %s with cipher [A-Za-z0-9_-]+\)"
           r" by mx\.example\.org \(dopis\) with ESMTPSA id %s"
           r"%s; (?P<date>.+)" % (re.escape(helo), re.escape(user), proto, T.ID_RE,
                                 r" for <%s>" % re.escape(rcpt) if rcpt else ""))
    m = re.fullmatch(pat, hdr)
    if not m:
        return ["Received header %r does not match %r" % (hdr, pat)]
    if email.utils.parsedate_to_datetime(m.group("date")) is None:
        return ["bad date in %r" % hdr]
    return []


def queued_to(tmp, addr):
    """Problems unless a committed queue entry (info/ file) has the
    recipient record T<addr>."""
    recs = T.queue_records(tmp)
    if not any(("T" + addr) in m for m in recs):
        return ["no queued message has the record T%s; info records: %r" % (addr, recs)]
    return []


def queued_messages(tmp):
    return sorted(glob.glob(os.path.join(tmp, "queue", "mess", "*")))


def swaks(port, *args, timeout=30):
    return T.run_cmd(["swaks", "--server", "127.0.0.1:%d" % port, "--timeout", "20"] +
                     list(args), timeout=timeout)


SWAKS_OK = re.compile(r"^<~ +250 2\.0\.0 Ok: (%s)$" % T.ID_RE, re.M)


def swaks_send(port, user, pw, mech, rcpt, tls="--tls", subject="tls test", extra=()):
    rc, out = swaks(port, tls, "--auth", mech, "--auth-user", user, "--auth-password", pw,
                    "--helo", "client.test", "--from", user, "--to", rcpt,
                    "--h-Subject", subject, "--body", "Sent with swaks %s --auth %s.\n" % (tls, mech),
                    *extra)
    if rc != 0 or not SWAKS_OK.search(out):
        return ["swaks %s --auth %s to %s: exit %d\n%s" % (tls, mech, rcpt, rc, out)], out
    return [], out


# ---------------------------------------------------------------- tests

def ehlo_keywords(resp):
    """smtplib's EHLO reply (bytes) -> the keyword lines after the first."""
    return [l.upper() for l in resp.decode("latin-1").split("\n")[1:]]


def test_ehlo_starttls(srv):
    """Before TLS: STARTTLS, no AUTH; after it: AUTH PLAIN LOGIN and no
    STARTTLS; the state is reset (MAIL before EHLO is 503); a second
    STARTTLS is 503."""
    probs = []
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=20) as s:
        code, resp = s.ehlo()
        kw = ehlo_keywords(resp)
        if code != 250 or "STARTTLS" not in kw:
            probs.append("EHLO before TLS does not offer STARTTLS: %d %r" % (code, resp))
        if any(k.startswith("AUTH") for k in kw):
            probs.append("EHLO before TLS offers AUTH to a remote client: %r" % resp)
        code, resp = s.starttls(context=client_context())   # verifies the IP SAN 127.0.0.1
        if code != 220:
            probs.append("STARTTLS: %d %r" % (code, resp))
        ver = s.sock.version()
        if ver not in ("TLSv1.3", "TLSv1.2"):
            probs.append("negotiated %r" % ver)
        code, resp = s.docmd("MAIL", "FROM:<x@remote.test>")
        if code != 503:
            probs.append("MAIL right after STARTTLS (no new EHLO): %d %r, expected 503" % (code, resp))
        code, resp = s.ehlo("client.test")
        kw = ehlo_keywords(resp)
        if code != 250 or "AUTH PLAIN LOGIN" not in kw:
            probs.append("EHLO inside TLS does not offer AUTH PLAIN LOGIN: %d %r" % (code, resp))
        if "STARTTLS" in kw:
            probs.append("EHLO inside TLS offers STARTTLS again: %r" % resp)
        code, resp = s.docmd("STARTTLS")
        if code != 503:
            probs.append("a second STARTTLS: %d %r, expected 503" % (code, resp))
        code, resp = s.noop()
        if code != 250:
            probs.append("NOOP after the second STARTTLS: %d %r" % (code, resp))
    log = srv.settled()
    if not has_log(log, event="starttls", version=ver):
        probs.append("no log line event=starttls version=%s:\n%s" % (ver, log))
    if has_log(log, event="starttls", discarded="0") or re.search(r"event=starttls.*discarded=", log):
        probs.append("a STARTTLS with nothing pipelined logs discarded=:\n%s" % log)
    return probs


def test_swaks_plain(srv):
    """swaks --tls --auth PLAIN (SHA-512-crypt user): relay to a remote
    address is queued; local delivery says ESMTPSA and the user."""
    p, out = swaks_send(srv.port, ALICE, ALICE_PW, "PLAIN", REMOTE)
    if p:
        return p
    probs = []
    if not re.search(r"^=== TLS started with cipher TLSv1\.3", out, re.M):
        probs.append("swaks did not start TLS 1.3:\n%s" % out)
    if not re.search(r"^ ?~> AUTH PLAIN", out, re.M) or "<~  235 2.7.0" not in out:
        probs.append("swaks did not authenticate with PLAIN inside TLS:\n%s" % out)
    probs += queued_to(srv.tmp, REMOTE)
    mess = queued_messages(srv.tmp)
    if len(mess) != 1:
        probs.append("queue/mess holds %r, expected one message" % mess)
    else:
        probs += ["queued: " + x for x in check_auth_received(mess[0], "client.test", ALICE, REMOTE)]
    p, out = swaks_send(srv.port, ALICE, ALICE_PW, "PLAIN", BOB)
    if p:
        return probs + p
    probs += check_auth_received(T.one_message(srv.tmp, BOB), "client.test", ALICE, BOB)
    if T.queue_count(srv.tmp) != 1:
        probs.append("queue holds %d messages, expected 1" % T.queue_count(srv.tmp))
    log = srv.settled()
    if not has_log(log, event="auth", mech="PLAIN", user=ALICE):
        probs.append("no log line event=auth mech=PLAIN user=%s" % ALICE)
    if not has_log(log, event="accepted", auth=ALICE, tls="TLSv1.3"):
        probs.append("no log line event=accepted auth=%s tls=TLSv1.3:\n%s" % (ALICE, log))
    return probs


def test_swaks_login(srv):
    """swaks --tls --auth LOGIN (the yescrypt user when there is one)."""
    user, pw = LOGIN_USER
    local = ALICE if user != ALICE else BOB
    p, out = swaks_send(srv.port, user, pw, "LOGIN", REMOTE)
    if p:
        return p
    probs = []
    if "<~  334 VXNlcm5hbWU6" not in out or "<~  235 2.7.0" not in out:
        probs.append("swaks did not go through the LOGIN exchange:\n%s" % out)
    probs += queued_to(srv.tmp, REMOTE)
    # this time MAIL, RCPT and DATA pipelined inside TLS (RFC 2920)
    p, out = swaks_send(srv.port, user, pw, "LOGIN", local, extra=("--pipeline",))
    if p:
        return probs + p
    if not re.search(r"^ ~> MAIL FROM:.*\n ~> RCPT TO:.*\n ~> DATA$", out, re.M):
        probs.append("swaks did not pipeline MAIL, RCPT, DATA:\n%s" % out)
    probs += check_auth_received(T.one_message(srv.tmp, local), "client.test", user, local)
    if not has_log(srv.settled(), event="auth", mech="LOGIN", user=user):
        probs.append("no log line event=auth mech=LOGIN user=%s" % user)
    return probs


def test_swaks_submissions(srv):
    """DOPIS_MODE=submissions: swaks --tls-on-connect with AUTH relays
    and delivers; without AUTH MAIL is 530 5.7.0; EHLO offers AUTH and
    not STARTTLS; a plaintext client gets no SMTP greeting."""
    probs = []
    # (the port probe at start-up was a handshake failure already)
    failed_before = sum(1 for d in log_lines(srv.settled()) if d.get("event") == "tls-failed")
    p, out = swaks_send(srv.port, ALICE, ALICE_PW, "PLAIN", REMOTE, tls="--tls-on-connect")
    if p:
        return p
    if not re.search(r"^<~ +250-AUTH PLAIN LOGIN$", out, re.M):
        probs.append("EHLO on implicit TLS does not offer AUTH PLAIN LOGIN:\n%s" % out)
    if re.search(r"^<~ +250[- ]STARTTLS", out, re.M):
        probs.append("EHLO on implicit TLS offers STARTTLS:\n%s" % out)
    probs += queued_to(srv.tmp, REMOTE)
    user, pw = LOGIN_USER
    p, out = swaks_send(srv.port, user, pw, "LOGIN", "carol@example.net", tls="--tls-on-connect")
    if p:
        return probs + p
    probs += check_auth_received(T.one_message(srv.tmp, "carol@example.net"), "client.test",
                                 user, "carol@example.net")
    # no AUTH: the submission service refuses MAIL
    rc, out = swaks(srv.port, "--tls-on-connect", "--helo", "client.test",
                    "--from", ALICE, "--to", BOB, "--body", "no auth\n")
    if rc == 0 or not re.search(r"^<~\* +530 5\.7\.0 ", out, re.M):
        probs.append("MAIL without AUTH on submissions: exit %d, expected 530 5.7.0:\n%s" % (rc, out))
    # plaintext SMTP to the implicit-TLS port: no "220", the session ends
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"EHLO plain.test\r\n")
        got = b""
        try:
            while len(got) < 4096:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except (socket.timeout, ConnectionResetError):
            pass
    if got.startswith(b"220") or b"250" in got:
        probs.append("a plaintext client on the submissions port got SMTP: %r" % got[:200])
    log = srv.settled()
    if not has_log(log, event="connect", mode="submissions", tls="TLSv1.3"):
        probs.append("no log line event=connect mode=submissions tls=TLSv1.3:\n%s" % log)
    if sum(1 for d in log_lines(log) if d.get("event") == "tls-failed") <= failed_before:
        probs.append("the plaintext client's handshake is not logged as event=tls-failed:\n%s" % log)
    if T.queue_count(srv.tmp) != 1:
        probs.append("queue holds %d messages, expected 1" % T.queue_count(srv.tmp))
    if T.maildir_files(T.maildir_of(srv.tmp, BOB)):
        probs.append("the message without AUTH was delivered to bob")
    return probs


def test_smtplib_submission(srv):
    """The "Thunderbird settings": DOPIS_MODE=submission, STARTTLS with
    the certificate verified for mx.example.org, name and password,
    relay to a remote domain.  MAIL before AUTH is 530 5.7.0, before and
    after TLS."""
    probs = []
    msg = email.message.EmailMessage()
    msg["From"] = "Alice <%s>" % ALICE
    msg["To"] = "%s, %s" % (REMOTE, BOB)
    msg["Subject"] = "Thunderbird-style submission"
    msg["Message-ID"] = "<tb-1@example.org>"
    msg.set_content("Hello through port 587.\n")
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="laptop.test", timeout=20) as s:
        s.ehlo()
        if not s.has_extn("starttls") or s.has_extn("auth"):
            probs.append("EHLO before TLS: %r" % s.esmtp_features)
        code, resp = s.docmd("MAIL", "FROM:<%s>" % ALICE)
        if code != 530 or not resp.startswith(b"5.7.0"):
            probs.append("MAIL before TLS and AUTH: %d %r, expected 530 5.7.0" % (code, resp))
        # the name the user typed as the server: verify the certificate
        # for mx.example.org although we connected to 127.0.0.1 (there is
        # no DNS in the test's network namespace)
        s._host = "mx.example.org"
        s.starttls(context=client_context())
        cert = s.sock.getpeercert()
        if ("DNS", "mx.example.org") not in cert.get("subjectAltName", ()):
            probs.append("peer certificate %r" % cert)
        s.ehlo()
        if not s.has_extn("auth") or s.has_extn("starttls"):
            probs.append("EHLO inside TLS: %r" % s.esmtp_features)
        elif s.esmtp_features["auth"].split() != ["PLAIN", "LOGIN"]:
            probs.append("AUTH mechanisms %r" % s.esmtp_features["auth"])
        code, resp = s.docmd("MAIL", "FROM:<%s>" % ALICE)
        if code != 530 or not resp.startswith(b"5.7.0"):
            probs.append("MAIL inside TLS before AUTH: %d %r, expected 530 5.7.0" % (code, resp))
        code, resp = s.login(ALICE, ALICE_PW)
        if code != 235:
            probs.append("login: %d %r" % (code, resp))
        refused = s.send_message(msg)
        if refused:
            probs.append("refused: %r" % refused)
    probs += queued_to(srv.tmp, REMOTE)
    path = T.one_message(srv.tmp, BOB)
    probs += check_auth_received(path, "laptop.test", ALICE)  # two recipients: no "for"
    _, text = received_header(path)
    if "Subject: Thunderbird-style submission\n" not in text or "Hello through port 587.\n" not in text:
        probs.append("delivered message:\n%s" % text)
    if not has_log(srv.settled(), event="connect", mode="submission"):
        probs.append("no log line event=connect mode=submission")
    return probs


def test_smtp_relay_needs_auth(srv):
    """DOPIS_MODE=smtp: a remote client's RCPT to a remote domain is
    550 5.7.1 in plaintext and inside TLS before AUTH; MAIL needs no
    AUTH here; after AUTH the same RCPT is accepted and queued."""
    probs = []
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=20) as s:
        s.ehlo()
        for where in ("plaintext", "TLS, before AUTH"):
            code, resp = s.docmd("MAIL", "FROM:<%s>" % ALICE)
            if code != 250:
                probs.append("%s: MAIL %d %r" % (where, code, resp))
            code, resp = s.docmd("RCPT", "TO:<%s>" % REMOTE)
            if code != 550 or not resp.startswith(b"5.7.1"):
                probs.append("%s: RCPT to a remote domain %d %r, expected 550 5.7.1" % (where, code, resp))
            code, resp = s.docmd("RSET")
            if where == "plaintext":
                s.starttls(context=client_context())
                s.ehlo()
        s.login(ALICE, ALICE_PW)
        refused = s.sendmail(ALICE, [REMOTE], b"Subject: after AUTH\r\n\r\nrelayed\r\n")
        if refused:
            probs.append("after AUTH: refused %r" % refused)
        code, resp = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0" + ALICE.encode() + b"\0" + ALICE_PW.encode()).decode())
        if code != 503:
            probs.append("a second AUTH: %d %r, expected 503" % (code, resp))
    probs += queued_to(srv.tmp, REMOTE)
    if T.queue_count(srv.tmp) != 1:
        probs.append("queue holds %d messages, expected 1" % T.queue_count(srv.tmp))
    return probs


def test_restricted_user(srv):
    """The "restricted" list applies to authenticated users: banned@
    may log in (its password is right) but not send."""
    probs = []
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=20) as s:
        s.starttls(context=client_context())
        code, resp = s.login(BANNED, BANNED_PW)
        if code != 235:
            probs.append("login: %d %r" % (code, resp))
        code, resp = s.docmd("MAIL", "FROM:<%s>" % ALICE)
        if code != 550 or not resp.startswith(b"5.7.1"):
            probs.append("MAIL from a restricted authenticated user: %d %r, expected 550 5.7.1"
                         % (code, resp))
    return probs


def test_smtplib_submissions_big(srv):
    """Python's SMTP_SSL (implicit TLS), login, and a 4.5 MB message to
    a local and a remote recipient: stored byte for byte."""
    body = b"".join(b"line %07d " % i + b"x" * 60 + b"\r\n" for i in range(60000))
    msg = b"From: alice@example.org\r\nSubject: big over TLS\r\n\r\n" + \
        b".leading dot\r\n" + body + b"..two dots\r\nend\r\n"
    with smtplib.SMTP_SSL("127.0.0.1", srv.port, local_hostname="client.test",
                          context=client_context(), timeout=30) as s:
        s.login(ALICE, ALICE_PW)
        refused = s.sendmail(ALICE, [BOB, REMOTE], msg)
    probs = ["refused %r" % refused] if refused else []
    want = msg.replace(b"\r\n", b"\n")
    path = T.one_message(srv.tmp, BOB)
    probs += check_auth_received(path, "client.test", ALICE)
    mess = queued_messages(srv.tmp)
    for f in [path] + mess[:1]:
        with open(f, "rb") as fh:
            data = fh.read()
        if not data.endswith(b"\n\n" + want[want.index(b"\n\n") + 2:]) or \
                want[:want.index(b"\n\n")] not in data:
            probs.append("%s (%d bytes) does not hold the %d bytes sent" % (
                os.path.relpath(f, srv.tmp), len(data), len(want)))
    probs += queued_to(srv.tmp, REMOTE)
    return probs


def test_bad_key(srv):
    """tls_key cannot be read: a STARTTLS client must not be left with a
    dead connection after "220 Ready to start TLS".  STARTTLS is either
    not offered or answered 454 4.7.0 (RFC 3207 4), the session goes on
    in plaintext, and the log says what is wrong."""
    probs = []
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=20) as s:
            s.ehlo()
            if s.has_extn("starttls"):
                code, resp = s.docmd("STARTTLS")
                if code != 454:
                    probs.append("STARTTLS with an unreadable key: %d %r, expected 454 4.7.0"
                                 % (code, resp))
            code, resp = s.noop()
            if code != 250:
                probs.append("NOOP after STARTTLS: %d %r" % (code, resp))
    except smtplib.SMTPServerDisconnected as e:
        probs.append("with an unreadable tls_key smtpd offers STARTTLS, replies 220 and then "
                     "drops the connection (%s)" % e)
    if MISSING_KEY not in srv.settled():
        probs.append("the log does not name %s" % MISSING_KEY)
    return probs


def s_client(port, *args, data=b"QUIT\n"):
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-name", "sclient.test",
                        "-connect", "127.0.0.1:%d" % port, "-CAfile", CA,
                        "-verify_return_error", "-crlf", "-ign_eof"] + list(args),
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace")


EOF_NO_CLOSE_NOTIFY = "unexpected eof while reading"


def s_client_ok(rc, out):
    """s_client's exit status, forgiving only the missing close_notify
    at the end, which tls-close-notify tests on its own."""
    if rc == 0:
        return True
    errs = [l for l in out.splitlines() if ":error:" in l]
    return rc == 1 and len(errs) == 1 and EOF_NO_CLOSE_NOTIFY in errs[0] and \
        re.search(r"^221 ", out, re.M) is not None


def test_openssl_s_client(srv):
    """openssl s_client -starttls smtp -verify_return_error verifies the
    chain and the name, negotiates TLS 1.3 (and 1.2 when asked), talks
    SMTP inside; TLS 1.1 is refused by the server."""
    probs = []
    rc, out = s_client(srv.port, "-verify_hostname", "mx.example.org",
                       data=b"EHLO sclient.test\nNOOP\nQUIT\n")
    if not s_client_ok(rc, out):
        return ["s_client -starttls smtp: exit %d\n%s" % (rc, out)]
    for want in ("Verify return code: 0 (ok)", "Verified peername: mx.example.org",
                 "New, TLSv1.3, Cipher is TLS_"):
        if want not in out:
            probs.append("s_client output lacks %r" % want)
    for want in (r"^250-AUTH PLAIN LOGIN\r?$", r"^250 2\.0\.0 Ok\r?$", r"^221 2\.0\.0 "):
        if not re.search(want, out, re.M):
            probs.append("s_client session lacks %r" % want)
    if re.search(r"^250-STARTTLS", out.split("New, TLSv1.3", 1)[-1], re.M):
        probs.append("STARTTLS offered inside TLS")
    rc, out = s_client(srv.port, "-tls1_2")
    if not s_client_ok(rc, out) or "New, TLSv1.2, Cipher is " not in out or \
            "Verify return code: 0 (ok)" not in out:
        probs.append("s_client -tls1_2: exit %d\n%s" % (rc, out))
    # the client may use TLS 1.1 (security level 0); the server must refuse
    rc, out = s_client(srv.port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    if rc == 0 or re.search(r"New, TLSv1(\.1)?, Cipher is [A-Z]", out) or "\n221 " in out:
        probs.append("s_client -tls1_1 was not refused: exit %d\n%s" % (rc, out))
    log = srv.settled()
    for ver in ("TLSv1.3", "TLSv1.2"):
        if not has_log(log, event="starttls", version=ver):
            probs.append("no log line event=starttls version=%s" % ver)
    if not has_log(log, event="tls-failed"):
        probs.append("the refused TLS 1.1 handshake is not logged as event=tls-failed:\n%s" % log)
    return probs


def quit_and_eof(tls):
    """QUIT inside TLS, then the end of the session: problems unless it
    ends with the peer's close_notify (Python's ssl then reads b"")."""
    tls.sendall(b"QUIT\r\n")
    r = read_reply(tls)
    if not r[0].startswith("221 "):
        return ["QUIT: %r" % r]
    try:
        rest = tls.recv(100)
    except ssl.SSLError as e:   # SSLEOFError, or SSLError UNEXPECTED_EOF_WHILE_READING
        return ["after 221 the TCP connection closed without a TLS close_notify alert "
                "(RFC 8446 6.1; openssl s_client reports '%s'): %s" % (EOF_NO_CLOSE_NOTIFY, e)]
    if rest:
        return ["after 221: %r" % rest]
    return []


def test_close_notify(srv):
    """QUIT ends the TLS session properly: close_notify, then EOF; with
    STARTTLS (smtp mode) and with implicit TLS (submissions mode)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as raw:
        if srv.mode != "submissions":
            read_reply(raw)
            raw.sendall(b"EHLO x\r\n")
            read_reply(raw)
            raw.sendall(b"STARTTLS\r\n")
            read_reply(raw)
        # an EOF without close_notify must raise: Python's default
        # context ignores it, and wrap_socket suppresses it
        ctx = client_context()
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        with ctx.wrap_socket(raw, server_hostname="mx.example.org",
                             suppress_ragged_eofs=False) as tls:
            if srv.mode == "submissions":
                read_reply(tls)
            tls.sendall(b"EHLO y\r\n")
            read_reply(tls)
            return quit_and_eof(tls)


def auth_plain(user, pw, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, pw)).encode()).decode()


def test_auth_failures(srv):
    """AUTH from the remote client without TLS: 538 5.7.11; inside TLS
    bad base64 501 5.5.2, "*" 501, a wrong password 535 5.7.8 (also for
    an unknown user, with LOGIN); the third failure ends the session
    with 421.  The server sleeps 1, 2, 3 s on the failures."""
    probs = []
    s = smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=20)
    try:
        s.ehlo()
        code, resp = s.docmd("AUTH", "PLAIN " + auth_plain(ALICE, ALICE_PW))
        if code != 538 or not resp.startswith(b"5.7.11"):
            probs.append("AUTH without TLS: %d %r, expected 538 5.7.11" % (code, resp))
        code, resp = s.docmd("AUTH", "LOGIN")
        if code != 538:
            probs.append("AUTH LOGIN without TLS: %d %r, expected 538" % (code, resp))
        s.starttls(context=client_context())
        s.ehlo()
        code, resp = s.docmd("AUTH", "PLAIN !!!!")
        if code != 501 or not resp.startswith(b"5.5.2"):
            probs.append("bad base64 (initial response): %d %r, expected 501 5.5.2" % (code, resp))
        code, resp = s.docmd("AUTH", "PLAIN")
        if code == 334:
            code, resp = s.docmd("YWJj*")   # "YWJj" + junk
        if code != 501 or not resp.startswith(b"5.5.2"):
            probs.append("bad base64 (continuation): %d %r, expected 501 5.5.2" % (code, resp))
        code, resp = s.docmd("AUTH", "LOGIN")
        if code != 334:
            probs.append("AUTH LOGIN: %d %r, expected 334" % (code, resp))
        code, resp = s.docmd("*")
        if code != 501:
            probs.append("'*' cancel: %d %r, expected 501" % (code, resp))
        # failure 1: wrong password (PLAIN, initial response)
        t0 = time.time()
        code, resp = s.docmd("AUTH", "PLAIN " + auth_plain(ALICE, "wrong-" + ALICE_PW))
        if code != 535 or not resp.startswith(b"5.7.8"):
            probs.append("wrong password: %d %r, expected 535 5.7.8" % (code, resp))
        if time.time() - t0 < 0.9:
            probs.append("the first failure took %.2f s, expected about 1 s" % (time.time() - t0))
        # failure 2: unknown user (LOGIN, smtplib's own exchange)
        s.user, s.password = "nobody@example.org", ALICE_PW
        try:
            s.auth("LOGIN", s.auth_login)
            probs.append("an unknown user authenticated")
        except smtplib.SMTPAuthenticationError as e:
            if e.smtp_code != 535 or not e.smtp_error.startswith(b"5.7.8"):
                probs.append("unknown user: %d %r, expected 535 5.7.8" % (e.smtp_code, e.smtp_error))
        code, resp = s.docmd("NOOP")
        if code != 250:
            probs.append("NOOP after two failures: %d %r" % (code, resp))
        # failure 3 ends the session: 535, then 421, then EOF
        s.user, s.password = BOB, "wrong"
        try:
            s.auth("PLAIN", s.auth_plain)
            probs.append("a wrong password authenticated")
        except smtplib.SMTPAuthenticationError as e:
            if e.smtp_code != 535:
                probs.append("third failure: %d %r, expected 535" % (e.smtp_code, e.smtp_error))
        code, resp = s.getreply()
        if code != 421:
            probs.append("after the third failure: %d %r, expected 421" % (code, resp))
        try:
            code, resp = s.getreply()
            probs.append("the connection stays open after 421: %d %r" % (code, resp))
        except smtplib.SMTPServerDisconnected:
            pass
    finally:
        s.close()
    log = srv.settled()
    if not has_log(log, event="auth-failed", failures="3"):
        probs.append("no log line event=auth-failed failures=3:\n%s" % log)
    if has_log(log, event="auth"):
        probs.append("a failed session logs event=auth:\n%s" % log)
    if "wrong" in log:
        probs.append("the log holds the wrong password:\n%s" % log)
    return probs


def read_line(sock):
    """One CRLF line, read a byte at a time (nothing after it is
    consumed: the TLS handshake follows a 220)."""
    b = b""
    while not b.endswith(b"\r\n"):
        c = sock.recv(1)
        if not c:
            raise EOFError("connection closed after %r" % b)
        b += c
    return b.decode("latin-1")[:-2]


def read_reply(sock):
    lines = [read_line(sock)]
    while lines[-1][3:4] == "-":
        lines.append(read_line(sock))
    return lines


def test_starttls_injection(srv):
    """CVE-2011-0411: "STARTTLS\\r\\nRSET\\r\\n" in one write; the RSET
    must be discarded, never run inside TLS: the first reply in TLS is
    that of the client's EHLO.  The log says discarded=6."""
    probs = []
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as raw:
        greet = read_reply(raw)
        if not greet[0].startswith("220 "):
            return ["greeting %r" % greet]
        raw.sendall(b"EHLO x\r\n")
        r = read_reply(raw)
        if "250-STARTTLS" not in r:
            return ["EHLO reply without STARTTLS: %r" % r]
        raw.sendall(b"STARTTLS\r\nRSET\r\n")
        r = read_reply(raw)
        if not r[0].startswith("220 "):
            return ["STARTTLS: %r" % r]
        with client_context().wrap_socket(raw, server_hostname="mx.example.org") as tls:
            tls.sendall(b"EHLO y\r\n")
            first = read_reply(tls)
            if first[0] != "250-mx.example.org":
                probs.append("the first reply inside TLS is %r, not the EHLO reply: "
                             "the injected RSET ran" % first)
                first = read_reply(tls)
            tls.sendall(b"QUIT\r\n")
            bye = read_reply(tls)
            if not bye[0].startswith("221 "):
                probs.append("QUIT: %r (after %r)" % (bye, first))
    log = srv.settled()
    if not has_log(log, event="starttls", discarded="6"):
        probs.append("no log line event=starttls discarded=6:\n%s" % log)
    return probs


# ---------------------------------------------------------------- main

STRACE_RE = re.compile(r'^(\d+) +(execve|openat)\((?:AT_FDCWD, )?"([^"]*)"(.*)$')


def key_openers(path):
    """From strace -f's log: {pid: program} for every process that
    opened the TLS key successfully, and the set of programs exec'd."""
    prog, opened, execd = {}, {}, set()
    with open(path, errors="replace") as f:
        for line in f:
            m = STRACE_RE.match(line)
            if not m:
                continue
            pid, call, arg, rest = m.groups()
            if call == "execve":
                if "= -1" not in rest:
                    prog[pid] = os.path.basename(arg)
                    execd.add(os.path.basename(arg))
            elif arg.endswith("server.key") and not re.search(r"= -1 ", rest):
                opened[pid] = prog.get(pid, "?")
    return opened, execd


def test_key_in_tlsd_only(srv):
    """The process that parses the client's commands never holds the
    TLS key: a plaintext session starts no dopis-tlsd and opens no key;
    a STARTTLS session has dopis-tlsd (and only it) open the key, and
    its mail is delivered with the cipher in the Received line."""
    probs = []
    trace = os.path.join(srv.tmp, "strace.log")
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=20) as s:
        s.ehlo()
        code, _ = s.noop()
        if code != 250:
            probs.append("NOOP in plaintext: %d" % code)
    srv.settled()
    opened, execd = key_openers(trace)
    if not any(p.startswith("smtpd") for p in execd):
        return ["strace saw no smtpd start; its log:\n" + open(trace, errors="replace").read()[-2000:]]
    if opened:
        probs.append("a plaintext session opened the key: %s" % opened)
    if any("tlsd" in p for p in execd):
        probs.append("a plaintext session started dopis-tlsd: %s" % sorted(execd))
    with smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=20) as s:
        s.starttls(context=client_context())
        s.ehlo()
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@client.test", ALICE, "key"
        msg.set_content("through dopis-tlsd\n")
        refused = s.send_message(msg)
        if refused:
            probs.append("refused: %r" % refused)
    srv.settled()
    opened, execd = key_openers(trace)
    if not opened:
        probs.append("no process opened the key in a STARTTLS session")
    for pid, p in opened.items():
        if "tlsd" not in p:
            probs.append("process %s (%s) opened the key; only dopis-tlsd may" % (pid, p))
    got = T.maildir_messages(srv.tmp, ALICE)
    if len(got) != 1:
        probs.append("%d messages delivered, expected 1" % len(got))
    elif "with cipher " not in " ".join(got[0].get_all("Received", [])):
        probs.append("no cipher in the Received line: %r" % got[0].get_all("Received"))
    return probs


def run(name, mode, fn, conf=None, wrap=None):
    """Runs fn(srv) against a fresh server; the check "tls-NAME" also
    fails on a sanitizer report in smtpd's stderr, and on any file left
    in a Maildir's or the queue's tmp/."""
    def checked():
        srv = Server(name, mode, conf, wrap)
        try:
            p = list(fn(srv) or [])
        finally:
            p_close = srv.close()
            log = srv.log()
            STDERRS.append((name, log))
        p += p_close
        rep = T.sanitizer_report(log) if SANITIZED else ""
        if rep:
            p.append("sanitizer report on smtpd's stderr:\n" + rep)
        p += T.maildir_problems(srv.tmp) + T.queue_problems(srv.tmp)
        if p:
            p.append("server log (last lines):\n" + "\n".join(
                "  " + l for l in log.splitlines()[-12:]))
        return p
    R.run("tls-" + name, checked)


def test_log_no_password():
    probs = []
    secrets = list(PASSWORDS)
    for u, pw in ((ALICE, ALICE_PW), (BOB, BOB_PW)):
        secrets.append(auth_plain(u, pw))
        secrets.append(base64.b64encode(pw.encode()).decode())
    if not STDERRS:
        return ["no server log was captured"]
    for name, log in STDERRS:
        for sec in secrets:
            if sec in log:
                probs.append("%s: the log holds %r" % (name, sec))
    return probs


def main():
    T.fresh_dir(BASE)
    try:
        make_pki()
        make_passwd()
    except Exception as e:
        why = str(e)
        R.run("tls-setup", lambda: [why])
        R.exit()
    run("ehlo-starttls", "smtp", test_ehlo_starttls)
    run("swaks-starttls-auth-plain", "smtp", test_swaks_plain)
    run("swaks-starttls-auth-login", "smtp", test_swaks_login)
    run("swaks-submissions", "submissions", test_swaks_submissions)
    run("smtplib-submission", "submission", test_smtplib_submission)
    run("smtp-relay-needs-auth", "smtp", test_smtp_relay_needs_auth)
    run("restricted-user", "submission", test_restricted_user)
    run("smtplib-submissions-big", "submissions", test_smtplib_submissions_big,
        {"max_message_size": "10000000"})
    run("openssl-s_client", "smtp", test_openssl_s_client)
    run("bad-key", "smtp", test_bad_key, {"tls_key": MISSING_KEY})
    run("auth-failures", "smtp", test_auth_failures)
    run("starttls-injection", "smtp", test_starttls_injection)
    run("close-notify-starttls", "smtp", test_close_notify)
    run("close-notify-submissions", "submissions", test_close_notify)
    run("key-in-tlsd-only", "smtp", test_key_in_tlsd_only,
        wrap=["strace", "-f", "-qq", "-e", "trace=execve,openat", "-o", "$TMP/strace.log"])
    R.run("tls-log-no-password", test_log_no_password)
    R.exit()


if __name__ == "__main__":
    main()
