#!/usr/bin/python3
"""Tests of bin/deliver when one local Maildir fails while others work:
that recipient goes into the queue (a T record under an address that
routes back to the same Maildir, its N/O records kept), the others'
copies stand, deliver exits 0, and bin/relay later hands it back to
deliver, which delivers it exactly once.  When nothing but the failed
copies would be stored, or the queue cannot take the message either,
deliver still fails the whole message (75) and leaves nothing.

The failing Maildir is on a tiny tmpfs that is full, so this needs
root (mount); without it every check is skipped with a note.

usage: test_deliver_partial.py REPO [BINDIR]   (BINDIR default: REPO/bin)
Prints "ok NAME" or "FAIL NAME: why" per check; exits 1 on any failure.
"""
import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402  (sanitizer settings only)

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
BIN = sys.argv[2] if len(sys.argv) > 2 else "bin"
BINDIR = BIN if os.path.isabs(BIN) else os.path.join(ROOT, BIN)
DELIVER = os.path.join(BINDIR, "deliver")
RELAY = os.path.join(BINDIR, "relay")
SANITIZED = os.environ.get("DOPIS_SANITIZED", "0") == "1"
HOST = "mx.example.org"
MSG = b"Received: from x\nSubject: partial\n\nline one\n.dot\n\nend\n"
# about 200 KB: more than deliver reads at once (64 KiB) and more than
# the 100 KiB left on a 256k tmpfs, so that the write fails after a
# read or two, and what went into the failed file before must be
# carried over; small enough for the tmpfs once it is free
BIG = b"Subject: big\n\n" + b"".join(b"%07d 0123456789abcdefghij\n" % i
                                    for i in range(6500))
failures = 0
BASE = tempfile.mkdtemp(prefix="dopis-partial-")


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why))


def skip(name, why):
    print("ok %s # skip %s" % (name, why))


class Small:
    """A tiny tmpfs, mounted at path; fill() leaves `room` bytes."""

    def __init__(self, name, size="64k"):
        self.path = os.path.join(BASE, name + ".fs")
        os.makedirs(self.path)
        self.ok = subprocess.call(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size,
                                   "tmpfs", self.path], stderr=subprocess.DEVNULL) == 0
        self.filler = os.path.join(self.path, "filler")

    def fill(self, room=0):
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        if room:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - room))
        os.close(fd)

    def free(self):
        os.unlink(self.filler)

    def umount(self):
        if self.ok:
            subprocess.call(["umount", self.path])


def maildir(path):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    return path


def setup(name, users, aliases=(), queue=None):
    """A configuration directory; returns (confdir, mailroot, queue)."""
    d = os.path.join(BASE, name)
    os.makedirs(d)
    q = queue or os.path.join(d, "queue")
    with open(os.path.join(d, "dopis.conf"), "w") as f:
        f.write("hostname = %s\nmailroot = %s/mail\nqueue = %s\n" % (HOST, d, q))
    with open(os.path.join(d, "localdomains"), "w") as f:
        f.write("example.org\n")
    with open(os.path.join(d, "users"), "w") as f:
        f.write("".join(u + "\n" for u in users))
    with open(os.path.join(d, "aliases"), "w") as f:
        f.write("".join(a + "\n" for a in aliases))
    os.makedirs(os.path.join(d, "mail"))
    return d, os.path.join(d, "mail"), q


def environ(conf):
    e = {"PATH": "/usr/local/bin:/usr/bin:/bin", "DOPIS_CONF": conf,
         "LANG": "C", "LC_ALL": "C"}
    if SANITIZED:
        e.update(T.SANITIZER_ENV)
    return e


def envelope(rcpts, sender="sender@x.org", mid="part.id"):
    """rcpts: addresses, or (address, [b"Nnotify", b"Oorcpt"]) pairs."""
    e = b"I" + mid.encode() + b"\0F" + sender.encode() + b"\0"
    for r in rcpts:
        addr, extra = (r, []) if isinstance(r, str) else r
        e += b"T" + addr.encode() + b"\0" + b"".join(x + b"\0" for x in extra)
    return e + b"\0"


def deliver(conf, env, msg):
    """Runs deliver; returns (exit status, log)."""
    er, ew = os.pipe()
    mr, mw = os.pipe()
    p = subprocess.Popen([DELIVER], stdin=mr, stdout=er, stderr=subprocess.PIPE,
                         env=environ(conf), close_fds=True)
    os.close(mr)
    os.close(er)
    try:
        os.write(ew, env)
        v = memoryview(msg)
        while len(v):
            v = v[os.write(mw, v):]
        os.close(mw)
        os.write(ew, b"Z%d\0" % len(msg))
    except OSError:
        pass
    os.close(ew)
    err = p.stderr.read().decode("utf-8", "replace")
    p.wait(60)
    return p.returncode, err


def relay(conf, *args):
    p = subprocess.run([RELAY, *args], env=environ(conf), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def files(d):
    out = []
    for dp, _, fs in os.walk(d):
        out += [os.path.relpath(os.path.join(dp, f), d) for f in fs]
    return sorted(f for f in out if f != "filler" and f != "lock")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def copies(md):
    n = os.path.join(md, "new")
    return [read(os.path.join(n, f)) for f in sorted(os.listdir(n))] \
        if os.path.isdir(n) else []


def want(rcpt, msg, sender="sender@x.org"):
    return b"Return-Path: <%s>\nDelivered-To: %s\n" % (sender.encode(), rcpt.encode()) + msg


def queued(q):
    """{qid: [records]} of the queue's info files."""
    d = os.path.join(q, "info")
    return {n: read(os.path.join(d, n)).split(b"\0")
            for n in (sorted(os.listdir(d)) if os.path.isdir(d) else [])}


def no_sanitizer(name, err):
    rep = T.sanitizer_report(err)
    check(name + " no sanitizer report", not rep, rep)


def t_one_full(name, order, msg, room=0):
    """alice on the normal disk, bob on the full tmpfs; order says who
    is first in the envelope (the first copy is the one the message is
    streamed into while it is read)."""
    slug = name.replace(" ", "-")   # users lines end at a blank
    small = Small(slug, "256k" if room else "64k")
    if not small.ok:
        skip(name, "cannot mount a tmpfs")
        return
    try:
        bobmd = maildir(os.path.join(small.path, "bob", "Maildir"))
        conf, mr, q = setup(slug, ["alice@example.org",
                                   "bob@example.org %s" % bobmd])
        small.fill(room)
        rcpts = {"alice": "alice@example.org",
                 # (no SUCCESS: its report would be a message in
                 # the queue after relay's delivery)
                 "bob": ("bob@example.org", [b"NFAILURE",
                                             b"Orfc822;Bob@example.org"])}
        code, err = deliver(conf, envelope([rcpts[u] for u in order]), msg)
        no_sanitizer(name, err)
        check(name + " exit 0", code == 0, "exit %s: %s" % (code, err))
        alice = os.path.join(mr, "example.org", "alice")
        got = copies(alice)
        check(name + " alice has it byte for byte",
              got == [want("alice@example.org", msg)],
              "alice holds %d copies %r" % (len(got), [g[:80] for g in got]))
        check(name + " alice tmp empty", os.listdir(os.path.join(alice, "tmp")) == [],
              os.listdir(os.path.join(alice, "tmp")))
        check(name + " bob has nothing", files(os.path.join(small.path, "bob")) == [],
              files(os.path.join(small.path, "bob")))
        info = queued(q)
        check(name + " one queued message", list(info) == ["part.id"] and
              files(q) == ["info/part.id", "mess/part.id"], "queue: %r" % files(q))
        if list(info) == ["part.id"]:
            recs = info["part.id"]
            check(name + " T record for bob, N and O kept",
                  [r for r in recs if r[:1] in (b"T", b"N", b"O")] ==
                  [b"Tbob@example.org", b"NFAILURE", b"Orfc822;Bob@example.org"],
                  "info %r" % recs)
            check(name + " queued message bytes", read(os.path.join(q, "mess", "part.id")) == msg,
                  "mess differs")
        check(name + " log queued-local",
              re.search(r"^deliver id=part\.id event=queued-local rcpt=bob@example\.org "
                        r".*qid=part\.id .*reason=\"[^\"]*No space left on device",
                        err, re.M) is not None and err.count("event=queued-local") == 1, err)
        check(name + " log done", re.search(r"event=done .*local=1 remote=0 .*queuedlocal=1",
                                            err) is not None, err)

        # still full: relay's hand-off fails for the moment (75), and
        # deliver does not queue it again as a new message
        code, rerr = relay(conf)
        no_sanitizer(name + " relay full", rerr)
        info = queued(q)
        check(name + " relay while full defers", list(info) == ["part.id"] and
              any(r.startswith(b"Spending 1 ") for r in info["part.id"]) and
              copies(bobmd) == [], "rc %s queue %r: %s" % (code, info, rerr))

        small.free()
        code, rerr = relay(conf, "-f")
        no_sanitizer(name + " relay", rerr)
        check(name + " relay exit 0", code == 0, "exit %s: %s" % (code, rerr))
        got = copies(bobmd)
        check(name + " bob has it once, byte for byte",
              got == [want("bob@example.org", msg)],
              "bob holds %d copies %r: %s" % (len(got), [g[:80] for g in got], rerr))
        check(name + " queue empty", queued(q) == {} and files(q) == [],
              "queue %r" % files(q))
        code, rerr = relay(conf, "-f")
        check(name + " no duplicates", len(copies(bobmd)) == 1 and
              len(copies(alice)) == 1, "%d %d" % (len(copies(bobmd)), len(copies(alice))))
    finally:
        small.umount()


def t_folder():
    """A Maildir++ folder spelt with capitals (.Work) is queued under
    the address that routes back to it, and relay delivers it there."""
    name = "folder"
    small = Small(name)
    if not small.ok:
        skip(name, "cannot mount a tmpfs")
        return
    try:
        bobmd = maildir(os.path.join(small.path, "bob", "Maildir"))
        work = maildir(os.path.join(bobmd, ".Work"))
        conf, mr, q = setup(name, ["alice@example.org", "bob@example.org %s" % bobmd])
        small.fill()
        code, err = deliver(conf, envelope(["alice@example.org", "bob+Work@example.org"]), MSG)
        check(name + " exit 0", code == 0, "exit %s: %s" % (code, err))
        info = queued(q)
        check(name + " queued under the folder's spelling",
              [r for recs in info.values() for r in recs if r[:1] == b"T"] ==
              [b"Tbob+Work@example.org"], "info %r" % info)
        small.free()
        code, rerr = relay(conf, "-f")
        check(name + " relay delivers into the folder",
              copies(work) == [want("bob+work@example.org", MSG)] and copies(bobmd) == [],
              "folder %r inbox %r: %s" % (copies(work), copies(bobmd), rerr))
        check(name + " queue empty", files(q) == [], "queue %r" % files(q))
    finally:
        small.umount()


def t_all_or_nothing():
    """What stays all or nothing: the queue on the full file system too;
    no other copy stored; an address that would not lead back to the
    same Maildir alone."""
    small = Small("aon")
    if not small.ok:
        skip("all or nothing", "cannot mount a tmpfs")
        return
    try:
        # every target fails and the queue is on the full tmpfs too
        name = "queue full too"
        am = maildir(os.path.join(small.path, "alice"))
        bm = maildir(os.path.join(small.path, "bob"))
        q = os.path.join(small.path, "queue")
        conf, mr, _ = setup("aon1", ["alice@example.org %s" % am, "bob@example.org %s" % bm],
                            queue=q)
        small.fill()
        code, err = deliver(conf, envelope(["alice@example.org", "bob@example.org",
                                            "carol@remote.example"]), MSG)
        no_sanitizer(name, err)
        check(name + " exit 75", code == 75, "exit %s: %s" % (code, err))
        check(name + " nothing anywhere", files(small.path) == [] and files(mr) == [],
              "left %r %r" % (files(small.path), files(mr)))
        check(name + " nothing logged as queued", "event=queued" not in err and
              "event=delivered" not in err, err)

        # one copy on the disk is fine, but the queue (on the tmpfs)
        # cannot take the failed one: everything goes
        name = "queue full, one copy good"
        conf, mr, _ = setup("aon2", ["alice@example.org", "bob@example.org %s" % bm], queue=q)
        code, err = deliver(conf, envelope(["bob@example.org", "alice@example.org"]), BIG)
        check(name + " exit 75", code == 75, "exit %s: %s" % (code, err))
        check(name + " nothing anywhere", files(small.path) == [] and files(mr) == [],
              "left %r %r" % (files(small.path), files(mr)))

        # every local copy fails, the queue could take them, but nothing
        # else is stored: a plain 75 (relay, handing a queued local
        # recipient back, must see it fail, not requeued)
        name = "only failed copies"
        conf, mr, q2 = setup("aon3", ["alice@example.org %s" % am, "bob@example.org %s" % bm])
        code, err = deliver(conf, envelope(["alice@example.org", "bob@example.org"]), MSG)
        check(name + " exit 75", code == 75, "exit %s: %s" % (code, err))
        check(name + " nothing anywhere", files(small.path) == [] and files(q2) == [],
              "left %r %r" % (files(small.path), files(q2)))

        # ... but with a remote recipient the queue is written anyway
        name = "failed copies and a remote one"
        code, err = deliver(conf, envelope(["alice@example.org", "bob@example.org",
                                            "carol@remote.example"]), MSG)
        check(name + " exit 0", code == 0, "exit %s: %s" % (code, err))
        info = queued(q2)
        check(name + " all three queued",
              [r for recs in info.values() for r in recs if r[:1] == b"T"] ==
              [b"Talice@example.org", b"Tbob@example.org", b"Tcarol@remote.example"],
              "info %r" % info)
        check(name + " nothing in the Maildirs", files(small.path) == [],
              "left %r" % files(small.path))
        shutil.rmtree(q2)

        # bob's alias names bob himself: his address would bring alice
        # a second copy, so it cannot wait in the queue
        name = "self alias"
        conf, mr, q3 = setup("aon4", ["alice@example.org", "bob@example.org %s" % bm],
                             aliases=["bob@example.org: bob@example.org, alice@example.org"])
        code, err = deliver(conf, envelope(["bob@example.org"]), MSG)
        check(name + " exit 75", code == 75, "exit %s: %s" % (code, err))
        check(name + " reason", "cannot be queued" in err, err)
        check(name + " nothing anywhere", files(small.path) == [] and files(mr) == []
              and files(q3) == [], "left %r %r %r" % (files(small.path), files(mr), files(q3)))
    finally:
        small.umount()


def main():
    for p in (DELIVER, RELAY):
        if not os.access(p, os.X_OK):
            print("FAIL setup: no %s" % p)
            sys.exit(1)
    if os.geteuid() != 0:
        skip("partial delivery", "needs root to mount a tmpfs (CI runs as root)")
        sys.exit(0)
    os.chmod(BASE, 0o755)
    try:
        for t, args in ((t_one_full, ("bob second", ("alice", "bob"), MSG)),
                        (t_one_full, ("bob first", ("bob", "alice"), MSG)),
                        # bob's copy is the one streamed into, and the
                        # tmpfs fills half-way through the message
                        (t_one_full, ("bob first big", ("bob", "alice"), BIG, 100 << 10)),
                        (t_one_full, ("bob second big", ("alice", "bob"), BIG, 100 << 10)),
                        (t_folder, ()), (t_all_or_nothing, ())):
            try:
                t(*args)
            except Exception as e:   # a crash of one check is a failure
                check(t.__name__, False, "exception %r" % e)
    finally:
        shutil.rmtree(BASE, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
