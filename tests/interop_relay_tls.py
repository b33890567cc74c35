#!/usr/bin/python3
"""Interop: the relay's TLS (STARTTLS, RFC 3207) and its AUTH PLAIN to a
smarthost (RFC 4954), against real peers on loopback.

A throwaway CA and one server certificate (mx.tls.test, mx.broken.test
and IP 127.0.0.32) are made with the openssl command into the test's
work directory (never committed).  The peers are Python's aiosmtpd,
offering STARTTLS (tls_context), one of them requiring AUTH inside TLS
(authenticator, auth_require_tls, auth_required), and one aiosmtpd whose
STARTTLS answers 220 and then sends garbage and closes; each records
whether the message came inside TLS.  DNS is interop_relay.py's dnsmasq
with the hosts below added; mail goes in through bin/deliver; then
bin/relay runs (DOPIS_RELAY_PORT=2525) and the test checks what the
peers got, the relay's log (tls=, cipher=, verify=, reason=), and the
queue's state records.

Checked: delivered encrypted with verify=ok when tls_ca_file names the
test CA; verify=failed (reason logged) and still delivered encrypted
with the system's CA store; a wrong name is verify=failed without a
second connection; a broken handshake gets the host one plain retry,
remembered for the pass (a second domain on that host gets no
STARTTLS); a peer without STARTTLS gets plain text (tls=none); the
smarthost gets AUTH PLAIN inside verified TLS (delivered), a wrong
password is deferred (535 in the queue, 4.7.8, no bounce), an
unverified smarthost never sees the password, smarthost_tls = yes
defers rather than send in clear; the password (plain or base64) is in
no log line and no queue file; bad credentials settings exit 78.

Run by tests/run.py once per build (inside "unshare -n"); alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_relay_tls.py
"""

import base64
import logging
import os
import re
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_relay as IR  # noqa: E402
import dopistest as T  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, AuthResult  # noqa: E402

# aiosmtpd logs every failed handshake (the tests make several) with a
# traceback, and a deprecation of its own
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

R = T.Results()
BASE = os.path.join(T.WORK, IR.PASS, "interop_relay_tls")
PKI = os.path.join(BASE, "pki")
CA = os.path.join(PKI, "ca.pem")
PORT = IR.PORT

SMART_IP = "127.0.0.32"
NOAUTH_IP = "127.0.0.34"       # a smarthost without AUTH, not named in the certificate
USER = "relay-user@isp.test"
PASSWORD = "sm4rt-host pa55 Wq9"
WRONG = "not-the-password-Zr3"

HOSTS = {
    "mx.tls.test": "127.0.0.30",
    "mx.wrongname.test": "127.0.0.30",    # the same peer: not in its certificate
    "mx.broken.test": "127.0.0.31",
    "mx.plain.test": "127.0.0.33",
    "mx.inject.test": "127.0.0.35",
}
MX = [
    ("tls.test", "mx.tls.test", 10),
    ("wrongname.test", "mx.wrongname.test", 10),
    ("broken.test", "mx.broken.test", 10),
    ("broken2.test", "mx.broken.test", 10),
    ("plain.test", "mx.plain.test", 10),
    ("inject.test", "mx.inject.test", 10),
]


# ---------------------------------------------------------------- PKI

def make_pki():
    """A CA and a server certificate it signs (P-256 keys), and a CA that
    signed nothing here."""
    T.make_pki(PKI, "mx.tls.test", dns=["mx.tls.test", "mx.broken.test", "mx.inject.test"],
               ips=[SMART_IP], ca_name="dopis throwaway relay test CA", other_ca=True)


def server_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(PKI, "server.pem"), os.path.join(PKI, "server.key"))
    return ctx


# ---------------------------------------------------------------- peers

class TLSPeer:
    """aiosmtpd on ip:PORT: tls offers STARTTLS; broken answers it with
    220 and then garbage; inject writes a second reply behind that 220,
    in the same write, before TLS; auth requires AUTH (inside TLS) with
    USER and PASSWORD.  Records the messages (with whether they came inside TLS),
    the STARTTLS commands and the AUTH attempts."""

    def __init__(self, ip, name, tls=True, broken=False, auth=False, inject=False):
        self.messages = []
        self.starttls = 0
        self.auths = []
        self.sessions = 0
        peer = self

        class S(SMTP):
            async def smtp_EHLO(self, arg):
                peer.sessions += 1
                return await super().smtp_EHLO(arg)

            async def smtp_STARTTLS(self, arg):
                peer.starttls += 1
                if inject:
                    orig = self.push

                    async def push(status):
                        self.push = orig
                        await orig(status + "\r\n250 2.0.0 injected in plain text")
                    self.push = push
                if not broken:
                    return await super().smtp_STARTTLS(arg)
                await self.push("220 2.0.0 Ready to start TLS")
                self.transport.write(b"this is no TLS record at all\r\n" * 4)
                self.transport.close()

        def authenticator(server, session, envelope, mechanism, data):
            peer.auths.append({"mechanism": mechanism, "login": data.login,
                               "password": data.password,
                               "tls": server._tls_protocol is not None})
            ok = data.login == USER.encode() and data.password == PASSWORD.encode()
            return AuthResult(success=ok, handled=False)   # aiosmtpd says 535

        kw = {"enable_SMTPUTF8": True}
        if tls:
            kw["tls_context"] = server_context()
        if auth:
            kw.update(authenticator=authenticator, auth_require_tls=True, auth_required=True)

        class C(Controller):
            def factory(self):
                return S(self.handler, **self.SMTP_kwargs)

        self.ctl = C(self, hostname=ip, port=PORT, server_hostname=name,
                     ready_timeout=10, **kw)
        self.ctl.start()

    def reset(self):
        self.messages.clear()
        self.auths.clear()
        self.starttls = 0
        self.sessions = 0

    async def handle_DATA(self, server, session, envelope):
        version = None
        if session.ssl is not None:
            obj = session.ssl.get("ssl_object") if isinstance(session.ssl, dict) else None
            version = obj.version() if obj is not None else "TLS"
        self.messages.append({"from": envelope.mail_from, "rcpts": list(envelope.rcpt_tos),
                              "data": envelope.original_content, "tls": version})
        return "250 2.0.0 Ok: queued"

    def stop(self):
        self.ctl.stop()


PEERS = []


# ---------------------------------------------------------------- helpers

def setup(name, conf=None, password=None):
    """A fresh test directory; IR's helpers (deliver, relay, infos) work
    on it.  password: written to conf/smarthost-password (mode 600)."""
    tmp = os.path.join(BASE, name)
    c = {"max_connections": "20", "timeout_connect": "5", "timeout_greeting": "10",
         "timeout_mail": "10", "timeout_rcpt": "10", "timeout_data": "10",
         "timeout_data_block": "10", "timeout_dot": "10"}
    c.update(conf or {})
    IR.TMP = tmp
    IR.CONF = T.setup(tmp, IR.DELIVER, conf=c)
    if password is not None:
        path = os.path.join(IR.CONF, "smarthost-password")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    for p in PEERS:
        p.reset()
    return tmp


def smart_conf(**kw):
    c = {"smarthost": "%s:%d" % (SMART_IP, PORT), "smarthost_user": USER,
         "smarthost_password_file": "smarthost-password"}
    c.update(kw)
    return c


def relay_run():
    """bin/relay with the test's log kept in the test's directory."""
    rc, err = IR.relay()
    with open(os.path.join(IR.TMP, "relay.stderr"), "a") as f:
        f.write(err)
    return rc, err


def lines(err, *words):
    """The log lines holding every word."""
    return [l for l in err.splitlines() if all(w in l for w in words)]


def delivered_line(err, rcpt):
    got = lines(err, "rcpt=%s " % rcpt, "status=delivered")
    return got[0] if len(got) == 1 else None


def field(line, key):
    m = re.search(r'(?:^| )%s=("(?:[^"\\]|\\.)*"|\S*)' % re.escape(key), line or "")
    if not m:
        return None
    v = m.group(1)
    return v[1:-1] if v.startswith('"') else v


check = IR.check


def check_encrypted(line, verify, probs):
    check(line is not None, "no delivered line", probs)
    if line is None:
        return
    check(re.fullmatch(r"TLSv1\.[23]", field(line, "tls") or ""), "tls= in %r" % line, probs)
    check((field(line, "cipher") or "") not in ("", "unknown"), "cipher= in %r" % line, probs)
    check(field(line, "verify") == verify, "verify=%s expected in %r" % (verify, line), probs)


def password_leaks(err):
    """Where the password shows, plain or in base64 (as in AUTH PLAIN)."""
    secrets = [PASSWORD.encode(), WRONG.encode(),
               base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()),
               base64.b64encode(b"\0" + USER.encode() + b"\0" + WRONG.encode()),
               base64.b64encode(PASSWORD.encode())]
    out = []
    if any(s in err.encode() for s in secrets):
        out.append("the relay's log holds the password")
    for d, _, fs in os.walk(os.path.join(IR.TMP, "queue")):
        for f in fs:
            with open(os.path.join(d, f), "rb") as fh:
                data = fh.read()
            if any(s in data for s in secrets):
                out.append("%s holds the password" % os.path.join(d, f))
    return out


# ---------------------------------------------------------------- tests

def t_verified():
    """tls_ca_file = the test CA: STARTTLS, verify=ok, the peer gets the
    message inside TLS after a second EHLO."""
    setup("verified", {"tls_ca_file": CA})
    IR.deliver("alice@example.org", ["v@tls.test"], IR.message("tls verified"))
    rc, err = relay_run()
    probs = []
    check(rc == 0, "relay exited %d" % rc, probs)
    m = TLS.messages
    check(len(m) == 1 and m[0]["tls"] and m[0]["rcpts"] == ["v@tls.test"],
          "peer got %r" % [(x["rcpts"], x["tls"]) for x in m], probs)
    check(TLS.starttls == 1 and TLS.sessions == 2,
          "%d STARTTLS, %d EHLO (1 and 2 expected)" % (TLS.starttls, TLS.sessions), probs)
    line = delivered_line(err, "v@tls.test")
    check_encrypted(line, "ok", probs)
    if m and m[0]["tls"] and line:
        check(field(line, "tls") == m[0]["tls"], "relay says %s, peer %s" % (field(line, "tls"), m[0]["tls"]), probs)
    check(lines(err, "event=tls ", "host=mx.tls.test[127.0.0.30]", "verify=ok"),
          "no event=tls verify=ok line", probs)
    check(T.queue_count(IR.TMP) == 0, "queue not empty", probs)
    return probs + ([] if not probs else ["log:\n" + err])


SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def t_unverified():
    """The system's CA store (the default tls_ca_file; another CA's file
    where Debian's ca-certificates is missing) does not know the test
    CA: the chain fails, the host gets a second connection without the
    check (logged, with the reason), the message goes encrypted,
    verify=failed."""
    setup("unverified", {} if os.path.exists(SYSTEM_CA) else
          {"tls_ca_file": os.path.join(PKI, "other-ca.pem")})
    IR.deliver("alice@example.org", ["u@tls.test"], IR.message("tls unverified"))
    rc, err = relay_run()
    probs = []
    m = TLS.messages
    check(len(m) == 1 and m[0]["tls"], "peer got %r" % [(x["rcpts"], x["tls"]) for x in m], probs)
    line = delivered_line(err, "u@tls.test")
    check_encrypted(line, "failed", probs)
    retry = lines(err, "event=tls-failed", "host=mx.tls.test[127.0.0.30]", "retry=unverified")
    check(len(retry) == 1 and "certificate verification failed" in (field(retry[0], "reason") or ""),
          "no tls-failed retry=unverified line with the reason", probs)
    ev = lines(err, "event=tls ", "verify=failed")
    check(len(ev) == 1 and field(ev[0], "reason"), "no event=tls verify=failed reason=", probs)
    check(not lines(err, "retry=plain"), "went plain", probs)
    check(not lines(err, "event=tls-no-ca"), "the CA file was not loaded", probs)
    check(T.queue_count(IR.TMP) == 0, "queue not empty", probs)
    return probs + ([] if not probs else ["log:\n" + err])


def t_ca_file_unusable():
    """A tls_ca_file that is missing (logged once: tls-no-ca), or that
    libtls cannot use: the mail still goes, encrypted, verify=failed."""
    probs = []
    for name, ca in [("ca_missing", "/nonexistent/ca.pem"), ("ca_garbage", "garbage.pem")]:
        setup(name, {"tls_ca_file": ca})
        with open(os.path.join(IR.CONF, "garbage.pem"), "w") as f:
            f.write("this is no certificate\n")
        IR.deliver("alice@example.org", ["g@tls.test"], IR.message(name))
        rc, err = relay_run()
        m = TLS.messages
        check(len(m) == 1 and m[0]["tls"], "%s: peer got %r" % (name, [(x["rcpts"], x["tls"]) for x in m]), probs)
        line = delivered_line(err, "g@tls.test")
        check(line and field(line, "verify") == "failed", "%s: delivered line %r" % (name, line), probs)
        if name == "ca_missing":
            check(len(lines(err, "event=tls-no-ca", "/nonexistent/ca.pem")) == 1, "no tls-no-ca line", probs)
        if probs:
            probs.append("log:\n" + err)
    return probs


def t_wrong_name():
    """A trusted chain for another name: verify=failed with the name as
    the reason, on the one connection."""
    setup("wrongname", {"tls_ca_file": CA})
    IR.deliver("alice@example.org", ["w@wrongname.test"], IR.message("wrong name"))
    rc, err = relay_run()
    probs = []
    m = TLS.messages
    check(len(m) == 1 and m[0]["tls"], "peer got %r" % [(x["rcpts"], x["tls"]) for x in m], probs)
    check_encrypted(delivered_line(err, "w@wrongname.test"), "failed", probs)
    ev = lines(err, "event=tls ", "verify=failed")
    check(len(ev) == 1 and "mx.wrongname.test" in (field(ev[0], "reason") or ""),
          "no verify=failed with the name as reason", probs)
    check(TLS.sessions == 2 and not lines(err, "event=tls-failed"),
          "%d EHLO, retries: %s" % (TLS.sessions, lines(err, "event=tls-failed")), probs)
    return probs + ([] if not probs else ["log:\n" + err])


def t_broken_handshake():
    """220 to STARTTLS, then garbage: the host gets one plain retry and
    the mail; a second domain on the same host in the same pass gets no
    STARTTLS (remembered)."""
    setup("broken", {"tls_ca_file": CA, "max_connections": "1"})
    IR.deliver("alice@example.org", ["b@broken.test"], IR.message("broken one"))
    IR.deliver("alice@example.org", ["c@broken2.test"], IR.message("broken two"))
    rc, err = relay_run()
    probs = []
    m = BROKEN.messages
    check(sorted(r for x in m for r in x["rcpts"]) == ["b@broken.test", "c@broken2.test"],
          "peer got %r" % [x["rcpts"] for x in m], probs)
    check(all(not x["tls"] for x in m), "TLS on the broken peer?", probs)
    check(BROKEN.starttls == 1, "%d STARTTLS (1 expected: remembered)" % BROKEN.starttls, probs)
    retry = lines(err, "event=tls-failed", "host=mx.broken.test[127.0.0.31]", "retry=plain")
    check(len(retry) == 1 and field(retry[0], "reason"), "no tls-failed retry=plain line", probs)
    for r in ("b@broken.test", "c@broken2.test"):
        line = delivered_line(err, r)
        check(line and field(line, "tls") == "none" and field(line, "verify") == "none"
              and field(line, "cipher") is None, "%s: %r" % (r, line), probs)
    check(T.queue_count(IR.TMP) == 0, "queue not empty", probs)
    return probs + ([] if not probs else ["log:\n" + err])


def t_injection():
    """A reply written behind STARTTLS's 220 in plain text (RFC 3207
    section 6) is dropped, never read as a reply inside TLS: the
    message goes inside TLS as usual."""
    setup("injection", {"tls_ca_file": CA})
    IR.deliver("alice@example.org", ["i@inject.test"], IR.message("injection"))
    rc, err = relay_run()
    probs = []
    m = INJECT.messages
    check(len(m) == 1 and m[0]["tls"], "peer got %r" % [(x["rcpts"], x["tls"]) for x in m], probs)
    check_encrypted(delivered_line(err, "i@inject.test"), "ok", probs)
    check(INJECT.starttls == 1 and not lines(err, "host-failed") and not lines(err, "tls-failed"),
          "%d STARTTLS, failures logged" % INJECT.starttls, probs)
    return probs + ([] if not probs else ["log:\n" + err])


def t_plain_peer():
    """No STARTTLS offered: plain text, tls=none."""
    setup("plain", {"tls_ca_file": CA})
    IR.deliver("alice@example.org", ["p@plain.test"], IR.message("plain"))
    rc, err = relay_run()
    probs = []
    check(len(PLAIN.messages) == 1 and not PLAIN.messages[0]["tls"], "peer got %r" % PLAIN.messages, probs)
    line = delivered_line(err, "p@plain.test")
    check(line and field(line, "tls") == "none", "delivered line %r" % line, probs)
    check(not lines(err, "event=tls"), "TLS events for a plain peer", probs)
    return probs + ([] if not probs else ["log:\n" + err])


def t_smarthost_auth():
    """smarthost with credentials: STARTTLS, verified, AUTH PLAIN inside
    TLS, delivered; no password in the log or the queue."""
    setup("auth_ok", smart_conf(tls_ca_file=CA), password=PASSWORD)
    IR.deliver("alice@example.org", ["a@anywhere.test", "b@nx.test"], IR.message("via smarthost"))
    rc, err = relay_run()
    probs = []
    check(rc == 0, "relay exited %d" % rc, probs)
    au = SMART.auths
    check(len(au) == 1 and au[0]["mechanism"] == "PLAIN" and au[0]["tls"] and
          au[0]["login"] == USER.encode() and au[0]["password"] == PASSWORD.encode(),
          "AUTH seen: %r" % [(a["mechanism"], a["login"], a["tls"]) for a in au], probs)
    m = SMART.messages
    check(len(m) == 1 and m[0]["tls"] and sorted(m[0]["rcpts"]) == ["a@anywhere.test", "b@nx.test"],
          "smarthost got %r" % [(x["rcpts"], x["tls"]) for x in m], probs)
    for r in ("a@anywhere.test", "b@nx.test"):
        check_encrypted(delivered_line(err, r), "ok", probs)
    check(T.queue_count(IR.TMP) == 0, "queue not empty", probs)
    probs += password_leaks(err)
    return probs + ([] if not probs else ["log:\n" + err])


def t_smarthost_wrong_password():
    """535 to AUTH: deferred (status 4.7.8, the 535 reply in the queue's
    state record), never bounced, no password anywhere."""
    setup("auth_wrong", smart_conf(tls_ca_file=CA), password=WRONG)
    IR.deliver("alice@example.org", ["w@anywhere.test"], IR.message("wrong password"))
    rc, err = relay_run()
    probs = []
    check(rc == 0, "relay exited %d" % rc, probs)
    check(len(SMART.auths) == 1 and SMART.auths[0]["tls"], "AUTH seen: %d" % len(SMART.auths), probs)
    check(not SMART.messages, "the smarthost got mail", probs)
    st = IR.rcpt_states().get("w@anywhere.test")
    check(st and st["state"] == "pending" and st["status"] == "4.7.8" and "535" in st["text"],
          "queue state %r" % st, probs)
    line = lines(err, "rcpt=w@anywhere.test", "status=deferred")
    check(len(line) == 1 and "535" in line[0], "no deferred line with the 535", probs)
    check(not IR.mails("alice@example.org"), "a bounce was sent", probs)
    probs += password_leaks(err)
    return probs + ([] if not probs else ["log:\n" + err])


def t_smarthost_unverified():
    """Credentials, but the smarthost's certificate does not verify
    (system CA store): deferred, and the password is never sent."""
    setup("auth_unverified", smart_conf(), password=PASSWORD)
    IR.deliver("alice@example.org", ["n@anywhere.test"], IR.message("unverified smarthost"))
    rc, err = relay_run()
    probs = []
    check(not SMART.auths, "the password was sent: %d AUTH" % len(SMART.auths), probs)
    check(not SMART.messages, "the smarthost got mail", probs)
    st = IR.rcpt_states().get("n@anywhere.test")
    check(st and st["state"] == "pending" and "not verified" in st["text"], "queue state %r" % st, probs)
    check(not lines(err, "retry=plain") and not lines(err, "retry=unverified"),
          "retried: %s" % lines(err, "retry="), probs)
    probs += password_leaks(err)
    return probs + ([] if not probs else ["log:\n" + err])


def t_smarthost_tls_required():
    """smarthost_tls = yes at a smarthost without STARTTLS: deferred with
    a clear error, nothing sent in clear; = no: plain."""
    setup("tls_required", {"smarthost": "127.0.0.33:%d" % PORT, "smarthost_tls": "yes"})
    IR.deliver("alice@example.org", ["r@anywhere.test"], IR.message("tls required"))
    rc, err = relay_run()
    probs = []
    check(not PLAIN.messages, "sent in clear: %r" % PLAIN.messages, probs)
    st = IR.rcpt_states().get("r@anywhere.test")
    check(st and st["state"] == "pending" and "STARTTLS" in st["text"] and "smarthost_tls" in st["text"],
          "queue state %r" % st, probs)
    # yes, with a smarthost offering TLS whose chain fails: encrypted anyway
    setup("tls_required_ok", {"smarthost": "%s:%d" % (NOAUTH_IP, PORT), "smarthost_tls": "yes"})
    IR.deliver("alice@example.org", ["s@anywhere.test"], IR.message("tls required ok"))
    rc, err2 = relay_run()
    check(len(SMART_NOAUTH.messages) == 1 and SMART_NOAUTH.messages[0]["tls"],
          "smarthost_tls = yes: got %r" % SMART_NOAUTH.messages, probs)
    check_encrypted(delivered_line(err2, "s@anywhere.test"), "failed", probs)
    # verify: the same smarthost is deferred
    # verify: the same smarthost is deferred (its name is not in the
    # certificate the test CA signed)
    setup("tls_required_verify", {"smarthost": "%s:%d" % (NOAUTH_IP, PORT), "smarthost_tls": "verify",
                                  "tls_ca_file": CA})
    IR.deliver("alice@example.org", ["t@anywhere.test"], IR.message("tls verify"))
    rc, err3 = relay_run()
    st = IR.rcpt_states().get("t@anywhere.test")
    check(not SMART_NOAUTH.messages and st and st["state"] == "pending" and "not verified" in st["text"],
          "smarthost_tls = verify: got %r, state %r" % (SMART_NOAUTH.messages, st), probs)
    return probs + ([] if not probs else ["logs:\n" + err + err2 + err3])


def t_config():
    """smarthost_user without smarthost_password_file, a missing
    password file, or a bad smarthost_tls: exit 78 (EX_CONFIG)."""
    probs = []
    for name, conf, pw in [
            ("cfg_nofile", {"smarthost": "%s:%d" % (SMART_IP, PORT), "smarthost_user": USER}, None),
            ("cfg_missing", smart_conf(), None),
            ("cfg_badtls", {"smarthost": "%s:%d" % (SMART_IP, PORT), "smarthost_tls": "maybe"}, None),
            ("cfg_nosmarthost", {"smarthost_tls": "yes"}, None)]:
        setup(name, conf, password=pw)
        rc, err = relay_run()
        check(rc == 78 and "config-error" in err, "%s: exit %d: %s" % (name, rc, err), probs)
    return probs


def main():
    global TLS, BROKEN, PLAIN, SMART, SMART_NOAUTH, INJECT
    T.fresh_dir(BASE)
    if not os.access(IR.RELAY, os.X_OK):
        print("FAIL interop_relay_tls: %s is missing" % IR.RELAY)
        return 1
    make_pki()
    IR.HOSTS.update(HOSTS)
    IR.MX.extend(MX)
    procs = []
    try:
        procs.append(IR.start_dnsmasq(BASE))
        TLS = TLSPeer("127.0.0.30", "mx.tls.test")
        BROKEN = TLSPeer("127.0.0.31", "mx.broken.test", broken=True)
        SMART = TLSPeer(SMART_IP, "smart.test", auth=True)
        PLAIN = TLSPeer("127.0.0.33", "mx.plain.test", tls=False)
        SMART_NOAUTH = TLSPeer(NOAUTH_IP, "smart2.test")
        INJECT = TLSPeer("127.0.0.35", "mx.inject.test", inject=True)
        PEERS.extend([TLS, BROKEN, SMART, PLAIN, SMART_NOAUTH, INJECT])
        tests = [(n[2:], f) for n, f in sorted(globals().items()) if n.startswith("t_")]
        for name, fn in tests:
            R.run("relay_tls_" + name, fn)
    finally:
        for p in PEERS:
            p.stop()
        for p in procs:
            T.stop(p)
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
