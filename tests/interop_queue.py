#!/usr/bin/python3
"""Interop: the queue tool (bin/queue, dopis-queue(8)) on a real queue.

The queue is made the real way: messages handed to bin/deliver for
remote recipients, then bin/relay with a smarthost on loopback: first a
closed port (recipients deferred, 4.4.1, one attempt), then Python's
aiosmtpd answering "550 5.1.1 no" to some RCPTs (failed, reported to
the sender, bounced) and "451 4.3.0 try later" to others (deferred);
plus hand-written entries for what the network cannot give (control
bytes and bytes that are not UTF-8 in addresses, a message with UTF-8
sequences across the tool's read buffer).  Then the list for people
and as JSON (parsed with json.loads, compared field by field), show,
the errors and exit codes, the lock, delete, bounce (the sender's
Maildir receives the RFC 3464 report), flush and the mailq link.

Run by tests/run.py once per build (inside "unshare -n"); alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_queue.py
"""

import email
import email.policy
import fcntl
import json
import os
import subprocess
import sys
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS)
import dopistest as T  # noqa: E402

if len(sys.argv) >= 3 and os.path.isdir(sys.argv[2]):
    os.environ.setdefault("DOPIS_SMTPD", os.path.join(sys.argv[2], "smtpd"))
    os.environ.setdefault("DOPIS_DELIVER", os.path.join(sys.argv[2], "deliver"))
    os.environ.setdefault("DOPIS_PASS", "asan" if "asan" in sys.argv[2] else "smtpd")
    os.environ.setdefault("DOPIS_SANITIZED", "1" if "asan" in sys.argv[2] else "0")
PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BINDIR = os.path.dirname(SMTPD)
QUEUE = os.path.join(BINDIR, "queue")
RELAY = os.path.join(BINDIR, "relay")
NOW = QNOW = 0             # the relay's clock, and the queue tool's a minute later: set
                           # in build(), once the work directory is ours (it may wait)
R = T.Results()
TMP = os.path.join(T.WORK, PASS, "interop_queue")
CONF = None
HAND = "ffffffff.hand"     # hand-written entries sort last: ids start with the time in hex
BIG = "ffffffff.zbig"

from aiosmtpd.controller import Controller  # noqa: E402


class Peer:
    """The smarthost: aiosmtpd on 127.0.0.1, refusing "no*" recipients
    for good and "later*" for now (until accept_later is set)."""

    def __init__(self):
        self.port = T.free_port()
        self.accept_later = False
        self.messages = []
        self.ctl = Controller(self, hostname="127.0.0.1", port=self.port,
                              server_hostname="peer.test", ready_timeout=10)
        self.ctl.start()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("no"):
            return "550 5.1.1 no"
        if address.startswith("later") and not self.accept_later:
            return "451 4.3.0 try later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok: queued"

    def stop(self):
        self.ctl.stop()


# ---------------------------------------------------------------- helpers

def env(now):
    e = T.base_env(CONF, SANITIZED)
    e.update({"DOPIS_NOW": str(now), "TZ": "UTC"})
    return e


def sanitized(err):
    rep = T.sanitizer_report(err)
    if rep:
        raise AssertionError("sanitizer:\n" + rep)


def queue(*args, now=None, argv0=None, preexec=None):
    """Runs bin/queue (or argv0); returns (exit code, stdout bytes, stderr text)."""
    p = subprocess.run([argv0 or QUEUE] + list(args), env=env(now or QNOW), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, preexec_fn=preexec)
    err = p.stderr.decode("utf-8", "replace")
    sanitized(err)
    return p.returncode, p.stdout, err


def relay(*args, now=None):
    p = subprocess.run([RELAY] + list(args), env=env(now or NOW), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    err = p.stderr.decode("utf-8", "replace")
    sanitized(err)
    if p.returncode != 0:
        raise AssertionError("relay exited %d: %s" % (p.returncode, err))
    return err


def qids():
    d = os.path.join(TMP, "queue", "info")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def deliver(sender, rcpts, data):
    """Hands a message to bin/deliver; returns its queue name."""
    before = set(qids())
    r, w = os.pipe()
    p = subprocess.Popen([DELIVER], stdin=subprocess.PIPE, stdout=r,
                         stderr=subprocess.PIPE, env=T.base_env(CONF, SANITIZED))
    os.close(r)
    rec = b"F" + sender.encode() + b"\0" + b"".join(b"T" + t.encode() + b"\0" for t in rcpts)
    os.write(w, rec + b"\0")
    p.stdin.write(data)
    p.stdin.close()
    os.write(w, b"Z%d\0" % len(data))
    os.close(w)
    err = p.stderr.read().decode("utf-8", "replace")
    p.wait(30)
    if p.returncode != 0 or T.sanitizer_report(err):
        raise AssertionError("deliver exited %s: %s" % (p.returncode, err))
    new = sorted(set(qids()) - before)
    if len(new) != 1:
        raise AssertionError("deliver queued %r" % new)
    return new[0]


def hand_entry(qid, records, data):
    """A queue entry written by hand: records a list of bytes."""
    q = os.path.join(TMP, "queue")
    T.write_file(os.path.join(q, "mess", qid), data)
    T.write_file(os.path.join(q, "info", qid), b"".join(r + b"\0" for r in records) + b"\0")


def created(qid):
    with open(os.path.join(TMP, "queue", "info", qid), "rb") as f:
        for r in f.read().split(b"\0"):
            if r[:1] == b"C":
                return int(r[1:])
    raise AssertionError("no C record in " + qid)


def size(qid):
    return os.path.getsize(os.path.join(TMP, "queue", "mess", qid))


def age(s):
    """out_age of queue/out.c"""
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm%02ds" % (s // 60, s % 60)
    if s < 86400:
        return "%dh%02dm" % (s // 3600, s // 60 % 60)
    return "%dd%02dh" % (s // 86400, s // 3600 % 24)


def date(t):
    return time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(t))


def set_smarthost(port):
    path = os.path.join(CONF, "dopis.conf")
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if not l.startswith("smarthost")]
    lines.append("smarthost = 127.0.0.1:%d" % port)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def reports(addr):
    """The DSNs in addr's Maildir: [(per-recipient blocks)]."""
    out = []
    for f in T.maildir_files(T.maildir_of(TMP, addr)):
        with open(f, "rb") as fh:
            msg = email.message_from_bytes(fh.read(), policy=email.policy.default)
        assert msg.get_content_type() == "multipart/report", msg.get_content_type()
        assert msg.get_param("report-type") == "delivery-status"
        parts = msg.get_payload()
        assert parts[1].get_content_type() == "message/delivery-status"
        out.append(parts[1].get_payload()[1:])
    return out


def has_log(err, *fields):
    """Some line of err is from the queue tool and has all fields."""
    return any(l.startswith("queue ") and all(" " + f in l + " " for f in fields)
               for l in err.splitlines())


# ---------------------------------------------------------------- the queue

M = {}                     # name -> queue name
PEER = None


def build():
    """m1: two recipients deferred (closed port); m2: one failed and
    reported, one deferred (451); m3: untried; the hand entries."""
    global CONF, NOW, QNOW
    closed = T.free_port()
    CONF = T.setup(TMP, DELIVER, conf={"smarthost": "127.0.0.1:%d" % closed,
                                       "retry_min": "300", "retry_max": "3600"})
    NOW = int(time.time())
    QNOW = NOW + 60
    M["m1"] = deliver("alice@example.org", ["bob@remote.test", "carol@remote.test"],
                      b"Subject: one\n\nhello\n")
    relay("-i", M["m1"])
    set_smarthost(PEER.port)
    M["m2"] = deliver("alice@example.org", ["no.such@remote.test", "later@remote.test"],
                      b"Subject: two\n\nbody \xff\x1b[31m caf\xc3\xa9\n")
    relay("-i", M["m2"])
    M["m3"] = deliver("bob@example.org", ["dan@remote.test"], b"Subject: three\n\n3\n")
    hand_entry(HAND, [
        b"I" + HAND.encode(), b'Fev"il\x1b[2J\xff@remote.test', b"PBODY=8BITMIME",
        b"C%d" % (QNOW - 90061),
        b"Tx\\y\x01@remote.test", b"NFAILURE,DELAY", b"Orfc822;x@remote.test",
        b"Spending 2 %d %d w 4.4.2 mx.remote.test[192.0.2.1] 421 4.4.2 timeout \xc3\xa9"
        % (NOW - 80000, QNOW + 3540),
    ], b"Subject: hand\n\nx\n")
    # UTF-8 across the tool's 64 KiB reads: a 2-byte sequence at 65535,
    # a 4-byte one at 131070
    big = bytearray(b"Subject: big\n\n" + b"a" * 200000)
    big[65535:65537] = "\u00e9".encode()
    big[131070:131074] = "\U0001f600".encode()
    big[150000:150001] = b"\x80"          # a stray continuation byte
    M["big"] = BIG
    hand_entry(BIG, [b"I" + BIG.encode(), b"Fcarol@example.net", b"C%d" % NOW,
                     b"Tfred@remote.test"], bytes(big))
    M["bigdata"] = bytes(big)


def expected_human():
    m1, m2, m3 = M["m1"], M["m2"], M["m3"]
    refused = "    last: 4.4.1 [127.0.0.1]: connect to [127.0.0.1]: Connection refused"
    blocks = {
        m1: ["%s  %d bytes  age %s  from <alice@example.org>" % (m1, size(m1), age(QNOW - created(m1))),
             "  <bob@remote.test> pending, 1 attempt, next try in 4m00s", refused,
             "  <carol@remote.test> pending, 1 attempt, next try in 4m00s", refused],
        m2: ["%s  %d bytes  age %s  from <alice@example.org>" % (m2, size(m2), age(QNOW - created(m2))),
             "  <no.such@remote.test> bounced, 1 attempt",
             "    last: 5.1.1 [127.0.0.1]: 550 5.1.1 no",
             "  <later@remote.test> pending, 1 attempt, next try in 4m00s",
             "    last: 4.3.0 [127.0.0.1]: 451 4.3.0 try later"],
        m3: ["%s  %d bytes  age %s  from <bob@example.org>" % (m3, size(m3), age(QNOW - created(m3))),
             "  <dan@remote.test> pending, 0 attempts, next try now"],
        HAND: ['%s  %d bytes  age 1d01h  from <ev"il\\x1b[2J\\xff@remote.test>' % (HAND, size(HAND)),
               "  <x\\\\y\\x01@remote.test> pending, 2 attempts, next try in 59m00s, delay warning sent",
               "    last: 4.4.2 mx.remote.test[192.0.2.1]: 421 4.4.2 timeout \u00e9"],
        BIG: ["%s  %d bytes  age 1m00s  from <carol@example.net>" % (BIG, size(BIG)),
              "  <fred@remote.test> pending, 0 attempts, next try now"],
    }
    out = []
    for q in sorted(blocks):
        out += blocks[q] + [""]
    total = sum(size(q) for q in blocks)
    return "\n".join(out) + "\n-- 5 messages, %d bytes\n" % total


def rcpt(address, state="pending", attempts=0, first=0, next_=0, due=False, warned=False,
         notify=None, orcpt=None, status=None, remote=None, text=None):
    return {"address": address, "state": state, "attempts": attempts, "first": first,
            "next": next_, "due": due, "warned": warned, "notify": notify, "orcpt": orcpt,
            "status": status, "remote": remote, "text": text}


def expected_json():
    m1, m2, m3 = M["m1"], M["m2"], M["m3"]

    def msg(q, sender, rcpts, params=(), mid=None, created_=None):
        c = created(q) if created_ is None else created_
        return {"id": q, "message_id": mid or q, "size": size(q), "error": None,
                "created": c, "age": QNOW - c, "sender": sender,
                "params": list(params), "recipients": rcpts}
    refused = dict(attempts=1, first=NOW, next_=NOW + 300, status="4.4.1", remote="[127.0.0.1]",
                   text="connect to [127.0.0.1]: Connection refused")
    out = {
        m1: msg(m1, "alice@example.org", [rcpt("bob@remote.test", **refused),
                                          rcpt("carol@remote.test", **refused)]),
        m2: msg(m2, "alice@example.org", [
            rcpt("no.such@remote.test", "bounced", 1, NOW, 0, status="5.1.1",
                 remote="[127.0.0.1]", text="550 5.1.1 no"),
            rcpt("later@remote.test", "pending", 1, NOW, NOW + 300, status="4.3.0",
                 remote="[127.0.0.1]", text="451 4.3.0 try later")]),
        m3: msg(m3, "bob@example.org", [rcpt("dan@remote.test", due=True)]),
        HAND: msg(HAND, 'ev"il\x1b[2J\ufffd@remote.test', [
            rcpt("x\\y\x01@remote.test", "pending", 2, NOW - 80000, QNOW + 3540, warned=True,
                 notify="FAILURE,DELAY", orcpt="rfc822;x@remote.test", status="4.4.2",
                 remote="mx.remote.test[192.0.2.1]", text="421 4.4.2 timeout \u00e9")],
            params=["BODY=8BITMIME"], created_=QNOW - 90061),
        BIG: msg(BIG, "carol@example.net", [rcpt("fred@remote.test", due=True)]),
    }
    return {"messages": [out[q] for q in sorted(out)]}


def diff(got, want):
    if got == want:
        return []
    g, w = got.splitlines(), want.splitlines()
    for i in range(max(len(g), len(w))):
        a = g[i] if i < len(g) else "<none>"
        b = w[i] if i < len(w) else "<none>"
        if a != b:
            return ["line %d:\n  got  %r\n  want %r" % (i + 1, a, b), "whole output:\n" + got]
    return ["outputs differ: %r / %r" % (got, want)]


# ---------------------------------------------------------------- tests

def t_list():
    rc, out, err = queue()
    probs = [] if rc == 0 else ["exit %d: %s" % (rc, err)]
    if any(b < 0x20 and b != 0x0a for b in out) or 0x7f in out:
        probs.append("a control byte reached the terminal: %r" % out)
    return probs + diff(out.decode("utf-8"), expected_human())


def t_list_command():
    # "list" is the default command; --json may come after it
    a, b = queue(), queue("list")
    c, d = queue("--json"), queue("list", "--json")
    return [] if a[:2] == b[:2] and c[:2] == d[:2] else ["list differs from the default"]


def t_list_json():
    rc, out, err = queue("--json")
    probs = [] if rc == 0 else ["exit %d: %s" % (rc, err)]
    try:
        got = json.loads(out.decode("utf-8", "strict"))
    except ValueError as e:
        return probs + ["not JSON (%s): %r" % (e, out)]
    want = expected_json()
    if got != want:
        gm, wm = got.get("messages", []), want["messages"]
        for g, w in zip(gm, wm):
            if g != w:
                probs.append("message %s:\n  got  %r\n  want %r" % (w["id"], g, w))
        if len(gm) != len(wm):
            probs.append("%d messages, want %d" % (len(gm), len(wm)))
        probs = probs or ["got %r" % got]
    if out.count(b"\n") != 1 or not out.endswith(b"\n"):
        probs.append("not one line")
    return probs


def t_show():
    m2 = M["m2"]
    rc, out, err = queue("show", m2)
    c = created(m2)
    later = NOW + 300
    want = ("id: %s\nmessage id: %s\nsize: %d bytes\nqueued: %s (%s ago)\n"
            "sender: <alice@example.org>\n"
            "  <no.such@remote.test> bounced, 1 attempt\n"
            "    first attempt: %s\n"
            "    last: 5.1.1 [127.0.0.1]: 550 5.1.1 no\n"
            "  <later@remote.test> pending, 1 attempt, next try in 4m00s\n"
            "    first attempt: %s\n"
            "    next try: %s\n"
            "    last: 4.3.0 [127.0.0.1]: 451 4.3.0 try later\n"
            "\n" % (m2, m2, size(m2), date(c), age(QNOW - c), date(NOW), date(NOW), date(later))
            ).encode() + b"Subject: two\n\nbody \xff\x1b[31m caf\xc3\xa9\n"
    probs = [] if rc == 0 else ["exit %d: %s" % (rc, err)]
    if out != want:
        probs.append("got:\n%r\nwant:\n%r" % (out, want))
    return probs


def t_show_hand():
    rc, out, err = queue("show", HAND)
    text = out.decode("utf-8")
    probs = [] if rc == 0 else ["exit %d: %s" % (rc, err)]
    for line in ['sender: <ev"il\\x1b[2J\\xff@remote.test>', "parameter: BODY=8BITMIME",
                 "  <x\\\\y\\x01@remote.test> pending, 2 attempts, next try in 59m00s, delay warning sent",
                 "    notify: FAILURE,DELAY", "    orcpt: rfc822;x@remote.test",
                 "    first attempt: %s" % date(NOW - 80000),
                 "    next try: %s" % date(QNOW + 3540)]:
        if line not in text.split("\n"):
            probs.append("no line %r in:\n%s" % (line, text))
    if not out.endswith(b"\n\nSubject: hand\n\nx\n"):
        probs.append("the message is not at the end: %r" % out)
    return probs


def t_show_json():
    probs = []
    for name, q, data in (("m2", M["m2"], b"Subject: two\n\nbody \xff\x1b[31m caf\xc3\xa9\n"),
                          ("big", BIG, M["bigdata"])):
        rc, out, err = queue("--json", "show", q)
        if rc != 0:
            probs.append("%s: exit %d: %s" % (name, rc, err))
            continue
        try:
            got = json.loads(out.decode("utf-8", "strict"))
        except ValueError as e:
            probs.append("%s: not JSON (%s): %r" % (name, e, out[:300]))
            continue
        want = dict(next(m for m in expected_json()["messages"] if m["id"] == q))
        want["message"] = data.decode("utf-8", "replace")
        for k in want:
            if got.get(k) != want[k]:
                g, w = got.get(k), want[k]
                if k == "message":
                    i = next((i for i in range(min(len(g or ""), len(w))) if g[i] != w[i]), None)
                    probs.append("%s: message differs at %r (of %d, %d)" % (name, i, len(g or ""), len(w)))
                else:
                    probs.append("%s: %s: got %r, want %r" % (name, k, g, w))
        if set(got) != set(want):
            probs.append("%s: members %r" % (name, sorted(got)))
    return probs


def t_errors():
    probs = []
    for args, code, field in [
            (("show", "nosuch"), 66, "event=no-such-message"),
            (("delete", "nosuch"), 66, "event=no-such-message"),
            (("bounce", "nosuch"), 66, "event=no-such-message"),
            (("flush", "nosuch"), 66, "event=no-such-message"),
            (("--json", "show", "nosuch"), 66, "event=no-such-message"),
            (("frobnicate",), 64, "event=usage"),
            (("show",), 64, "event=usage"),
            (("list", "extra"), 64, "event=usage"),
            (("delete",), 64, "event=usage"),
            (("delete", "a", "b"), 64, "event=usage"),
            (("delete", "../info/x"), 64, "event=usage"),
            (("show", ".hidden"), 64, "event=usage"),
            (("--json", "delete", M["m3"]), 64, "event=usage"),
            (("--json", "flush"), 64, "event=usage"),
            (("-x",), 64, "event=usage")]:
        rc, out, err = queue(*args)
        if rc != code or not has_log(err, field) or out:
            probs.append("%r: exit %d (want %d), stdout %r, stderr %r" % (args, rc, code, out, err))
    if M["m3"] not in qids():
        probs.append("a refused command removed m3")
    return probs


def t_busy():
    # a relay pass holds the lock: delete and bounce do not wait
    m3 = M["m3"]
    before = open(os.path.join(TMP, "queue", "info", m3), "rb").read()
    fd = os.open(os.path.join(TMP, "queue", "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    probs = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for cmd in ("delete", "bounce"):
            t = time.time()
            rc, out, err = queue(cmd, m3)
            if rc != 75 or not has_log(err, "id=" + m3, "event=busy") or time.time() - t > 10:
                probs.append("%s: exit %d, stderr %r" % (cmd, rc, err))
    finally:
        os.close(fd)
    after = open(os.path.join(TMP, "queue", "info", m3), "rb").read()
    if after != before or not os.path.exists(os.path.join(TMP, "queue", "mess", m3)):
        probs.append("m3 changed while the lock was held")
    return probs


def t_delete():
    m3 = M["m3"]
    rc, out, err = queue("delete", m3)
    probs = [] if rc == 0 and has_log(err, "id=" + m3, "event=deleted") else \
        ["exit %d, stderr %r" % (rc, err)]
    for sub in ("info", "mess"):
        if os.path.exists(os.path.join(TMP, "queue", sub, m3)):
            probs.append("%s/%s is still there" % (sub, m3))
    rc, out, err = queue("show", m3)
    if rc != 66:
        probs.append("show after delete: exit %d" % rc)
    rc, out, err = queue()
    if m3.encode() in out:
        probs.append("still listed: %r" % out)
    rc, out, err = queue("delete", m3)
    if rc != 66:
        probs.append("second delete: exit %d" % rc)
    return probs


def t_bounce():
    m1 = M["m1"]
    n = len(reports("alice@example.org"))
    rc, out, err = queue("bounce", m1)
    probs = [] if rc == 0 else ["exit %d: %s" % (rc, err)]
    if not has_log(err, "id=" + m1, "event=bounced", "recipients=2"):
        probs.append("no bounced line in %r" % err)
    if m1 in qids() or os.path.exists(os.path.join(TMP, "queue", "mess", m1)):
        probs.append("%s is still queued" % m1)
    reps = reports("alice@example.org")
    if len(reps) != n + 1:
        return probs + ["alice has %d reports, want %d" % (len(reps), n + 1)]
    # the newest: the Maildir names start with the time, but both may
    # fall in one second; find the one for bob and carol
    blocks = next((r for r in reps if any("bob@remote.test" in str(b["Final-Recipient"]) for b in r)), None)
    if blocks is None:
        return probs + ["no report names bob@remote.test"]
    got = sorted((str(b["Final-Recipient"]), str(b["Action"]), str(b["Status"]),
                  str(b["Diagnostic-Code"])) for b in blocks)
    want = sorted(("rfc822; %s@remote.test" % u, "failed", "5.0.0",
                   "X-Dopis; bounced by the administrator") for u in ("bob", "carol"))
    if got != want:
        probs.append("report blocks %r, want %r" % (got, want))
    return probs


def t_bounce_failed_stays():
    # m2: no.such is bounced already (reported once), later is pending:
    # bounce reports later only
    m2 = M["m2"]
    n = len(reports("alice@example.org"))
    rc, out, err = queue("bounce", m2)
    probs = [] if rc == 0 and has_log(err, "event=bounced", "recipients=1") else \
        ["exit %d: %s" % (rc, err)]
    reps = reports("alice@example.org")
    new = [r for r in reps if any("later@remote.test" in str(b["Final-Recipient"]) for b in r)]
    if len(reps) != n + 1 or len(new) != 1 or len(new[0]) != 1:
        probs.append("reports: %d (was %d), about later: %r" % (len(reps), n, new))
    if m2 in qids():
        probs.append("m2 is still queued")
    return probs


def t_flush_one():
    PEER.accept_later = True
    PEER.messages.clear()
    m4 = deliver("alice@example.org", ["later2@remote.test"], b"Subject: four\n\n4\n")
    rc, out, err = queue("flush", m4)
    probs = [] if rc == 0 else ["exit %d: %s" % (rc, err)]
    if PEER.messages != [("alice@example.org", ["later2@remote.test"])]:
        probs.append("the peer got %r" % PEER.messages)
    if m4 in qids():
        probs.append("m4 is still queued")
    if HAND not in qids() or BIG not in qids():
        probs.append("flush ID worked other messages too")
    return probs


def t_flush_all():
    for q in (HAND, BIG):
        rc, out, err = queue("delete", q)
        if rc != 0:
            return ["delete %s: exit %d %s" % (q, rc, err)]
    PEER.messages.clear()
    m5 = deliver("bob@example.org", ["eve@remote.test"], b"Subject: five\n\n5\n")
    m6 = deliver("bob@example.org", ["later3@remote.test"], b"Subject: six\n\n6\n")
    rc, out, err = queue("flush")
    probs = [] if rc == 0 else ["exit %d: %s" % (rc, err)]
    got = sorted(r for _, rs in PEER.messages for r in rs)
    if got != ["eve@remote.test", "later3@remote.test"]:
        probs.append("the peer got %r" % PEER.messages)
    if m5 in qids() or m6 in qids():
        probs.append("still queued: %r" % qids())
    rc, out, err = queue()
    if (rc, out) != (0, b"queue is empty\n"):
        probs.append("empty list: %d %r" % (rc, out))
    rc, out, err = queue("--json")
    if rc != 0 or json.loads(out) != {"messages": []}:
        probs.append("empty JSON: %d %r" % (rc, out))
    return probs


def t_mailq():
    link = os.path.join(TMP, "mailq")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(QUEUE, link)
    m = deliver("alice@example.org", ["zed@remote.test"], b"Subject: mailq\n\nq\n")
    rc, out, err = queue(argv0=link)
    probs = [] if rc == 0 and out.startswith(m.encode() + b"  ") else ["mailq: %d %r %r" % (rc, out, err)]
    # the relay beside the real program is found through the link
    rc, out, err = queue("flush", m, argv0=link)
    if rc != 0 or m in qids():
        probs.append("mailq flush: %d %r" % (rc, err))
    return probs


def t_owner():
    # root works on a queue owned by another user as that user
    if os.geteuid() != 0:
        return []
    m = deliver("alice@example.org", ["no.one@remote.test"], b"Subject: owner\n\n.\n")
    q = os.path.join(TMP, "queue")
    os.chmod(TMP, 0o755)
    for d, subdirs, files in os.walk(q):
        for n in [d] + [os.path.join(d, f) for f in files]:
            os.chown(n, 65534, 65534)
    if os.path.exists(os.path.join(q, "lock")):
        os.unlink(os.path.join(q, "lock"))
    rc, out, err = queue("delete", m)
    probs = [] if rc == 0 else ["exit %d: %s" % (rc, err)]
    st = os.stat(os.path.join(q, "lock"))
    if (st.st_uid, st.st_gid) != (65534, 65534):
        probs.append("the lock belongs to %d:%d" % (st.st_uid, st.st_gid))
    for d, subdirs, files in os.walk(q):
        for n in [d] + [os.path.join(d, f) for f in files]:
            os.chown(n, 0, 0)
    return probs


def main():
    global PEER
    PEER = Peer()
    try:
        try:
            build()
        except Exception as e:
            R.run("queue-setup", lambda: ["could not build the queue: %r" % e])
            R.exit()
        for name, fn in [("list", t_list), ("list-command", t_list_command),
                         ("list-json", t_list_json), ("show", t_show), ("show-hand", t_show_hand),
                         ("show-json", t_show_json), ("errors", t_errors), ("busy", t_busy),
                         ("delete", t_delete), ("bounce", t_bounce),
                         ("bounce-failed-stays", t_bounce_failed_stays),
                         ("flush-one", t_flush_one), ("flush-all", t_flush_all),
                         ("mailq", t_mailq), ("owner", t_owner)]:
            R.run("queue-" + name, fn)
        R.run("queue-invariants", lambda: T.queue_problems(TMP) + T.maildir_problems(TMP))
    finally:
        PEER.stop()
    R.exit()


if __name__ == "__main__":
    main()
