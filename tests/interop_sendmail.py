#!/usr/bin/python3
"""Interop: bin/sendmail, the sendmail(8) command, as local programs use
it: cron-like shell scripts piping a job's output into "sendmail -t"
and into Debian cron's own command line ("-FCronDaemon -i -B8BITMIME
-oem"), then the Maildir files checked byte for byte (Return-Path,
Delivered-To, the Received line, the added Date, Message-ID and From,
the body) and the queue's info files for remote recipients (T and P
records).  Also -f, -F (RFC 2047, read back with Python's email.header
and mblaze's mhdr), -i and the "." line, Bcc, CRLF input, 8-bit bodies
(BODY=8BITMIME) and SMTPUTF8 addresses, a 20 MB body in constant
memory (sendmail's VmHWM sampled from /proc: under 4 MiB, normal build
only), -bs (smtpd on a pipe), -q (relay -f), -bp (the queue tool),
addresses no shell could pass, the uid in the Received line, root
becoming the mailroot's owner, and the exit codes (sysexits).

Every program's stderr is searched for sanitizer reports.  Run by
tests/run.py once per build; alone:
    /usr/bin/python3 tests/interop_sendmail.py
"""

import email.header
import email.utils
import datetime
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BIN = os.path.dirname(SMTPD)
SENDMAIL = os.path.join(BIN, "sendmail")
BASE = os.path.join(T.WORK, PASS, "interop_sendmail")
HOST = T.HOSTNAME.encode()
ME = pwd.getpwuid(os.getuid()).pw_name.encode()
UID = os.getuid()
NOBODY = 65534
MAX_RSS_KIB = 4 * 1024
BIG = 20 * 1024 * 1024

R = T.Results()
STDERR = []          # every program's stderr in the running test

DATE = (rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
        rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000")


# ---------------------------------------------------------------- helpers

def setup(name, conf=None, files=None):
    """A fresh configuration in BASE/name, with max_message_size big
    enough for the 20 MB test and tmp/spool as TMPDIR.  Returns (tmp,
    confdir)."""
    tmp = os.path.join(BASE, name)
    c = {"max_message_size": "60000000"}
    c.update(conf or {})
    confdir = T.setup(tmp, DELIVER, c, files)
    os.makedirs(os.path.join(tmp, "spool"))
    return tmp, confdir


def env_of(tmp, confdir, extra=None):
    env = T.base_env(confdir, SANITIZED)
    env["TMPDIR"] = os.path.join(tmp, "spool")
    env.update(extra or {})
    return env


def sendmail(tmp, confdir, args, data=b"", env=None, argv=None, **kw):
    """Runs sendmail with args, data on stdin; returns (status, stdout,
    stderr) and keeps stderr for the sanitizer check."""
    p = subprocess.run(argv or [SENDMAIL] + list(args), input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env or env_of(tmp, confdir), timeout=120, **kw)
    err = p.stderr.decode("latin-1")
    STDERR.append(err)
    return p.returncode, p.stdout, err


def file_re(sender, rcpt, head, rest, uid=UID, date=True, msgid=True, frm=None):
    """The whole delivered file as a regular expression (bytes): the
    envelope head deliver writes, sendmail's Received line (its id and
    date captured), the message's own header lines head, the header
    lines sendmail adds (Date: the Received line's date; Message-ID:
    its id; From: frm), then rest (the empty line and the body)."""
    r = re.escape(b"Return-Path: <%s>\nDelivered-To: %s\n" % (sender, rcpt))
    r += (rb"Received: by " + re.escape(HOST) + rb" \(dopis sendmail, from local uid " +
          str(uid).encode() + rb"\)\n\tid (?P<id>[0-9a-f.]+); (?P<date>" + DATE + rb")\n")
    r += re.escape(head)
    if date:
        r += rb"Date: (?P=date)\n"
    if msgid:
        r += rb"Message-ID: <(?P=id)@" + re.escape(HOST) + rb">\n"
    if frm is not None:
        r += re.escape(b"From: " + frm + b"\n")
    return r + re.escape(rest)


def check_file(path, regex):
    """[] when the file matches regex (file_re) exactly and its date
    is now, else the problems."""
    with open(path, "rb") as f:
        data = f.read()
    m = re.fullmatch(regex, data)
    if not m:
        return ["%s is not as expected:\n%r\nexpected pattern:\n%r" % (path, data[:3000], regex[:3000])]
    when = email.utils.parsedate_to_datetime(m.group("date").decode())
    now = datetime.datetime.now(datetime.timezone.utc)
    if abs((now - when).total_seconds()) > 3600:
        return ["the date %r is not now" % m.group("date")]
    return []


def one(tmp, addr):
    return T.one_message(tmp, addr)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def nothing_else(tmp, *addrs):
    """Problems: Maildirs other than those of addrs that hold mail."""
    keep = {os.path.normpath(T.maildir_of(tmp, a)) for a in addrs}
    return ["unexpected mail in %s" % md for md in T.all_maildirs(tmp)
            if os.path.normpath(md) not in keep and T.maildir_files(md)]


def common(tmp):
    """The invariants after every test: no file left in any tmp/, a
    consistent queue, and an empty TMPDIR."""
    probs = T.maildir_problems(tmp) + T.queue_problems(tmp)
    left = os.listdir(os.path.join(tmp, "spool"))
    if left:
        probs.append("left behind in TMPDIR: %s" % left)
    return probs


def status_is(got, want, err):
    return [] if got == want else ["exit status %s, expected %s; stderr:\n%s" % (got, want, err)]


def qrecords(tmp):
    """The records of the only queued message."""
    recs = T.queue_records(tmp)
    if len(recs) != 1:
        raise AssertionError("%d messages queued, expected 1" % len(recs))
    return recs[0]


# ---------------------------------------------------------------- tests

CRON_T = r"""#!/bin/sh
# a cron job whose output is mailed by the job itself
set -e
{
  printf 'To: Alice <alice@example.org>\n'
  printf 'Cc: someone@remote.test (the admin)\n'
  printf 'Subject: nightly backup\n'
  printf '\n'
  echo "backup of /srv done"
  echo "  3 files, 0 errors"
} | "$SENDMAIL" -t
"""


def test_cron_t():
    """sendmail -t from a shell script: local copy byte for byte, the
    remote recipient queued with its T record; silent on success."""
    tmp, confdir = setup("cron-t")
    script = T.write_file(os.path.join(tmp, "job.sh"), CRON_T.encode())
    rc, out, err = sendmail(tmp, confdir, [], argv=["/bin/sh", script],
                            env=env_of(tmp, confdir, {"SENDMAIL": SENDMAIL}))
    probs = status_is(rc, 0, err)
    if out or err:
        probs.append("not silent: stdout %r, stderr %r" % (out, err))
    head = (b"To: Alice <alice@example.org>\nCc: someone@remote.test (the admin)\n"
            b"Subject: nightly backup\n")
    body = b"\nbackup of /srv done\n  3 files, 0 errors\n"
    probs += check_file(one(tmp, "alice@example.org"),
                        file_re(ME + b"@" + HOST, b"alice@example.org", head, body, frm=ME + b"@" + HOST))
    recs = qrecords(tmp)
    if "Tsomeone@remote.test" not in recs or "F%s@%s" % (ME.decode(), T.HOSTNAME) not in recs:
        probs.append("queue records %r" % recs)
    if any(r.startswith("PBODY") for r in recs):
        probs.append("a 7-bit message has a BODY parameter: %r" % recs)
    # the queued copy is the same message, without deliver's head
    mess = os.path.join(tmp, "queue", "mess", os.listdir(os.path.join(tmp, "queue", "mess"))[0])
    local = read(one(tmp, "alice@example.org"))
    if read(mess) != local.split(b"\n", 2)[2]:
        probs.append("the queued message differs from the local copy: %r" % read(mess)[:400])
    return probs + nothing_else(tmp, "alice@example.org") + common(tmp)


CRON_DEBIAN = r"""#!/bin/sh
# what Debian's cron runs for a job's output: MAILCMD "%s -FCronDaemon
# -i -B8BITMIME -oem %s", the headers written by cron
{
  printf 'From: root (Cron Daemon)\n'
  printf 'To: alice\n'
  printf 'Subject: Cron <root@mx> run-parts /etc/cron.daily\n'
  printf 'MIME-Version: 1.0\n'
  printf 'Content-Type: text/plain; charset=UTF-8\n'
  printf 'Content-Transfer-Encoding: 8bit\n'
  printf 'X-Cron-Env: <SHELL=/bin/sh>\n'
  printf '\n'
  printf 'r\303\251sum\303\251 of the day\n'
  printf '.\n'
  printf '..two dots stay two\n'
  printf 'the end'
} | "$SENDMAIL" -FCronDaemon -i -B8BITMIME -oem alice
"""


def test_cron_debian():
    """Debian cron's own command line: -i keeps the "." line, -B and
    -oem are harmless, a bare recipient is in the first local domain,
    its From: is kept (no -F From: added), the last line gets its LF."""
    tmp, confdir = setup("cron-debian")
    script = T.write_file(os.path.join(tmp, "cron.sh"), CRON_DEBIAN.encode())
    rc, out, err = sendmail(tmp, confdir, [], argv=["/bin/sh", script],
                            env=env_of(tmp, confdir, {"SENDMAIL": SENDMAIL}))
    probs = status_is(rc, 0, err)
    if out or err:
        probs.append("not silent: stdout %r, stderr %r" % (out, err))
    head = (b"From: root (Cron Daemon)\nTo: alice\n"
            b"Subject: Cron <root@mx> run-parts /etc/cron.daily\nMIME-Version: 1.0\n"
            b"Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
            b"X-Cron-Env: <SHELL=/bin/sh>\n")
    body = b"\nr\xc3\xa9sum\xc3\xa9 of the day\n.\n..two dots stay two\nthe end\n"
    probs += check_file(one(tmp, "alice@example.org"),
                        file_re(ME + b"@" + HOST, b"alice@example.org", head, body))
    return probs + nothing_else(tmp, "alice@example.org") + common(tmp)


def test_sender():
    """-f sets the envelope sender and the From: sendmail adds, -F its
    display name (quoted, or RFC 2047 words for UTF-8); a From: of the
    message is kept; -f '<>' is the null sender; a bare -f is
    qualified with the hostname."""
    tmp, confdir = setup("sender")
    probs = []
    msg = b"Subject: s\n\nhello\n"
    cases = [
        (["-f", "bob@example.org", "-F", "Bob Example", "alice@example.org"], msg,
         b"bob@example.org", b"Bob Example <bob@example.org>", b"Subject: s\n"),
        (["-f", "<bob@example.org>", "-F", 'Example, "Bob"', "alice@example.org"], msg,
         b"bob@example.org", b'"Example, \\"Bob\\"" <bob@example.org>', b"Subject: s\n"),
        (["-r", "cron", "alice@example.org"], msg,
         b"cron@" + HOST, b"cron@" + HOST, b"Subject: s\n"),
        (["-f", "<>", "alice@example.org"], msg,
         b"", ME + b"@" + HOST, b"Subject: s\n"),
        (["-f", "bob@example.org", "-F", "Ignored", "alice@example.org"],
         b"From: Carol <carol@example.net>\nSubject: s\n\nhello\n",
         b"bob@example.org", None, b"From: Carol <carol@example.net>\nSubject: s\n"),
    ]
    for args, data, sender, frm, head in cases:
        rc, out, err = sendmail(tmp, confdir, args, data)
        probs += status_is(rc, 0, err)
        if rc == 0:
            path = one(tmp, "alice@example.org")
            probs += check_file(path, file_re(sender, b"alice@example.org", head, b"\nhello\n", frm=frm))
            os.unlink(path)
    # UTF-8 full name: encoded words, read back by two decoders
    name = "Jörg Müller-Lüdenscheidt, Ärztekammer Baden-Württemberg e.V."
    rc, out, err = sendmail(tmp, confdir, ["-F", name, "alice@example.org"], msg)
    probs += status_is(rc, 0, err)
    if rc == 0:
        path = one(tmp, "alice@example.org")
        data = read(path)
        line = [l for l in data.split(b"\n") if l.startswith(b"From: ")][0].decode("ascii")
        got = str(email.header.make_header(email.header.decode_header(line[6:])))
        if got != name + " <%s@%s>" % (ME.decode(), T.HOSTNAME):
            probs.append("From: %r decodes to %r" % (line, got))
        if any(len(w) > 75 for w in re.findall(r"=\?[^ ]*\?=", line)):
            probs.append("an encoded word is longer than 75 characters: %r" % line)
        rc2, shown = T.mblaze(tmp, "mhdr", "-h", "from", "-d", path)
        if rc2 != 0 or shown.strip() != name + " <%s@%s>" % (ME.decode(), T.HOSTNAME):
            probs.append("mhdr -d shows %r" % shown)
        os.unlink(path)
    # a name that would inject a header line is refused
    rc, out, err = sendmail(tmp, confdir, ["-F", "x\nBcc: victim@remote.test", "alice@example.org"], msg)
    probs += status_is(rc, 64, err)
    return probs + nothing_else(tmp) + common(tmp)


def test_dot():
    """Without -i a line "." ends the message (LF or CRLF), and what
    follows is not delivered; -i and -oi keep it; nothing is
    unstuffed."""
    tmp, confdir = setup("dot")
    probs = []
    data = b"Subject: d\n\n..x\n.y\n.\nafter the dot\n"
    cases = [([], data, b"\n..x\n.y\n"),
             ([], data.replace(b"\n", b"\r\n"), b"\n..x\n.y\n"),
             ([], b".\n", b""),                          # in the header section
             ([], b"Subject: d\n\nlast\n.", b"\nlast\n"),  # at the end, no LF
             (["-i"], data, b"\n..x\n.y\n.\nafter the dot\n"),
             (["-oi"], data, b"\n..x\n.y\n.\nafter the dot\n")]
    for args, inp, rest in cases:
        rc, out, err = sendmail(tmp, confdir, args + ["alice@example.org"], inp)
        probs += status_is(rc, 0, err)
        if rc == 0:
            path = one(tmp, "alice@example.org")
            head = b"Subject: d\n" if inp.startswith(b"Subject") else b""
            probs += check_file(path, file_re(ME + b"@" + HOST, b"alice@example.org", head, rest,
                                              frm=ME + b"@" + HOST))
            os.unlink(path)
    return probs + nothing_else(tmp) + common(tmp)


def test_bcc():
    """Bcc: is taken out of every copy, its recipient still gets one;
    with Resent- fields -t uses only those (RFC 5322 3.6.6)."""
    tmp, confdir = setup("bcc")
    probs = []
    msg = (b"To: alice@example.org\nBcc: Bob <bob@example.org>,\n carol@example.net\n"
           b"Subject: blind\n\nbody\n")
    rc, out, err = sendmail(tmp, confdir, ["-t"], msg)
    probs += status_is(rc, 0, err)
    want = b"To: alice@example.org\nSubject: blind\n"
    copies = {}
    for a in ("alice@example.org", "bob@example.org", "carol@example.net"):
        path = one(tmp, a)
        probs += check_file(path, file_re(ME + b"@" + HOST, a.encode(), want, b"\nbody\n",
                                          frm=ME + b"@" + HOST))
        copies[a] = read(path).split(b"\n", 2)[2]
        os.unlink(path)
    if len(set(copies.values())) != 1:
        probs.append("the copies differ")
    msg = (b"To: alice@example.org\nResent-To: bob@example.org\nResent-Bcc: carol@example.net\n"
           b"Subject: resent\n\nbody\n")
    rc, out, err = sendmail(tmp, confdir, ["-t"], msg)
    probs += status_is(rc, 0, err)
    want = b"To: alice@example.org\nResent-To: bob@example.org\nSubject: resent\n"
    for a in ("bob@example.org", "carol@example.net"):
        probs += check_file(one(tmp, a), file_re(ME + b"@" + HOST, a.encode(), want, b"\nbody\n",
                                                 frm=ME + b"@" + HOST))
    return probs + nothing_else(tmp, "bob@example.org", "carol@example.net") + common(tmp)


def test_crlf():
    """CRLF line ends are stored as LF, a CR alone stays, a header
    folded with CRLF stays folded; a message without a header section
    gets one, with the empty line before its first line."""
    tmp, confdir = setup("crlf")
    probs = []
    msg = b"Subject: folded\r\n\tsecond line\r\nX-A: 1\r\n\r\nline 1\r\nbare\rcr\r\n\r\nend\r\n"
    rc, out, err = sendmail(tmp, confdir, ["alice@example.org"], msg)
    probs += status_is(rc, 0, err)
    if rc == 0:
        path = one(tmp, "alice@example.org")
        probs += check_file(path, file_re(ME + b"@" + HOST, b"alice@example.org",
                                          b"Subject: folded\n\tsecond line\nX-A: 1\n",
                                          b"\nline 1\nbare\rcr\n\nend\n", frm=ME + b"@" + HOST))
        os.unlink(path)
    # no header at all ("echo text | sendmail user"), or a line that
    # cannot be a header field ends it: the empty line goes before it
    for inp, head, rest in ((b"hello world\r\nsecond\r\n", b"", b"\nhello world\nsecond\n"),
                            (b"X-A: a\r\n\tb\r\nnot a: header\r\n", b"X-A: a\n\tb\n", b"\nnot a: header\n")):
        rc, out, err = sendmail(tmp, confdir, ["alice"], inp)
        probs += status_is(rc, 0, err)
        if rc == 0:
            path = one(tmp, "alice@example.org")
            probs += check_file(path, file_re(ME + b"@" + HOST, b"alice@example.org", head, rest,
                                              frm=ME + b"@" + HOST))
            os.unlink(path)
    return probs + nothing_else(tmp) + common(tmp)


def test_eightbit():
    """An 8-bit body is queued with BODY=8BITMIME, a 7-bit one without
    (only the end of the body tells); a UTF-8 address adds SMTPUTF8 (and
    it would make an added From: 8-bit, so the message has its own);
    -N, -R and -V travel as NOTIFY, RET and ENVID."""
    tmp, confdir = setup("eightbit")
    probs = []
    rc, out, err = sendmail(tmp, confdir, ["x@remote.test"], b"Subject: 8\n\n" + b"a" * 200000 + b"\n\xe9t\xe9\n")
    probs += status_is(rc, 0, err)
    recs = T.queue_records(tmp)
    if len(recs) != 1 or "PBODY=8BITMIME" not in recs[0] or "PSMTPUTF8" in recs[0]:
        probs.append("8-bit body: records %r" % recs)
    shutil.rmtree(os.path.join(tmp, "queue"))
    os.makedirs(os.path.join(tmp, "queue"))
    rc, out, err = sendmail(tmp, confdir, ["-N", "success,Failure", "-R", "hdrs", "-V", "id 1+",
                                           "-f", "j\u00f6rg@example.org", "x@r\u00e9mote.test"],
                            b"From: j@example.org\nSubject: 7\n\nascii\n")
    probs += status_is(rc, 0, err)
    recs = T.queue_records(tmp)
    want = ["F%s" % "j\u00f6rg@example.org".encode().decode("latin-1"), "PSMTPUTF8", "PRET=HDRS",
            "PENVID=id+201+2B", "T%s" % "x@r\u00e9mote.test".encode().decode("latin-1"),
            "NSUCCESS,FAILURE"]
    if len(recs) != 1 or any(w not in recs[0] for w in want) or "PBODY=8BITMIME" in recs[0]:
        probs.append("records %r, expected among them %r" % (recs, want))
    else:
        r = recs[0]
        if r.index("PSMTPUTF8") > r.index(want[4]) or r.index(want[5]) != r.index(want[4]) + 1:
            probs.append("records out of order: %r" % r)
    return probs + nothing_else(tmp) + common(tmp)


def sample_hwm(pid, peak, stop):
    """VmHWM (KiB) of pid, sampled until stop is set or it is gone."""
    while not stop.is_set():
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except (OSError, ValueError):
            return
        stop.wait(0.01)


def test_big():
    """A 20 MB body streams through sendmail in constant memory (its
    VmHWM stays under 4 MiB; the header section is all it holds) and is
    stored byte for byte, "." lines and CRLF handled all the way."""
    tmp, confdir = setup("big")
    env = env_of(tmp, confdir)
    head = b"Subject: twenty megabytes\r\n\r\n"
    digest = hashlib.sha256()
    p = subprocess.Popen([SENDMAIL, "alice@example.org"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak, stop = [0], threading.Event()
    w = threading.Thread(target=sample_hwm, args=(p.pid, peak, stop))
    w.start()
    errs = []
    t = threading.Thread(target=lambda: errs.append(p.stderr.read()))
    t.start()
    try:
        p.stdin.write(head)
        digest.update(b"\n")
        n, chunk = 0, []
        while n < BIG:
            i = len(chunk)
            line = b"%08d " % n + b"0123456789abcdefghijklmnopqrstuvwxyz.-" * 2
            if i % 97 == 3:
                line = b"." + line      # kept as it is: sendmail unstuffs nothing
            chunk.append(line + (b"\r\n" if i % 2 else b"\n"))
            digest.update(line + b"\n")
            n += len(chunk[-1])
            if len(chunk) == 4096:
                p.stdin.write(b"".join(chunk))
                chunk = []
        p.stdin.write(b"".join(chunk))
        p.stdin.close()
        p.stdout.read()
        rc = p.wait(300)
    finally:
        stop.set()
        w.join()
        t.join()
    err = errs[0].decode("latin-1")
    STDERR.append(err)
    probs = status_is(rc, 0, err)
    if rc == 0:
        path = one(tmp, "alice@example.org")
        with open(path, "rb") as f:
            start = f.read(8192)
        k = start.find(b"Subject: twenty megabytes\n")
        probs += check_file_head(start[:k], ME + b"@" + HOST, b"alice@example.org")
        k2 = start.find(b"\n\n", k) + 1
        if k < 0 or k2 <= 0 or T.sha256_file(path, k2) != digest.hexdigest():
            probs.append("the stored 20 MB body differs from what was sent")
        os.unlink(path)
    if os.environ.get("SENDMAIL_SHOW_RSS"):
        print("    sendmail VmHWM %d KiB" % peak[0])
    if not SANITIZED and not 0 < peak[0] <= MAX_RSS_KIB:
        probs.append("sendmail's peak resident size %d KiB (limit %d KiB)" % (peak[0], MAX_RSS_KIB))
    return probs + common(tmp)


def check_file_head(data, sender, rcpt):
    if re.fullmatch(re.escape(b"Return-Path: <%s>\nDelivered-To: %s\n" % (sender, rcpt)) +
                    rb"Received: by [^\n]*\n\tid [0-9a-f.]+; " + DATE + rb"\n", data):
        return []
    return ["the file starts with %r" % data[:400]]


def test_bs():
    """-bs: smtpd on our stdin and stdout, a local client even when the
    environment names a remote one (it may relay)."""
    tmp, confdir = setup("bs")
    env = env_of(tmp, confdir, {"TCPREMOTEIP": "192.0.2.9", "REMOTE_ADDR": "192.0.2.9"})
    probs = []
    rc, out, err = sendmail(tmp, confdir, ["-bs"], b"EHLO x\r\nQUIT\r\n", env=env)
    probs += status_is(rc, 0, err)
    lines = out.decode("latin-1").split("\r\n")
    if (not lines or lines[0] != "220 %s ESMTP dopis" % T.HOSTNAME or lines[-1] != "" or
            not lines[1].startswith("250-%s" % T.HOSTNAME) or
            not any(l.startswith("250 ") for l in lines[2:]) or not lines[-2].startswith("221 ")):
        probs.append("-bs replied %r" % lines)
    session = (b"HELO x\r\nMAIL FROM:<cron@example.org>\r\nRCPT TO:<far@remote.test>\r\n"
               b"RCPT TO:<alice@example.org>\r\nDATA\r\nSubject: via -bs\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    rc, out, err = sendmail(tmp, confdir, ["-bs"], session, env=env)
    lines = out.decode("latin-1").split("\r\n")
    codes = [l[:3] for l in lines if l]
    if rc != 0 or codes != ["220", "250", "250", "250", "250", "354", "250", "221"]:
        probs.append("-bs session: status %s, replies %r; stderr %s" % (rc, lines, err))
    if "ip=local" not in err:
        probs.append("smtpd did not see a local client: %s" % err)
    if rc == 0:
        data = read(one(tmp, "alice@example.org"))
        if not data.endswith(b"\nSubject: via -bs\n\nhi\n") or b"Received: from x" not in data:
            probs.append("delivered %r" % data)
        if len(T.queue_records(tmp)) != 1:
            probs.append("far@remote.test was not queued")
    return probs + nothing_else(tmp, "alice@example.org") + common(tmp)


def test_q_bp():
    """-q runs relay -f (an empty queue: exit 0); -bp runs the queue
    tool, which lists a queued message."""
    tmp, confdir = setup("q-bp")
    probs = []
    rc, out, err = sendmail(tmp, confdir, ["-q"])
    probs += status_is(rc, 0, err)
    if not err.startswith("relay "):
        probs.append("relay did not run: %r" % err)
    rc, out, err = sendmail(tmp, confdir, ["-f", "cron@example.org", "x@remote.test"], b"Subject: q\n\nx\n")
    probs += status_is(rc, 0, err)
    qids = os.listdir(os.path.join(tmp, "queue", "info"))
    rc, out, err = sendmail(tmp, confdir, ["-bp"])
    probs += status_is(rc, 0, err)
    if len(qids) != 1 or qids[0].encode() not in out or b"x@remote.test" not in out:
        probs.append("-bp listed %r (queue %r)" % (out, qids))
    rc, out, err = sendmail(tmp, confdir, ["-q", "alice@example.org"])
    probs += status_is(rc, 64, err)
    return probs + nothing_else(tmp) + common(tmp)


def test_addresses():
    """Addresses a shell would mangle, one with a leading "-" after
    "--", a name-addr and a list in one argument, bare names (the first
    local domain); nothing is run."""
    tmp, confdir = setup("addresses")
    probs = []
    evil = ['"$(touch pwned); `touch pwned2`"@remote.test', "a|b`c$d&e@remote.test",
            "--x@remote.test"]
    rc, out, err = sendmail(tmp, confdir, ["-f", "-me@example.org", "--"] + evil +
                            ["Team <bob@example.org>, carol@example.net", "alice"],
                            b"Subject: a\n\nx\n", cwd=tmp)
    probs += status_is(rc, 0, err)
    recs = qrecords(tmp) if rc == 0 else []
    for a in evil:
        if "T" + a not in recs:
            probs.append("no T record %r in %r" % (a, recs))
    if rc == 0 and "F-me@example.org" not in recs:
        probs.append("sender: %r" % recs)
    for f in ("pwned", "pwned2"):
        if os.path.exists(os.path.join(tmp, f)):
            probs.append("a shell ran: %s exists" % f)
    for a in ("alice@example.org", "bob@example.org", "carol@example.net"):
        if rc == 0:
            probs += check_file(one(tmp, a), file_re(b"-me@example.org", a.encode(), b"Subject: a\n",
                                                     b"\nx\n", frm=b"-me@example.org"))
    rc, out, err = sendmail(tmp, confdir, ["-x@remote.test"], b"x\n")
    probs += status_is(rc, 64, err)           # an option, without "--"
    for bad in ("a@", "@b", "a b@c", "<a@b", "a@b>", "a@-b.org", "\"x\u00e9\x01\"@b"):
        rc, out, err = sendmail(tmp, confdir, ["--", bad], b"x\n")
        probs += ["%r: %s" % (bad, p) for p in status_is(rc, 64, err)]
    return probs + nothing_else(tmp, "alice@example.org", "bob@example.org", "carol@example.net") + \
        common(tmp)


def test_exit_codes():
    """sysexits: no recipients 64 (also -t with none), unknown option
    64, unknown user 67 (deliver's, nothing stored), deliver missing
    75, restricted 77, header section over 1 MiB or 1000 lines 65,
    message over max_message_size 65, a bad To: with -t 65, a bad
    configuration 78."""
    tmp, confdir = setup("exit-codes", {"max_message_size": "100000"})
    probs = []
    msg = b"Subject: x\n\nbody\n"
    cases = [
        ("no recipients", [], msg, 64),
        ("-t without any", ["-t"], b"To: undisclosed-recipients:;\nSubject: x\n\nb\n", 64),
        ("unknown option", ["-X", "/tmp/log", "alice@example.org"], msg, 64),
        ("unknown -b", ["-bd"], msg, 64),
        ("-f without argument", ["-f"], msg, 64),
        ("unknown user", ["alice@example.org", "nosuch@example.org"], msg, 67),
        ("restricted recipient", ["banned@example.org"], msg, 77),
        ("restricted sender", ["-f", "spammer@evil.test", "alice@example.org"], msg, 77),
        ("header over 1 MiB", ["alice@example.org"], b"X-Big: " + b"a" * (1 << 20) + b"\n\nb\n", 65),
        ("1001 header lines", ["alice@example.org"], b"X-A: a\n" * 1001 + b"\nb\n", 65),
        ("101 Received lines", ["alice@example.org"], b"Received: x\n" * 101 + b"\nb\n", 65),
        ("too big", ["alice@example.org"], b"Subject: x\n\n" + b"x" * 100000 + b"\n", 65),
        ("bad To: with -t", ["-t"], b"To: John Doe\n\nb\n", 65),
    ]
    for name, args, data, want in cases:
        rc, out, err = sendmail(tmp, confdir, args, data)
        probs += ["%s: %s" % (name, p) for p in status_is(rc, want, err)]
        if want == 67 and "unknown recipient" not in err:
            probs.append("%s: deliver's reason is not shown: %s" % (name, err))
    # a header section of exactly 1000 lines is fine
    rc, out, err = sendmail(tmp, confdir, ["alice@example.org"], b"X-A: a\n" * 1000 + b"\nb\n")
    probs += ["1000 header lines: %s" % p for p in status_is(rc, 0, err)]
    if rc == 0:
        os.unlink(one(tmp, "alice@example.org"))
    tmp2, confdir2 = setup("exit-codes-nodeliver", {"deliver": os.path.join(BIN, "no-such-deliver")})
    rc, out, err = sendmail(tmp2, confdir2, ["alice@example.org"], msg)
    probs += ["deliver missing: %s" % p for p in status_is(rc, 75, err)]
    tmp3, confdir3 = setup("exit-codes-badconf", {"max_recipients": "many"})
    rc, out, err = sendmail(tmp3, confdir3, ["alice@example.org"], msg)
    probs += ["bad configuration: %s" % p for p in status_is(rc, 78, err)]
    for t in (tmp2, tmp3):
        probs += nothing_else(t) + common(t)
    return probs + nothing_else(tmp) + common(tmp)


def noleaks_env(tmp, confdir):
    """LeakSanitizer stops the process with ptrace, which a process
    that changed its uid (non-dumpable) may refuse: no leak check in
    the runs that switch users (ASan's other checks stay)."""
    env = env_of(tmp, confdir)
    if SANITIZED:
        env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"].replace("detect_leaks=1", "detect_leaks=0")
    return env


def chown_state(tmp, uid):
    for d in ("mail", "queue", "custom", "spool"):
        os.chown(os.path.join(tmp, d), uid, uid)


def test_users():
    """The Received line names the uid that ran sendmail, its user is
    the default sender; run by root, sendmail becomes the owner of the
    mailroot, so that the files are the owner's; set-uid it refuses to
    run."""
    if os.getuid() != 0:
        return []    # switching users needs root
    tmp, confdir = setup("users")
    chown_state(tmp, NOBODY)
    probs = []
    nobody = pwd.getpwuid(NOBODY).pw_name.encode()
    rc, out, err = sendmail(tmp, confdir, ["alice@example.org"], b"Subject: u\n\nx\n",
                            user=NOBODY, group=NOBODY, extra_groups=[])
    probs += status_is(rc, 0, err)
    if rc == 0:
        path = one(tmp, "alice@example.org")
        probs += check_file(path, file_re(nobody + b"@" + HOST, b"alice@example.org", b"Subject: u\n",
                                          b"\nx\n", uid=NOBODY, frm=nobody + b"@" + HOST))
        os.unlink(path)
    # root: the uid stays 0 in the Received line, the file is nobody's
    rc, out, err = sendmail(tmp, confdir, ["alice@example.org", "x@remote.test"], b"Subject: r\n\nx\n",
                            env=noleaks_env(tmp, confdir))
    probs += status_is(rc, 0, err)
    if rc == 0:
        path = one(tmp, "alice@example.org")
        probs += check_file(path, file_re(ME + b"@" + HOST, b"alice@example.org", b"Subject: r\n",
                                          b"\nx\n", uid=0, frm=ME + b"@" + HOST))
        owners = {os.stat(f).st_uid for f in [path] + T.queue_files(tmp)}
        if owners != {NOBODY}:
            probs.append("files owned by %r, not by the mailroot's owner" % owners)
    # set-uid: DOPIS_CONF would be the caller's; refused.  (Not in the
    # ASan build: a set-uid process ignores ASAN_OPTIONS, and LSan cannot
    # stop it at exit, which it reports as a fatal error.)
    if SANITIZED:
        return probs + nothing_else(tmp, "alice@example.org") + common(tmp)
    copy = os.path.join(tmp, "sendmail-setuid")
    shutil.copy(SENDMAIL, copy)
    os.chown(copy, NOBODY, NOBODY)
    os.chmod(copy, 0o4755)
    rc, out, err = sendmail(tmp, confdir, [], b"x\n", argv=[copy, "nosuch@example.org"])
    if os.statvfs(copy).f_flag & os.ST_NOSUID:
        pass    # mounted nosuid: it runs as root, nothing to refuse
    elif rc != 78 or "set-uid" not in err:
        probs.append("run set-uid: status %s, stderr %s" % (rc, err))
    return probs + nothing_else(tmp, "alice@example.org") + common(tmp)


TESTS = [
    ("cron-t", test_cron_t),
    ("cron-debian", test_cron_debian),
    ("sender", test_sender),
    ("dot", test_dot),
    ("bcc", test_bcc),
    ("crlf", test_crlf),
    ("eightbit", test_eightbit),
    ("big-20mb", test_big),
    ("bs", test_bs),
    ("q-bp", test_q_bp),
    ("addresses", test_addresses),
    ("exit-codes", test_exit_codes),
    ("users", test_users),
]


def run(name, fn):
    del STDERR[:]

    def checked():
        probs = fn()
        for err in STDERR:
            rep = T.sanitizer_report(err)
            if rep:
                probs.append("sanitizer report:\n" + rep)
        return probs
    R.run("sendmail-" + name, checked)


if __name__ == "__main__":
    if not os.access(SENDMAIL, os.X_OK):
        R.run("sendmail", lambda: ["%s is not built" % SENDMAIL])
        R.exit()
    only = sys.argv[1:]
    for name, fn in TESTS:
        if not only or name in only:
            run(name, fn)
    R.exit()
