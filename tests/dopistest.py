"""Shared helpers of dopis's tests: the test configuration, Maildir and
queue inspection, the Received-header pattern and sanitizer checks.

Used by tests/run.py (the transcripts) and tests/interop_*.py.
Only the Python standard library; run with Debian's /usr/bin/python3.
"""

import email.generator
import email.message
import email.utils
import fcntl
import hashlib
import io
import mailbox
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import time
import datetime

TESTS = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(TESTS)
WORK = os.path.join(TESTS, "work")

HOSTNAME = "mx.example.org"

# The builds under test: (pass name, smtpd, deliver, sanitized?)
PASSES = [
    ("smtpd", os.path.join(TOP, "bin/smtpd"), os.path.join(TOP, "bin/deliver"), False),
    ("asan", os.path.join(TOP, "obj/asan/bin/smtpd"),
     os.path.join(TOP, "obj/asan/bin/deliver"), True),
]

# Sanitizer settings for the ASan/UBSan build: a finding makes the
# program exit with these codes and print a report on stderr.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:exitcode=86:abort_on_error=0:"
                    "detect_stack_use_after_return=1:check_initialization_order=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
    "LSAN_OPTIONS": "exitcode=88",
}
SANITIZER_RE = re.compile(
    r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
    r"runtime error:|==\d+==ERROR|^SUMMARY: ", re.M)


def sanitizer_report(stderr_text):
    """The sanitizer's part of stderr, or '' when there is none."""
    m = SANITIZER_RE.search(stderr_text)
    if not m:
        return ""
    start = stderr_text.rfind("\n", 0, m.start()) + 1
    return stderr_text[start:start + 4000]


# ---------------------------------------------------------------- config

def default_conf(tmp, deliver):
    """dopis.conf as an ordered dict of key -> value."""
    return {
        "hostname": HOSTNAME,
        "mailroot": os.path.join(tmp, "mail"),
        "queue": os.path.join(tmp, "queue"),
        "deliver": deliver,
        "max_message_size": "10000",
        "max_recipients": "5",
        "timeout": "5",
    }


def default_files(tmp):
    """The list files, name -> list of lines."""
    return {
        "localdomains": [
            "# domains delivered here",
            "example.org",
            "example.net",
        ],
        "users": [
            "# user@domain [Maildir]",
            "alice@example.org",
            "bob@example.org",
            "carol@example.net",
            "dave@example.org %s/custom/dave/" % tmp,
        ],
        "aliases": [
            "# alias@domain: target, target",
            "postmaster@example.org: alice@example.org",
            "team@example.org: alice@example.org, bob@example.org",
            "loop1@example.org: loop2@example.org",
            "loop2@example.org: loop1@example.org",
            "@example.net: carol@example.net",
            "fwd@example.org: someone@remote.test",
        ],
        "restricted": [
            "# refused as sender or recipient",
            "spammer@evil.test",
            "@evil.test",
            "banned@example.org",
        ],
        "relayclients": [
            "# may relay",
            "10.1.0.0/16",
            "2001:db8::/32",
        ],
    }


WORK_WAIT = 3600      # seconds a test run waits for another to end

_work_lock = None


def lock_work():
    """Makes this test run the only one using tests/work (WORK) until
    it exits.  Two runs in one checkout at once (two "make check"s, or
    a script run by hand beside one) would wipe and reuse each other's
    directories tests/work/PASS/NAME: queues, configurations, the dump
    directories of the peers; one run's relay would work on the other's
    queue.  So the second run waits, up to WORK_WAIT seconds, saying so
    on stderr.  run.py takes the lock first thing; the scripts it starts
    (and their own helpers) share it: DOPIS_WORK_LOCKED names the
    holder, which is then an ancestor.  fresh_dir takes it for a script
    run alone.  flock(2): the lock ends
    with the process, never stale; the descriptor is not inherited by
    the programs a test starts."""
    global _work_lock
    if _work_lock is not None:
        return
    if _is_ancestor(os.environ.get("DOPIS_WORK_LOCKED", "")):
        return
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline, said = time.time() + WORK_WAIT, False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            pass
        if time.time() > deadline:
            os.close(fd)
            raise RuntimeError("%s is still locked by another test run after %d s: %s" % (
                WORK, WORK_WAIT, _lock_holder(path)))
        if not said:
            print("%s is in use by another test run (%s); waiting for it to end" % (
                WORK, _lock_holder(path)), file=sys.stderr, flush=True)
            said = True
        time.sleep(0.5)
    os.ftruncate(fd, 0)
    os.write(fd, ("pid %d: %s\n" % (os.getpid(), " ".join(sys.argv))).encode())
    _work_lock = fd
    os.environ["DOPIS_WORK_LOCKED"] = str(os.getpid())


def _is_ancestor(pid):
    """Whether pid (a string) is a parent, grandparent, ... of ours."""
    if not pid.isdigit():
        return False
    p = os.getppid()
    while p > 1:
        if p == int(pid):
            return True
        try:
            with open("/proc/%d/stat" % p) as f:
                p = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def _lock_holder(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


def fresh_dir(path):
    lock_work()
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def setup(tmp, deliver, conf=None, files=None, removed=(), dopis_conf_text=None):
    """Writes a fresh test configuration into tmp/conf and creates the
    state directories.  conf: key -> value (None removes the key) added
    to or replacing dopis.conf's; files: name -> lines replacing the
    list file; removed: list files not to write.  Returns the
    configuration directory (the value of DOPIS_CONF)."""
    fresh_dir(tmp)
    confdir = os.path.join(tmp, "conf")
    os.makedirs(confdir)
    os.makedirs(os.path.join(tmp, "mail"))
    os.makedirs(os.path.join(tmp, "queue"))
    os.makedirs(os.path.join(tmp, "custom"))
    c = default_conf(tmp, deliver)
    for k, v in (conf or {}).items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    fl = default_files(tmp)
    fl.update(files or {})
    if "dopis.conf" in fl:
        text = "".join(line + "\n" for line in fl.pop("dopis.conf"))
    else:
        text = "# dopis test configuration\n" + \
            "".join("%s = %s\n" % kv for kv in c.items())
    with open(os.path.join(confdir, "dopis.conf"), "w", encoding="latin-1") as f:
        f.write(text)
    for name, lines in fl.items():
        if name in removed:
            continue
        with open(os.path.join(confdir, name), "w", encoding="latin-1") as f:
            f.write("".join(line + "\n" for line in lines))
    return confdir


# ---------------------------------------------------------------- Maildirs

def maildir_of(tmp, addr):
    """The Maildir directory of a test address ("alice@example.org"),
    optionally with a Maildir++ folder ("alice@example.org/.news"), or
    of a path relative to tmp ("custom/dave")."""
    folder = ""
    if "@" in addr and "/" in addr.split("@", 1)[1]:
        addr, folder = addr.split("/", 1)
    if "@" not in addr:
        base = os.path.join(tmp, addr)
    elif addr.lower() == "dave@example.org":
        base = os.path.join(tmp, "custom/dave")
    else:
        local, dom = addr.rsplit("@", 1)
        base = os.path.join(tmp, "mail", dom.lower(), local.lower())
    return os.path.join(base, folder) if folder else base


def maildir_files(md, sub="new"):
    d = os.path.join(md, sub)
    try:
        return sorted(os.path.join(d, n) for n in os.listdir(d)
                      if not n.startswith("."))
    except FileNotFoundError:
        return []


def all_maildirs(tmp):
    """Every directory under tmp/mail and tmp/custom that has a new/."""
    out = []
    for root in ("mail", "custom"):
        for d, subdirs, files in os.walk(os.path.join(tmp, root)):
            if os.path.basename(d) in ("new", "cur", "tmp"):
                continue
            if "new" in subdirs or "tmp" in subdirs:
                out.append(d)
    return sorted(out)


def maildir_messages(tmp, addr):
    """The messages of addr's Maildir (maildir_of) as Python's
    mailbox.Maildir reads them, in its order."""
    return list(mailbox.Maildir(maildir_of(tmp, addr), factory=None, create=False))


def queue_files(tmp):
    """Regular files in the queue (any layout)."""
    out = []
    for d, subdirs, files in os.walk(os.path.join(tmp, "queue")):
        for n in files:
            out.append(os.path.join(d, n))
    return sorted(out)


def queue_count(tmp):
    """Messages in the queue (lib/queue.h): a message is committed when
    its info/<qid> exists."""
    try:
        return len(os.listdir(os.path.join(tmp, "queue", "info")))
    except FileNotFoundError:
        return 0


def queue_records(tmp):
    """The envelope records of every info file: a list per message of
    records (type byte and text, latin-1)."""
    out = []
    d = os.path.join(tmp, "queue", "info")
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, n), "rb") as f:
            recs = f.read().decode("latin-1").split("\0")
        out.append(recs)
    return out


def queue_problems(tmp):
    """Invariants of the queue: every info/<qid> has its mess/<qid>,
    every mess/<qid> its info/<qid>, and tmp/ is empty."""
    q = os.path.join(tmp, "queue")
    ls = lambda d: set(os.listdir(os.path.join(q, d))) if os.path.isdir(os.path.join(q, d)) else set()  # noqa: E731
    info, mess, qtmp = ls("info"), ls("mess"), ls("tmp")
    probs = []
    if info - mess:
        probs.append("queue: info without mess: %s" % sorted(info - mess))
    if mess - info:
        probs.append("queue: mess without info: %s" % sorted(mess - info))
    if qtmp:
        probs.append("queue: left behind in tmp/: %s" % sorted(qtmp))
    return probs


def maildir_problems(tmp):
    """Invariants that hold after every test: no file left in any tmp/
    (deliver is all or nothing), and a ,S=<size> in a name is the size."""
    probs = []
    for md in all_maildirs(tmp):
        for f in maildir_files(md, "tmp"):
            probs.append("left behind in tmp/: %s" % os.path.relpath(f, tmp))
        for f in maildir_files(md, "new") + maildir_files(md, "cur"):
            m = re.search(r",S=(\d+)", os.path.basename(f))
            if m and int(m.group(1)) != os.path.getsize(f):
                probs.append("%s: S=%s but the file has %d bytes" % (
                    os.path.relpath(f, tmp), m.group(1), os.path.getsize(f)))
    return probs


# ---------------------------------------------------------------- Received

DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
DATE_RE = (r"(?P<date>(?:%s, )?\d{1,2} %s \d{4} \d\d:\d\d(?::\d\d)? [+-]\d{4})"
           r"(?: \([^()]*\))?" % (DAY, MON))
ID_RE = r"[0-9a-f.]+"


def received_re(helo, ip=None, host=None, with_="ESMTP", rcpt=None):
    """The Received line smtpd prepends, unfolded (folding whitespace
    collapsed to one space).  Assumed shape (RFC 5321 4.4):

      Received: from HELO (TCPREMOTEHOST [IP])
              by mx.example.org (dopis) with ESMTP id ID
              for <rcpt>; RFC-5322-date

    The "TCPREMOTEHOST " part is optional when no host is given, the
    brackets around the IP are optional, "IPv6:" may precede an IPv6
    address, "(dopis)" is optional; "for <rcpt>" must be there exactly
    when rcpt is given (one recipient); rcpt "*" allows any or none.  Without an ip (a local client)
    the parenthesised part may be anything or absent.  with_ is a
    regular expression."""
    if ip is None:
        client = r"(?: \([^()]*\))?"
    else:
        ipre = r"\[?(?:IPv6:)?%s\]?" % re.escape(ip)
        if host:
            client = r" \(%s %s\)" % (re.escape(host), ipre)
        else:
            client = r" \((?:[^()\s]+ )?%s\)" % ipre
    r = r"Received: from %s%s by %s(?: \(dopis\))? with (?:%s) id (?P<id>%s)" % (
        re.escape(helo), client, re.escape(HOSTNAME), with_, ID_RE)
    if rcpt == "*":
        r += r"(?: for <[^<>]*>)?"
    elif rcpt:
        r += r" for <(?i:%s)>" % re.escape(rcpt)
    r += r"; " + DATE_RE
    return r


def check_received(header_lines, **kw):
    """header_lines: the Received header, its first line and its
    continuation lines (no line ends).  Returns '' or a problem."""
    for i, l in enumerate(header_lines):
        if len(l) > 998:
            return "Received line %d is longer than 998 octets" % (i + 1)
        if i and not l[:1] in (" ", "\t"):
            return "not a continuation line: %r" % l
    unfolded = re.sub(r"[ \t]+", " ", " ".join(header_lines))
    pat = received_re(**kw)
    m = re.fullmatch(pat, unfolded)
    if not m:
        return "Received header %r does not match %r" % (unfolded, pat)
    try:
        when = email.utils.parsedate_to_datetime(m.group("date"))
    except (TypeError, ValueError) as e:
        return "bad date %r: %s" % (m.group("date"), e)
    now = datetime.datetime.now(datetime.timezone.utc)
    if abs((now - when).total_seconds()) > 3600:
        return "Received date %r is not now" % m.group("date")
    return ""


def split_received(lines, i):
    """The Received header starting at lines[i]: (its lines, next index)."""
    j = i + 1
    while j < len(lines) and lines[j][:1] in (" ", "\t"):
        j += 1
    return lines[i:j], j


# ---------------------------------------------------------------- servers

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server does not listen on port %d" % port)


def stop(proc):
    """Stops a server we started (by its process, never by name)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def server_log(tmp):
    """What a server started by start_tcpserver or start_socket_activate
    wrote on stderr (tmp/server.stderr), or '' when there is no file."""
    try:
        with open(os.path.join(tmp, "server.stderr"), encoding="latin-1") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def start_tcpserver(tmp, confdir, smtpd, sanitized):
    """smtpd under tcpserver (which sets TCPREMOTEIP) on a free loopback
    port, its stderr into tmp/server.stderr.  Returns (process, port)
    once the port takes connections; stops the server if it does not."""
    port = free_port()
    with open(os.path.join(tmp, "server.stderr"), "wb") as errf:
        srv = subprocess.Popen(["tcpserver", "-q", "-H", "-R", "-l", HOSTNAME,
                                "127.0.0.1", str(port), smtpd],
                               env=base_env(confdir, sanitized), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=errf)
    try:
        wait_port(port, srv)
    except BaseException:
        stop(srv)
        raise
    return srv, port


def start_socket_activate(tmp, confdir, smtpd, sanitized):
    """smtpd under systemd-socket-activate --accept --inetd (one smtpd per
    connection) on a free loopback port, the environment passed with -E,
    stderr into tmp/server.stderr.  Returns (process, port)."""
    port = free_port()
    argv = ["systemd-socket-activate", "--accept", "--inetd", "-l", "127.0.0.1:%d" % port]
    for k, v in base_env(confdir, sanitized).items():
        argv += ["-E", "%s=%s" % (k, v)]
    argv.append(smtpd)
    with open(os.path.join(tmp, "server.stderr"), "wb") as errf:
        srv = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=errf)
    # no probe connection: each one would start an smtpd; wait for the
    # "Listening on" line instead
    deadline = time.time() + 10
    while time.time() < deadline:
        if "Listening on" in server_log(tmp):
            break
        if srv.poll() is not None:
            raise RuntimeError("systemd-socket-activate exited %s" % srv.returncode)
        time.sleep(0.05)
    return srv, port


def base_env(confdir, sanitized):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "DOPIS_CONF": confdir,
           "LANG": "C", "LC_ALL": "C"}
    if sanitized:
        env.update(SANITIZER_ENV)
    return env


# ---------------------------------------------------------------- interop

def this_build():
    """The build an interop script tests, from run.py's environment
    (default: the normal build)."""
    name = os.environ.get("DOPIS_PASS", "smtpd")
    smtpd = os.environ.get("DOPIS_SMTPD", PASSES[0][1])
    deliver = os.environ.get("DOPIS_DELIVER", PASSES[0][2])
    sanitized = os.environ.get("DOPIS_SANITIZED", "0") == "1"
    return name, smtpd, deliver, sanitized


class Results:
    """Runs named checks, prints "ok NAME" or "FAIL NAME" and details."""

    def __init__(self):
        self.failed = 0

    def run(self, name, fn, *args):
        import traceback
        try:
            probs = fn(*args) or []
        except Exception:
            probs = [traceback.format_exc()]
        if probs:
            self.failed += 1
            print("FAIL %s" % name)
            for p in probs:
                for line in str(p).rstrip("\n").split("\n"):
                    print("    " + line)
        else:
            print("ok %s" % name)
        import sys
        sys.stdout.flush()
        return not probs

    def exit(self):
        import sys
        sys.exit(1 if self.failed else 0)


def run_server_tests(results, base, prefix, tests, start, sanitized, log_lines=10):
    """Runs each (name, fn) of tests against a server of its own.  In
    the directory base/name, start(tmp) writes the configuration and
    starts the server, returning (process, port); the check prefix+name
    is fn(tmp, port) plus maildir_problems and queue_problems (a server
    that does not start fails it).  The server is stopped after each
    test; a sanitizer report in its stderr fails prefix+name+"-sanitizer",
    and a failed test shows the last log_lines lines of it."""
    for name, fn in tests:
        tmp = os.path.join(base, name)
        srv = None
        try:
            os.makedirs(tmp, exist_ok=True)
            srv, port = start(tmp)

            def checked(fn=fn, tmp=tmp, port=port):
                return fn(tmp, port) + maildir_problems(tmp) + queue_problems(tmp)
            ok = results.run(prefix + name, checked)
        except Exception as e:
            ok = results.run(prefix + name, lambda: ["could not start the server: %r" % e])
        finally:
            stop(srv)
        err = server_log(tmp)
        rep = sanitizer_report(err) if sanitized else ""
        if rep:
            results.run(prefix + name + "-sanitizer", lambda: ["sanitizer report:\n" + rep])
        elif not ok:
            print("    server log:\n" + "\n".join("      " + l for l in err.splitlines()[-log_lines:]))


# ---------------------------------------------------------------- clients

def write_file(path, data):
    """Writes bytes to path; returns path."""
    with open(path, "wb") as f:
        f.write(data)
    return path


def swaks(port, *args, timeout=20, run_timeout=60):
    """swaks to 127.0.0.1:port, HELO client.test, with its --timeout;
    returns (exit code, output)."""
    return run_cmd(["swaks", "--server", "127.0.0.1:%d" % port, "--helo", "client.test",
                    "--timeout", str(timeout)] + list(args), timeout=run_timeout)


def swaks_message(tmp, port, msg, *args, **kw):
    """swaks sending msg (bytes ending in CRLF) as its DATA, from the
    file tmp/msg (without the last CRLF, which swaks adds before its
    "."); args and kw as for swaks."""
    f = write_file(os.path.join(tmp, "msg"), msg[:-2])
    return swaks(port, *args, "--data", "@" + f, **kw)


def smtp(port, helo="py.client.test"):
    """An smtplib connection to 127.0.0.1:port, for use in a with."""
    return smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=20)


def email_message(headers, body):
    """An email.message.EmailMessage: headers a list of (name, value),
    body text."""
    msg = email.message.EmailMessage()
    for k, v in headers:
        msg[k] = v
    msg.set_content(body)
    return msg


def wire_bytes(msg, policy=None):
    """The bytes smtplib.send_message puts on the wire for msg (with
    policy, as BytesGenerator takes it: default, the message's)."""
    b = io.BytesIO()
    email.generator.BytesGenerator(b, policy=policy).flatten(msg, linesep="\r\n")
    return b.getvalue()


def mblaze_env(tmp):
    """The environment for mblaze's commands: its state in tmp/mblaze,
    no pager, no colours."""
    env = dict(os.environ)
    env["MBLAZE"] = os.path.join(tmp, "mblaze")
    env["MBLAZE_PAGER"] = "cat"
    env["MBLAZE_NOCOLOR"] = "1"
    os.makedirs(env["MBLAZE"], exist_ok=True)
    return env


def mblaze(tmp, *argv):
    """Runs an mblaze command (mlist, mhdr, mshow...) with mblaze_env(tmp);
    returns (exit code, output)."""
    return run_cmd(list(argv), env=mblaze_env(tmp))


def sha256_file(path, offset=0):
    """The SHA-256 (hex) of path's bytes from offset on, read in pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def envelope_head(sender, delivered_to):
    """The lines deliver writes before the message: Return-Path and
    Delivered-To (bytes)."""
    return ("Return-Path: <%s>\nDelivered-To: %s\n" % (sender, delivered_to)).encode()


def head_problems(data, sender, delivered_to):
    """[] when data (a delivered file, or its beginning) starts with the
    envelope head and a Received header, else the problem."""
    if data.startswith(envelope_head(sender, delivered_to) + b"Received: "):
        return []
    return ["the file starts with %r" % data[:200]]


def check_message(path, sender, delivered_to, message, **received):
    """Problems with a delivered file: it must be exactly Return-Path,
    Delivered-To, smtpd's Received header (received_re(**received)),
    then message (bytes, with CRLF turned into LF)."""
    with open(path, "rb") as f:
        data = f.read()
    probs = []
    head = envelope_head(sender, delivered_to)
    if not data.startswith(head):
        return ["%s does not start with %r: %r" % (path, head, data[:200])]
    rest = data[len(head):].decode("latin-1")
    lines = rest.split("\n")
    if not lines or not lines[0].startswith("Received:"):
        return ["no Received header after Delivered-To: %r" % rest[:200]]
    hdr, i = split_received(lines, 0)
    p = check_received(hdr, **received)
    if p:
        probs.append(p)
    body = "\n".join(lines[i:]).encode("latin-1")
    want = message.replace(b"\r\n", b"\n")
    if body != want:
        k = next((n for n in range(min(len(body), len(want))) if body[n] != want[n]),
                 min(len(body), len(want)))
        probs.append("message differs at byte %d (of %d stored, %d sent): stored %r, sent %r"
                     % (k, len(body), len(want), body[max(0, k - 40):k + 40],
                        want[max(0, k - 40):k + 40]))
    return probs


def one_message(tmp, addr):
    """The path of the one message in addr's Maildir new/, or raises."""
    files = maildir_files(maildir_of(tmp, addr), "new")
    if len(files) != 1:
        raise AssertionError("%s: %d messages in new/, expected 1: %s" % (addr, len(files), files))
    return files[0]


def run_cmd(argv, timeout=60, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# ---------------------------------------------------------------- TLS

def openssl(cwd, *args):
    """Runs the openssl command in cwd; returns its output."""
    rc, out = run_cmd(["openssl"] + list(args), cwd=cwd)
    if rc != 0:
        raise RuntimeError("openssl %s: exit %d\n%s" % (" ".join(args), rc, out))
    return out


def make_pki(pki, cn, dns=(), ips=(), ca_name="dopis throwaway test CA", other_ca=False):
    """A throwaway CA (pki/ca.pem, ca.key) and a server certificate it
    signs (server.pem, server.key; P-256) for cn and the subjectAltNames
    dns and ips; with other_ca, a second CA (other-ca.pem) that signs
    nothing.  Made by the test, never committed."""
    os.makedirs(pki)

    def ca(key, pem, name):
        openssl(pki, "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj", "/CN=" + name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ca("ca.key", "ca.pem", ca_name)
    openssl(pki, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=" + cn)
    san = ",".join(["DNS:" + d for d in dns] + ["IP:" + i for i in ips])
    with open(os.path.join(pki, "server.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n"
                "subjectAltName=%s\n" % san)
    if other_ca:
        ca("other-ca.key", "other-ca.pem", "dopis throwaway other CA")
    openssl(pki, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
