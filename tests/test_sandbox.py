#!/usr/bin/python3
"""The sandbox of smtpd and deliver (lib/sandbox.c).

A probe built from lib/sandbox.c confines itself as smtpd does and then
tries what is forbidden: reading or writing another file and executing a
program (Landlock: refused), and a system call not on smtpd's list
(seccomp: the process is killed by SIGSYS).  A live smtpd session is
checked in /proc: seccomp filter on and no_new_privs set, while the
broker it forked to start deliver is not confined.  Sanitizer builds run
unconfined (their runtimes need /proc), so for them this checks that
they say so by running, and skips the /proc check.

    /usr/bin/python3 tests/test_sandbox.py [REPO [BINDIR]]
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_probe(tmp):
    exe = os.path.join(tmp, "sandbox_probe")
    subprocess.run(["cc", "-D_GNU_SOURCE", "-I" + os.path.join(REPO, "lib"), "-o", exe,
                    os.path.join(REPO, "tests", "sandbox_probe.c"),
                    os.path.join(REPO, "lib", "sandbox.c"), "-l:libowfat.a"], check=True)
    return exe


def probe_files(tmp, exe):
    allowed = T.write_file(os.path.join(tmp, "allowed"), b"yes\n")
    other = T.write_file(os.path.join(tmp, "other"), b"secret\n")
    p = subprocess.run([exe, "files", allowed, other], capture_output=True, timeout=30)
    out = p.stdout.decode()
    if p.returncode != 0 or out.strip() != "refused":
        return ["probe exited %d: %s" % (p.returncode, out)]
    with open(other, "rb") as f:
        if f.read() != b"secret\n":
            return ["the other file was changed"]
    return []


def probe_syscall(tmp, exe):
    p = subprocess.run([exe, "syscall"], capture_output=True, timeout=30)
    if p.returncode != -signal.SIGSYS:
        return ["expected death by SIGSYS, got exit %d: %s" % (p.returncode, p.stdout.decode())]
    if p.stdout.decode() != "confined\n":
        return ["unexpected output: %r" % p.stdout]
    return []


def status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)


def live_smtpd(tmp, smtpd, deliver, sanitized):
    T.setup(tmp, deliver)
    env = T.base_env(os.path.join(tmp, "conf"), sanitized)
    p = subprocess.Popen([smtpd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        greeting = p.stdout.readline()
        if not greeting.startswith(b"220 "):
            return ["no greeting: %r" % greeting]
        st = status(p.pid)
        kids = [int(k) for k in open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()]
        probs = []
        if sanitized:
            return []
        if st["Seccomp"].strip() != "2":
            probs.append("smtpd has no seccomp filter: Seccomp:%s" % st["Seccomp"])
        if st["NoNewPrivs"].strip() != "1":
            probs.append("smtpd lacks no_new_privs")
        if len(kids) != 1:
            probs.append("expected one child (the broker), found %r" % kids)
        elif status(kids[0])["Seccomp"].strip() != "0":
            probs.append("the broker is confined: deliver could not write")
        return probs
    finally:
        p.stdin.write(b"QUIT\r\n")
        p.stdin.close()
        p.wait(10)


def main():
    name, smtpd, deliver, sanitized = T.this_build()
    if len(sys.argv) > 2:
        smtpd = os.path.abspath(os.path.join(sys.argv[2], "smtpd"))
        deliver = os.path.abspath(os.path.join(sys.argv[2], "deliver"))
    base = os.path.join(T.WORK, name, "test_sandbox")
    T.fresh_dir(base)
    res = T.Results()
    exe = build_probe(base)
    res.run("sandbox-landlock-refuses", probe_files, base, exe)
    res.run("sandbox-seccomp-kills", probe_syscall, base, exe)
    live = os.path.join(base, "live")
    T.fresh_dir(live)
    res.run("sandbox-smtpd-confined", live_smtpd, live, smtpd, deliver, sanitized)
    res.exit()


if __name__ == "__main__":
    main()
