#!/usr/bin/python3
"""The units at work under a real systemd (Debian 12: systemd 252): a
container (systemd-nspawn, package systemd-container) is booted from an
overlay of this machine's own root, into which "make install" has put
this build, systemd-sysusers made the dopis user and systemd-tmpfiles
its directories, and "systemctl enable" the sockets, the relay timer
and the relay path, as README's "Running it as a service" says.  The
container has its own network (loopback only) and a throwaway upper
layer in a tmpfs: nothing of it stays, on the disk or in the mounts
(the whole test runs in a mount namespace of its own).

Inside, this same script (--inside, started by a unit once the boot is
done) checks the sandboxed services with smtplib:

- port 25: a message to a local user is delivered into a Maildir owned
  by the dopis user (mode 0600), with STARTTLS too; relaying is refused
  (550 5.7.1) to a client that is not a relay client;
- port 587 (DOPIS_MODE=submission): STARTTLS and AUTH PLAIN, then a
  message to a remote recipient is queued;
- dopis-relay.path starts dopis-relay.service at once (ExecStartPre=
  dopis-check, then relay), which sends it to the smarthost, an
  aiosmtpd sink on 127.0.0.1:2526;
- port 465 (DOPIS_MODE=submissions): implicit TLS and AUTH;
- dopis-sendmail run by the user daemon (uid 1), who cannot write the
  mailroot: through /run/dopis/submit (dopis-submit.socket, smtpd in
  DOPIS_MODE=local) the message reaches alice, and smtpd's Received
  line names uid 1 and its user (no user namespace turned it into
  nobody);
- no dopis unit failed, none was killed by the system call filter
  (SIGSYS), and the dopis units are the sandboxed ones.

Each check comes back as an "ok"/"FAIL" line.  Skipped (with a line
saying why) when not root, without systemd-nspawn, or for the ASan
build: the sanitizers' runtimes make calls the units' filter forbids
(LeakSanitizer uses ptrace), so only the normal build runs here.
"""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BIN = os.path.relpath(os.path.dirname(SMTPD), T.TOP)
BASE = os.path.join(T.WORK, PASS, "interop_systemd_boot")
PW = "boot-test secret"
UNITS = ["dopis-smtpd.socket", "dopis-submission.socket", "dopis-submissions.socket",
         "dopis-submit.socket", "dopis-relay.timer", "dopis-relay.path"]


# ------------------------------------------------------------ outside

def sh(argv, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, **kw)
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s" % (" ".join(argv), p.returncode,
                                                p.stdout.decode("utf-8", "replace")))
    return p.stdout.decode("utf-8", "replace")


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def prepare(root):
    """make install into the overlay, the user, the directories, the
    configuration, the enabled units, and the test's own units."""
    sh(["make", "-s", "-o", "all", "install", "DESTDIR=" + root, "BIN=" + BIN], cwd=T.TOP)
    sh(["systemd-sysusers", "--root=" + root, root + "/usr/local/lib/sysusers.d/dopis.conf"])
    sh(["systemd-tmpfiles", "--root=" + root, "--create",
        root + "/usr/local/lib/tmpfiles.d/dopis.conf"])
    gid = None
    with open(root + "/etc/group") as f:
        for line in f:
            if line.startswith("dopis:"):
                gid = int(line.split(":")[2])
    etc = root + "/etc/dopis"
    # the test's configuration over the installed sample
    write(etc + "/dopis.conf", "".join("%s = %s\n" % kv for kv in (
        ("hostname", T.HOSTNAME), ("mailroot", "/var/lib/dopis/mail"),
        ("queue", "/var/spool/dopis"), ("smarthost", "127.0.0.1:2526"),
        ("tls_cert", "/etc/dopis/tls/cert.pem"), ("tls_key", "/etc/dopis/tls/key.pem"))))
    write(etc + "/localdomains", "example.org\n")
    write(etc + "/users", "alice@example.org\nbob@example.org\n")
    write(etc + "/aliases", "postmaster@example.org: alice@example.org\n")
    write(etc + "/relayclients", "# nobody\n")
    write(etc + "/restricted", "")
    h = sh(["openssl", "passwd", "-6", PW]).strip()
    write(etc + "/passwd", "bob@example.org:%s\n" % h, 0o640)
    os.makedirs(etc + "/tls", exist_ok=True)
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", etc + "/tls/key.pem", "-out", etc + "/tls/cert.pem",
        "-days", "2", "-subj", "/CN=" + T.HOSTNAME])
    os.chmod(etc + "/tls/key.pem", 0o640)
    for f in (etc + "/tls/key.pem", etc + "/passwd"):
        os.chown(f, 0, gid)
    sh(["systemctl", "--root=" + root, "enable"] + UNITS)
    # what the image would start besides: only basic.target and ours
    sysd = root + "/etc/systemd/system"
    for n in ("systemd-networkd-wait-online.service", "systemd-timesyncd.service",
              "getty@tty1.service", "console-getty.service"):
        if os.path.lexists(os.path.join(sysd, n)):
            os.unlink(os.path.join(sysd, n))
        os.symlink("/dev/null", os.path.join(sysd, n))
    for wants in ("timers.target.wants", "sysinit.target.wants"):
        d = os.path.join(sysd, wants)
        for n in os.listdir(d) if os.path.isdir(d) else []:
            if not n.startswith("dopis-"):
                os.unlink(os.path.join(d, n))
    write(sysd + "/dopis-boot-test.target",
          "[Unit]\nDescription=dopis boot test\nRequires=basic.target\nAfter=basic.target\n"
          "Wants=dopis-boot-test.service\n")
    write(sysd + "/dopis-boot-test.service",
          "[Unit]\nDescription=dopis boot test, inside\nAfter=basic.target\n"
          "[Service]\nType=simple\nEnvironment=DOPIS_PASS=%s DOPIS_SMTPD=%s DOPIS_DELIVER=%s\n"
          "ExecStart=/usr/bin/python3 %s --inside\n" % (PASS, SMTPD, DELIVER,
                                                       os.path.abspath(__file__)))
    for f in ("etc/machine-id",):
        if os.path.exists(os.path.join(root, f)):
            os.unlink(os.path.join(root, f))


def outside():
    tmp = os.path.join(BASE, "t")
    root = os.path.join(BASE, "root")
    results = os.path.join(BASE, "results")
    for d in (tmp, root, results):
        os.makedirs(d)
    sh(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", tmp])
    os.makedirs(tmp + "/upper")
    os.makedirs(tmp + "/work")
    sh(["mount", "-t", "overlay", "overlay", "-o",
        "lowerdir=/,upperdir=%s/upper,workdir=%s/work" % (tmp, tmp), root])
    prepare(root)
    log = os.path.join(BASE, "boot.log")
    with open(log, "wb") as f:
        p = subprocess.run(["systemd-nspawn", "-q", "-D", root, "--private-network",
                            "--link-journal=no", "--register=no", "--keep-unit",
                            "--bind=%s:/results" % results,
                            # the checkout at its own path: the test runs its
                            # script from there, and nspawn may cover /tmp
                            "--bind-ro=%s" % T.TOP, "-b", "--",
                            "--unit=dopis-boot-test.target"],
                           stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                           timeout=240, cwd=BASE)
    got = ""
    try:
        with open(os.path.join(results, "results.txt")) as f:
            got = f.read()
    except FileNotFoundError:
        pass
    if not got.strip():
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-4000:]
        print("FAIL systemd-boot\n    systemd-nspawn exited %d; no results; boot log (%s):\n%s"
              % (p.returncode, log, "\n".join("      " + l for l in tail.splitlines())))
        return 1
    sys.stdout.write(got)
    failed = any(l.startswith("FAIL") for l in got.splitlines())
    if failed:
        try:
            with open(os.path.join(results, "journal.txt")) as f:
                j = f.read()[-6000:]
            print("    journal of the dopis units:\n" + "\n".join("      " + l for l in j.splitlines()))
        except FileNotFoundError:
            pass
    if "ok boot-done" not in got:
        print("FAIL systemd-boot: the test inside did not finish")
        return 1
    return 1 if failed else 0


# ------------------------------------------------------------- inside

def inside():
    import smtplib
    import ssl
    from aiosmtpd.controller import Controller

    results = open("/results/results.txt", "w")
    R = T.Results()

    def out(line):
        results.write(line + "\n")
        results.flush()

    def run(name, fn):
        import io
        import contextlib
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            R.run("systemd-boot-" + name, fn)
        out(buf.getvalue().rstrip("\n"))

    subprocess.run(["systemctl", "is-system-running", "--wait"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)

    class Sink:
        def __init__(self):
            self.got = []

        async def handle_DATA(self, server, session, envelope):
            self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 2.0.0 sunk"
    sink = Sink()
    ctl = Controller(sink, hostname="127.0.0.1", port=2526)
    ctl.start()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def maildir(addr):
        local, dom = addr.split("@")
        return "/var/lib/dopis/mail/%s/%s" % (dom, local)

    def wait_files(d, n, secs=10):
        deadline = time.time() + secs
        while time.time() < deadline:
            f = T.maildir_files(d)
            if len(f) >= n:
                return f
            time.sleep(0.1)
        return T.maildir_files(d)

    def msg(subject, to):
        return ("From: bob@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\nboot test\r\n" % (to, subject)).encode()

    def dopis_uid():
        import pwd
        return pwd.getpwnam("dopis").pw_uid

    def test_port25():
        probs = []
        with smtplib.SMTP("127.0.0.1", 25, local_hostname="boot.test", timeout=20) as s:
            s.sendmail("x@remote.test", ["alice@example.org"], msg("plain 25", "alice@example.org"))
            try:
                s.sendmail("x@remote.test", ["someone@remote.test"], msg("relay", "someone@remote.test"))
                probs.append("relaying on port 25 without AUTH was accepted")
            except smtplib.SMTPRecipientsRefused as e:
                code, text = e.recipients["someone@remote.test"]
                if code != 550 or not text.startswith(b"5.7.1"):
                    probs.append("relaying refused with %d %r" % (code, text))
        with smtplib.SMTP("127.0.0.1", 25, local_hostname="boot.test", timeout=20) as s:
            s.starttls(context=ctx)
            s.sendmail("x@remote.test", ["alice@example.org"], msg("starttls 25", "alice@example.org"))
        files = wait_files(maildir("alice@example.org"), 2)
        if len(files) != 2:
            probs.append("alice has %d messages, expected 2" % len(files))
        for f in files:
            st = os.stat(f)
            if st.st_uid != dopis_uid() or st.st_mode & 0o777 != 0o600:
                probs.append("%s: uid %d mode %o" % (f, st.st_uid, st.st_mode & 0o777))
        return probs

    def test_submission_and_relay_path():
        probs = []
        with smtplib.SMTP("127.0.0.1", 587, local_hostname="boot.test", timeout=20) as s:
            s.starttls(context=ctx)
            s.login("bob@example.org", PW)
            s.sendmail("bob@example.org", ["far@remote.test"], msg("via the relay", "far@remote.test"))
        deadline = time.time() + 20
        while time.time() < deadline and not sink.got:
            time.sleep(0.1)
        if not sink.got:
            probs.append("the smarthost got nothing within 20 s")
        elif sink.got[0][:2] != ("bob@example.org", ["far@remote.test"]) or \
                b"Subject: via the relay" not in sink.got[0][2]:
            probs.append("the smarthost got %r" % (sink.got[0],))
        time.sleep(1)
        p = subprocess.run(["systemctl", "show", "-p", "Result", "-p", "ExecMainStatus",
                            "-p", "NRestarts", "dopis-relay.service"], stdout=subprocess.PIPE, timeout=30)
        show = p.stdout.decode()
        if "Result=success" not in show or "ExecMainStatus=0" not in show:
            probs.append("dopis-relay.service: %r" % show)
        left = os.listdir("/var/spool/dopis/info")
        if left:
            probs.append("still queued: %r" % left)
        return probs

    def test_submissions():
        with smtplib.SMTP_SSL("127.0.0.1", 465, local_hostname="boot.test", timeout=20,
                              context=ctx) as s:
            s.login("bob@example.org", PW)
            s.sendmail("bob@example.org", ["alice@example.org"], msg("implicit TLS", "alice@example.org"))
        files = wait_files(maildir("alice@example.org"), 3)
        return [] if len(files) == 3 else ["alice has %d messages, expected 3" % len(files)]

    def test_sendmail_user():
        probs = []
        p = subprocess.run(["setpriv", "--reuid=1", "--regid=1", "--clear-groups",
                            "/usr/local/sbin/dopis-sendmail", "alice@example.org"],
                           input=b"Subject: sendmail of a user\n\nfrom daemon\n", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}, timeout=60)
        if p.returncode != 0:
            return ["dopis-sendmail as uid 1: exit %d, stderr %r" % (p.returncode, p.stderr)]
        files = wait_files(maildir("alice@example.org"), 4)
        mine = [f for f in files if b"Subject: sendmail of a user\n" in open(f, "rb").read()]
        if len(mine) != 1:
            return ["alice has %d messages of daemon's, expected 1" % len(mine)]
        data = open(mine[0], "rb").read()
        if b"\nReceived: from local uid 1 (user daemon)\n\tby " not in data:
            probs.append("smtpd's Received line does not name uid 1: %r" % data[:500])
        if os.stat(mine[0]).st_uid != dopis_uid():
            probs.append("%s is not the dopis user's" % mine[0])
        return probs

    def test_units():
        probs = []
        p = subprocess.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", "dopis*"],
                           stdout=subprocess.PIPE, timeout=30)
        units = p.stdout.decode()
        for u in UNITS:
            if not any(l.split()[:1] == [u] and " active " in l for l in units.splitlines()):
                probs.append("%s is not active:\n%s" % (u, units))
        if " failed " in units:
            probs.append("failed units:\n%s" % units)
        j = subprocess.run(["journalctl", "-b", "--no-pager", "-u", "dopis-*"],
                           stdout=subprocess.PIPE, timeout=30).stdout.decode("utf-8", "replace")
        with open("/results/journal.txt", "w") as f:
            f.write(j)
        if "status=31/SYS" in j or "code=killed" in j:
            probs.append("a dopis unit was killed:\n" + "\n".join(
                l for l in j.splitlines() if "killed" in l))
        if "dopis-relay.service: Deactivated successfully" not in j:
            probs.append("dopis-relay.service never ran")
        # the sessions ran sandboxed, as the dopis user
        p = subprocess.run(["systemctl", "show", "-p", "User", "-p", "PrivateNetwork",
                            "-p", "ProtectSystem", "dopis-smtpd@x.service"],
                           stdout=subprocess.PIPE, timeout=30)
        show = p.stdout.decode()
        for want in ("User=dopis", "PrivateNetwork=yes", "ProtectSystem=strict"):
            if want not in show:
                probs.append("dopis-smtpd@.service: %s not in %r" % (want, show))
        return probs

    try:
        run("port-25", test_port25)
        run("submission-and-relay-path", test_submission_and_relay_path)
        run("submissions", test_submissions)
        run("sendmail-user", test_sendmail_user)
        run("units", test_units)
        out("ok boot-done")
    finally:
        ctl.stop()
        results.close()
        subprocess.run(["systemctl", "--no-block", "poweroff"])


def main():
    if "--inside" in sys.argv:
        inside()
        return 0
    if SANITIZED:
        print("ok systemd-boot # skipped: the ASan build cannot run under the units' system call filter")
        return 0
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn") or not shutil.which("unshare"):
        print("ok systemd-boot # skipped: needs root and systemd-nspawn (package systemd-container)")
        return 0
    if os.environ.get("DOPIS_BOOT_NS") != "1":
        T.fresh_dir(BASE)
        env = dict(os.environ, DOPIS_BOOT_NS="1", DOPIS_WORK_LOCKED=str(os.getpid()))
        p = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                            os.path.abspath(__file__)], env=env, timeout=400)
        return p.returncode
    return outside()


if __name__ == "__main__":
    sys.exit(main())
