#!/usr/bin/python3
"""Writes the seed corpora of the libFuzzer harnesses, fuzz/corpus/NAME/,
mostly from the transcripts tests/transcripts/*.smtp (read with
tests/run.py's own parser, so the two never disagree on the format):

  smtpd      t-TRANSCRIPT: the session byte (fuzz_smtpd.c) made from
             the transcript's @env and @deliver-exit, then the client's
             bytes (its C: lines with CRLF, its C| lines as they are),
             cut at 16384 bytes
  address    t-TRANSCRIPT-N: the flags byte, then each MAIL FROM/RCPT TO
             path (to the end of its line, parameters and all)
  xtext      t-TRANSCRIPT-N: each ENVID and ORCPT value
  config     t-TRANSCRIPT: tests/dopistest.py's configuration with the
             transcript's @conf, @file, @append and @rm applied, as
             fuzz_config.c reads it (files separated by 0xff)
  passwd     t-TRANSCRIPT-N: each @file passwd, a user, a password
  queueinfo  s-NAME: info files as smtpd's envelope and the relay's
             state records make them (written here)
  reply      s-NAME: what SMTP servers answer (written here)

Files it wrote before (t-*, s-*) are replaced; any other file there
(regress-*: inputs that once found a bug; SHA-1 names: inputs long runs
found, merged in with libFuzzer's -merge=1) is left alone.

usage: /usr/bin/python3 fuzz/seeds.py
"""
import glob
import os
import re
import sys
import types

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
import dopistest as T  # noqa: E402
import run as R        # noqa: E402

CORPUS = os.path.join(TOP, "fuzz", "corpus")
CONF_FILES = ["dopis.conf", "localdomains", "users", "aliases", "restricted", "relayclients"]
SEP = b"\xff"


def clear(name):
    d = os.path.join(CORPUS, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith(("t-", "s-")):
            os.unlink(os.path.join(d, f))
    return d


_seen = set()


def put(d, name, data):
    """Writes a seed unless the same bytes went to d already."""
    if (d, data) in _seen:
        return 0
    _seen.add((d, data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    return 1


def session_byte(t):
    """fuzz_smtpd.c's first byte: client, DOPIS_MODE, deliver."""
    env = t.env
    ip = env.get("TCPREMOTEIP") or env.get("REMOTE_ADDR")
    if "RELAYCLIENT" in env and env["RELAYCLIENT"] is not None:
        client = 3
    elif not ip:
        client = 1
    elif ip.startswith("10.1.") or ip.lower().startswith("2001:db8:") or ip.startswith("::ffff:10.1."):
        client = 2
    else:
        client = 0
    mode = {None: 0, "": 0, "smtp": 0, "submission": 1, "submissions": 2}.get(env.get("DOPIS_MODE"), 3)
    deliver = 0 if not t.deliver_exit else 1 if t.deliver_exit == 75 else 2
    return bytes([client | mode << 2 | deliver << 4])


def conf_files(t):
    """The transcript's configuration files, name -> bytes or None."""
    conf = T.default_conf("/tmp/dopis-fuzz", "/nonexistent/dopis-deliver")
    files = T.default_files("/tmp/dopis-fuzz")
    for k, v in t.conf.items():
        if v is None:
            conf.pop(k, None)
        else:
            conf[k] = v
    files.update(t.files)
    for k, v in t.appends.items():
        files.setdefault(k, []).extend(v)
    if "dopis.conf" in files:
        text = "".join(line + "\n" for line in files.pop("dopis.conf"))
    else:
        text = "".join("%s = %s\n" % kv for kv in conf.items())
    out = {"dopis.conf": text.encode("latin-1")}
    for name in CONF_FILES[1:] + ["passwd"]:
        lines = files.get(name)
        out[name] = None if name in t.removed or lines is None else \
            "".join(line + "\n" for line in lines).encode("latin-1")
    return out


def config_input(files):
    parts = []
    for name in CONF_FILES:
        if files[name] is None:
            break   # this file and the rest absent
        parts.append(files[name])
    return SEP.join(parts)


QUEUEINFO = {
    "new": b"I6b0.1.2.3\0Fx@remote.test\0PBODY=8BITMIME\0C1700000000\0"
           b"Tbob@remote.test\0Tcarol@elsewhere.test\0Nsuccess,delay\0Orfc822;carol+40elsewhere.test\0\0",
    "states": b"I6b0.1.2.4\0F\0PRET=HDRS\0PENVID=QQ+2B1\0PSMTPUTF8\0"
              b"Ta@r.test\0Spending 3 1700000000 1700003600 w 4.4.1 mx.r.test[192.0.2.1] connection refused\0"
              b"Tb@r.test\0Sdelivered 1 1700000000 0 - 2.0.0 mx.r.test[192.0.2.1] 250 2.0.0 Ok queued\0"
              b"Tc@r.test\0NSUCCESS\0Srelayed 1 1700000000 0 - 2.0.0 mx.r.test[192.0.2.1] 250 ok\0"
              b"Td@r.test\0Sfailed 2 1700000000 0 - 5.1.1 - 550 5.1.1 no such user\0"
              b"Te@r.test\0Sbounced 2 1700000000 0 - 5.1.1 - \0\0",
    "pending-none": b"Ix\0Fy@z.test\0Tt@u.test\0Spending 0 0 0 - - - \0\0",
    "unknown-records": b"Ix\0Fy@z.test\0Qfuture\0Tt@u.test\0Xlater\0\0",
    "cut-short": b"Ix\0Fy@z.test\0Tt@u.test\0",
}

REPLY = {
    # first byte: 1 = the replies answer EHLO
    "greeting": b"\0220 mx.example.com ESMTP ready\r\n",
    "greeting-multi": b"\0220-mx.example.com ESMTP\r\n220-second line\r\n220 last\r\n",
    "ehlo": b"\1250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
            b"250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
            b"250-SMTPUTF8\r\n250-CHUNKING\r\n250 BINARYMIME\r\n",
    "ehlo-auth": b"\1250-mx\r\n250-AUTH LOGIN PLAIN\r\n250-STARTTLS\r\n250 AUTH=CRAM-MD5 PLAIN\r\n",
    "ehlo-size-none": b"\1250-mx\r\n250-SIZE\r\n250 SIZE=0\r\n",
    "ehlo-lf": b"\1250-mx.example.com\n250-size 99999999999999999999999\n250 size 12\n",
    "txn": b"\0250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <x@y>: Recipient address rejected\r\n"
           b"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 12345\r\n221 2.0.0 Bye\r\n",
    "errors": b"\0421 4.7.0 Try again later\r\n452-4.5.3 Too many\r\n452 4.5.3 recipients\r\n"
              b"554 5.7.1 Access denied\r\n500 Syntax\r\n251 2.1.5 forwarded\r\n",
    "malformed": b"\0250-first\r\n251 second\r\n",
}


def main():
    transcripts = sorted(glob.glob(os.path.join(TOP, "tests", "transcripts", "*.smtp")))
    d_smtpd, d_addr, d_xtext = clear("smtpd"), clear("address"), clear("xtext")
    d_conf, d_pw = clear("config"), clear("passwd")
    counts = dict.fromkeys(["smtpd", "address", "xtext", "config", "passwd"], 0)
    for path in transcripts:
        t = R.Transcript(path)
        data = "".join(t.input).encode("latin-1")
        # fuzz/run.sh's -max_len for smtpd: libFuzzer would cut it there
        counts["smtpd"] += put(d_smtpd, "t-" + t.name, (session_byte(t) + data)[:16384])
        utf8 = b"SMTPUTF8" in data.upper()
        n = 0
        for line in re.split(rb"\r?\n", data):
            m = re.match(rb"(?i)(MAIL FROM:|RCPT TO:) *(<.*)", line)
            if m:
                flags = (4 | 1) if m.group(1).upper().startswith(b"MAIL") else (2 | (1 if utf8 else 0))
                # past every limit of a path (256) is as good as longer
                counts["address"] += put(d_addr, "t-%s-%d" % (t.name, n), bytes([flags]) + m.group(2)[:600])
                n += 1
            for k, v in enumerate(re.findall(rb"(?i)(?:ENVID=|ORCPT=rfc822;)(\S+)", line)):
                counts["xtext"] += put(d_xtext, "t-%s-%d-%d" % (t.name, n, k), v)
        files = conf_files(t)
        if t.conf or t.files or t.appends or t.removed:
            counts["config"] += put(d_conf, "t-" + t.name, config_input(files))
        if files["passwd"] is not None:
            for k, (user, pw) in enumerate([(b"alice@example.org", b"secret"),
                                            (b"bob@example.org", b"right"), (b"nobody@x.test", b"")]):
                counts["passwd"] += put(d_pw, "t-%s-%d" % (t.name, k), files["passwd"] + SEP + user + SEP + pw)
    # the tests' configuration as it is
    plain = types.SimpleNamespace(conf={}, files={}, appends={}, removed=set())
    counts["config"] += put(d_conf, "s-default", config_input(conf_files(plain)))
    d = clear("queueinfo")
    for k, v in QUEUEINFO.items():
        put(d, "s-" + k, v)
    d = clear("reply")
    for k, v in REPLY.items():
        put(d, "s-" + k, v)
    counts["queueinfo"], counts["reply"] = len(QUEUEINFO), len(REPLY)
    print(" ".join("%s %d" % kv for kv in sorted(counts.items())))


if __name__ == "__main__":
    main()
