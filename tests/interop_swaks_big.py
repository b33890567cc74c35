#!/usr/bin/python3
"""Interop: swaks --pipeline, and swaks sending a 1 MB attachment, with
max_message_size = 2000000, under tcpserver; a 3 MB attachment is
refused with 552 5.3.4 and nothing is delivered.  The attachment is read
back with mblaze (mshow -t, mshow -O) and Python's email parser and
must be the very bytes sent.
"""

import email
import email.policy
import hashlib
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_swaks_big")
R = T.Results()


def start(tmp):
    confdir = T.setup(tmp, DELIVER, {"max_message_size": "2000000"})
    return T.start_tcpserver(tmp, confdir, SMTPD, SANITIZED)


def swaks(port, *args):
    return T.swaks(port, "-n", *args, timeout=60, run_timeout=180)


def test_pipeline(tmp, port):
    msg = (b"From: x@remote.test\r\nSubject: pipelined\r\n\r\n"
           b"sent with swaks --pipeline\r\n..stuffed by swaks? no: two dots typed\r\n")
    rc, out = T.swaks_message(tmp, port, msg, "-n", "--pipeline", "--from", "x@remote.test",
                              "--to", "alice@example.org,nobody@example.org,bob@example.org",
                              timeout=60, run_timeout=180)
    probs = []
    # the refused recipient is reported, the others get the message
    if "550 5.1.1" not in out or "250 2.0.0 Ok:" not in out or "PIPELINING" not in out:
        return ["swaks --pipeline with a refused recipient (exit %d):\n%s" % (rc, out)]
    for rcpt in ("alice@example.org", "bob@example.org"):
        files = T.maildir_files(T.maildir_of(tmp, rcpt))
        if len(files) != 1:
            probs.append("%s: %d messages" % (rcpt, len(files)))
            continue
        probs += T.check_message(files[0], "x@remote.test", rcpt, msg,
                                 helo="client.test", ip="127.0.0.1")
    return probs


def test_attachment(tmp, port):
    rnd = random.Random(1234)
    blob = bytes(rnd.getrandbits(8) for _ in range(1024 * 1024))
    att = T.write_file(os.path.join(tmp, "blob.bin"), blob)
    rc, out = swaks(port, "--from", "x@remote.test", "--to", "carol@example.net",
                    "--header", "Subject: one megabyte", "--body", "see the attachment",
                    "--attach-type", "application/octet-stream", "--attach", "@" + att)
    if rc != 0 or "250 2.0.0 Ok:" not in out:
        return ["swaks --attach exited %d:\n%s" % (rc, out[-3000:])]
    path = T.one_message(tmp, "carol@example.net")
    probs = []
    with open(path, "rb") as fh:
        data = fh.read()
    if b"\r" in data:
        probs.append("the stored message has CR bytes")
    probs += T.head_problems(data, "x@remote.test", "carol@example.net")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    parts = [p for p in msg.iter_attachments()]
    if len(parts) != 1 or parts[0].get_content() != blob:
        probs.append("email parser: the attachment is not the 1 MB sent (%d parts)" % len(parts))
    env = T.mblaze_env(tmp)
    rc, listing = T.mblaze(tmp, "mshow", "-t", path)
    if "application/octet-stream" not in listing:
        probs.append("mshow -t: %s" % listing)
    else:
        partno = None
        for line in listing.splitlines():
            if "application/octet-stream" in line:
                partno = line.split(":")[0].strip()
        p = subprocess.run(["mshow", "-O", path, partno], stdout=subprocess.PIPE, env=env)
        if hashlib.sha256(p.stdout).digest() != hashlib.sha256(blob).digest():
            probs.append("mshow -O %s %s: %d bytes, not the attachment" % (path, partno, len(p.stdout)))
    return probs


def test_too_big(tmp, port):
    blob = os.urandom(3 * 1024 * 1024)
    att = T.write_file(os.path.join(tmp, "big.bin"), blob)
    rc, out = swaks(port, "--from", "x@remote.test", "--to", "alice@example.org",
                    "--attach", "@" + att)
    probs = []
    if "552 5.3.4" not in out:
        probs.append("swaks with 3 MB over a 2000000 limit (exit %d):\n%s" % (rc, out[-3000:]))
    if T.maildir_files(T.maildir_of(tmp, "alice@example.org")):
        probs.append("the message was delivered")
    return probs


def main():
    T.run_server_tests(R, BASE, "swaks-",
                       [("pipeline", test_pipeline), ("attachment-1mb", test_attachment),
                        ("too-big", test_too_big)], start, SANITIZED)
    R.exit()


if __name__ == "__main__":
    main()
