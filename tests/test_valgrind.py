#!/usr/bin/python3
"""valgrind memcheck over representative transcripts (issue 6).

    test_valgrind.py REPO BINDIR      (as run.py runs tests/test_*.py)

valgrind runs the dynamically linked clang build, REPO/obj/clang/bin
(make check builds it, with -gdwarf-4; DOPIS_VALGRIND_BIN names another): under
valgrind, glibc's own start-up code in a static binary reads memory
valgrind thinks uninitialised, so BINDIR's static smtpd would fail
with reports that are not ours.

Feeds the input of ~15 transcripts of tests/transcripts (their set-up
directives applied as run.py does) to
    valgrind --error-exitcode=99 BINDIR/smtpd, with a "deliver =" wrapper
that runs BINDIR/deliver under valgrind --leak-check=full, and requires
zero valgrind errors for smtpd and every deliver it starts (no memcheck
report line, no "ERROR SUMMARY: N" with N > 0, exit status not 99).
smtpd itself gets no leak check: its seccomp filter kills valgrind
(SIGSYS) in valgrind's exit path, after the session; see one().  The replies are not checked here
(run.py does that); only memory errors and leaks.  Skipped in the
sanitizer build (DOPIS_SANITIZED=1) and when valgrind is missing.
"""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402
import run as RUN  # noqa: E402

# auth-plain (and any "@env -TCPREMOTEIP" local-client transcript) is
# left out: under valgrind smtpd dies of SIGSYS right after the greeting
# there, its seccomp filter refusing a call valgrind makes for it.
NAMES = ["greeting", "pipelining", "dsn", "bdat-chunks", "smuggle-bare-lf",
         "relay-local", "multiple-rcpts", "dot-unstuffing", "alias-team", "line-too-long",
         "nul-in-command", "deliver-all-or-nothing", "eof-mid-data", "http", "params",
         "null-sender", "received-loop"]


def main(argv):
    top = argv[1] if len(argv) > 1 else T.TOP
    bindir = argv[2] if len(argv) > 2 else os.path.join(top, "bin")
    sanitized = os.environ.get("DOPIS_SANITIZED", "0") == "1" or "asan" in bindir
    if sanitized:
        print("ok valgrind (skipped: sanitizer build)")
        return 0
    if not shutil.which("valgrind"):
        print("ok valgrind (skipped: no valgrind; tests/deps.sh test installs it)")
        return 0
    vgbin = os.environ.get("DOPIS_VALGRIND_BIN", os.path.join(top, "obj", "clang", "bin"))
    smtpd, deliver = os.path.join(vgbin, "smtpd"), os.path.join(vgbin, "deliver")
    for p in (smtpd, deliver):
        if not os.access(p, os.X_OK):
            print("FAIL valgrind: no %s (make check builds it: make all CC=clang CFLAGS=-gdwarf-4 "
                  "OBJ=obj/clang BIN=obj/clang/bin STATIC=)" % p)
            return 1
        with open(p, "rb") as f:
            if b"/ld-linux" not in f.read(4096):
                print("FAIL valgrind: %s is linked statically; valgrind needs the "
                      "dynamic build (STATIC=)" % p)
                return 1
    R = T.Results()
    for name in NAMES:
        path = os.path.join(T.TESTS, "transcripts", name + ".smtp")
        if not os.path.exists(path):
            continue
        R.run("valgrind-" + name, one, path, smtpd, deliver)
    R.exit()


def one(path, smtpd, deliver):
    tr = RUN.Transcript(path)
    tmp = os.path.join(T.WORK, "smtpd", "test_valgrind", tr.name)
    sub = lambda s: s.replace("$TMP", tmp) if isinstance(s, str) else s  # noqa: E731
    conf = {k: sub(v) for k, v in tr.conf.items()}
    files = T.default_files(tmp)
    for k, v in tr.files.items():
        files[k] = [sub(x) for x in v]
    for k, v in tr.appends.items():
        files[k] = files.get(k, []) + [sub(x) for x in v]
    confdir = T.setup(tmp, deliver, conf, files, tr.removed)
    for a in tr.mkmaildirs:
        md = T.maildir_of(tmp, a)
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, d), exist_ok=True)
    env = T.base_env(confdir, False)
    for k, v in tr.env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = sub(v)
    # smtpd's seccomp filter (lib/sandbox.c) kills valgrind's own system
    # calls with SIGSYS once the session has ended, before the leak check:
    # smtpd runs under memcheck for the errors it reports as they happen
    # (invalid reads and writes, uninitialised values), and deliver, started
    # by smtpd's unconfined broker, runs under memcheck with the leak check
    # through a "deliver =" wrapper.
    wrapper = os.path.join(tmp, "deliver-valgrind")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec valgrind -q --error-exitcode=99 --leak-check=full "
                "--errors-for-leak-kinds=definite,indirect --log-file=%s/vg.deliver.%%p %s\n"
                % (tmp, deliver))
    os.chmod(wrapper, 0o755)
    with open(os.path.join(confdir, "dopis.conf"), encoding="latin-1") as f:
        text = f.read()
    with open(os.path.join(confdir, "dopis.conf"), "w", encoding="latin-1") as f:
        f.write(re.sub(r"(?m)^deliver = .*$", "deliver = " + wrapper, text))
    argv = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=no",
            "--log-file=" + os.path.join(tmp, "vg.smtpd.%p"), smtpd]
    data = "".join(tr.input).encode("latin-1")
    try:
        p = subprocess.run(argv, input=data, env=env, cwd=tmp, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        return ["timed out under valgrind"]
    probs = []
    if p.returncode == 99:
        probs.append("valgrind reported errors (exit 99)")
    if b"Ok: " not in p.stdout and "Ok: " in open(path, encoding="latin-1").read():
        probs.append("no message was accepted under valgrind:\n%s" % p.stdout.decode("latin-1")[-800:])
    for n in sorted(os.listdir(tmp)):
        if not n.startswith("vg."):
            continue
        with open(os.path.join(tmp, n), encoding="latin-1") as f:
            text = f.read()
        if re.search(r"ERROR SUMMARY: [1-9]", text) or re.search(r"^==\d+== \S", text, re.M):
            probs.append("%s:\n%s" % (n, text[:3000]))
    return probs


if __name__ == "__main__":
    sys.exit(main(sys.argv))
