#!/usr/bin/python3
"""Interop: the relay against real peers on loopback.

DNS is dnsmasq on 127.0.0.53 (udns finds it through NAMESERVERS),
serving MX, A, null MX and NXDOMAIN for test domains; the destinations
are Python's aiosmtpd (in this process, on 127.0.0.x:2525, recording
every envelope, the data and the raw bytes on the wire) and Postfix's
smtp-sink (unpacked by tests/relay-peers.sh).  Mail goes in through
bin/smtpd (a local client on a pipe may relay) or bin/deliver, or, for
the DSN parameters, as a hand-written queue entry; then bin/relay runs
with DOPIS_RELAY_PORT=2525 and DOPIS_NOW for its clock, and the test
checks what the peers received, byte for byte, the queue's state
records, and the bounces (RFC 3464, read with Python's email module)
in the sender's Maildir.

Run by tests/run.py once per build (inside "unshare -n"); alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_relay.py
"""

import asyncio
import email
import email.policy
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS)
import dopistest as T  # noqa: E402

# run.py passes the build in the environment; by hand: ROOT BINDIR
ARGS = sys.argv[1:]
if len(ARGS) >= 2 and os.path.isdir(ARGS[0]) and os.path.isdir(ARGS[1]):
    ARGS = ARGS[2:]
    os.environ.setdefault("DOPIS_SMTPD", os.path.join(sys.argv[2], "smtpd"))
    os.environ.setdefault("DOPIS_DELIVER", os.path.join(sys.argv[2], "deliver"))
    os.environ.setdefault("DOPIS_PASS", "asan" if "asan" in sys.argv[2] else "smtpd")
    os.environ.setdefault("DOPIS_SANITIZED", "1" if "asan" in sys.argv[2] else "0")
PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
RELAY = os.path.join(os.path.dirname(SMTPD), "relay")
PEERS = os.path.join(T.WORK, "peers")
SINK = os.path.join(PEERS, "usr/sbin/smtp-sink")
NS = "127.0.0.53"
PORT = 2525
HOST = T.HOSTNAME           # our hostname: mx.example.org
NOW = int(time.time())
DAY = 86400

# name -> address; every host a test talks to
HOSTS = {
    "mx.good.test": "127.0.0.2",
    "mx.multi.test": "127.0.0.3",
    "mx.temp.test": "127.0.0.4",
    "mx.mixed.test": "127.0.0.5",
    "dead.backup.test": "127.0.0.6",   # nothing listens: refused
    "implicit.test": "127.0.0.7",      # no MX: the domain's A
    "mx.hang.test": "127.0.0.8",
    "mx.drop.test": "127.0.0.9",
    "mx.small.test": "127.0.0.10",
    "mx.greet.test": "127.0.0.11",
    "mx.sink.test": "127.0.0.12",
    "me.self.test": "127.0.0.1",       # an address of this host
    "mx.helo.test": "127.0.0.13",
    "busy.greet4.test": "127.0.0.15",  # greets with 4xx
    # IPv6: V6NET is routed to lo as local (AnyIP, see v6_setup()) but is
    # no interface address, as 127.0.0.2 is not: ::1 would be ourselves
    "mx.v6.test": "fd00:d0b1::2",              # AAAA only, a peer
    "mx.dual.test": "127.0.0.16,fd00:d0b1::3", # AAAA refused, A a peer
    "mx.loop6.test": "::1",                    # AAAA of this host
}
MX = [
    ("good.test", "mx.good.test", 10),
    ("good2.test", "mx.good.test", 10),
    ("multi.test", "mx.multi.test", 10),
    ("temp.test", "mx.temp.test", 10),
    ("mixed.test", "mx.mixed.test", 10),
    ("backup.test", "dead.backup.test", 10),
    ("backup.test", "mx.good.test", 20),
    ("hang.test", "mx.hang.test", 10),
    ("drop.test", "mx.drop.test", 10),
    ("small.test", "mx.small.test", 10),
    ("greet.test", "mx.greet.test", 10),
    ("sink.test", "mx.sink.test", 10),
    ("loop.test", HOST, 10),                # MX names us
    ("loop.test", "mx.good.test", 20),      # less preferred: never used
    ("self.test", "me.self.test", 10),
    ("helo.test", "mx.helo.test", 10),
    ("greet4.test", "busy.greet4.test", 10),
    ("greet4.test", "mx.good.test", 20),
    ("v6.test", "mx.v6.test", 10),
    ("dual.test", "mx.dual.test", 10),
    ("loop6.test", "mx.loop6.test", 10),
]
V6NET = "fd00:d0b1::/64"
V6OK = False         # v6_setup() routed V6NET to lo
BLACKHOLE = "127.0.0.54"   # a "DNS server" that reads queries, never answers

R = T.Results()
TMP = None           # the running test's directory
CONF = None


# ---------------------------------------------------------------- DNS

def dns_query(name, qtype=1, server=NS, timeout=1.0):
    """A minimal DNS query; returns the rcode, or None without answer."""
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, 53))
        data, _ = s.recvfrom(4096)
        return data[3] & 15
    except OSError:
        return None
    finally:
        s.close()


class Blackhole:
    """A UDP socket on ip:53 that reads every query and answers none:
    a resolver that times out.  Counts what it got."""

    def __init__(self, ip):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 53))
        self.sock.settimeout(0.2)
        self.queries = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except socket.timeout:
                pass
            except OSError:
                return

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.sock.close()


def v6_setup():
    """Routes V6NET to lo as local addresses (AnyIP), only inside a
    network namespace that has nothing but lo: the peers there bind
    with IP_FREEBIND, and the relay does not see them as its own."""
    global V6OK
    if [n for _, n in socket.if_nameindex()] != ["lo"]:
        return
    p = subprocess.run(["ip", "-6", "route", "replace", "local", V6NET, "dev", "lo"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    V6OK = p.returncode == 0


def start_dnsmasq(workdir):
    args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
            "--listen-address=" + NS, "--bind-interfaces", "--port=53",
            "--local=/test/", "--user=root", "--pid-file=",
            "--log-facility=" + os.path.join(workdir, "dnsmasq.log"),
            "--mx-host=nullmx.test,.,0"]
    for name, ip in HOSTS.items():
        args.append("--host-record=%s,%s" % (name, ip))
    for dom, host, pref in MX:
        args.append("--mx-host=%s,%s,%d" % (dom, host, pref))
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError("dnsmasq exited: %s" % p.stderr.read().decode())
        if dns_query("mx.good.test") == 0:
            return p
        time.sleep(0.05)
    raise RuntimeError("dnsmasq does not answer")


# ---------------------------------------------------------------- peers

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP  # noqa: E402


class RawSMTP(SMTP):
    """aiosmtpd's server, also keeping the raw bytes the client sent."""

    def __init__(self, peer, *a, **kw):
        super().__init__(*a, **kw)
        self._peerobj = peer
        self._raw = bytearray()
        peer.wire.append(self._raw)

    def data_received(self, data):
        self._raw.extend(data)
        super().data_received(data)


class Peer:
    """An aiosmtpd server on ip:PORT that records what it is given.
    rcpt_reply: answer every RCPT so; reject: addresses answered 550;
    hang_rcpt: seconds to sit on each RCPT; data_reply: answer the data
    so; smtputf8, size: what EHLO offers; name: its greeting name."""

    def __init__(self, ip, name="peer.test", rcpt_reply=None, reject=(),
                 hang_rcpt=0, data_reply=None, smtputf8=True, size=None):
        self.ip = ip
        self.rcpt_reply = rcpt_reply
        self.reject = set(reject)
        self.hang_rcpt = hang_rcpt
        self.data_reply = data_reply
        self.messages = []
        self.wire = []
        self.sessions = 0
        kw = {"enable_SMTPUTF8": smtputf8}
        if size:
            kw["data_size_limit"] = size
        peer = self

        class C(Controller):
            def factory(self):
                return RawSMTP(peer, self.handler, **self.SMTP_kwargs)

            def _create_server(self):
                if ":" not in ip:
                    return super()._create_server()
                # an address of V6NET is no interface address: bind freely
                s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_IP, 15, 1)    # IP_FREEBIND
                s.bind((ip, PORT))
                return self.loop.create_server(self._factory_invoker, sock=s)

        self.ctl = C(self, hostname=ip, port=PORT, server_hostname=name,
                     ready_timeout=10, **kw)
        self.ctl.start()

    def reset(self):
        self.messages.clear()
        self.wire.clear()
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        self.sessions += 1
        session.host_name = hostname
        return "250 %s" % server.hostname

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.hang_rcpt:
            await asyncio.sleep(self.hang_rcpt)
        if address in self.reject:
            return "550 5.1.1 <%s>: no such user here" % address
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({
            "peer": session.peer, "from": envelope.mail_from,
            "mail_options": list(envelope.mail_options),
            "rcpts": list(envelope.rcpt_tos), "data": envelope.original_content})
        return self.data_reply or "250 2.0.0 Ok: queued"

    def stop(self):
        self.ctl.stop()


class Sink:
    """Postfix's smtp-sink on ip:PORT, dumping each message to a file."""

    def __init__(self, ip, workdir, opts=()):
        self.dir = os.path.join(workdir, "sink-" + ip)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o777)
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PEERS, "usr/lib/postfix"))
        self.p = subprocess.Popen(
            [SINK, "-u", "nobody", "-h", "sink.test", "-d", os.path.join(self.dir, "%M."),
             *opts, "%s:%d" % (ip, PORT), "100"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection((ip, PORT), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink does not listen on %s" % ip)

    def files(self):
        out = []
        for d, _, fs in os.walk(self.dir):
            out += [os.path.join(d, f) for f in fs]
        return sorted(out)

    def clear(self):
        for f in self.files():
            os.unlink(f)

    def stop(self):
        T.stop(self.p)


# ---------------------------------------------------------------- set-up

def setup(name, conf=None):
    global TMP, CONF
    TMP = os.path.join(T.WORK, PASS, "interop_relay", name)
    c = {"max_connections": "20", "timeout_connect": "5", "timeout_greeting": "10",
         "timeout_mail": "10", "timeout_rcpt": "10", "timeout_data": "10",
         "timeout_data_block": "10", "timeout_dot": "10"}
    c.update(conf or {})
    CONF = T.setup(TMP, DELIVER, conf=c)
    for p in ALL_PEERS:
        p.reset()
    return TMP


def env(now=None, extra=None):
    e = T.base_env(CONF, SANITIZED)
    e.update({"NAMESERVERS": NS, "DOPIS_RELAY_PORT": str(PORT),
              "DOPIS_NOW": str(now or NOW)})
    e.update(extra or {})
    return e


def relay(*args, now=None, timeout=60, extra=None):
    """Runs bin/relay; returns (exit status, stderr text)."""
    p = subprocess.run([RELAY, *args], env=env(now, extra), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    err = p.stderr.decode("utf-8", "replace")
    rep = T.sanitizer_report(err)
    if rep:
        raise AssertionError("sanitizer:\n" + rep)
    return p.returncode, err


def deliver(sender, rcpts, data, now=None):
    """Hands a message to bin/deliver (message on fd 0, envelope on fd 1)."""
    r, w = os.pipe()
    env_ = T.base_env(CONF, SANITIZED)
    p = subprocess.Popen([DELIVER], stdin=subprocess.PIPE, stdout=r,
                         stderr=subprocess.PIPE, env=env_)
    os.close(r)
    rec = b"F" + sender.encode() + b"\0"
    for t in rcpts:
        rec += b"T" + t.encode() + b"\0"
    os.write(w, rec + b"\0")
    p.stdin.write(data)
    p.stdin.close()
    os.write(w, b"Z%d\0" % len(data))
    os.close(w)
    err = p.stderr.read().decode("utf-8", "replace")
    p.wait(30)
    if p.returncode != 0 or T.sanitizer_report(err):
        raise AssertionError("deliver exited %s: %s" % (p.returncode, err))


def smtpd(transcript):
    """Pipes a session into bin/smtpd (a local client: may relay)."""
    p = subprocess.run([SMTPD], input=transcript, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=T.base_env(CONF, SANITIZED), timeout=30)
    return p.stdout.decode("latin-1")


def queue_entry(qid, sender, rcpts, data, params=(), created=None):
    """Writes a queue entry by hand, as deliver would (for the records
    deliver does not write yet: N, O, RET, ENVID).  rcpts: list of
    (address, [extra records])."""
    q = os.path.join(TMP, "queue")
    for d in ("tmp", "mess", "info"):
        os.makedirs(os.path.join(q, d), exist_ok=True)
    with open(os.path.join(q, "mess", qid), "wb") as f:
        f.write(data)
    rec = b"I" + qid.encode() + b"\0F" + sender.encode() + b"\0"
    for p in params:
        rec += b"P" + p.encode() + b"\0"
    rec += b"C%d\0" % (created or NOW)
    for addr, extra in rcpts:
        rec += b"T" + addr.encode() + b"\0"
        for e in extra:
            rec += e.encode() + b"\0"
    with open(os.path.join(q, "info", qid), "wb") as f:
        f.write(rec + b"\0")


def infos():
    """qid -> {"sender", "created", "rcpts": [(addr, state dict)]}."""
    out = {}
    d = os.path.join(TMP, "queue", "info")
    if not os.path.isdir(d):
        return out
    for qid in sorted(os.listdir(d)):
        with open(os.path.join(d, qid), "rb") as f:
            recs = f.read().split(b"\0")
        m = {"rcpts": [], "params": []}
        for r in recs:
            if not r:
                continue
            t, v = chr(r[0]), r[1:].decode("utf-8", "replace")
            if t == "F":
                m["sender"] = v
            elif t == "C":
                m["created"] = int(v)
            elif t == "P":
                m["params"].append(v)
            elif t == "T":
                m["rcpts"].append([v, {"state": "pending", "attempts": 0, "next": 0}])
            elif t == "S":
                f = v.split(" ", 7)
                m["rcpts"][-1][1] = {"state": f[0], "attempts": int(f[1]), "first": int(f[2]),
                                     "next": int(f[3]), "flags": f[4], "status": f[5],
                                     "remote": f[6], "text": f[7]}
        out[qid] = m
    return out


def rcpt_states():
    """address -> state dict, over the whole queue."""
    out = {}
    for m in infos().values():
        for addr, st in m["rcpts"]:
            out[addr] = st
    return out


def mails(addr):
    """The parsed messages in a local Maildir."""
    out = []
    for f in T.maildir_files(T.maildir_of(TMP, addr)):
        with open(f, "rb") as fh:
            out.append(email.message_from_bytes(fh.read(), policy=email.policy.default))
    return out


def dsn_fields(msg):
    """(per-message fields, [per-recipient fields]) of a DSN, after
    checking its RFC 3464 structure; raises AssertionError."""
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", msg.get_param("report-type")
    parts = msg.get_payload()
    assert len(parts) == 3, "%d parts" % len(parts)
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    blocks = parts[1].get_payload()
    assert len(blocks) >= 2, "delivery-status has %d blocks" % len(blocks)
    return blocks[0], blocks[1:], parts[2]


def check(cond, what, probs):
    if not cond:
        probs.append(what)


def message(subject, body=b"Hello.\n", extra=b""):
    return (b"From: Alice <alice@example.org>\nTo: someone\nSubject: " + subject.encode() +
            b"\nMessage-ID: <" + subject.replace(" ", "-").encode() + b"@example.org>\n" +
            extra + b"\n" + body)


# ---------------------------------------------------------------- tests

def t_basic_smtpd():
    """smtpd -> deliver -> queue -> relay -> MX found by DNS -> aiosmtpd:
    the bytes arrive with CRLF, dot-stuffed on the wire, the Received
    header first; the queue is empty afterwards."""
    setup("basic_smtpd")
    body = (b"From: alice@example.org\r\nTo: bob@good.test\r\nSubject: hi\r\n\r\n"
            b"line one\r\n..dotted line\r\n...\r\nlast\r\n")
    out = smtpd(b"EHLO client.test\r\nMAIL FROM:<alice@example.org>\r\n"
                b"RCPT TO:<bob@good.test>\r\nDATA\r\n" + body + b".\r\nQUIT\r\n")
    probs = []
    if "250 2.0.0 Ok" not in out:
        return ["smtpd did not accept: %r" % out]
    check(T.queue_count(TMP) == 1, "queue holds %d, expected 1" % T.queue_count(TMP), probs)
    rc, err = relay()
    check(rc == 0, "relay exited %d: %s" % (rc, err), probs)
    msgs = GOOD.messages
    if len(msgs) != 1:
        return probs + ["peer got %d messages: %s" % (len(msgs), err)]
    m = msgs[0]
    check(m["from"] == "alice@example.org", "MAIL FROM %r" % m["from"], probs)
    check(m["rcpts"] == ["bob@good.test"], "RCPTs %r" % m["rcpts"], probs)
    data = m["data"]
    # SIZE (RFC 1870): the octets with CRLF, without the stuffing dots
    check(m["mail_options"] == ["SIZE=%d" % len(data)],
          "MAIL parameters %r (%d octets)" % (m["mail_options"], len(data)), probs)
    lines = data.split(b"\r\n")
    check(lines[0].startswith(b"Received: from client.test"), "first line %r" % lines[0], probs)
    # unstuffed by aiosmtpd: what the client sent after smtpd's unstuffing
    want = (b"From: alice@example.org\r\nTo: bob@good.test\r\nSubject: hi\r\n\r\n"
            b"line one\r\n.dotted line\r\n..\r\nlast\r\n")
    check(data.endswith(want), "data ends %r" % data[-120:], probs)
    check(b"\n" not in data.replace(b"\r\n", b""), "bare LF in data", probs)
    check(b"\r" not in data.replace(b"\r\n", b""), "bare CR in data", probs)
    wire = bytes(GOOD.wire[0])
    check(b"\r\nline one\r\n..dotted line\r\n...\r\nlast\r\n.\r\n" in wire,
          "wire has no dot-stuffed data: %r" % wire[-200:], probs)
    check(T.queue_count(TMP) == 0, "queue not empty: %s" % T.queue_files(TMP), probs)
    check("status=delivered" in err and "host=mx.good.test[127.0.0.2]" in err,
          "no delivered log line: %s" % err, probs)
    return probs


def t_smuggling():
    """Stored CRs that are not line ends never reach the wire bare, and
    a stored "\\r.\\r" can never end the data: one message arrives, with
    every line ending in CRLF, and the lone CRs turned into line ends."""
    setup("smuggling")
    data = (b"Subject: smuggle\n\nA\r.\rMAIL FROM:<evil@x>\r\nB\r\n.\r\nC\rD\n.\n\r\n..\n"
            b"end without newline")
    deliver("alice@example.org", ["bob@good.test"], data)
    rc, err = relay()
    probs = []
    if len(GOOD.messages) != 1:
        return ["peer got %d messages: %s" % (len(GOOD.messages), err)]
    got = GOOD.messages[0]["data"]
    want = (b"Subject: smuggle\r\n\r\nA\r\n.\r\nMAIL FROM:<evil@x>\r\nB\r\n.\r\nC\r\nD\r\n.\r\n"
            b"\r\n..\r\nend without newline\r\n")
    check(got == want, "peer got %r\nwant %r" % (got, want), probs)
    wire = bytes(GOOD.wire[0])
    start = wire.index(b"DATA\r\n") + 6
    body = wire[start:]
    want_wire = (b"Subject: smuggle\r\n\r\nA\r\n..\r\nMAIL FROM:<evil@x>\r\nB\r\n..\r\nC\r\nD\r\n"
                 b"..\r\n\r\n...\r\nend without newline\r\n.\r\nQUIT\r\n")
    check(body == want_wire, "wire %r\nwant %r" % (body, want_wire), probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    return probs


def t_grouping():
    """Several domains in one run; several recipients of one domain in
    one transaction; two messages to one domain share a connection
    (smtp-sink, which offers PIPELINING and DSN, records each
    transaction's RCPT commands)."""
    setup("grouping")
    SINKP.clear()
    deliver("alice@example.org", ["a@sink.test", "b@sink.test", "c@sink.test", "x@multi.test",
                                  "y@good.test"], message("group one"))
    deliver("alice@example.org", ["d@sink.test"], message("group two"))
    rc, err = relay()
    probs = []
    files = SINKP.files()
    if len(files) != 2:
        return ["smtp-sink got %d messages: %s" % (len(files), err)]
    dumps = []
    for f in files:
        with open(f, "rb") as fh:
            dumps.append(fh.read())
    one = [d for d in dumps if b"group one" in d]
    two = [d for d in dumps if b"group two" in d]
    check(len(one) == 1 and len(two) == 1, "messages not told apart", probs)
    if one:
        rc_args = re.findall(rb"^X-Rcpt-Args: (.*)$", one[0], re.M)
        check(sorted(rc_args) == [b"<a@sink.test>", b"<b@sink.test>", b"<c@sink.test>"],
              "one transaction with three RCPTs expected: %r" % rc_args, probs)
        m = re.search(rb"^X-Mail-Args: (.*)$", one[0], re.M)
        check(m and m.group(1) == b"<alice@example.org>", "MAIL args %r" % (m and m.group(1)), probs)
    clients = [re.search(rb"^X-Client-Addr: .*$", d, re.M) for d in dumps]
    check(len(MULTI.messages) == 1 and MULTI.messages[0]["rcpts"] == ["x@multi.test"],
          "multi.test got %r" % MULTI.messages, probs)
    check(len(GOOD.messages) == 1 and GOOD.messages[0]["rcpts"] == ["y@good.test"],
          "good.test got %r" % GOOD.messages, probs)
    conns = len(re.findall(r"host=mx\.sink\.test\S* .*status=delivered", err))
    check(conns == 4, "4 delivered lines for sink.test expected: %s" % err, probs)
    check(len(set(c.group(0) for c in clients if c)) >= 1, "no client address", probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    return probs


def t_one_connection():
    """Two messages to one domain: one connection (one EHLO at the
    peer), one transaction each."""
    setup("one_connection")
    deliver("alice@example.org", ["p@good.test", "q@good.test"], message("conn one"))
    deliver("alice@example.org", ["r@good.test"], message("conn two"))
    rc, err = relay()
    probs = []
    check(len(GOOD.messages) == 2, "peer got %d messages" % len(GOOD.messages), probs)
    check(GOOD.sessions == 1, "peer saw %d sessions, expected 1" % GOOD.sessions, probs)
    rc_sets = sorted(tuple(m["rcpts"]) for m in GOOD.messages)
    check(rc_sets == [("p@good.test", "q@good.test"), ("r@good.test",)], "RCPTs %r" % rc_sets, probs)
    peers = set(m["peer"] for m in GOOD.messages)
    check(len(peers) == 1, "messages came over %d connections" % len(peers), probs)
    return probs


def t_retry_and_expiry():
    """4xx: deferred with attempts and a next-try time (retry_min,
    doubling); not retried before that time; retried after it; past
    max_queue_lifetime it bounces to the local sender with Action:
    failed; the queue is empty at the end."""
    setup("retry", {"retry_min": "300", "retry_max": "3600", "max_queue_lifetime": str(5 * DAY)})
    deliver("alice@example.org", ["t@temp.test"], message("retry me"))
    probs = []
    rc, err = relay(now=NOW)
    st = rcpt_states().get("t@temp.test")
    check(st and st["state"] == "pending" and st["attempts"] == 1 and st["next"] == NOW + 300,
          "after one 4xx: %r" % st, probs)
    check(st and st["status"].startswith("4.") and st["remote"] == "mx.temp.test[127.0.0.4]",
          "state record %r" % st, probs)
    check("status=deferred" in err, "no deferred log line: %s" % err, probs)
    rc, err = relay(now=NOW + 100)
    st = rcpt_states().get("t@temp.test")
    check(st and st["attempts"] == 1, "retried before its time: %r" % st, probs)
    rc, err = relay(now=NOW + 301)
    st = rcpt_states().get("t@temp.test")
    check(st and st["attempts"] == 2 and st["next"] == NOW + 301 + 600,
          "second attempt: %r" % st, probs)
    rc, err = relay("-f", now=NOW + 302)
    st = rcpt_states().get("t@temp.test")
    check(st and st["attempts"] == 3, "-f did not flush: %r" % st, probs)
    check(not mails("alice@example.org"), "bounced too early", probs)
    # C is deliver's clock (real time), a few seconds after NOW
    rc, err = relay(now=NOW + 5 * DAY + 120)
    check(T.queue_count(TMP) == 0, "queue not empty after expiry: %s" % infos(), probs)
    got = mails("alice@example.org")
    if len(got) != 1:
        return probs + ["sender has %d messages, expected one bounce: %s" % (len(got), err)]
    b = got[0]
    check(b["From"] and "MAILER-DAEMON@" + HOST in b["From"], "From %r" % b["From"], probs)
    try:
        per, rcpts, orig = dsn_fields(b)
        check(per["Reporting-MTA"] == "dns; " + HOST, "Reporting-MTA %r" % per["Reporting-MTA"], probs)
        check(per["Arrival-Date"], "no Arrival-Date", probs)
        check(rcpts[0]["Final-Recipient"] == "rfc822; t@temp.test", "Final-Recipient %r" % rcpts[0]["Final-Recipient"], probs)
        check(rcpts[0]["Action"] == "failed", "Action %r" % rcpts[0]["Action"], probs)
        check(rcpts[0]["Status"] == "4.4.7", "Status %r" % rcpts[0]["Status"], probs)
        check(rcpts[0]["Remote-MTA"] == "dns; mx.temp.test", "Remote-MTA %r" % rcpts[0]["Remote-MTA"], probs)
        check(rcpts[0]["Diagnostic-Code"].startswith("smtp; 450"), "Diagnostic-Code %r" % rcpts[0]["Diagnostic-Code"], probs)
        check(orig.get_content_type() == "text/rfc822-headers", "third part %s" % orig.get_content_type(), probs)
        check("Subject: retry me" in orig.get_payload(), "original headers missing", probs)
    except AssertionError as e:
        probs.append("not an RFC 3464 report: %s" % e)
    rp = T.maildir_files(T.maildir_of(TMP, "alice@example.org"))[0]
    with open(rp, "rb") as f:
        check(f.read().startswith(b"Return-Path: <>\n"), "bounce not from <>", probs)
    return probs


def t_5xx_mixed():
    """In one transaction: one RCPT refused with 550 (bounced at once,
    Status 5.1.1, the peer's reply in Diagnostic-Code), the other
    delivered; one bounce for the message."""
    setup("mixed")
    deliver("alice@example.org", ["ok@mixed.test", "nobody@mixed.test"], message("mixed"))
    rc, err = relay()
    probs = []
    check(len(MIXED.messages) == 1 and MIXED.messages[0]["rcpts"] == ["ok@mixed.test"],
          "peer got %r" % MIXED.messages, probs)
    got = mails("alice@example.org")
    if len(got) != 1:
        return probs + ["%d bounces" % len(got)]
    per, rcpts, orig = dsn_fields(got[0])
    check(len(rcpts) == 1 and rcpts[0]["Final-Recipient"] == "rfc822; nobody@mixed.test",
          "recipients in the DSN: %r" % [str(r) for r in rcpts], probs)
    check(rcpts[0]["Status"] == "5.1.1", "Status %r" % rcpts[0]["Status"], probs)
    check("550 5.1.1 <nobody@mixed.test>: no such user here" in rcpts[0]["Diagnostic-Code"],
          "Diagnostic-Code %r" % rcpts[0]["Diagnostic-Code"], probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    return probs


def bounce_of(addr, probs):
    got = mails("alice@example.org")
    if len(got) != 1:
        probs.append("sender has %d messages, expected one bounce" % len(got))
        return None
    try:
        per, rcpts, orig = dsn_fields(got[0])
    except AssertionError as e:
        probs.append("not an RFC 3464 report: %s" % e)
        return None
    r = [x for x in rcpts if x["Final-Recipient"] == "rfc822; " + addr]
    if not r:
        probs.append("no report for %s" % addr)
        return None
    return r[0]


def t_dns_failures():
    """Null MX: 5.1.10 (556 in the diagnostic); NXDOMAIN: 5.1.2; a DNS
    server that refuses (a temporary failure): deferred, never bounced."""
    setup("dns")
    deliver("alice@example.org", ["a@nullmx.test"], message("nullmx"))
    deliver("alice@example.org", ["b@nx.test"], message("nxdomain"))
    deliver("alice@example.org", ["c@refused.example"], message("servfail"))
    rc, err = relay()
    probs = []
    st = rcpt_states()
    check(st.get("c@refused.example", {}).get("state") == "pending",
          "DNS failure not deferred: %r" % st.get("c@refused.example"), probs)
    check(st.get("c@refused.example", {}).get("status", "").startswith("4.4.3"),
          "status %r" % st.get("c@refused.example"), probs)
    got = mails("alice@example.org")
    check(len(got) == 2, "%d bounces, expected 2" % len(got), probs)
    for g in got:
        per, rcpts, orig = dsn_fields(g)
        r = rcpts[0]
        if r["Final-Recipient"] == "rfc822; a@nullmx.test":
            check(r["Status"] == "5.1.10", "null MX status %r" % r["Status"], probs)
            check("556 5.1.10" in r["Diagnostic-Code"], "null MX diag %r" % r["Diagnostic-Code"], probs)
        elif r["Final-Recipient"] == "rfc822; b@nx.test":
            check(r["Status"] == "5.1.2", "NXDOMAIN status %r" % r["Status"], probs)
        else:
            probs.append("unexpected report for %s" % r["Final-Recipient"])
    return probs


def t_loops():
    """Never ourselves: an MX named like our hostname (a less preferred
    MX remains but is never used), an MX whose address is ours, and a
    peer greeting with our hostname all bounce with 5.4.6."""
    setup("loops")
    deliver("alice@example.org", ["a@loop.test"], message("loop name"))
    deliver("alice@example.org", ["b@self.test"], message("loop addr"))
    deliver("alice@example.org", ["c@greet.test"], message("loop greeting"))
    rc, err = relay()
    probs = []
    check(not GOOD.messages, "delivered to a less preferred MX than ourselves", probs)
    got = mails("alice@example.org")
    check(len(got) == 3, "%d bounces, expected 3: %s" % (len(got), err), probs)
    for g in got:
        per, rcpts, orig = dsn_fields(g)
        check(rcpts[0]["Status"] == "5.4.6", "%s: status %r" % (rcpts[0]["Final-Recipient"],
                                                                 rcpts[0]["Status"]), probs)
    check(not GREET.messages, "delivered to a peer that greets with our name", probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    return probs


def t_backup_mx():
    """The preferred MX refuses connections, or greets with 4xx
    (smtp-sink -r CONNECT): the next MX takes it."""
    setup("backup")
    deliver("alice@example.org", ["z@backup.test"], message("backup"))
    deliver("alice@example.org", ["y@greet4.test"], message("greet4"))
    rc, err = relay()
    probs = []
    got = sorted(m["rcpts"][0] for m in GOOD.messages)
    check(got == ["y@greet4.test", "z@backup.test"], "backup MX got %r: %s" % (got, err), probs)
    check("host-failed" in err and "dead.backup.test" in err, "no host-failed line", probs)
    check(re.search(r"host-failed domain=greet4.test host=busy.greet4.test\S* reply=\"4", err),
          "no 4xx greeting: %s" % err, probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    return probs


def t_implicit_and_literal():
    """No MX: the domain's own address (smtp-sink on implicit.test);
    an address literal user@[127.0.0.2] goes to that address."""
    setup("implicit")
    IMPL.clear()
    deliver("alice@example.org", ["i@implicit.test"], message("implicit"))
    deliver("alice@example.org", ["l@[127.0.0.2]"], message("literal"))
    rc, err = relay()
    probs = []
    check(len(IMPL.files()) == 1, "implicit MX: %d messages: %s" % (len(IMPL.files()), err), probs)
    check(len(GOOD.messages) == 1 and GOOD.messages[0]["rcpts"] == ["l@[127.0.0.2]"],
          "literal: %r" % GOOD.messages, probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    return probs


def t_size_smtputf8():
    """A peer whose SIZE is too small: bounce 5.3.4 without sending; an
    SMTPUTF8 message to a peer without SMTPUTF8: bounce 5.6.7."""
    setup("size")
    deliver("alice@example.org", ["big@small.test"], message("big", b"x" * 3000 + b"\n"))
    probs = []
    out = smtpd("EHLO c.test\r\nMAIL FROM:<alice@example.org> SMTPUTF8\r\n"
                "RCPT TO:<j\u00f6rg@small.test>\r\nDATA\r\nSubject: utf8\r\n\r\nhi\r\n.\r\nQUIT\r\n"
                .encode("utf-8"))
    check("250 2.0.0 Ok" in out, "smtpd: %r" % out, probs)
    rc, err = relay()
    check(not SMALL.messages, "the peer got %r" % SMALL.messages, probs)
    check(not any(w.find(b"DATA") >= 0 for w in SMALL.wire), "DATA sent to a peer too small", probs)
    got = mails("alice@example.org")
    check(len(got) == 2, "%d bounces, expected 2: %s" % (len(got), err), probs)
    status = sorted(dsn_fields(g)[1][0]["Status"] for g in got)
    check(status == ["5.3.4", "5.6.7"], "statuses %r" % status, probs)
    return probs


def t_dsn_params():
    """DSN: NOTIFY, ORCPT, RET and ENVID from the queue reach a peer
    that offers DSN (smtp-sink) unchanged; NOTIFY=SUCCESS to a peer
    without DSN (aiosmtpd) makes us send a success report (relayed);
    NOTIFY=NEVER suppresses a failure report; NOTIFY=FAILURE,DELAY gets
    one, with Original-Recipient and Original-Envelope-Id decoded."""
    setup("dsn")
    SINKP.clear()
    queue_entry("dsn1", "alice@example.org",
                [("s1@sink.test", ["NSUCCESS,FAILURE", "Orfc822;s1+2Bx@sink.test"])],
                message("dsn one"), params=["RET=HDRS", "ENVID=env+2B1"])
    queue_entry("dsn2", "alice@example.org",
                [("g1@good.test", ["NSUCCESS", "Orfc822;orig+2Bg1@good.test"])],
                message("dsn two"), params=["ENVID=env2"])
    queue_entry("dsn3", "alice@example.org",
                [("nobody@mixed.test", ["NNEVER"])],
                message("dsn three"))
    queue_entry("dsn4", "alice@example.org",
                [("nobody@mixed.test", ["NFAILURE,DELAY", "Orfc822;first+2Blast@x.test"])],
                message("dsn four"), params=["ENVID=abc+2Bdef", "RET=FULL"])
    rc, err = relay()
    probs = []
    files = SINKP.files()
    if len(files) != 1:
        return ["smtp-sink got %d messages: %s" % (len(files), err)]
    with open(files[0], "rb") as f:
        dump = f.read()
    m = re.search(rb"^X-Mail-Args: (.*)$", dump, re.M)
    check(m and b"RET=HDRS" in m.group(1) and b"ENVID=env+2B1" in m.group(1),
          "MAIL args %r" % (m and m.group(1)), probs)
    r = re.search(rb"^X-Rcpt-Args: (.*)$", dump, re.M)
    check(r and r.group(1) == b"<s1@sink.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;s1+2Bx@sink.test",
          "RCPT args %r" % (r and r.group(1)), probs)
    check(len(GOOD.messages) == 1, "good.test got %d" % len(GOOD.messages), probs)
    got = mails("alice@example.org")
    reports = {}
    for g in got:
        per, rcpts, orig = dsn_fields(g)
        for x in rcpts:
            reports[x["Final-Recipient"]] = (per, x, orig, g)
    check(set(reports) == {"rfc822; g1@good.test", "rfc822; nobody@mixed.test"},
          "reports for %r" % sorted(reports), probs)
    if "rfc822; g1@good.test" in reports:
        per, x, orig, g = reports["rfc822; g1@good.test"]
        check(x["Action"] == "relayed", "success Action %r" % x["Action"], probs)
        check(x["Original-Recipient"] == "rfc822;orig+g1@good.test",
              "Original-Recipient %r" % x["Original-Recipient"], probs)
        check(per["Original-Envelope-Id"] == "env2", "ENVID %r" % per["Original-Envelope-Id"], probs)
    if "rfc822; nobody@mixed.test" in reports:
        per, x, orig, g = reports["rfc822; nobody@mixed.test"]
        check(x["Action"] == "failed", "failure Action %r" % x["Action"], probs)
        check(per["Original-Envelope-Id"] == "abc+def", "ENVID %r" % per["Original-Envelope-Id"], probs)
        check(x["Original-Recipient"] == "rfc822;first+last@x.test",
              "Original-Recipient %r" % x["Original-Recipient"], probs)
        check(orig.get_content_type() == "message/rfc822", "RET=FULL part %s" % orig.get_content_type(), probs)
    check(T.queue_count(TMP) == 0, "queue not empty: %r" % infos(), probs)
    return probs


def t_null_sender():
    """A message from <> is never bounced: with double_bounce = drop its
    failure is logged and dropped; with postmaster the postmaster gets
    a report (once)."""
    setup("nullsender")
    deliver("", ["nobody@mixed.test"], message("from null"))
    rc, err = relay()
    probs = []
    check("double-bounce-dropped" in err, "no double-bounce line: %s" % err, probs)
    check(not T.maildir_files(T.maildir_of(TMP, "alice@example.org")), "bounced to someone", probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    setup("nullsender_pm", {"double_bounce": "postmaster"})
    deliver("", ["nobody@mixed.test"], message("from null"))
    rc, err = relay()
    got = mails("alice@example.org")    # postmaster@example.org -> alice
    check(len(got) == 1, "postmaster got %d reports: %s" % (len(got), err), probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    return probs


def t_delay_warning():
    """delay_warning: once a message has waited that long, the sender
    hears once that it is delayed (Action: delayed, Will-Retry-Until)."""
    setup("delay", {"delay_warning": "3600"})
    deliver("alice@example.org", ["w@temp.test"], message("delayed"))
    rc, err = relay(now=NOW)
    probs = []
    check(not mails("alice@example.org"), "warned too early", probs)
    rc, err = relay("-f", now=NOW + 4000)
    rc, err = relay("-f", now=NOW + 8000)
    got = mails("alice@example.org")
    check(len(got) == 1, "%d warnings, expected 1: %s" % (len(got), err), probs)
    if got:
        per, rcpts, orig = dsn_fields(got[0])
        check(rcpts[0]["Action"] == "delayed", "Action %r" % rcpts[0]["Action"], probs)
        check(rcpts[0]["Will-Retry-Until"], "no Will-Retry-Until", probs)
    st = rcpt_states().get("w@temp.test")
    check(st and st["state"] == "pending" and "w" in st["flags"], "state %r" % st, probs)
    return probs


def t_concurrency():
    """A host that sits on every RCPT does not stall the others: mail
    for good.test is delivered while hang.test waits, and hang.test is
    deferred after timeout_rcpt."""
    setup("concurrency", {"timeout_rcpt": "3"})
    deliver("alice@example.org", ["h@hang.test"], message("hang"))
    for i in range(3):
        deliver("alice@example.org", ["n%d@good.test" % i], message("fast %d" % i))
    t0 = time.time()
    rc, err = relay(timeout=60)
    took = time.time() - t0
    probs = []
    check(len(GOOD.messages) == 3, "good.test got %d" % len(GOOD.messages), probs)
    st = rcpt_states().get("h@hang.test")
    check(st and st["state"] == "pending" and "timeout" in st["text"], "hang.test %r" % st, probs)
    check(took < 20, "relay took %.1f s" % took, probs)
    # the log order shows the good host finished before the hanging one
    i = err.find("status=delivered")
    j = err.find("rcpt=h@hang.test")
    check(0 <= i < j, "good.test was not delivered before hang.test timed out", probs)
    return probs


def t_drop_after_dot():
    """The connection drops after the final dot, before the reply (the
    one window where SMTP allows a duplicate): the recipient is
    deferred, not lost, and sent again later."""
    setup("drop")
    DROP.clear()
    deliver("alice@example.org", ["d@drop.test"], message("drop"))
    rc, err = relay()
    probs = []
    st = rcpt_states().get("d@drop.test")
    check(st and st["state"] == "pending" and st["attempts"] == 1, "state %r: %s" % (st, err), probs)
    return probs


def t_lock():
    """A second relay exits at once (status 0) while one holds the lock."""
    setup("lock", {"timeout_rcpt": "4"})
    deliver("alice@example.org", ["h@hang.test"], message("hang"))
    p = subprocess.Popen([RELAY], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    t0 = time.time()
    rc, err = relay()
    took = time.time() - t0
    probs = []
    check(rc == 0 and "event=busy" in err, "second relay: %d %s" % (rc, err), probs)
    check(took < 2, "second relay took %.1f s" % took, probs)
    p.wait(30)
    first = p.stderr.read().decode()
    check(p.returncode == 0, "first relay exited %s: %s" % (p.returncode, first), probs)
    return probs


def t_one_message():
    """-i ID sends that message only (now, whatever its next-try time);
    an unknown id exits 66."""
    setup("one")
    deliver("alice@example.org", ["a1@good.test"], message("one"))
    deliver("alice@example.org", ["a2@good2.test"], message("two"))
    qids = sorted(infos())
    rc, err = relay("-i", qids[0])
    probs = []
    check(rc == 0, "relay -i exited %d" % rc, probs)
    check(len(GOOD.messages) == 1 and T.queue_count(TMP) == 1,
          "-i sent %d messages, %d left" % (len(GOOD.messages), T.queue_count(TMP)), probs)
    rc, err = relay("-i", "nosuchid")
    check(rc == 66, "unknown id: exit %d" % rc, probs)
    return probs


def t_helo_fallback():
    """A peer that refuses EHLO (smtp-sink -e... here: 5xx to EHLO) gets
    HELO and plain SMTP."""
    setup("helo")
    HELO.clear()
    deliver("alice@example.org", ["h@helo.test"], message("helo"))
    rc, err = relay()
    probs = []
    files = HELO.files()
    check(len(files) == 1, "peer got %d messages: %s" % (len(files), err), probs)
    if files:
        with open(files[0], "rb") as f:
            d = f.read()
        check(b"X-Client-Proto: SMTP" in d, "not plain SMTP: %r" % d[:300], probs)
    return probs


def t_smarthost():
    """smarthost = 127.0.0.2:2525: everything goes there, no MX lookup
    (the domain does not even exist)."""
    setup("smarthost", {"smarthost": "127.0.0.2:%d" % PORT})
    deliver("alice@example.org", ["s@nx.test", "t@nullmx.test"], message("smart"))
    rc, err = relay(extra={"NAMESERVERS": "127.0.0.99"})
    probs = []
    check(len(GOOD.messages) == 1 and sorted(GOOD.messages[0]["rcpts"]) == ["s@nx.test", "t@nullmx.test"],
          "smarthost got %r: %s" % (GOOD.messages, err), probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    # by name: looked up the system's way (/etc/hosts: localhost is
    # ::1, refused here, then 127.0.0.1)
    setup("smarthost_name", {"smarthost": "localhost:%d" % PORT})
    local = Peer("127.0.0.1", "local.test")
    try:
        deliver("alice@example.org", ["u@nx.test"], message("smart by name"))
        rc, err = relay(extra={"NAMESERVERS": "127.0.0.99"})
        check(len(local.messages) == 1, "smarthost localhost got %r: %s" % (local.messages, err), probs)
        check(T.queue_count(TMP) == 0, "queue not empty", probs)
    finally:
        local.stop()
    return probs


def t_8bitmime_binarymime():
    """BODY=8BITMIME goes with MAIL to a peer that offers 8BITMIME, the
    8-bit bytes unchanged; BODY=BINARYMIME to a peer without CHUNKING
    and BINARYMIME bounces with 5.6.3."""
    setup("8bit")
    body = "Subject: 8bit\r\n\r\nGr\u00fc\u00dfe, J\u00f6rg\r\n".encode("utf-8")
    out = smtpd(b"EHLO c.test\r\nMAIL FROM:<alice@example.org> BODY=8BITMIME\r\n"
                b"RCPT TO:<e@good.test>\r\nDATA\r\n" + body + b".\r\n"
                b"MAIL FROM:<alice@example.org> BODY=BINARYMIME\r\n"
                b"RCPT TO:<b@good.test>\r\nBDAT 10 LAST\r\nbin\rary\n\r\nQUIT\r\n")
    probs = []
    check(out.count("250 2.0.0 Ok") == 2, "smtpd: %r" % out, probs)
    rc, err = relay()
    check(len(GOOD.messages) == 1, "peer got %d messages: %s" % (len(GOOD.messages), err), probs)
    if GOOD.messages:
        m = GOOD.messages[0]
        check("BODY=8BITMIME" in m["mail_options"], "MAIL parameters %r" % m["mail_options"], probs)
        check(m["data"].endswith(body), "data %r" % m["data"][-80:], probs)
    got = mails("alice@example.org")
    check(len(got) == 1 and dsn_fields(got[0])[1][0]["Status"] == "5.6.3",
          "BINARYMIME: %d reports" % len(got), probs)
    return probs


def t_local_retry():
    """A local recipient in the queue (its delivery failed for the
    moment) goes to its Maildir through deliver."""
    setup("local")
    queue_entry("loc1", "carol@example.net", [("bob@example.org", [])], message("local retry"))
    rc, err = relay()
    probs = []
    got = mails("bob@example.org")
    check(len(got) == 1 and got[0]["Subject"] == "local retry", "bob got %d" % len(got), probs)
    check(T.queue_count(TMP) == 0, "queue not empty", probs)
    return probs


def t_config_keys():
    """The relay's keys parse; a bad smarthost is a config error (78)."""
    setup("config", {"smarthost": "host:notaport"})
    rc, err = relay()
    probs = []
    check(rc == 78, "bad smarthost: exit %d %s" % (rc, err), probs)
    return probs


def t_ipv6():
    """IPv6 by DNS: an MX with only an AAAA record gets the mail over
    IPv6 (the exact message, the log naming the IPv6 address); an MX
    with AAAA and A is tried over IPv6 first and, refused there, over
    IPv4; an MX whose AAAA is ::1, an address of this host, is a mail
    loop (5.4.6) even though a peer listens there."""
    if not V6OK:
        return ["needs a network namespace with only lo (unshare -n), to route %s" % V6NET]
    setup("ipv6")
    data = message("over ipv6", b"line one\n.dot line\nlast\n")
    deliver("alice@example.org", ["six@v6.test"], data)
    deliver("alice@example.org", ["two@dual.test"], message("dual stack"))
    deliver("alice@example.org", ["me@loop6.test"], message("loop ipv6"))
    # only while this test runs: elsewhere ::1 refuses (see t_smarthost)
    loop6 = Peer("::1", "loop6.test")
    try:
        rc, err = relay()
    finally:
        loop6.stop()
    probs = []
    check(rc == 0, "relay exited %d: %s" % (rc, err), probs)
    if len(V6.messages) != 1:
        probs.append("v6 peer got %d messages: %s" % (len(V6.messages), err))
    else:
        m = V6.messages[0]
        check(m["from"] == "alice@example.org" and m["rcpts"] == ["six@v6.test"],
              "v6 envelope %r %r" % (m["from"], m["rcpts"]), probs)
        check(m["data"] == data.replace(b"\n", b"\r\n"), "v6 data %r" % m["data"], probs)
        # the connection came over IPv6: from ::1, our source on lo
        check(m["peer"][0] == "::1", "v6 peer saw the client as %r" % (m["peer"],), probs)
    check(re.search(r"rcpt=six@v6\.test host=mx\.v6\.test\[fd00:d0b1::2\] .*status=delivered",
                    err), "no delivered line naming [fd00:d0b1::2]: %s" % err, probs)
    # dual stack: IPv6 refused first, then IPv4
    check(len(DUAL.messages) == 1 and DUAL.messages[0]["rcpts"] == ["two@dual.test"],
          "dual.test's A got %r: %s" % (DUAL.messages, err), probs)
    i = err.find("event=host-failed domain=dual.test host=mx.dual.test[fd00:d0b1::3]")
    j = err.find("rcpt=two@dual.test host=mx.dual.test[127.0.0.16]")
    check(0 <= i < j, "IPv6 not tried (and refused) before IPv4: %s" % err, probs)
    check(i < 0 or "Connection refused" in err[i:j], "dual.test: not refused: %s" % err[i:j], probs)
    check(re.search(r"rcpt=two@dual\.test host=mx\.dual\.test\[127\.0\.0\.16\] .*status=delivered",
                    err), "no delivered line for dual.test", probs)
    # ::1 is ours: nothing sent there, a bounce with 5.4.6
    check(not loop6.messages and loop6.sessions == 0 and not any(loop6.wire),
          "connected to ::1: %r" % loop6.messages, probs)
    r = bounce_of("me@loop6.test", probs)
    if r is not None:
        check(r["Status"] == "5.4.6" and r["Action"] == "failed",
              "loop6: %s %s" % (r["Status"], r["Action"]), probs)
    check(T.queue_count(TMP) == 0, "queue not empty: %r" % infos(), probs)
    return probs


def t_dns_timeout():
    """A nameserver that never answers (a UDP socket that reads and
    drops): the pass ends once udns gives up (RES_OPTIONS timeout:1
    attempts:2, about 3 s; udns's default of timeout:4 attempts:3 is
    about 28 s), the recipient stays pending with 4.4.3, nobody gets a
    bounce; the next pass, with a nameserver that answers, delivers."""
    setup("dns_timeout", {"retry_min": "300", "retry_max": "3600"})
    deliver("alice@example.org", ["late@good.test"], message("dns timeout"))
    hole = Blackhole(BLACKHOLE)
    try:
        t0 = time.time()
        rc, err = relay(now=NOW, timeout=60,
                        extra={"NAMESERVERS": BLACKHOLE, "RES_OPTIONS": "timeout:1 attempts:2"})
        took = time.time() - t0
    finally:
        hole.stop()
    probs = []
    check(rc == 0, "relay exited %d: %s" % (rc, err), probs)
    check(hole.queries >= 2, "the silent nameserver got %d queries" % hole.queries, probs)
    check(took < 15, "relay took %.1f s" % took, probs)
    st = rcpt_states().get("late@good.test")
    check(st and st["state"] == "pending" and st["attempts"] == 1 and st["status"] == "4.4.3"
          and st["next"] == NOW + 300 and "DNS temporary failure" in st["text"],
          "after the timeout: %r: %s" % (st, err), probs)
    check("status=deferred" in err and "status=bounced" not in err, "log: %s" % err, probs)
    check(not GOOD.messages, "delivered without DNS?", probs)
    check(not mails("alice@example.org"), "the sender got a report", probs)
    rc, err = relay(now=NOW + 301)
    check(len(GOOD.messages) == 1 and GOOD.messages[0]["rcpts"] == ["late@good.test"],
          "the next pass sent %r: %s" % (GOOD.messages, err), probs)
    check(T.queue_count(TMP) == 0, "queue not empty: %r" % infos(), probs)
    check(not mails("alice@example.org"), "the sender got a report", probs)
    return probs


def t_clock_jumps():
    """DOPIS_NOW jumping.  Back a year after a 4xx: nothing is lost or
    bounced (no negative age), and the next-try time, now a year ahead,
    does not hold the recipient back: one further than retry_max ahead
    cannot have been set by this clock, so it is due; the new one is
    counted from the new clock.  Forward past max_queue_lifetime: one
    last try, then one RFC 3464 report (4.4.7), exactly once."""
    year = 365 * DAY
    setup("clock", {"retry_min": "300", "retry_max": "3600", "max_queue_lifetime": str(5 * DAY)})
    deliver("alice@example.org", ["c@temp.test"], message("clock jumps"))
    probs = []
    rc, err = relay(now=NOW)
    st = rcpt_states().get("c@temp.test")
    check(st and st["state"] == "pending" and st["attempts"] == 1 and st["next"] == NOW + 300,
          "after the first 4xx: %r" % st, probs)
    TEMP.reset()
    # the clock goes back a year; the queue tool shows the relay's rule
    q = subprocess.run([os.path.join(os.path.dirname(RELAY), "queue")], env=env(NOW - year),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(q.returncode == 0 and b"<c@temp.test> pending" in q.stdout and b"next try now" in q.stdout,
          "queue tool after the jump back: %d %r %r" % (q.returncode, q.stdout, q.stderr), probs)
    rc, err = relay(now=NOW - year)
    st = rcpt_states().get("c@temp.test")
    check(rc == 0, "relay exited %d: %s" % (rc, err), probs)
    check(TEMP.sessions == 1, "not tried after the jump back (%d sessions): %s"
          % (TEMP.sessions, err), probs)
    check(st and st["state"] == "pending" and st["attempts"] == 2 and
          st["next"] == NOW - year + 600 and st["first"] == NOW,
          "after the jump back: %r" % st, probs)
    check("status=bounced" not in err, "bounced after the jump back: %s" % err, probs)
    check(not mails("alice@example.org"), "a report after the jump back", probs)
    # in the new clock the backoff holds again: not due 100 s later
    TEMP.reset()
    rc, err = relay(now=NOW - year + 100)
    st = rcpt_states().get("c@temp.test")
    check(TEMP.sessions == 0 and st and st["attempts"] == 2,
          "retried before the backoff in the new clock: %r" % st, probs)
    # forward, past the lifetime (C is deliver's real clock, >= NOW)
    rc, err = relay(now=NOW + 5 * DAY + 120)
    check(T.queue_count(TMP) == 0, "queue not empty after expiry: %r" % infos(), probs)
    check(TEMP.sessions == 1, "no last try before the bounce", probs)
    check(err.count("status=bounced") == 1, "bounced lines: %s" % err, probs)
    rc, err = relay(now=NOW + 6 * DAY)
    r = bounce_of("c@temp.test", probs)    # exactly one report
    if r is not None:
        check(r["Action"] == "failed" and r["Status"] == "4.4.7",
              "expiry report %s %s" % (r["Action"], r["Status"]), probs)
        check(r["Diagnostic-Code"].startswith("smtp; 450"),
              "Diagnostic-Code %r" % r["Diagnostic-Code"], probs)
        check(r["Remote-MTA"] == "dns; mx.temp.test", "Remote-MTA %r" % r["Remote-MTA"], probs)
    got = mails("alice@example.org")
    if len(got) == 1:
        orig = dsn_fields(got[0])[2]
        check(orig.get_content_type() == "text/rfc822-headers" and
              "Subject: clock jumps" in orig.get_payload(), "third part %s" % orig, probs)
    return probs


ALL_PEERS = []


def main():
    global GOOD, MULTI, TEMP, MIXED, HANG, SMALL, GREET, SINKP, IMPL, DROP, HELO
    global V6, DUAL
    base = T.fresh_dir(os.path.join(T.WORK, PASS, "interop_relay"))
    if not os.access(RELAY, os.X_OK):
        print("FAIL interop_relay: %s is missing" % RELAY)
        return 1
    if not os.access(SINK, os.X_OK):
        print("FAIL interop_relay: %s is missing (tests/relay-peers.sh)" % SINK)
        return 1
    procs = []
    try:
        procs.append(start_dnsmasq(base))
        GOOD = Peer("127.0.0.2", "mx.good.test")
        MULTI = Peer("127.0.0.3", "mx.multi.test")
        TEMP = Peer("127.0.0.4", "mx.temp.test", rcpt_reply="450 4.2.0 mailbox busy, try later")
        MIXED = Peer("127.0.0.5", "mx.mixed.test", reject=["nobody@mixed.test"])
        HANG = Peer("127.0.0.8", "mx.hang.test", hang_rcpt=30)
        SMALL = Peer("127.0.0.10", "mx.small.test", smtputf8=False, size=2000)
        GREET = Peer("127.0.0.11", HOST)
        ALL_PEERS.extend([GOOD, MULTI, TEMP, MIXED, HANG, SMALL, GREET])
        DUAL = Peer("127.0.0.16", "mx.dual.test")
        ALL_PEERS.append(DUAL)
        v6_setup()
        if V6OK:
            V6 = Peer("fd00:d0b1::2", "mx.v6.test")
            ALL_PEERS.append(V6)
        SINKP = Sink("127.0.0.12", base)
        IMPL = Sink("127.0.0.7", base)
        DROP = Sink("127.0.0.9", base, ["-q", "."])
        HELO = Sink("127.0.0.13", base, ["-f", "EHLO"])
        procs += [SINKP, IMPL, DROP, HELO, Sink("127.0.0.15", base, ["-r", "CONNECT"])]
        tests = [(n[2:], f) for n, f in sorted(globals().items()) if n.startswith("t_")]
        only = ARGS
        for name, fn in tests:
            if only and name not in only:
                continue
            R.run("relay_" + name, fn)
    finally:
        for p in ALL_PEERS:
            p.stop()
        for p in procs:
            if isinstance(p, subprocess.Popen):
                T.stop(p)
            else:
                p.stop()
        if V6OK:
            subprocess.run(["ip", "-6", "route", "del", "local", V6NET, "dev", "lo"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
