#!/usr/bin/python3
"""The tcpserver example, conf/tcpserver/run and conf/tcpserver/tcp.rules,
run for real: the rules compiled with tcprules (Debian's ucspi-tcp) into
a cdb, the run script started with its settings (address, port, rules,
configuration, user, smtpd) pointed at the test; tcpserver binds the
loopback port as root and runs smtpd as the user "nobody" (the test's
directory is given to it), as the script does with "dopis".

- the sample rules, checked with tcprulescheck: 127.0.0.1 and 10.0.0.x
  get RELAYCLIENT, other clients are allowed without it;
- with them, a client on 127.0.0.1 may relay: a remote recipient is
  queued (the test configuration's relayclients does not list
  127.0.0.1, so RELAYCLIENT is what allows it), and mail to a local
  user lands in a Maildir owned by nobody;
- with rules that set no RELAYCLIENT, the remote recipient gets 550
  5.7.1 and nothing is queued, while local mail is still accepted;
- a deny rule closes the connection before smtpd runs;
- the run script refuses to run smtpd as root.
"""

import os
import pwd
import re
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_tcprules")
R = T.Results()
RUN = os.path.join(T.TOP, "conf/tcpserver/run")
RULES = os.path.join(T.TOP, "conf/tcpserver/tcp.rules")
USER = "nobody"


def tcprules(tmp, text=None):
    """Compiles the sample rules (or text) into tmp/tcp.cdb."""
    src = os.path.join(tmp, "tcp.rules")
    if text is None:
        with open(RULES, "rb") as f:
            text = f.read()
    T.write_file(src, text)
    cdb = os.path.join(tmp, "tcp.cdb")
    with open(src, "rb") as f:
        p = subprocess.run(["tcprules", cdb, cdb + ".tmp"], stdin=f, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("tcprules: %s" % p.stdout.decode("latin-1"))
    return cdb


def run_script(tmp, **settings):
    """conf/tcpserver/run with its settings replaced; returns its path."""
    with open(RUN) as f:
        text = f.read()
    for k, v in settings.items():
        text, n = re.subn(r"(?m)^%s=\S*" % k, "%s=%s" % (k, shlex.quote(v)), text)
        if n != 1:
            raise RuntimeError("the run script has no setting %s=" % k)
    return T.write_file(os.path.join(tmp, "run"), text.encode())


def start(tmp, rules_text=None):
    """The configuration, the rules, then the run script; returns
    (process, port) once the port takes connections."""
    confdir = T.setup(tmp, DELIVER)
    cdb = tcprules(tmp, rules_text)
    port = T.free_port()
    script = run_script(tmp, conf=confdir, rules=cdb, ip="127.0.0.1", port=str(port),
                        host=T.HOSTNAME, user=USER, smtpd=SMTPD)
    pw = pwd.getpwnam(USER)
    for d, subdirs, files in os.walk(tmp):
        for n in [d] + [os.path.join(d, x) for x in files]:
            os.chown(n, pw.pw_uid, pw.pw_gid)
    env = T.base_env(confdir, SANITIZED)
    with open(os.path.join(tmp, "server.stderr"), "wb") as errf:
        srv = subprocess.Popen(["/bin/sh", script], env=env, stdin=subprocess.DEVNULL,
                               stdout=errf, stderr=errf)
    try:
        T.wait_port(port, srv)
    except BaseException:
        T.stop(srv)
        raise
    return srv, port


def test_sample_rules():
    tmp = T.fresh_dir(os.path.join(BASE, "sample-rules"))
    cdb = tcprules(tmp)
    probs = []
    for ip, relay in (("127.0.0.1", True), ("10.0.0.7", True), ("10.0.1.7", False),
                      ("192.0.2.1", False)):
        env = {"PATH": "/usr/bin:/bin", "TCPREMOTEIP": ip}
        rc, out = T.run_cmd(["tcprulescheck", cdb], env=env)
        if rc != 0 or "allow connection" not in out:
            probs.append("tcprulescheck %s: exit %d: %r" % (ip, rc, out))
        if ("RELAYCLIENT=" in out) != relay:
            probs.append("%s: RELAYCLIENT %s: %r" % (ip, "expected" if relay else "not expected", out))
    return probs


def uid_of(path):
    return os.stat(path).st_uid


def test_relay_allowed(tmp, port):
    rc, out = T.swaks(port, "--from", "x@example.org", "--to", "someone@remote.test")
    probs = []
    if rc != 0 or "250 2.0.0 Ok:" not in out:
        probs.append("relaying from 127.0.0.1 with RELAYCLIENT: swaks exited %d:\n%s" % (rc, out))
    if T.queue_count(tmp) != 1:
        probs.append("the queue holds %d messages, expected 1" % T.queue_count(tmp))
    elif not any("Tsomeone@remote.test" in m for m in T.queue_records(tmp)):
        probs.append("queued: %r" % T.queue_records(tmp))
    rc, out = T.swaks(port, "--from", "x@remote.test", "--to", "alice@example.org")
    if rc != 0 or "250 2.0.0 Ok:" not in out:
        probs.append("local mail: swaks exited %d:\n%s" % (rc, out))
    else:
        path = T.one_message(tmp, "alice@example.org")
        if uid_of(path) != pwd.getpwnam(USER).pw_uid:
            probs.append("%s is owned by uid %d, not %s" % (path, uid_of(path), USER))
    log = T.server_log(tmp)
    if "relay=yes" not in log or not re.search(r"tcpserver: ok \d+ ", log):
        probs.append("the log has no relay=yes or no tcpserver line:\n%s" % log[-2000:])
    return probs


def test_relay_refused(tmp, port):
    rc, out = T.swaks(port, "--from", "x@example.org", "--to", "someone@remote.test")
    probs = []
    if "550 5.7.1" not in out:
        probs.append("relaying without RELAYCLIENT: swaks exited %d:\n%s" % (rc, out))
    if T.queue_count(tmp):
        probs.append("the message was queued")
    rc, out = T.swaks(port, "--from", "x@remote.test", "--to", "alice@example.org")
    if rc != 0 or "250 2.0.0 Ok:" not in out:
        probs.append("local mail: swaks exited %d:\n%s" % (rc, out))
    else:
        T.one_message(tmp, "alice@example.org")
    return probs


def test_deny(tmp, port):
    rc, out = T.swaks(port, "--from", "x@remote.test", "--to", "alice@example.org", timeout=5)
    probs = []
    if rc == 0 or "220 " in out:
        probs.append("a denied client got: exit %d:\n%s" % (rc, out))
    time.sleep(0.2)
    log = T.server_log(tmp)
    if not re.search(r"tcpserver: deny \d+ ", log) or "smtpd " in log:
        probs.append("the log of a denied client:\n%s" % log[-2000:])
    return probs


def test_no_root():
    tmp = T.fresh_dir(os.path.join(BASE, "no-root"))
    script = run_script(tmp, conf=tmp, rules=os.path.join(tmp, "none.cdb"), ip="127.0.0.1",
                        port=str(T.free_port()), user="root", smtpd=SMTPD)
    rc, out = T.run_cmd(["/bin/sh", script], timeout=20)
    if rc != 111 or "does not run as root" not in out:
        return ["the run script with user=root: exit %d: %r" % (rc, out)]
    return []


CASES = {
    "relay-allowed": None,                              # the sample rules
    "relay-refused": b"# nobody relays\n:allow\n",
    "deny": b"127.:deny\n:allow\n",
}

if os.geteuid() != 0:
    print("ok tcprules # skipped: tcpserver -u/-g needs root")
    sys.exit(0)
R.run("tcprules-sample", test_sample_rules)
T.run_server_tests(R, BASE, "tcprules-", [
    ("relay-allowed", test_relay_allowed),
    ("relay-refused", test_relay_refused),
    ("deny", test_deny),
], lambda tmp: start(tmp, CASES[os.path.basename(tmp)]), SANITIZED)
R.run("tcprules-run-refuses-root", test_no_root)
R.exit()
