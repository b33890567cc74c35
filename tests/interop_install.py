#!/usr/bin/python3
"""make install and make uninstall into a DESTDIR, with this build's
programs (BIN, no rebuild: make -o all):

- the tree: programs as sbin/dopis-NAME (mode 755, the build's bytes),
  man pages in share/man/man5 and man8, the units (@SBINDIR@ replaced),
  sysusers.d and tmpfiles.d entries, the tcpserver example, the sample
  configuration in etc/dopis (passwd mode 0640);
- the installed dopis-smtpd, with DOPIS_CONF naming a test
  configuration without a "deliver" key, finds dopis-deliver beside
  itself (lib/sibling.c) and delivers a message; without it beside, it
  delivers nothing;
- a second install replaces the programs but leaves an edited
  configuration alone;
- the sendmail and mailq links (with stand-in programs, whatever is
  built yet): made relative, only when their target is installed, and
  not with NO_SENDMAIL_LINK=1;
- make uninstall leaves no program, link, unit, man page or example,
  and keeps the configuration;
- PREFIX=/opt/dopis puts everything there and into the units.
"""

import filecmp
import os
import re
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BIN = os.path.relpath(os.path.dirname(SMTPD), T.TOP)
BASE = os.path.join(T.WORK, PASS, "interop_install")
R = T.Results()

NAMES = ["smtpd", "deliver", "tlsd", "relay", "queue", "check", "sendmail"]
UNITS = {"dopis-smtpd.socket", "dopis-smtpd@.service", "dopis-submission.socket",
         "dopis-submission@.service", "dopis-submissions.socket",
         "dopis-submissions@.service", "dopis-submit.socket", "dopis-submit@.service",
         "dopis-relay.service", "dopis-relay.timer",
         "dopis-relay.path"}


def make(target, dest, *extra, binary=BIN):
    p = subprocess.run(["make", "-s", "-o", "all", target, "DESTDIR=" + dest,
                        "BIN=" + binary] + list(extra), cwd=T.TOP,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError("make %s DESTDIR=%s %s: exit %d\n%s" % (
            target, dest, " ".join(extra), p.returncode, out))
    return out


def progs(binary=BIN, *extra):
    """The Makefile's PROGS for BIN=binary."""
    p = subprocess.run(["make", "-s", "--eval", "print-progs: ; @echo $(PROGS)", "print-progs",
                        "BIN=" + binary] + list(extra), cwd=T.TOP,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return [os.path.basename(x) for x in p.stdout.decode().split()]


def files_under(root):
    out = []
    for d, subdirs, files in os.walk(root):
        for n in files + [s for s in subdirs if os.path.islink(os.path.join(d, s))]:
            out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


T.fresh_dir(BASE)
D1 = os.path.join(BASE, "dest")
FIRST = ""


def test_tree():
    global FIRST
    FIRST = make("install", D1)
    probs = []
    sbin = os.path.join(D1, "usr/local/sbin")
    built = [n for n in progs() if n in NAMES and os.path.isfile(os.path.join(T.TOP, BIN, n))]
    for n in ("smtpd", "deliver", "relay"):
        if n not in built:
            probs.append("%s/%s is not built or not in PROGS" % (BIN, n))
    want = set("dopis-" + n for n in built)
    if "dopis-sendmail" in want:
        want.add("sendmail")
    if "dopis-queue" in want:
        want.add("mailq")
    have = set(os.listdir(sbin))
    if have != want:
        probs.append("sbin holds %s, expected %s" % (sorted(have), sorted(want)))
    for n in built:
        p = os.path.join(sbin, "dopis-" + n)
        if os.path.isfile(p):
            if not filecmp.cmp(p, os.path.join(T.TOP, BIN, n), shallow=False):
                probs.append("%s differs from %s/%s" % (p, BIN, n))
            if mode(p) != 0o755:
                probs.append("%s: mode %o" % (p, mode(p)))
    man = os.path.join(T.TOP, "man")
    for n in sorted(os.listdir(man)):
        sec = n.rsplit(".", 1)[-1]
        if sec not in ("5", "8"):
            continue
        p = os.path.join(D1, "usr/local/share/man/man" + sec, n)
        if not os.path.isfile(p) or not filecmp.cmp(p, os.path.join(man, n), shallow=False) \
                or mode(p) != 0o644:
            probs.append("man page %s not installed as %s" % (n, p))
    units = os.path.join(D1, "usr/local/lib/systemd/system")
    if set(os.listdir(units)) != UNITS:
        probs.append("units: %s" % sorted(os.listdir(units)))
    with open(os.path.join(units, "dopis-smtpd@.service")) as f:
        if "ExecStart=/usr/local/sbin/dopis-smtpd\n" not in f.read():
            probs.append("dopis-smtpd@.service does not run /usr/local/sbin/dopis-smtpd")
    for p in ("usr/local/lib/sysusers.d/dopis.conf", "usr/local/lib/tmpfiles.d/dopis.conf",
              "usr/local/share/doc/dopis/tcpserver/tcp.rules"):
        if not os.path.isfile(os.path.join(D1, p)):
            probs.append("%s not installed" % p)
    run = os.path.join(D1, "usr/local/share/doc/dopis/tcpserver/run")
    with open(run) as f:
        text = f.read()
    if mode(run) != 0o755 or "smtpd=/usr/local/sbin/dopis-smtpd\n" not in text:
        probs.append("the tcpserver run script: mode %o, %r" % (mode(run), text[-300:]))
    conf = os.path.join(T.TOP, "conf")
    etc = os.path.join(D1, "etc/dopis")
    samples = sorted(n for n in os.listdir(conf) if os.path.isfile(os.path.join(conf, n)))
    if sorted(os.listdir(etc)) != samples:
        probs.append("etc/dopis holds %s, expected %s" % (sorted(os.listdir(etc)), samples))
    for n in samples:
        p = os.path.join(etc, n)
        if os.path.isfile(p) and not filecmp.cmp(p, os.path.join(conf, n), shallow=False):
            probs.append("etc/dopis/%s differs from conf/%s" % (n, n))
        if os.path.isfile(p) and mode(p) != (0o640 if n == "passwd" else 0o644):
            probs.append("etc/dopis/%s: mode %o" % (n, mode(p)))
    return probs


SESSION = (b"EHLO local.test\r\nMAIL FROM:<cron@example.org>\r\n"
           b"RCPT TO:<alice@example.org>\r\nDATA\r\n"
           b"From: cron@example.org\r\nTo: alice@example.org\r\nSubject: installed\r\n\r\n"
           b"delivered by the installed programs\r\n.\r\nQUIT\r\n")


def installed_session(tmp, confdir):
    smtpd = os.path.join(D1, "usr/local/sbin/dopis-smtpd")
    p = subprocess.run([smtpd], input=SESSION, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=T.base_env(confdir, SANITIZED), cwd=tmp, timeout=60)
    return p.stdout.decode("latin-1"), p.stderr.decode("latin-1")


def test_installed_smtpd():
    tmp = os.path.join(BASE, "run")
    # no "deliver" key: smtpd finds dopis-deliver beside itself
    confdir = T.setup(tmp, DELIVER, {"deliver": None})
    with open(os.path.join(confdir, "dopis.conf")) as f:
        if "deliver" in f.read():
            return ["the test configuration names a deliver program"]
    out, err = installed_session(tmp, confdir)
    probs = []
    if not re.search(r"^250 2\.0\.0 Ok: ", out, re.M):
        return ["the installed dopis-smtpd did not accept the message:\n%s\n%s" % (out, err)]
    path = T.one_message(tmp, "alice@example.org")
    with open(path, "rb") as f:
        data = f.read()
    probs += T.head_problems(data, "cron@example.org", "alice@example.org")
    if not data.endswith(b"\n\ndelivered by the installed programs\n"):
        probs.append("delivered: %r" % data)
    if SANITIZED and T.sanitizer_report(err):
        probs.append("sanitizer report:\n" + T.sanitizer_report(err))
    os.unlink(path)
    # without dopis-deliver beside it, nothing is delivered: it was the
    # installed one, not bin/deliver
    dl = os.path.join(D1, "usr/local/sbin/dopis-deliver")
    os.rename(dl, dl + ".away")
    try:
        out, err = installed_session(tmp, confdir)
    finally:
        os.rename(dl + ".away", dl)
    if re.search(r"^250 2\.0\.0 Ok: ", out, re.M) or not re.search(r"^(451|554) ", out, re.M):
        probs.append("without dopis-deliver beside it, smtpd answered:\n%s" % out)
    if T.maildir_files(T.maildir_of(tmp, "alice@example.org")):
        probs.append("a message was delivered without dopis-deliver")
    return probs + T.maildir_problems(tmp) + T.queue_problems(tmp)


def test_reinstall_keeps_config():
    etc = os.path.join(D1, "etc/dopis")
    edited = {}
    for n in ("dopis.conf", "users"):
        with open(os.path.join(etc, n), "a") as f:
            f.write("# edited by the administrator\n")
        with open(os.path.join(etc, n), "rb") as f:
            edited[n] = f.read()
    os.unlink(os.path.join(etc, "aliases"))
    smtpd = os.path.join(D1, "usr/local/sbin/dopis-smtpd")
    os.unlink(smtpd)
    out = make("install", D1)
    probs = []
    for n, data in edited.items():
        with open(os.path.join(etc, n), "rb") as f:
            if f.read() != data:
                probs.append("a second install overwrote the edited etc/dopis/%s" % n)
    if os.path.exists(os.path.join(etc, "aliases")):
        probs.append("a second install put back etc/dopis/aliases")
    if "left alone" not in out:
        probs.append("make install did not say the configuration is left alone:\n%s" % out)
    if not os.path.isfile(smtpd):
        probs.append("a second install did not put back dopis-smtpd")
    return probs


def fake_bin(names):
    """A BIN of stand-in programs."""
    d = os.path.join(BASE, "fakebin-" + "-".join(names))
    os.makedirs(d, exist_ok=True)
    for n in names:
        T.write_file(os.path.join(d, n), ("#!/bin/sh\necho %s\n" % n).encode())
        os.chmod(os.path.join(d, n), 0o755)
    return d, "PROGS=" + " ".join(os.path.join(d, n) for n in names)


def test_links():
    probs = []
    fb, pr = fake_bin(NAMES)
    d2 = os.path.join(BASE, "dest-links")
    make("install", d2, pr, binary=fb)
    sbin = os.path.join(d2, "usr/local/sbin")
    for link, target in (("sendmail", "dopis-sendmail"), ("mailq", "dopis-queue")):
        p = os.path.join(sbin, link)
        if not os.path.islink(p) or os.readlink(p) != target:
            probs.append("%s is not a link to %s" % (p, target))
        elif T.run_cmd([p])[1].strip() != target.split("-")[1]:
            probs.append("%s does not run %s" % (p, target))
    d3 = os.path.join(BASE, "dest-nolink")
    make("install", d3, pr, "NO_SENDMAIL_LINK=1", binary=fb)
    have = sorted(os.listdir(os.path.join(d3, "usr/local/sbin")))
    if have != sorted("dopis-" + n for n in NAMES):
        probs.append("with NO_SENDMAIL_LINK=1 sbin holds %s" % have)
    # no dangling link when dopis-sendmail and dopis-queue are not built
    fb, pr = fake_bin(["smtpd", "deliver", "relay"])
    d4 = os.path.join(BASE, "dest-some")
    make("install", d4, pr, binary=fb)
    have = sorted(os.listdir(os.path.join(d4, "usr/local/sbin")))
    if have != ["dopis-deliver", "dopis-relay", "dopis-smtpd"]:
        probs.append("with three programs built, sbin holds %s" % have)
    return probs


def test_uninstall():
    probs = []
    fb, pr = fake_bin(NAMES)
    d2 = os.path.join(BASE, "dest-links")
    make("uninstall", d2, pr, binary=fb)
    make("uninstall", D1)
    for d in (d2, D1):
        left = [f for f in files_under(d) if not f.startswith("etc/dopis/")]
        if left:
            probs.append("after make uninstall %s still holds %s" % (d, left))
        if not os.path.isfile(os.path.join(d, "etc/dopis/dopis.conf")):
            probs.append("make uninstall removed %s/etc/dopis/dopis.conf" % d)
    # a sendmail that is not dopis's is left alone
    d5 = os.path.join(BASE, "dest-other-mta")
    os.makedirs(os.path.join(d5, "usr/local/sbin"))
    os.symlink("other-mta", os.path.join(d5, "usr/local/sbin/sendmail"))
    make("uninstall", d5, pr, binary=fb)
    if not os.path.islink(os.path.join(d5, "usr/local/sbin/sendmail")):
        probs.append("make uninstall removed another MTA's sendmail link")
    return probs


def test_prefix():
    d6 = os.path.join(BASE, "dest-opt")
    make("install", d6, "PREFIX=/opt/dopis")
    probs = []
    top = sorted(os.listdir(d6))
    if top != ["etc", "opt"]:
        probs.append("PREFIX=/opt/dopis installed into %s" % top)
    for p in ("opt/dopis/sbin/dopis-smtpd", "opt/dopis/lib/systemd/system/dopis-relay.service",
              "opt/dopis/share/man/man8/dopis-smtpd.8"):
        if not os.path.isfile(os.path.join(d6, p)):
            probs.append("%s not installed" % p)
    with open(os.path.join(d6, "opt/dopis/lib/systemd/system/dopis-relay.service")) as f:
        text = f.read()
    code = [l for l in text.splitlines() if not l.startswith("#")]
    if "ExecStart=/opt/dopis/sbin/dopis-relay" not in code or any("/usr/local" in l for l in code):
        probs.append("dopis-relay.service with PREFIX=/opt/dopis:\n%s" % text)
    make("uninstall", d6, "PREFIX=/opt/dopis")
    left = [f for f in files_under(d6) if not f.startswith("etc/")]
    if left:
        probs.append("after uninstall with PREFIX=/opt/dopis: %s" % left)
    return probs


if R.run("install-tree", test_tree):
    R.run("install-smtpd-finds-deliver", test_installed_smtpd)
    R.run("install-again-keeps-config", test_reinstall_keeps_config)
R.run("install-sendmail-links", test_links)
R.run("uninstall", test_uninstall)
R.run("install-prefix", test_prefix)
R.exit()
