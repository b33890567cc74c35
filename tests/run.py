#!/usr/bin/python3
"""dopis's test runner: the one entry point of "make check".

    /usr/bin/python3 tests/run.py [-v] [--pass smtpd|asan] [--no-interop]
                                  [--only-interop] [--split] [NAME-or-FILE ...]

--split runs each transcript over a TCP loopback connection instead of a
pipe, its input sent in two writes split at byte k (with a pause between
them), for every k in transcripts about framing (smuggling, BDAT, DATA,
dots, pipelining, EOF, long lines; every offset up to 800 bytes, else
400 around line ends and spread), and for 12 k in the others; every run
must pass the transcript's own checks.  Transcripts that need a local
client or held-open input are left out.

It runs every transcript tests/transcripts/*.smtp against bin/smtpd
(with bin/deliver), then again against the AddressSanitizer build
obj/asan/bin/smtpd (with obj/asan/bin/deliver), where anything a
sanitizer prints on stderr fails the test; then, once per build, the
unit tests tests/test_*.py (run as "test_X.py REPO BINDIR") and every
interop test tests/interop_*.py (or .sh).  It prints "ok NAME" or
"FAIL NAME" and the details per test and ends with "N passed, N failed";
its exit status is 1 when a test failed.  Arguments select transcripts
by name (or file) and skip the interop tests unless --only-interop.

Each test runs in a fresh directory tests/work/PASS/NAME/ (wiped first):
conf/ (DOPIS_CONF), mail/ (mailroot), queue/, custom/ (dave's Maildir
parent).  One run at a time uses tests/work: a second one (another
"make check" in the same checkout) waits until the first has ended
(lock_work in tests/dopistest.py).  The configuration is described in
tests/dopistest.py and tests/README.  smtpd runs with a clean
environment: PATH, DOPIS_CONF and TCPREMOTEIP=192.0.2.9 (so by default
the client is a remote host that may not relay; "@env -TCPREMOTEIP"
makes it a local client).

TRANSCRIPT FORMAT (one SMTP session per file; read as bytes, so UTF-8 or
any 8-bit byte in the file is sent and compared as it is):

  # text             a comment (the first one says what the test proves)
  C: text            the client sends text + CRLF
  C| bytes           the client sends bytes, no CRLF added; escapes
                     \\r \\n \\t \\0 \\\\ \\xHH
  S: text            the next reply line of the server, exactly; text
                     ending in " ..." matches any line starting with the
                     text before it (and then a space, or the line end);
                     {ID} stands for a message id [0-9a-f.]+
  S~ regex           the next reply line must match regex (whole line)
  S= ehlo-auth       the same with "250-AUTH PLAIN LOGIN" before the last
  S= ehlo            the nine lines of the EHLO reply (SIZE is the
                     test's max_message_size)

  In C:, C| and S: lines {{TEXT*N}} is TEXT repeated N times.

  The whole client input is piped into smtpd's stdin in one write, then
  stdin is closed; every reply line smtpd writes must be expected, in
  order, and CRLF-terminated.  smtpd must exit (at EOF or QUIT) within
  the timeout and must not die of a signal.

  Set-up directives ($TMP is the test's directory):
  @conf key = value  set (or add) a dopis.conf key; "@conf -key" drops it
  @file NAME         replace the configuration file NAME with the "| "
                     lines that follow ("|" alone is an empty line)
  @append NAME       append the "| " lines that follow to file NAME
  @rm NAME           do not write the configuration file NAME
  @env NAME=value    set an environment variable; "@env -NAME" unsets
  @mkmaildir ADDR    create the Maildir (cur/ new/ tmp/) of ADDR, which
                     may name a folder: alice@example.org/.news
  @mkfile PATH       create a regular file PATH (relative to $TMP), e.g.
                     where a Maildir should be
  @deliver-exit N    use a stub deliver program that reads everything
                     and exits N
  @hold-open SECS    keep stdin open (after writing the input) until
                     smtpd exits or SECS have passed (timeout tests)
  @timeout SECS      how long smtpd may take (default 20)

  Checks after the session:
  @maildir ADDR count N     N messages in the Maildir's new/ ("count
                            any": whatever number)
  @expect-file ADDR         the one message in ADDR's new/ is exactly the
                            lines that follow (LF line ends):
      | text                a literal line ("|" alone: an empty line)
      |e text               a literal line with the C| escapes (\\n in
                            it makes it several lines)
      |~ regex              a line matching regex
      |R key=value ...      the Received header smtpd prepends (it may be
                            folded), keys: helo= ip= host= with= for=;
                            see received_re() in tests/dopistest.py
  @queue count N            N messages in the queue (files in info/)
  @queue-record Rtext       some queued message's info file holds the
                            envelope record R (type byte) text, e.g.
                            "@queue-record Tbob@remote.test"
  @no-queue-record Rtext    no queued message's info file holds it
  @expect-queue             the one message in queue/mess/ is exactly
                            the "|" lines that follow (as @expect-file;
                            no Return-Path or Delivered-To there)
  @nothing-delivered        no message in any Maildir or the queue
  @stderr TEXT              smtpd's stderr (its log) contains TEXT
  @log-field KEY=VALUE      smtpd's stderr is well-formed log lines
                            ("prog key=value ...", lib/log.h) and one
                            has the field (value unquoted)
  @no-log-field KEY=VALUE   ... and none has this field
  @stderr~ REGEX            some line of smtpd's stderr matches REGEX
  @no-stderr~ REGEX         no line of smtpd's stderr matches REGEX
  @no-file PATH             PATH (relative to $TMP, smtpd's working
                            directory) does not exist

  The id in a checked Received header must be the id of one of the
  session's "250 2.0.0 Ok: ID" replies, and those ids must differ.
  Deliveries must be declared: every Maildir not named by @maildir or
  @expect-file and the queue (unless @queue says otherwise) must stay
  empty, so a smuggled or stray message always fails the test.  No file
  may be left in any tmp/.
"""

import concurrent.futures
import glob
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

DEFAULT_TIMEOUT = 20.0


class TranscriptError(Exception):
    pass


def expand_repeat(s):
    return re.sub(r"\{\{(.*?)\*(\d+)\}\}", lambda m: m.group(1) * int(m.group(2)), s)


def unescape(s):
    """C| escapes -> a latin-1 string (one char per byte)."""
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 == len(s):
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n in "rnt0\\":
            out.append({"r": "\r", "n": "\n", "t": "\t", "0": "\0", "\\": "\\"}[n])
            i += 2
        elif n == "x" and re.match(r"[0-9a-fA-F]{2}", s[i + 2:i + 4]):
            out.append(chr(int(s[i + 2:i + 4], 16)))
            i += 4
        else:
            raise TranscriptError("unknown escape \\%s" % n)
    return "".join(out)


def reply_pattern(text):
    """S: text -> a regular expression for the whole line."""
    text = expand_repeat(text)
    prefix = text.endswith(" ...")
    if prefix:
        text = text[:-4]
    r = re.escape(text).replace(re.escape("{ID}"), T.ID_RE)
    return r + r"(?: .*)?" if prefix else r


class Transcript:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)[:-5]
        self.input = []          # latin-1 strings
        self.expect = []         # (source line, regex)
        self.conf = {}
        self.files = {}          # name -> lines (replace)
        self.appends = {}        # name -> lines
        self.removed = set()
        self.env = {"TCPREMOTEIP": "192.0.2.9"}
        self.mkmaildirs = []
        self.mkfiles = []
        self.deliver_exit = None
        self.hold_open = None
        self.timeout = DEFAULT_TIMEOUT
        self.maildir_counts = {}  # addr -> N
        self.expect_files = {}    # addr -> [(kind, text)]
        self.queue_count = None
        self.stderr_has = []
        self.queue_records = []
        self.no_queue_records = []
        self.expect_queue = None
        self.no_files = []
        self.stderr_re = []
        self.no_stderr_re = []
        self.log_fields = []
        self.no_log_fields = []
        self.parse()

    def parse(self):
        with open(self.path, encoding="latin-1") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        i = 0
        while i < len(lines):
            line = lines[i]
            lno = i + 1
            i += 1
            try:
                if line.startswith("#") or line.strip() == "":
                    continue
                if line.startswith("C:"):
                    self.input.append(expand_repeat(line[3:] if line[2:3] == " " else line[2:]) + "\r\n")
                elif line.startswith("C|"):
                    self.input.append(unescape(expand_repeat(line[3:] if line[2:3] == " " else line[2:])))
                elif line.startswith("S:"):
                    self.expect.append((line, reply_pattern(line[3:])))
                elif line.startswith("S= "):
                    if line[3:].strip() not in ("ehlo", "ehlo-auth"):
                        raise TranscriptError("unknown reply macro")
                    self.expect.append((line, line[3:].strip()))
                elif line.startswith("S~"):
                    self.expect.append((line, line[3:]))
                    re.compile(line[3:])
                elif line.startswith("@"):
                    word, _, arg = line.partition(" ")
                    block = []
                    if word in ("@file", "@append", "@expect-file", "@expect-queue"):
                        while i < len(lines) and lines[i].startswith("|"):
                            block.append(lines[i])
                            i += 1
                    self.directive(word, arg.strip(), block)
                else:
                    raise TranscriptError("cannot parse")
            except (TranscriptError, re.error, ValueError) as e:
                raise TranscriptError("%s:%d: %s: %r" % (self.path, lno, e, line))
        # S= ehlo, now that the configuration is known
        size = self.conf.get("max_message_size") or "10000"
        ehlo = ["250-mx.example.org", "250-PIPELINING", "250-SIZE " + size,
                "250-8BITMIME", "250-ENHANCEDSTATUSCODES", "250-DSN", "250-SMTPUTF8",
                "250-CHUNKING", "250 BINARYMIME"]
        # with AUTH offered (to a local client, or inside TLS)
        ehlo_auth = ehlo[:-1] + ["250-AUTH PLAIN LOGIN", ehlo[-1]]
        out = []
        for src, pat in self.expect:
            if src.startswith("S= "):
                lines = ehlo_auth if pat == "ehlo-auth" else ehlo
                out += [("S: %s  (%s)" % (e, src), re.escape(e)) for e in lines]
            else:
                out.append((src, pat))
        self.expect = out

    @staticmethod
    def content(block):
        out = []
        for b in block:
            if b == "|":
                out.append("")
            elif b.startswith("| "):
                out.append(b[2:])
            else:
                raise TranscriptError("file lines start with '| '")
        return out

    def directive(self, word, arg, block):
        if word == "@conf":
            if arg.startswith("-"):
                self.conf[arg[1:].strip()] = None
            else:
                k, eq, v = arg.partition("=")
                if not eq:
                    raise TranscriptError("@conf key = value")
                self.conf[k.strip()] = v.strip()
        elif word == "@file":
            self.files[arg] = self.content(block)
        elif word == "@append":
            self.appends.setdefault(arg, []).extend(self.content(block))
        elif word == "@rm":
            self.removed.add(arg)
        elif word == "@env":
            if arg.startswith("-"):
                self.env[arg[1:]] = None
            else:
                k, eq, v = arg.partition("=")
                if not eq:
                    raise TranscriptError("@env NAME=value")
                self.env[k] = v
        elif word == "@mkmaildir":
            self.mkmaildirs.append(arg)
        elif word == "@mkfile":
            self.mkfiles.append(arg)
        elif word == "@deliver-exit":
            self.deliver_exit = int(arg)
        elif word == "@hold-open":
            self.hold_open = float(arg)
        elif word == "@timeout":
            self.timeout = float(arg)
        elif word == "@maildir":
            m = re.fullmatch(r"(\S+) count (\d+|any)", arg)
            if not m:
                raise TranscriptError("@maildir ADDR count N")
            self.maildir_counts[m.group(1)] = None if m.group(2) == "any" else int(m.group(2))
        elif word in ("@expect-file", "@expect-queue"):
            items = []
            for b in block:
                if b == "|" or b.startswith("| "):
                    items.append(("lit", expand_repeat(b[2:])))
                elif b.startswith("|e "):
                    # may stand for several lines: "\n" splits them
                    for part in unescape(expand_repeat(b[3:])).split("\n"):
                        items.append(("lit", part))
                elif b.startswith("|~ "):
                    re.compile(b[3:])
                    items.append(("re", b[3:]))
                elif b.startswith("|R"):
                    kw = {}
                    for kv in b[2:].split():
                        k, _, v = kv.partition("=")
                        if k not in ("helo", "ip", "host", "with", "for"):
                            raise TranscriptError("|R knows helo= ip= host= with= for=")
                        kw[{"with": "with_", "for": "rcpt"}.get(k, k)] = v
                    if "helo" not in kw:
                        raise TranscriptError("|R needs helo=")
                    items.append(("rcvd", kw))
                else:
                    raise TranscriptError("expected-file lines start with '| ', '|~ ' or '|R'")
            if word == "@expect-queue":
                self.expect_queue = items
            else:
                self.expect_files[arg] = items
        elif word == "@queue":
            m = re.fullmatch(r"count (\d+)", arg)
            if not m:
                raise TranscriptError("@queue count N")
            self.queue_count = int(m.group(1))
        elif word == "@no-file":
            self.no_files.append(arg)
        elif word == "@queue-record":
            self.queue_records.append(arg)
        elif word == "@no-queue-record":
            self.no_queue_records.append(arg)
        elif word == "@nothing-delivered":
            self.queue_count = 0 if self.queue_count is None else self.queue_count
        elif word == "@stderr":
            self.stderr_has.append(arg)
        elif word == "@log-field":
            self.log_fields.append(arg)
        elif word == "@no-log-field":
            self.no_log_fields.append(arg)
        elif word == "@stderr~":
            self.stderr_re.append(re.compile(arg))
        elif word == "@no-stderr~":
            self.no_stderr_re.append(re.compile(arg))
        else:
            raise TranscriptError("unknown directive %s" % word)


# ---------------------------------------------------------------- running

def run_smtpd(argv, env, data, timeout, hold_open, cwd=T.TOP):
    """Runs smtpd with data on stdin.  Returns (stdout, stderr,
    returncode, problems)."""
    problems = []
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, cwd=cwd)
    out, err = [], []
    readers = [threading.Thread(target=lambda f, a: a.append(f.read()), args=(p.stdout, out)),
               threading.Thread(target=lambda f, a: a.append(f.read()), args=(p.stderr, err))]
    for t in readers:
        t.daemon = True
        t.start()

    def writer():
        try:
            p.stdin.write(data)
            p.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        if hold_open is None:
            try:
                p.stdin.close()
            except OSError:
                pass
    w = threading.Thread(target=writer)
    w.daemon = True
    w.start()
    if hold_open is not None:
        try:
            p.wait(hold_open)
        except subprocess.TimeoutExpired:
            problems.append("smtpd still running after %gs with stdin open" % hold_open)
        w.join(5)
        try:
            p.stdin.close()
        except OSError:
            pass
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        problems.append("smtpd did not exit within %gs after its input ended (killed)" % timeout)
        p.kill()
        p.wait()
    for t in readers:
        t.join(10)
    if p.returncode < 0:
        problems.append("smtpd died of signal %d" % -p.returncode)
    return (out[0] if out else b""), (err[0] if err else b""), p.returncode, problems


def split_replies(stdout):
    """Reply lines; problems for lines not ending in CRLF."""
    problems = []
    text = stdout.decode("latin-1")
    parts = text.split("\r\n")
    if parts[-1] != "":
        problems.append("output does not end with CRLF: %r" % parts[-1][-80:])
    else:
        parts.pop()
    for p in parts:
        if "\n" in p or "\r" in p:
            problems.append("bare CR or LF in a reply: %r" % p)
        if not re.match(r"\d{3}[ -]", p):
            problems.append("not a reply line: %r" % p)
    return parts, problems


def compare_replies(expect, got):
    """'' or a listing aligned on the longest common subsequence:
    '    ' matched, '  - ' expected but missing, '  + ' got, unexpected."""
    n, m = len(expect), len(got)
    ok = [[bool(re.fullmatch(expect[i][1], got[j])) for j in range(m)] for i in range(n)]
    if n == m and all(ok[i][i] for i in range(n)):
        return ""
    L = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            L[i][j] = L[i + 1][j + 1] + 1 if ok[i][j] else max(L[i + 1][j], L[i][j + 1])
    rows = []
    i = j = 0
    while i < n or j < m:
        if i < n and j < m and ok[i][j] and L[i][j] == L[i + 1][j + 1] + 1:
            rows.append("    %r" % got[j])
            i += 1
            j += 1
        elif j < m and (i == n or L[i][j + 1] >= L[i + 1][j]):
            rows.append("  + %r" % got[j])
            j += 1
        else:
            rows.append("  - %s" % expect[i][0])
            i += 1
    return "replies differ (- expected, + got):\n" + "\n".join(rows)


def check_file(path, items, tmp, ids=None):
    """Problems of the delivered file against the expected items; the
    ids of the Received headers are appended to ids."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("latin-1")
    probs = []
    if not text.endswith("\n"):
        probs.append("the file does not end with LF")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    i = 0
    for k, (kind, want) in enumerate(items):
        if i >= len(lines):
            probs.append("file ends before expected line %d: %r" % (k + 1, want))
            break
        if kind == "lit":
            if lines[i] != want:
                probs.append("line %d: expected %r, got %r" % (i + 1, want, lines[i]))
                break
            i += 1
        elif kind == "re":
            if not re.fullmatch(want, lines[i]):
                probs.append("line %d: %r does not match %r" % (i + 1, lines[i], want))
                break
            i += 1
        else:
            if not lines[i].startswith("Received:"):
                probs.append("line %d: expected the Received header, got %r" % (i + 1, lines[i]))
                break
            hdr, i = T.split_received(lines, i)
            p = T.check_received(hdr, **want)
            if p:
                probs.append(p)
                break
            m = re.search(r"\bid (%s)" % T.ID_RE, " ".join(hdr))
            if m and ids is not None:
                ids.append(m.group(1))
    else:
        if i < len(lines):
            probs.append("extra lines from line %d: %r" % (i + 1, lines[i:i + 5]))
    if probs:
        probs.append("the whole file %s:\n%s" % (
            os.path.relpath(path, tmp),
            "\n".join("      %r" % l for l in text.split("\n")[:60])))
    return probs


def maildir_of(tmp, addr):
    """Transcripts are read as latin-1 (one char a byte); file names are
    the same bytes, which Python spells with surrogateescape."""
    return T.maildir_of(tmp, addr.encode("latin-1").decode("utf-8", "surrogateescape"))


LOG_FIELD = re.compile(r' (\w+)=([^\s"]+|"(?:[^"\\]|\\.)*")')


def parse_log(text):
    """stderr as log lines (lib/log.h: "prog key=value ...", values with
    spaces or quotes quoted and escaped): a list of lists of (key, value)
    pairs, and problems for lines that are not well-formed."""
    lines, bad = [], []
    for l in text.splitlines():
        m = re.match(r"(smtpd|deliver)(?= |$)", l)
        if not m:
            bad.append("not a log line: %r" % l)
            continue
        pos, fields = m.end(), []
        while pos < len(l):
            f = LOG_FIELD.match(l, pos)
            if not f:
                bad.append("log line not key=value at %d: %r" % (pos, l))
                break
            v = f.group(2)
            if v.startswith('"'):
                v = re.sub(r"\\(.)", r"\1", v[1:-1])
            fields.append((f.group(1), v))
            pos = f.end()
        lines.append(fields)
    return lines, bad


STUB = """#!/bin/sh
# test stub of deliver: reads the message (fd 0) and envelope (fd 1)
cat >/dev/null
cat <&1 >/dev/null
echo "deliver stub: exit %d" >&2
exit %d
"""


def run_smtpd_split(argv, env, data, split, timeout, cwd=T.TOP):
    """Runs smtpd on a TCP loopback connection; the client writes data
    in two writes, the first ending at byte split, with a pause so that
    smtpd has read the first before the second arrives.  Returns what
    run_smtpd returns."""
    problems = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    srv.close()
    p = subprocess.Popen(argv, stdin=s.fileno(), stdout=s.fileno(), stderr=subprocess.PIPE,
                         env=env, cwd=cwd)
    s.close()
    err = []
    t = threading.Thread(target=lambda: err.append(p.stderr.read()))
    t.daemon = True
    t.start()
    out = []

    def reader():
        buf = b""
        while True:
            try:
                d = c.recv(65536)
            except OSError:
                break
            if not d:
                break
            buf += d
        out.append(buf)
    r = threading.Thread(target=reader)
    r.daemon = True
    r.start()
    try:
        c.sendall(data[:split])
        time.sleep(0.003)
        c.sendall(data[split:])
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass   # smtpd may end the session first (421, QUIT)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        problems.append("smtpd did not exit within %gs (killed)" % timeout)
        p.kill()
        p.wait()
    r.join(10)
    t.join(10)
    c.close()
    if p.returncode < 0:
        problems.append("smtpd died of signal %d" % -p.returncode)
    return (out[0] if out else b""), (err[0] if err else b""), p.returncode, problems


def splittable(tr):
    """Transcripts whose meaning survives a TCP connection: a remote
    client (a local one is told by its pipe), no held-open input."""
    return tr.hold_open is None and tr.env.get("TCPREMOTEIP", "") is not None


# Every offset for the transcripts about how data and commands are
# framed; for the rest, offsets spread over the input and around each
# line end (CR|LF and just after LF), at most SPLIT_SAMPLE of them.
SPLIT_ALL = ("smuggle", "bdat", "pipelining", "dot", "data", "eof", "empty-message",
             "line-too-long", "nul", "binarymime")
SPLIT_SAMPLE = 12
SPLIT_ALL_MAX = 800


def split_offsets(tr, data):
    framing = any(k in tr.name for k in SPLIT_ALL)
    if framing and len(data) <= SPLIT_ALL_MAX:
        return list(range(1, len(data)))
    # next to every line end (where framing bugs live), then spread
    ends = set()
    for i in range(1, len(data)):
        if data[i - 1:i] in (b"\r", b"\n"):
            ends.update(k for k in (i - 1, i, i + 1) if 0 < k < len(data))
    cap = SPLIT_ALL_MAX // 2 if framing else SPLIT_SAMPLE
    ends = sorted(ends)
    pick = set(ends[::max(1, len(ends) * 2 // cap)][:cap // 2])
    step = max(1, len(data) // (cap - len(pick) + 1))
    pick.update(range(1, len(data), step))
    return sorted(pick)[:cap]


def run_split(tr, passname, smtpd, deliver, sanitized):
    """The transcript over TCP, split at each chosen offset: every run
    must pass the transcript's own checks."""
    data = "".join(tr.input).encode("latin-1")
    probs = []
    offs = split_offsets(tr, data)
    for k in offs:
        p = run_transcript(tr, passname, smtpd, deliver, sanitized, split=k)
        if p:
            probs.append("split after byte %d of %d (%r | %r):" % (k, len(data), data[max(0, k - 12):k],
                                                                    data[k:k + 12]))
            probs += p
            break
        # keep the work tree small: only a failed run's directory stays
        T.fresh_dir(os.path.join(T.WORK, passname, "%s@%d" % (tr.name, k)))
        os.rmdir(os.path.join(T.WORK, passname, "%s@%d" % (tr.name, k)))
    return probs, len(offs)


def run_transcript(tr, passname, smtpd, deliver, sanitized, split=None):
    tmp = os.path.join(T.WORK, passname, tr.name if split is None else "%s@%d" % (tr.name, split))
    sub = lambda s: s.replace("$TMP", tmp) if isinstance(s, str) else s  # noqa: E731
    conf = {k: sub(v) for k, v in tr.conf.items()}
    files = T.default_files(tmp)
    for k, v in tr.files.items():
        files[k] = [sub(x) for x in v]
    for k, v in tr.appends.items():
        files[k] = files.get(k, []) + [sub(x) for x in v]
    if tr.deliver_exit is not None:
        conf["deliver"] = os.path.join(tmp, "deliver-stub")
    confdir = T.setup(tmp, deliver, conf, files, tr.removed)
    if tr.deliver_exit is not None:
        stub = os.path.join(tmp, "deliver-stub")
        with open(stub, "w") as f:
            f.write(STUB % (tr.deliver_exit, tr.deliver_exit))
        os.chmod(stub, 0o755)
    for a in tr.mkmaildirs:
        md = maildir_of(tmp, a)
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, d), exist_ok=True)
    for f in tr.mkfiles:
        path = os.path.join(tmp, f)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write("in the way\n")
    env = T.base_env(confdir, sanitized)
    for k, v in tr.env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = sub(v)

    data = "".join(tr.input).encode("latin-1")
    with open(os.path.join(tmp, "input"), "wb") as f:
        f.write(data)
    if split is None:
        stdout, stderr, rc, problems = run_smtpd([smtpd], env, data, tr.timeout, tr.hold_open, cwd=tmp)
    else:
        stdout, stderr, rc, problems = run_smtpd_split([smtpd], env, data, split, tr.timeout, cwd=tmp)
    with open(os.path.join(tmp, "stdout"), "wb") as f:
        f.write(stdout)
    with open(os.path.join(tmp, "stderr"), "wb") as f:
        f.write(stderr)
    errtext = stderr.decode("latin-1")

    got, p = split_replies(stdout)
    problems += p
    d = compare_replies(tr.expect, got)
    if d:
        problems.append(d)
    if sanitized:
        rep = T.sanitizer_report(errtext)
        if rep:
            problems.append("sanitizer report on stderr:\n" + rep)
    for f in tr.no_files:
        if os.path.lexists(os.path.join(tmp, f)):
            problems.append("%s exists: something ran a shell?" % f)
    for s in tr.stderr_has:
        if s not in errtext:
            problems.append("stderr does not contain %r" % s)
    if tr.log_fields or tr.no_log_fields:
        lines, bad = parse_log(errtext)
        problems += bad
        for f in tr.log_fields:
            k, _, v = f.partition("=")
            if not any((k, v) in l for l in lines):
                problems.append("no log line has the field %s" % f)
        for f in tr.no_log_fields:
            k, _, v = f.partition("=")
            if any((k, v) in l for l in lines):
                problems.append("a log line has the field %s" % f)
    for r in tr.stderr_re:
        if not any(r.search(l) for l in errtext.splitlines()):
            problems.append("no stderr line matches %r" % r.pattern)
    for r in tr.no_stderr_re:
        bad = [l for l in errtext.splitlines() if r.search(l)]
        if bad:
            problems.append("stderr lines match %r: %r" % (r.pattern, bad))

    # deliveries: declared ones exactly, nothing anywhere else
    declared = {}
    for a, n in tr.maildir_counts.items():
        declared[maildir_of(tmp, a)] = (a, n)
    for a in tr.expect_files:
        md = maildir_of(tmp, a)
        declared.setdefault(md, (a, 1))
    for md in sorted(set(T.all_maildirs(tmp)) | set(declared)):
        a, n = declared.get(md, (os.path.relpath(md, tmp), 0))
        new = T.maildir_files(md, "new")
        if n is not None and len(new) != n:
            problems.append("%s: %d message(s) in new/, expected %d" % (a, len(new), n))
        cur = T.maildir_files(md, "cur")
        if cur:
            problems.append("%s: %d file(s) in cur/" % (a, len(cur)))
    # the id of "250 2.0.0 Ok: ID" is unique and is the Received header's
    okids = [m.group(1) for m in (re.fullmatch(r"250 2\.0\.0 Ok: (%s)" % T.ID_RE, g) for g in got) if m]
    if len(set(okids)) != len(okids):
        problems.append("message ids repeat: %r" % okids)
    for a, items in tr.expect_files.items():
        new = T.maildir_files(maildir_of(tmp, a), "new")
        if len(new) == 1:
            ids = []
            problems += ["%s: %s" % (a, x) for x in check_file(new[0], items, tmp, ids)]
            for i in ids:
                if i not in okids:
                    problems.append("%s: Received id %s is none of the ids smtpd replied: %r" % (a, i, okids))
    q = T.queue_count(tmp)
    want_q = tr.queue_count or 0
    if q != want_q:
        problems.append("queue holds %d message(s), expected %d: %s" % (
            q, want_q, [os.path.relpath(f, tmp) for f in T.queue_files(tmp)]))
    problems += T.maildir_problems(tmp)
    problems += T.queue_problems(tmp)
    recs = T.queue_records(tmp)
    for r in tr.queue_records:
        if not any(r in m for m in recs):
            problems.append("no queued message has the envelope record %r; records: %r" % (r, recs))
    for r in tr.no_queue_records:
        if any(r in m for m in recs):
            problems.append("a queued message has the envelope record %r; records: %r" % (r, recs))
    if tr.expect_queue is not None:
        mess = sorted(os.listdir(os.path.join(tmp, "queue", "mess"))) \
            if os.path.isdir(os.path.join(tmp, "queue", "mess")) else []
        if len(mess) != 1:
            problems.append("@expect-queue: %d messages in queue/mess, expected 1" % len(mess))
        else:
            ids = []
            problems += ["queue: %s" % x for x in check_file(
                os.path.join(tmp, "queue", "mess", mess[0]), tr.expect_queue, tmp, ids)]
            for i in ids:
                if i not in okids:
                    problems.append("queue: Received id %s is none of the ids smtpd replied: %r" % (i, okids))

    if problems:
        tail = errtext.splitlines()[-15:]
        problems.append("smtpd exit status %s; stderr (last lines):\n%s" % (
            rc, "\n".join("      " + l for l in tail)))
    return problems


# ---------------------------------------------------------------- interop

def run_interop(script, passname, smtpd, deliver, sanitized, args=()):
    """Runs one interop (or unit test) script; returns [(name, problems)].
    It prints "ok NAME" or "FAIL NAME" (optionally ": why"), details
    indented below a FAIL."""
    env = dict(os.environ)
    env.update({"DOPIS_PASS": passname, "DOPIS_SMTPD": smtpd,
                "DOPIS_DELIVER": deliver, "DOPIS_SANITIZED": "1" if sanitized else "0"})
    argv = ["/usr/bin/python3", script] if script.endswith(".py") else ["/bin/sh", script]
    argv += list(args)
    base = os.path.basename(script).rsplit(".", 1)[0]
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, timeout=600, cwd=T.TOP)
        out = p.stdout.decode("utf-8", "replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        rc = "timeout"
    results = []
    cur = None
    stray = []
    for line in out.splitlines():
        m = re.match(r"(ok|FAIL) (.+?)(?:: (.*)| # (.*))?$", line)
        if m:
            name = m.group(2).strip().replace(" ", "-")
            cur = (name, [] if m.group(1) == "ok" else ["failed"] + ([m.group(3)] if m.group(3) else []))
            results.append(cur)
        elif cur is not None and cur[1]:
            cur[1].append(line)
        else:
            stray.append(line)
    for name, probs in results:
        if probs and probs[0] == "failed" and len(probs) > 1:
            probs.pop(0)
    if rc != 0 and not any(p for _, p in results):
        results.append((base, ["%s exited with %s" % (script, rc)] + stray[-30:]))
    if not results:
        results.append((base, ["no results printed"] + stray[-30:]))
    return [("%s/%s" % (base, n) if not n.startswith(base) else n, p) for n, p in results]


# ---------------------------------------------------------------- main

def main(argv):
    verbose = "-v" in argv
    argv = [a for a in argv if a != "-v"]
    passes = T.PASSES
    if "--pass" in argv:
        k = argv.index("--pass")
        passes = [p for p in T.PASSES if p[0] == argv[k + 1]]
        del argv[k:k + 2]
    interop = True
    transcripts = True
    split = "--split" in argv
    if split:
        argv.remove("--split")
    if "--no-interop" in argv:
        argv.remove("--no-interop")
        interop = False
    if "--only-interop" in argv:
        argv.remove("--only-interop")
        transcripts = False
    files = sorted(glob.glob(os.path.join(T.TESTS, "transcripts", "*.smtp")))
    if argv:
        interop = interop and not transcripts
        sel = []
        for a in argv:
            sel += [f for f in files if a == f or a in os.path.basename(f)]
        files = sel
    if not transcripts:
        files = []

    # before any directory under tests/work is wiped; the scripts
    # started below share this lock
    T.lock_work()
    passed = failed = 0

    def report(name, problems):
        nonlocal passed, failed
        if problems:
            failed += 1
            print("FAIL %s" % name)
            for p in problems:
                for l in str(p).split("\n"):
                    print("    " + l)
        else:
            passed += 1
            print("ok %s" % name)
        sys.stdout.flush()

    parsed = []
    for f in files:
        try:
            parsed.append((Transcript(f), None))
        except TranscriptError as e:
            parsed.append((os.path.basename(f)[:-5], str(e)))

    for passname, smtpd, deliver, sanitized in passes:
        missing = [b for b in (smtpd, deliver) if not os.access(b, os.X_OK)]
        jobs = []
        with concurrent.futures.ThreadPoolExecutor(max(4, 2 * (os.cpu_count() or 2))) as ex:
            for tr, err in parsed:
                name = "%s/%s" % (passname, tr if err else tr.name)
                if err or missing:
                    jobs.append((name, None, err or "missing program(s): %s" % missing, tr))
                    continue
                if split:
                    if not splittable(tr):
                        continue
                    jobs.append(("%s/split/%s" % (passname, tr.name),
                                 ex.submit(run_split, tr, passname + "-split", smtpd, deliver,
                                           sanitized), None, tr))
                    continue
                jobs.append((name, ex.submit(run_transcript, tr, passname, smtpd,
                                             deliver, sanitized), None, tr))
            for name, fut, err, tr in jobs:
                if fut is None:
                    report(name, [err])
                    continue
                try:
                    probs = fut.result()
                    if split:
                        probs, n = probs
                        name += " (%d splits)" % n
                except Exception as e:  # a bug in the runner is a failure too
                    probs = ["runner error: %r" % e]
                report(name, probs)
                if verbose and not probs:
                    print("    (work dir tests/work/%s)" % name)

    if interop:
        # tests/test_*.py: unit tests of one program ("test_deliver.py
        # REPO BINDIR"); tests/interop_*: real clients over a socket
        scripts = sorted(glob.glob(os.path.join(T.TESTS, "test_*.py"))) + \
            sorted(glob.glob(os.path.join(T.TESTS, "interop_*.py")) +
                   glob.glob(os.path.join(T.TESTS, "interop_*.sh")))
        for passname, smtpd, deliver, sanitized in passes:
            missing = [b for b in (smtpd, deliver) if not os.access(b, os.X_OK)]
            for s in scripts:
                if missing:
                    report("%s/%s" % (passname, os.path.basename(s)),
                           ["missing program(s): %s" % missing])
                    continue
                args = (T.TOP, os.path.dirname(deliver)) if os.path.basename(s).startswith("test_") else ()
                for name, probs in run_interop(s, passname, smtpd, deliver, sanitized, args):
                    report("%s/%s" % (passname, name), probs)

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
