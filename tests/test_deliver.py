#!/usr/bin/python3
"""Tests of bin/deliver on its own: the envelope protocol of
dopis-deliver(8), the exact bytes in the Maildirs and the queue, the
all-or-nothing rule on every failure, and constant memory.

usage: test_deliver.py REPO [BINDIR]   (BINDIR default: REPO/bin)
Prints "ok NAME" or "FAIL NAME: why" per check; exits 1 on any failure.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
BIN = sys.argv[2] if len(sys.argv) > 2 else "bin"
DELIVER = os.path.join(ROOT, BIN, "deliver") if not os.path.isabs(BIN) \
    else os.path.join(BIN, "deliver")
HOST = "mx.example.org"
failures = 0
BASE = tempfile.mkdtemp(prefix="dopis-deliver-")
os.chmod(BASE, 0o755)   # readable by the unprivileged user of some checks


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why))


def skip(name, why):
    print("ok %s # skip %s" % (name, why))


def setup(name, conf_extra="", users=None, aliases=None, mailroot="mail",
          make_mailroot=True):
    """A fresh configuration directory; returns (confdir, mailroot, queue)."""
    d = os.path.join(BASE, name)
    os.makedirs(d)
    with open(os.path.join(d, "dopis.conf"), "w") as f:
        f.write("hostname = %s\nmailroot = %s\nqueue = queue\n%s"
                % (HOST, mailroot, conf_extra))
    with open(os.path.join(d, "localdomains"), "w") as f:
        f.write("example.org\n")
    with open(os.path.join(d, "users"), "w") as f:
        f.write("".join(u + "\n" for u in (users or
                ["alice@example.org", "bob@example.org"])))
    if aliases:
        with open(os.path.join(d, "aliases"), "w") as f:
            f.write("".join(a + "\n" for a in aliases))
    mr = mailroot if os.path.isabs(mailroot) else os.path.join(d, mailroot)
    if make_mailroot:
        os.makedirs(mr, exist_ok=True)
    return d, mr, os.path.join(d, "queue")


def envelope(rcpts, sender="sender@x.org", mid="some.id", params=()):
    e = b""
    if mid is not None:
        e += b"I" + mid.encode() + b"\0"
    e += b"F" + sender.encode() + b"\0"
    for p in params:
        e += b"P" + p.encode() + b"\0"
    for r in rcpts:
        e += b"T" + r.encode() + b"\0"
    return e + b"\0"


class Result:
    pass


def run(conf, env, msg=b"", commit=None, after=b"", chunks=None,
        preexec=None):
    """Runs deliver: envelope on fd 1, message on fd 0, then the commit
    record (default: the right one; b"" for none).  msg may be bytes or
    a (chunk, count) pair for big messages written chunk by chunk."""
    mr, mw = os.pipe()
    er, ew = os.pipe()
    environ = dict(os.environ, DOPIS_CONF=conf)
    p = subprocess.Popen([DELIVER], stdin=mr, stdout=er,
                         stderr=subprocess.PIPE, env=environ,
                         preexec_fn=preexec, close_fds=True)
    os.close(mr)
    os.close(er)
    if isinstance(msg, tuple):
        size = len(msg[0]) * msg[1]
    else:
        size = len(msg)
    if commit is None:
        commit = b"Z%d\0" % size

    def feed():
        try:
            os.write(ew, env) if len(env) < 65536 else _writeall(ew, env)
            if isinstance(msg, tuple):
                for _ in range(msg[1]):
                    _writeall(mw, msg[0])
            else:
                _writeall(mw, msg)
        except OSError:
            pass
        try:
            os.close(mw)
        except OSError:
            pass
        # deliver's peak memory so far (the whole message has gone
        # through it); ru_maxrss would count the forked Python too
        try:
            with open("/proc/%d/status" % p.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        r.hwm_kib = int(line.split()[1])
        except OSError:
            pass
        try:
            _writeall(ew, commit + after)
        except OSError:
            pass
        os.close(ew)
    r = Result()
    r.hwm_kib = None
    t = threading.Thread(target=feed)
    t.start()
    err = p.stderr.read()
    p.stderr.close()
    _, status = os.waitpid(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    t.join()
    r.code = p.returncode
    r.err = err.decode("utf-8", "replace")
    return r


def _writeall(fd, b):
    v = memoryview(b)
    while len(v):
        n = os.write(fd, v)
        v = v[n:]


def files(d):
    """Every regular file below d, as relative paths."""
    out = []
    if not os.path.isdir(d):
        return out
    for dp, _, fs in os.walk(d):
        for f in fs:
            out.append(os.path.relpath(os.path.join(dp, f), d))
    return sorted(out)


def newfiles(maildir):
    n = os.path.join(maildir, "new")
    return sorted(os.listdir(n)) if os.path.isdir(n) else []


def read(path):
    with open(path, "rb") as f:
        return f.read()


NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.(.+),S=(\d+)$")
MSG = b"Received: from x\nSubject: hi\n\nline one\n.dot\n\nend\n"


def local_copy(name, maildir, rcpt, sender="sender@x.org", msg=MSG):
    """Checks one delivered copy; returns its name or None."""
    new = newfiles(maildir)
    if len(new) != 1:
        check(name, False, "new/ of %s holds %r" % (maildir, new))
        return None
    want = b"Return-Path: <" + sender.encode() + b">\nDelivered-To: " + \
        rcpt.encode() + b"\n" + msg
    got = read(os.path.join(maildir, "new", new[0]))
    m = NAME.match(new[0])
    check(name + " bytes", got == want, "got %r" % got[:200])
    check(name + " name", m is not None and m.group(5) == HOST
          and int(m.group(6)) == len(got), "name %r" % new[0])
    check(name + " tmp empty", os.listdir(os.path.join(maildir, "tmp")) == [],
          "tmp holds %r" % os.listdir(os.path.join(maildir, "tmp")))
    return new[0]


def nothing_left(name, *dirs):
    left = [f for d in dirs for f in files(d)]
    check(name + " nothing left", left == [], "left: %r" % left)


def parse_records(b):
    recs = b.split(b"\0")
    return recs


def t_single():
    conf, mr, q = setup("single")
    r = run(conf, envelope(["alice@example.org"]), MSG)
    check("single exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    md = os.path.join(mr, "example.org", "alice")
    local_copy("single", md, "alice@example.org")
    check("single maildir dirs", all(
        os.path.isdir(os.path.join(md, s)) and
        (os.stat(os.path.join(md, s)).st_mode & 0o777) == 0o700
        for s in ("cur", "new", "tmp")), "cur/new/tmp not 0700 dirs")
    check("single log delivered",
          re.search(r"^deliver id=some\.id event=delivered "
                    r"rcpt=alice@example\.org .*size=%d" % (len(MSG) + 60),
                    r.err, re.M) is not None, r.err)
    check("single log summary",
          re.search(r"event=done .*local=1 remote=0 size=%d" % len(MSG),
                    r.err) is not None, r.err)
    check("single log has no content", "line one" not in r.err, r.err)
    check("single no queue", not os.path.exists(q), "queue created")


def t_multi():
    conf, mr, q = setup("multi", aliases=["team@example.org: alice@example.org, bob@example.org"])
    r = run(conf, envelope(["alice@example.org", "bob@example.org",
                            "team@example.org", "Alice@example.org"]), MSG)
    check("multi exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    a = local_copy("multi alice", os.path.join(mr, "example.org", "alice"),
                   "alice@example.org")
    b = local_copy("multi bob", os.path.join(mr, "example.org", "bob"),
                   "bob@example.org")
    check("multi distinct names", a != b, "%r %r" % (a, b))
    check("multi two log lines", r.err.count("event=delivered") == 2, r.err)


def t_nullsender_noid():
    conf, mr, _ = setup("nullsender")
    r = run(conf, envelope(["bob@example.org"], sender="", mid=None), MSG)
    check("nullsender exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    local_copy("nullsender", os.path.join(mr, "example.org", "bob"),
               "bob@example.org", sender="")
    check("noid makes an id", re.search(r"id=[0-9a-f.]+ event=done", r.err)
          is not None, r.err)


def t_plus():
    conf, mr, _ = setup("plus")
    md = os.path.join(mr, "example.org", "alice")
    os.makedirs(os.path.join(md, ".lists"))
    r = run(conf, envelope(["alice+lists@example.org", "alice+none@example.org"]), MSG)
    check("plus exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    local_copy("plus folder", os.path.join(md, ".lists"),
               "alice+lists@example.org")
    local_copy("plus inbox", md, "alice+none@example.org")


def t_empty_and_binary():
    conf, mr, _ = setup("binary")
    msg = bytes(range(1, 256)) * 3 + b"\r\n\0x"
    r = run(conf, envelope(["alice@example.org"]), msg)
    check("binary exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    local_copy("binary", os.path.join(mr, "example.org", "alice"),
               "alice@example.org", msg=msg)
    conf, mr, _ = setup("emptymsg")
    r = run(conf, envelope(["alice@example.org"]), b"")
    check("empty message exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    local_copy("empty message", os.path.join(mr, "example.org", "alice"),
               "alice@example.org", msg=b"")


def t_abort():
    cases = [
        ("abort no commit", dict(commit=b"")),
        ("abort size differs", dict(commit=b"Z1\0")),
        ("abort size garbage", dict(commit=b"Z12x\0")),
        ("abort huge size", dict(commit=b"Z99999999999999999999999\0")),
        ("abort wrong record", dict(commit=b"Tx@y\0")),
        ("abort data after commit", dict(after=b"Tx@y\0")),
        ("abort commit without NUL", dict(commit=b"Z%d" % len(MSG))),
    ]
    for i, (name, kw) in enumerate(cases):
        conf, mr, q = setup("abort%d" % i)
        r = run(conf, envelope(["alice@example.org", "bob@example.org",
                                "carol@remote.example"]), MSG, **kw)
        check(name + " exit 75", r.code == 75, "exit %d: %s" % (r.code, r.err))
        check(name + " logged", "event=aborted" in r.err, r.err)
        nothing_left(name, mr, q)


def t_envelope_errors():
    cases = [
        ("no sender", b"Talice@example.org\0\0"),
        ("no recipient", b"Fa@x.org\0\0"),
        ("two senders", b"Fa@x.org\0Fb@x.org\0Talice@example.org\0\0"),
        ("id after sender", b"Fa@x.org\0Ix\0Talice@example.org\0\0"),
        ("param after rcpt", b"Fa@x.org\0Talice@example.org\0PBODY=8BITMIME\0\0"),
        ("unknown type", b"Fa@x.org\0Xfoo\0Talice@example.org\0\0"),
        ("bad id slash", b"I../x\0Fa@x.org\0Talice@example.org\0\0"),
        ("bad id dot", b"I..\0Fa@x.org\0Talice@example.org\0\0"),
        ("CR LF in sender", b"Fa@x.org>\r\nX-Forged: 1\0Talice@example.org\0\0"),
        ("LF in rcpt", b"Fa@x.org\0Talice@example.org\nx\0\0"),
        ("empty rcpt", b"Fa@x.org\0T\0\0"),
        ("record too long", b"Fa@x.org\0T" + b"a" * 3000 + b"@example.org\0\0"),
        ("cut short", b"Fa@x.org\0Talice@example.org\0"),
        ("nothing", b""),
    ]
    for i, (name, env) in enumerate(cases):
        conf, mr, q = setup("env%d" % i)
        r = run(conf, env, MSG)
        check("envelope %s exit 65" % name, r.code == 65,
              "exit %d: %s" % (r.code, r.err))
        nothing_left("envelope " + name, mr, q)


def t_unknown():
    conf, mr, q = setup("unknown", aliases=["loop@example.org: loop2@example.org",
                                            "loop2@example.org: loop@example.org"])
    r = run(conf, envelope(["alice@example.org", "nobody@example.org"]), MSG)
    check("unknown user exit 67", r.code == 67, "exit %d: %s" % (r.code, r.err))
    check("unknown user logged", "rcpt=nobody@example.org" in r.err, r.err)
    nothing_left("unknown user", mr, q)
    r = run(conf, envelope(["loop@example.org"]), MSG)
    check("alias loop permanent", r.code == 67, "exit %d: %s" % (r.code, r.err))
    nothing_left("alias loop", mr, q)


def t_config_error():
    conf, mr, q = setup("conferr", conf_extra="this is wrong\n")
    r = run(conf, envelope(["alice@example.org"]), MSG)
    check("config error exit 75", r.code == 75, "exit %d: %s" % (r.code, r.err))
    check("config error names file:line", "dopis.conf:4" in r.err, r.err)
    check("config error one line", r.err.count("\n") == 1, r.err)
    nothing_left("config error", mr, q)


def info_records(q, qid):
    return read(os.path.join(q, "info", qid)).split(b"\0")


def t_remote():
    conf, mr, q = setup("remote")
    r = run(conf, envelope(["carol@remote.example", "dave@other.example",
                            "carol@remote.example"],
                           params=["BODY=8BITMIME", "SMTPUTF8"]), MSG)
    check("remote exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    check("remote queue layout", files(q) == ["info/some.id", "mess/some.id"],
          "queue holds %r" % files(q))
    if files(q) != ["info/some.id", "mess/some.id"]:
        return
    check("remote mess bytes", read(os.path.join(q, "mess", "some.id")) == MSG,
          "mess differs")
    recs = info_records(q, "some.id")
    ok = (len(recs) == 9 and recs[0] == b"Isome.id" and
          recs[1] == b"Fsender@x.org" and recs[2] == b"PBODY=8BITMIME" and
          recs[3] == b"PSMTPUTF8" and re.match(rb"^C\d+$", recs[4]) and
          recs[5] == b"Tcarol@remote.example" and
          recs[6] == b"Tdave@other.example" and recs[7] == b"" and
          recs[8] == b"")
    check("remote info records", ok, "info %r" % recs)
    check("remote queue modes", all(
        (os.stat(os.path.join(q, s)).st_mode & 0o777) == 0o700
        for s in ("tmp", "mess", "info")), "modes")
    check("remote log queued", r.err.count("event=queued") == 2 and
          "qid=some.id" in r.err, r.err)
    # the same id again: a suffix, the first message untouched
    r = run(conf, envelope(["carol@remote.example"]), b"second\n")
    check("remote same id exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    check("remote same id suffix", files(q) == ["info/some.id", "info/some.id.1",
                                                 "mess/some.id", "mess/some.id.1"],
          "queue holds %r" % files(q))
    check("remote same id bytes",
          read(os.path.join(q, "mess", "some.id")) == MSG and
          read(os.path.join(q, "mess", "some.id.1")) == b"second\n", "bytes")


def t_mixed():
    conf, mr, q = setup("mixed")
    r = run(conf, envelope(["carol@remote.example", "alice@example.org"]), MSG)
    check("mixed exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    local_copy("mixed local", os.path.join(mr, "example.org", "alice"),
               "alice@example.org")
    check("mixed queue layout", files(q) == ["info/some.id", "mess/some.id"],
          "queue holds %r" % files(q))
    if files(q) == ["info/some.id", "mess/some.id"]:
        check("mixed mess bytes", read(os.path.join(q, "mess", "some.id")) == MSG,
              "mess differs")
        recs = info_records(q, "some.id")
        check("mixed info only remote", [x for x in recs if x.startswith(b"T")]
              == [b"Tcarol@remote.example"], "info %r" % recs)


def t_missing_parent():
    conf, mr, q = setup("nomailroot", make_mailroot=False)
    r = run(conf, envelope(["alice@example.org"]), MSG)
    check("missing mailroot exit 75", r.code == 75, "exit %d: %s" % (r.code, r.err))
    check("missing mailroot not created", not os.path.exists(mr), "created")
    check("missing mailroot reason", "No such file or directory" in r.err, r.err)
    conf, mr, q = setup("noparent", users=["alice@example.org /nonexistent-dopis/alice/Maildir",
                                           "bob@example.org"])
    # bob's copy is stored, so alice waits in the queue (for relay to
    # hand her back to deliver) instead of failing the message
    r = run(conf, envelope(["bob@example.org", "alice@example.org"]), MSG)
    check("missing parent exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    check("missing parent not created",
          not os.path.exists("/nonexistent-dopis"), "created")
    local_copy("missing parent other copy", os.path.join(mr, "example.org", "bob"),
               "bob@example.org")
    check("missing parent queued", files(q) == ["info/some.id", "mess/some.id"] and
          [x for x in info_records(q, "some.id") if x.startswith(b"T")] ==
          [b"Talice@example.org"], "queue holds %r" % files(q))
    check("missing parent logged", "event=queued-local rcpt=alice@example.org" in r.err
          and "No such file or directory" in r.err, r.err)
    conf, mr, q = setup("ownmaildir", users=["alice@example.org Maildir.alice"])
    r = run(conf, envelope(["alice@example.org"]), MSG)
    check("explicit maildir exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    local_copy("explicit maildir", os.path.join(conf, "Maildir.alice"),
               "alice@example.org")


def _nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def t_permission():
    conf, mr, q = setup("perm")
    os.chmod(mr, 0o555)
    pre = _nobody if os.geteuid() == 0 else None
    r = run(conf, envelope(["alice@example.org"]), MSG, preexec=pre)
    check("permission exit 75", r.code == 75, "exit %d: %s" % (r.code, r.err))
    check("permission reason", "Permission denied" in r.err, r.err)
    nothing_left("permission", mr, q)
    # the queue not writable: the local copy must go too
    conf, mr, q = setup("permq")
    os.chmod(mr, 0o777)
    os.makedirs(q)
    os.chmod(q, 0o555)
    r = run(conf, envelope(["alice@example.org", "carol@remote.example"]), MSG,
            preexec=pre)
    check("queue permission exit 75", r.code == 75, "exit %d: %s" % (r.code, r.err))
    nothing_left("queue permission", mr, q)
    # the second move into new/ fails: the first goes back out of new/
    conf, mr, q = setup("permnew")
    os.chmod(mr, 0o777)
    bob = os.path.join(mr, "example.org", "bob")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(bob, sub))
        os.chmod(os.path.join(bob, sub), 0o555 if sub == "new" else 0o777)
    os.chmod(os.path.join(mr, "example.org"), 0o777)
    r = run(conf, envelope(["alice@example.org", "bob@example.org"]), MSG,
            preexec=pre)
    check("move fails exit 75", r.code == 75, "exit %d: %s" % (r.code, r.err))
    check("move fails reason", "rename" in r.err and "Permission denied" in r.err,
          r.err)
    nothing_left("move fails", mr, q)
    # the queue commit fails after the moves: they are undone
    conf, mr, q = setup("permcommit")
    os.chmod(mr, 0o777)
    for sub in ("tmp", "mess", "info"):
        os.makedirs(os.path.join(q, sub))
        os.chmod(os.path.join(q, sub), 0o555 if sub == "info" else 0o777)
    r = run(conf, envelope(["alice@example.org", "carol@remote.example"]), MSG,
            preexec=pre)
    check("commit fails exit 75", r.code == 75, "exit %d: %s" % (r.code, r.err))
    check("commit fails reason", "rename" in r.err and "Permission denied" in r.err,
          r.err)
    nothing_left("commit fails", mr, q)


def t_enospc():
    d = os.path.join(BASE, "small")
    os.makedirs(d)
    if os.geteuid() != 0 or subprocess.call(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
            stderr=subprocess.DEVNULL) != 0:
        skip("disk full", "cannot mount a small tmpfs")
        return
    try:
        # the queue on the full file system too: a copy that does not
        # fit cannot wait there either (test_deliver_partial.py has the
        # queue elsewhere)
        conf, mr, q = setup("enospc", mailroot=d, conf_extra="queue = %s/q\n" % d)
        with open(os.path.join(conf, "dopis.conf"), "rb") as f:
            conf_lines = f.read().replace(b"queue = queue\n", b"")
        with open(os.path.join(conf, "dopis.conf"), "wb") as f:
            f.write(conf_lines)
        r = run(conf, envelope(["alice@example.org"]), (b"x" * 1000 + b"\n", 200))
        check("disk full exit 75", r.code == 75, "exit %d: %s" % (r.code, r.err))
        check("disk full reason", "No space left on device" in r.err, r.err)
        nothing_left("disk full", mr)
        # the first copy fits, the second does not
        r = run(conf, envelope(["alice@example.org", "bob@example.org"]),
                (b"y" * 999 + b"\n", 40))
        check("disk full second copy exit 75", r.code == 75,
              "exit %d: %s" % (r.code, r.err))
        nothing_left("disk full second copy", mr)
        # and nothing was lost for good: a small message still goes
        r = run(conf, envelope(["alice@example.org", "bob@example.org"]), MSG)
        check("disk full recovers", r.code == 0, "exit %d: %s" % (r.code, r.err))
    finally:
        subprocess.call(["umount", d])


def t_crossfs():
    """The queue on another file system: copy_file_range says EXDEV
    and the copy falls back to read and write."""
    d = os.path.join(BASE, "otherfs")
    os.makedirs(d)
    if os.geteuid() != 0 or subprocess.call(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", d],
            stderr=subprocess.DEVNULL) != 0:
        skip("cross fs", "cannot mount a tmpfs")
        return
    try:
        conf, mr, _ = setup("crossfs", conf_extra="queue = %s/q\n" % d)
        conf_lines = read(os.path.join(conf, "dopis.conf")).replace(
            b"queue = queue\n", b"")
        with open(os.path.join(conf, "dopis.conf"), "wb") as f:
            f.write(conf_lines)
        msg = bytes(range(256)) * 4096 + b"end\n"
        r = run(conf, envelope(["alice@example.org", "carol@remote.example"]), msg)
        check("cross fs exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
        local_copy("cross fs local", os.path.join(mr, "example.org", "alice"),
                   "alice@example.org", msg=msg)
        m = os.path.join(d, "q", "mess", "some.id")
        check("cross fs queue bytes", os.path.exists(m) and read(m) == msg,
              "mess missing or different")
    finally:
        subprocess.call(["umount", d])


def t_big():
    conf, mr, q = setup("big")
    chunk = (b"0123456789" * 10 + b"\n") * 600   # 60600 bytes
    n = 866                                        # about 50 MiB
    r = run(conf, envelope(["alice@example.org", "bob@example.org",
                            "carol@remote.example"]), (chunk, n))
    size = len(chunk) * n
    check("big exit 0", r.code == 0, "exit %d: %s" % (r.code, r.err))
    check("big constant memory", r.hwm_kib is not None and
          r.hwm_kib < 8 * 1024, "peak RSS %s KiB" % r.hwm_kib)
    print("# big: peak RSS %s KiB" % r.hwm_kib)
    for u in ("alice", "bob"):
        new = newfiles(os.path.join(mr, "example.org", u))
        hdr = b"Return-Path: <sender@x.org>\nDelivered-To: %s@example.org\n" % u.encode()
        ok = len(new) == 1
        if ok:
            p = os.path.join(mr, "example.org", u, "new", new[0])
            ok = os.path.getsize(p) == len(hdr) + size and \
                new[0].endswith(",S=%d" % (len(hdr) + size))
            with open(p, "rb") as f:
                ok = ok and f.read(len(hdr)) == hdr
                f.seek(len(hdr) + size - len(chunk))
                ok = ok and f.read() == chunk
        check("big copy " + u, ok, "%r" % new)
    m = os.path.join(q, "mess", "some.id")
    check("big queue copy", os.path.exists(m) and os.path.getsize(m) == size,
          "mess missing or wrong size")


def main():
    if not os.access(DELIVER, os.X_OK):
        print("FAIL setup: no %s" % DELIVER)
        sys.exit(1)
    try:
        for t in (t_single, t_multi, t_nullsender_noid, t_plus,
                  t_empty_and_binary, t_abort, t_envelope_errors, t_unknown,
                  t_config_error, t_remote, t_mixed, t_missing_parent,
                  t_permission, t_enospc, t_crossfs, t_big):
            try:
                t()
            except Exception as e:   # a crash of one check is a failure
                check(t.__name__, False, "exception %r" % e)
    finally:
        shutil.rmtree(BASE, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
