#!/usr/bin/python3
"""The systemd units (systemd/) as "make install" installs them, checked
by systemd's own tools (Debian 12: systemd 252):

- the units hold what the security model needs: every service runs as
  the dopis user with the sandbox (NoNewPrivileges, ProtectSystem=strict
  with ReadWritePaths for the mailroot and queue only, no capabilities,
  a system call filter, ...), the socket units have Accept=yes, a
  connection limit, a per-source limit and a large backlog, the relay
  has a timer and a path unit;
- "systemd-analyze verify" on the installed units prints nothing.  It
  needs the programs named by ExecStart= to exist, so the units'
  @SBINDIR@ (made /usr/local/sbin by make install) is pointed at the
  DESTDIR's sbin in a copy; MANPATH points at the DESTDIR's man pages,
  so every Documentation=man: page must be there too;
- "systemd-analyze security --offline=yes" scores every service; the
  score is printed ("ok ... # exposure 0.2") and must not rise above
  its bound (a regression guard: a lost sandbox option fails);
- the sysusers.d and tmpfiles.d entries, applied to an empty root with
  systemd-sysusers --root and systemd-tmpfiles --root, create the dopis
  user and the directories it owns (mode 0700).

This needs no running systemd (none runs in the test's namespace): the
units are never started here; socket activation itself is tested by
interop_socket_activate.py.
"""

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
BASE = os.path.join(T.WORK, PASS, "interop_systemd")
R = T.Results()

SERVICES = ["dopis-smtpd@.service", "dopis-submission@.service",
            "dopis-submissions@.service", "dopis-submit@.service", "dopis-relay.service"]
SOCKETS = {"dopis-smtpd.socket": "25", "dopis-submission.socket": "587",
           "dopis-submissions.socket": "465", "dopis-submit.socket": "/run/dopis/submit"}
MODES = {"dopis-smtpd@.service": "smtp", "dopis-submission@.service": "submission",
         "dopis-submissions@.service": "submissions", "dopis-submit@.service": "local"}
OTHERS = ["dopis-relay.timer", "dopis-relay.path"]
# the highest exposure score each service may have (it has less)
MAX_EXPOSURE = {"dopis-smtpd@.service": 0.5, "dopis-submission@.service": 0.5,
                "dopis-submissions@.service": 0.5, "dopis-submit@.service": 0.5,
                "dopis-relay.service": 1.5}

# every service has these, exactly
COMMON = {
    "User": "dopis", "Group": "dopis", "UMask": "0077",
    "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
    "PrivateUsers": "yes", "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/dopis /var/spool/dopis",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
}


def make_install(dest, *extra):
    """make install of this build into dest (no rebuild: -o all)."""
    shutil.rmtree(dest, ignore_errors=True)
    p = subprocess.run(["make", "-s", "-o", "all", "install", "DESTDIR=" + dest,
                        "BIN=" + BIN] + list(extra), cwd=T.TOP,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("make install failed:\n" + p.stdout.decode("utf-8", "replace"))
    return p.stdout.decode("utf-8", "replace")


def parse_unit(path):
    """section -> key -> list of values, in order."""
    out, sec = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            m = re.fullmatch(r"\[(.+)\]", line)
            if m:
                sec = out.setdefault(m.group(1), {})
                continue
            k, _, v = line.partition("=")
            sec.setdefault(k.strip(), []).append(v.strip())
    return out


def setup():
    os.makedirs(BASE, exist_ok=True)
    T.fresh_dir(BASE)
    dest = os.path.join(BASE, "dest")
    make_install(dest)
    unitdir = os.path.join(dest, "usr/local/lib/systemd/system")
    sbin = os.path.join(dest, "usr/local/sbin")
    notes = []
    # a program another part of dopis has not built yet gets a stand-in,
    # so that verify checks the rest
    for name in ("dopis-smtpd", "dopis-relay", "dopis-check"):
        if not os.path.exists(os.path.join(sbin, name)):
            T.write_file(os.path.join(sbin, name), b"#!/bin/sh\nexit 0\n")
            os.chmod(os.path.join(sbin, name), 0o755)
            notes.append("%s is not built: a stand-in for verify" % name)
    # the units with the DESTDIR's programs, for verify
    vdir = os.path.join(BASE, "verify")
    os.makedirs(vdir)
    for n in os.listdir(unitdir):
        with open(os.path.join(unitdir, n)) as f:
            text = f.read()
        T.write_file(os.path.join(vdir, n), text.replace("/usr/local/sbin/", sbin + "/").encode())
    return dest, unitdir, vdir, notes


DEST, UNITDIR, VDIR, NOTES = setup()
for n in NOTES:
    print("# " + n)


def test_installed():
    probs = []
    want = set(SERVICES) | set(SOCKETS) | set(OTHERS)
    have = set(os.listdir(UNITDIR))
    if have != want:
        probs.append("installed units %s, expected %s" % (sorted(have), sorted(want)))
    src = set(n for n in os.listdir(os.path.join(T.TOP, "systemd"))
              if n.rsplit(".", 1)[-1] in ("service", "socket", "timer", "path"))
    if src != want:
        probs.append("systemd/ holds %s" % sorted(src))
    for n in sorted(have):
        p = os.path.join(UNITDIR, n)
        with open(p) as f:
            text = f.read()
        for line in text.splitlines():
            if re.search(r"@[A-Z]+@", line):
                probs.append("%s: a placeholder is left: %r" % (n, line))
        if stat.S_IMODE(os.stat(p).st_mode) != 0o644:
            probs.append("%s: mode %o" % (n, stat.S_IMODE(os.stat(p).st_mode)))
    return probs


def test_services():
    probs = []
    for n in SERVICES:
        u = parse_unit(os.path.join(UNITDIR, n)).get("Service", {})
        for k, v in COMMON.items():
            # the local socket's smtpd must see the users' real uids
            # (SO_PEERCRED): no user namespace of its own
            if n == "dopis-submit@.service" and k == "PrivateUsers":
                v = "no"
            if u.get(k) != [v]:
                probs.append("%s: %s=%r, expected %r" % (n, k, u.get(k), v))
        if u.get("SystemCallFilter", [""])[0] != "@system-service":
            probs.append("%s: SystemCallFilter=%r" % (n, u.get("SystemCallFilter")))
        if not u.get("MemoryMax"):
            probs.append("%s: no MemoryMax" % n)
        env = " ".join(u.get("Environment", []))
        if "DOPIS_CONF=/etc/dopis" not in env:
            probs.append("%s: Environment=%r" % (n, env))
        execs = u.get("ExecStart", []) + u.get("ExecStartPre", [])
        for e in execs:
            if not e.startswith("/usr/local/sbin/dopis-"):
                probs.append("%s: runs %r" % (n, e))
        if n.endswith("@.service"):
            mode = MODES[n]
            if "DOPIS_MODE=%s" % mode not in env.split():
                probs.append("%s: no DOPIS_MODE=%s in %r" % (n, mode, env))
            if u.get("StandardInput") != ["socket"] or u.get("StandardOutput") != ["socket"]:
                probs.append("%s: StandardInput/Output not the socket" % n)
            if u.get("ExecStart") != ["/usr/local/sbin/dopis-smtpd"] or u.get("ExecStartPre"):
                probs.append("%s: ExecStart=%r ExecStartPre=%r" % (n, u.get("ExecStart"),
                                                                   u.get("ExecStartPre")))
        else:
            if u.get("Type") != ["oneshot"] or u.get("ExecStart") != ["/usr/local/sbin/dopis-relay"]:
                probs.append("%s: Type=%r ExecStart=%r" % (n, u.get("Type"), u.get("ExecStart")))
            if u.get("ExecStartPre") != ["/usr/local/sbin/dopis-check"]:
                probs.append("%s: ExecStartPre=%r" % (n, u.get("ExecStartPre")))
            fam = set(u.get("RestrictAddressFamilies", [""])[0].split())
            if not fam or not fam <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}:
                probs.append("%s: RestrictAddressFamilies=%r" % (n, fam))
    return probs


def test_sockets():
    probs = []
    for n, port in SOCKETS.items():
        u = parse_unit(os.path.join(UNITDIR, n))
        s = u.get("Socket", {})
        if s.get("ListenStream") != [port] or s.get("Accept") != ["yes"]:
            probs.append("%s: ListenStream=%r Accept=%r" % (n, s.get("ListenStream"), s.get("Accept")))
        if port.startswith("/") and s.get("SocketMode") != ["0666"]:
            probs.append("%s: SocketMode=%r: every user must reach it" % (n, s.get("SocketMode")))
        for k, least in (("MaxConnections", 10), ("MaxConnectionsPerSource", 1), ("Backlog", 512)):
            v = s.get(k, ["0"])[0]
            if not v.isdigit() or int(v) < least:
                probs.append("%s: %s=%r" % (n, k, s.get(k)))
        if int(s.get("MaxConnectionsPerSource", ["0"])[0]) >= int(s.get("MaxConnections", ["0"])[0]):
            probs.append("%s: the per-source limit is not below the limit" % n)
        if u.get("Install", {}).get("WantedBy") != ["sockets.target"]:
            probs.append("%s: not WantedBy=sockets.target" % n)
    t = parse_unit(os.path.join(UNITDIR, "dopis-relay.timer"))
    if t.get("Timer", {}).get("OnUnitInactiveSec") != ["1min"] or \
            t.get("Install", {}).get("WantedBy") != ["timers.target"]:
        probs.append("dopis-relay.timer: %r" % t)
    p = parse_unit(os.path.join(UNITDIR, "dopis-relay.path"))
    if p.get("Path", {}).get("PathChanged") != ["/var/spool/dopis/info"] or \
            p.get("Path", {}).get("Unit") != ["dopis-relay.service"] or \
            p.get("Install", {}).get("WantedBy") != ["paths.target"]:
        probs.append("dopis-relay.path: %r" % p)
    return probs


def analyze(*args):
    env = dict(os.environ)
    env["MANPATH"] = os.path.join(DEST, "usr/local/share/man") + ":"
    env["SYSTEMD_PAGER"] = ""
    env["SYSTEMD_COLORS"] = "0"
    p = subprocess.run(["systemd-analyze"] + list(args), cwd=VDIR, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def test_verify():
    units = sorted(os.listdir(VDIR))
    rc, out, err = analyze("verify", *units)
    if rc != 0 or out.strip() or err.strip():
        return ["systemd-analyze verify %s: exit %d\n%s%s" % (" ".join(units), rc, out, err)]
    return []


def test_verify_catches():
    """verify does see a mistake (so its silence above means something)."""
    bad = os.path.join(BASE, "bad")
    os.makedirs(bad)
    with open(os.path.join(VDIR, "dopis-relay.service")) as f:
        text = f.read()
    T.write_file(os.path.join(bad, "dopis-relay.service"),
                 text.replace("ExecStart=", "ProtectNothing=yes\nExecStart=").encode())
    p = subprocess.run(["systemd-analyze", "verify", "dopis-relay.service"], cwd=bad,
                       env=dict(os.environ, MANPATH=os.path.join(DEST, "usr/local/share/man") + ":"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if b"ProtectNothing" not in p.stdout:
        return ["verify said nothing of an unknown key: %r" % p.stdout]
    return []


def security(unit):
    def check():
        rc, out, err = analyze("security", "--offline=yes", "--no-pager", unit)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out + err)
        if rc != 0 or not m:
            return ["systemd-analyze security --offline=yes %s: exit %d\n%s%s" % (unit, rc, out, err)]
        score = float(m.group(1))
        SCORES[unit] = score
        if score > MAX_EXPOSURE[unit]:
            bad = [l for l in out.splitlines() if l.startswith("✗")]
            return ["exposure %.1f, at most %.1f allowed:\n%s" % (score, MAX_EXPOSURE[unit],
                                                                  "\n".join(bad))]
        return []
    return check


def test_sysusers_tmpfiles():
    root = os.path.join(BASE, "root")
    os.makedirs(os.path.join(root, "etc"))
    for f in ("passwd", "group", "shadow", "gshadow"):
        T.write_file(os.path.join(root, "etc", f), b"")
    probs = []
    sysusers = os.path.join(DEST, "usr/local/lib/sysusers.d/dopis.conf")
    tmpfiles = os.path.join(DEST, "usr/local/lib/tmpfiles.d/dopis.conf")
    for argv in (["systemd-sysusers", "--root=" + root, sysusers],
                 ["systemd-tmpfiles", "--root=" + root, "--create", tmpfiles]):
        rc, out = T.run_cmd(argv)
        if rc != 0:
            probs.append("%s: exit %d\n%s" % (" ".join(argv), rc, out))
    with open(os.path.join(root, "etc/passwd")) as f:
        pw = [l.split(":") for l in f.read().splitlines()]
    users = {p[0]: p for p in pw}
    if "dopis" not in users:
        return probs + ["no dopis user made: %r" % pw]
    uid = int(users["dopis"][2])
    if uid == 0 or uid >= 1000 or users["dopis"][6] != "/usr/sbin/nologin":
        probs.append("the dopis user: %r" % users["dopis"])
    for d in ("var/lib/dopis", "var/lib/dopis/mail", "var/spool/dopis", "var/spool/dopis/info"):
        try:
            st = os.stat(os.path.join(root, d))
        except FileNotFoundError:
            probs.append("/%s not made" % d)
            continue
        if st.st_uid != uid or stat.S_IMODE(st.st_mode) != 0o700:
            probs.append("/%s: uid %d mode %o" % (d, st.st_uid, stat.S_IMODE(st.st_mode)))
    return probs


SCORES = {}
R.run("systemd-installed", test_installed)
R.run("systemd-services", test_services)
R.run("systemd-sockets-timer-path", test_sockets)
R.run("systemd-analyze-verify", test_verify)
R.run("systemd-analyze-verify-sees-mistakes", test_verify_catches)
for unit in SERVICES:
    check = security(unit)
    probs = None
    try:
        probs = check()
    except Exception as e:
        probs = ["%r" % e]
    if probs:
        R.run("systemd-security-" + unit, lambda: probs)
    else:
        print("ok systemd-security-%s # exposure %.1f" % (unit, SCORES[unit]))
        sys.stdout.flush()
R.run("systemd-sysusers-tmpfiles", test_sysusers_tmpfiles)
R.exit()
