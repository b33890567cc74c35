#!/usr/bin/python3
"""Tests of bin/check (dopis-check(8)): a good configuration gives exit
0 and no output; each kind of broken file gives exit 78 (EX_CONFIG)
and exactly the "file:line: problem" lines expected; warnings alone
give exit 0.  The certificates are made with the openssl command, the
hashes with "openssl passwd -6".

usage: test_check.py [REPO BINDIR]   (run.py passes them, and the build
in DOPIS_* of its environment; BINDIR default: REPO/bin)
"""
import os
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS)
import dopistest as T  # noqa: E402

if len(sys.argv) >= 3:
    os.environ.setdefault("DOPIS_DELIVER", os.path.join(sys.argv[2], "deliver"))
    os.environ.setdefault("DOPIS_SANITIZED", "1" if "asan" in sys.argv[2] else "0")
    os.environ.setdefault("DOPIS_PASS", "asan" if "asan" in sys.argv[2] else "smtpd")
PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
CHECK = os.path.join(os.path.dirname(DELIVER), "check")
BASE = os.path.join(T.WORK, PASS, "test_check")
R = T.Results()

# dopis.conf as dopistest.setup writes it: line 1 is a comment
LINE = {"hostname": 2, "mailroot": 3, "queue": 4, "deliver": 5}


def openssl(cwd, *args):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stdout.decode()))
    return p.stdout.decode().strip()


def make_pki(d):
    """Two self-signed certificates with their keys (mode 0600)."""
    os.makedirs(d, exist_ok=True)
    for n in ("one", "two"):
        openssl(d, "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", n + ".key",
                "-out", n + ".pem", "-days", "2", "-subj", "/CN=mx.example.org")
        os.chmod(os.path.join(d, n + ".key"), 0o600)


PKI = os.path.join(BASE, "pki")
HASH = None


def setup(name, conf=None, files=None, removed=()):
    """A fresh test configuration (dopistest.setup) with TLS and a good
    passwd; returns (tmp, confdir)."""
    tmp = os.path.join(BASE, name)
    c = {"tls_cert": os.path.join(PKI, "one.pem"), "tls_key": os.path.join(PKI, "one.key")}
    c.update(conf or {})
    fl = {"passwd": ["# AUTH users", "alice@example.org:" + HASH, "",
                     "bob@example.org:" + HASH]}
    fl.update(files or {})
    confdir = T.setup(tmp, DELIVER, conf=c, files=fl, removed=removed)
    if "passwd" not in removed:
        os.chmod(os.path.join(confdir, "passwd"), 0o600)
    return tmp, confdir


def run(confdir, *args, env_conf=True, preexec=None):
    """Runs check; returns (exit code, stderr lines, stdout)."""
    env = T.base_env(confdir if env_conf else "/nonexistent", SANITIZED)
    p = subprocess.run([CHECK] + list(args), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, preexec_fn=preexec)
    err = p.stderr.decode("utf-8", "replace")
    rep = T.sanitizer_report(err)
    if rep:
        raise AssertionError("sanitizer:\n" + rep)
    return p.returncode, err.splitlines(), p.stdout.decode("utf-8", "replace")


def expect(confdir, code, lines, *args, **kw):
    """Problems unless check exits code printing exactly lines."""
    rc, got, out = run(confdir, *args, **kw)
    probs = []
    if rc != code:
        probs.append("exit %s, expected %s" % (rc, code))
    if got != lines:
        probs.append("stderr:\n  %s\nexpected:\n  %s" % ("\n  ".join(got), "\n  ".join(lines)))
    if out:
        probs.append("stdout not empty: %r" % out)
    return probs


def conf_line(confdir, key, value):
    """Appends key = value to dopis.conf; returns its line number."""
    path = os.path.join(confdir, "dopis.conf")
    with open(path) as f:
        n = len(f.read().splitlines())
    with open(path, "a") as f:
        f.write("%s = %s\n" % (key, value))
    return n + 1


# ---------------------------------------------------------------- tests

def t_good():
    tmp, conf = setup("good")
    return expect(conf, 0, [])


def t_good_argument():
    # the directory as argument wins over DOPIS_CONF
    tmp, conf = setup("good-argument")
    return expect(conf, 0, [], conf, env_conf=False)


def t_no_passwd_no_tls():
    tmp, conf = setup("minimal", conf={"tls_cert": None, "tls_key": None}, removed=("passwd",))
    return expect(conf, 0, [])


def t_usage():
    tmp, conf = setup("usage")
    return expect(conf, 64, ["usage: check [configuration-directory]"], "-x") + \
        expect(conf, 64, ["usage: check [configuration-directory]"], conf, conf)


def t_conf_unknown_key():
    tmp, conf = setup("conf-unknown-key")
    n = conf_line(conf, "frobnicate", "yes")
    return expect(conf, 78, ["%s/dopis.conf:%d: unknown key: frobnicate" % (conf, n)])


def t_conf_bad_number():
    tmp, conf = setup("conf-bad-number", conf={"timeout": "0"})
    return expect(conf, 78, ["%s/dopis.conf:8: not a number in range: 0" % conf])


def t_users():
    tmp, conf = setup("users", files={"users": ["alice@example.org", "# x",
                                                "bob@nowhere.test"]})
    return expect(conf, 78, ["%s/users:3: domain not in localdomains: nowhere.test" % conf])


def t_aliases():
    tmp, conf = setup("aliases", files={"aliases": ["team@example.org alice@example.org"]})
    return expect(conf, 78, ["%s/aliases:1: missing ':' after the alias: "
                             "team@example.org alice@example.org" % conf])


def t_relayclients():
    tmp, conf = setup("relayclients", files={"relayclients": ["10.0.0.0/8", "1.2.3"]})
    return expect(conf, 78, ["%s/relayclients:2: not an IP address: 1.2.3" % conf])


def t_listed_twice():
    tmp, conf = setup("localdomains-twice", files={"localdomains": [
        "example.org", "example.net", "Example.ORG"]})
    return expect(conf, 78, ["%s/localdomains:3: listed twice: example.org" % conf])


def t_passwd():
    tmp, conf = setup("passwd", files={"passwd": [
        "# users",
        "alice@example.org:" + HASH,
        "bob@example.org",                       # no hash
        "carol@example.org:" + HASH[:20],        # cut short
        "dave@example.org:$zz$abc$def",          # no such method
        "Alice@Example.ORG:" + HASH,             # listed twice
        "plain@example.org:secret",              # not a hash
        "  ",
    ]})
    p = conf + "/passwd"
    nomatch = "the hash matches no password: cut short, or a method crypt(3) does not know"
    return expect(conf, 78, [
        p + ":3: expected user@domain:$crypt-hash",
        p + ":4: " + nomatch,
        p + ":5: " + nomatch,
        p + ":7: expected user@domain:$crypt-hash",
        p + ":6: user listed twice",
    ])


def t_passwd_warnings():
    md5 = openssl(BASE, "passwd", "-1", "secret")
    tmp, conf = setup("passwd-warnings", files={"passwd": [
        "alice@example.org:" + HASH, "old@example.org:" + md5]})
    os.chmod(os.path.join(conf, "passwd"), 0o644)
    p = conf + "/passwd"
    return expect(conf, 0, [
        p + ": warning: readable by everyone; keep it for smtpd's user",
        p + ":2: warning: a legacy hash method; use yescrypt ($y$) or SHA-512-crypt ($6$)",
    ])


def t_config_and_passwd():
    # config_load stops at its first error; passwd is checked even so
    tmp, conf = setup("config-and-passwd", files={
        "users": ["bob@nowhere.test"], "passwd": ["nonsense"]})
    return expect(conf, 78, [
        "%s/users:1: domain not in localdomains: nowhere.test" % conf,
        "%s/passwd:1: expected user@domain:$crypt-hash" % conf,
    ])


def t_tls_missing():
    tmp, conf = setup("tls-missing", conf={"tls_cert": os.path.join(tmp_of("tls-missing"), "no.pem")})
    return expect(conf, 78, ["%s/dopis.conf:9: tls_cert %s/no.pem: cannot read: "
                             "No such file or directory" % (conf, tmp)])


def tmp_of(name):
    return os.path.join(BASE, name)


def t_tls_key_unreadable():
    if os.geteuid() != 0:
        return []
    tmp, conf = setup("tls-key-unreadable")
    # nobody may read the key; check runs as nobody (and then the
    # directories are not writable for it either)
    os.chmod(tmp, 0o755)
    for d in ("conf", "mail", "queue"):
        os.chmod(os.path.join(tmp, d), 0o755)
    os.chmod(os.path.join(conf, "passwd"), 0o644)

    def nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    c = conf + "/dopis.conf"
    return expect(conf, 78, [
        "%s/passwd: warning: readable by everyone; keep it for smtpd's user" % conf,
        "%s:10: tls_key %s/one.key: cannot read: Permission denied" % (c, PKI),
        "%s:3: mailroot %s/mail: not writable by this user: Permission denied" % (c, tmp),
        "%s:4: queue %s/queue: not writable by this user: Permission denied" % (c, tmp),
    ], preexec=nobody)


def t_tls_key_world_readable():
    tmp, conf = setup("tls-key-world")
    key = os.path.join(tmp, "world.key")
    with open(os.path.join(PKI, "one.key"), "rb") as f, open(key, "wb") as g:
        g.write(f.read())
    os.chmod(key, 0o644)
    with open(os.path.join(conf, "dopis.conf")) as f:
        text = f.read().replace(os.path.join(PKI, "one.key"), key)
    with open(os.path.join(conf, "dopis.conf"), "w") as f:
        f.write(text)
    return expect(conf, 0, ["%s/dopis.conf:10: warning: tls_key %s: readable by everyone" % (conf, key)])


def t_tls_mismatch():
    tmp, conf = setup("tls-mismatch", conf={"tls_key": os.path.join(PKI, "two.key")})
    rc, got, out = run(conf)
    want = "%s/dopis.conf:9: tls_cert %s/one.pem: cannot be used with tls_key: " % (conf, PKI)
    if rc != 78 or len(got) != 1 or not got[0].startswith(want):
        return ["exit %s, stderr %r; expected 78 and one line starting %r" % (rc, got, want)]
    return []


def t_tls_not_pem():
    tmp, conf = setup("tls-not-pem", conf={"tls_cert": os.path.join(tmp_of("tls-not-pem"), "junk.pem")})
    with open(os.path.join(tmp, "junk.pem"), "w") as f:
        f.write("this is no certificate\n")
    rc, got, out = run(conf)
    want = "%s/dopis.conf:9: tls_cert %s/junk.pem: cannot be used with tls_key: " % (conf, tmp)
    if rc != 78 or len(got) != 1 or not got[0].startswith(want):
        return ["exit %s, stderr %r; expected 78 and one line starting %r" % (rc, got, want)]
    return []


def t_tls_directory():
    tmp, conf = setup("tls-directory", conf={"tls_cert": PKI})
    return expect(conf, 78, ["%s/dopis.conf:9: tls_cert %s: not a regular file" % (conf, PKI)])


def t_mailroot_missing():
    tmp, conf = setup("mailroot-missing")
    os.rmdir(os.path.join(tmp, "mail"))
    return expect(conf, 0, ["%s/dopis.conf:3: warning: mailroot %s/mail: missing "
                            "(local deliveries fail until it is created)" % (conf, tmp)])


def t_queue_missing():
    tmp, conf = setup("queue-missing")
    os.rmdir(os.path.join(tmp, "queue"))
    return expect(conf, 0, ["%s/dopis.conf:4: warning: queue %s/queue: missing "
                            "(deliver creates it when its parent directory exists)" % (conf, tmp)])


def t_mailroot_file():
    tmp, conf = setup("mailroot-file")
    os.rmdir(os.path.join(tmp, "mail"))
    T.write_file(os.path.join(tmp, "mail"), b"")
    return expect(conf, 78, ["%s/dopis.conf:3: mailroot %s/mail: not a directory" % (conf, tmp)])


def t_queue_sub_file():
    tmp, conf = setup("queue-sub-file")
    os.makedirs(os.path.join(tmp, "queue", "mess"))
    T.write_file(os.path.join(tmp, "queue", "info"), b"")
    return expect(conf, 78, ["%s/dopis.conf:4: queue %s/queue/info: not a directory" % (conf, tmp)])


def t_deliver_missing():
    tmp, conf = setup("deliver-missing", conf={"deliver": "/nonexistent/deliver"})
    return expect(conf, 78, ["%s/dopis.conf:5: deliver /nonexistent/deliver: missing" % conf])


def t_deliver_not_executable():
    tmp, conf = setup("deliver-not-executable", conf={"deliver": "deliver.txt"})
    T.write_file(os.path.join(conf, "deliver.txt"), b"#!/bin/sh\n")
    os.chmod(os.path.join(conf, "deliver.txt"), 0o644)
    return expect(conf, 78, ["%s/dopis.conf:5: deliver %s/deliver.txt: not executable by this user: "
                             "Permission denied" % (conf, conf)])


def t_deliver_default():
    # no deliver key: the one beside check, which is there
    tmp, conf = setup("deliver-default", conf={"deliver": None})
    return expect(conf, 0, [])


def t_default_marked():
    # a default value is named as such, without a line
    tmp, conf = setup("default-marked", conf={"deliver": None})
    os.makedirs(os.path.join(tmp, "bin"))
    link = os.path.join(tmp, "bin", "check")
    os.symlink(os.path.realpath(CHECK), link)   # /proc/self/exe resolves it: deliver is found
    rc, got, out = run(conf)
    probs = [] if (rc, got) == (0, []) else ["exit %s, stderr %r" % (rc, got)]
    # a copy of check with neither deliver nor dopis-tlsd beside it
    copy = os.path.join(tmp, "bin", "check-copy")
    with open(os.path.realpath(CHECK), "rb") as f:
        T.write_file(copy, f.read())
    os.chmod(copy, 0o755)
    p = subprocess.run([copy], env=T.base_env(conf, SANITIZED), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    err = p.stderr.decode("utf-8", "replace").splitlines()
    want = ["%s/dopis.conf:8: tls_cert %s/one.pem: set, but dopis-tlsd cannot be run: "
            "%s/bin/tlsd: No such file or directory" % (conf, PKI, tmp),
            "%s/dopis.conf: deliver %s/bin/deliver (the default): missing" % (conf, tmp)]
    if p.returncode != 78 or err != want:
        probs.append("copy: exit %s, stderr %r, expected 78 and %r" % (p.returncode, err, want))
    return probs


def main():
    global HASH
    os.makedirs(BASE, exist_ok=True)
    make_pki(PKI)
    HASH = openssl(BASE, "passwd", "-6", "secret")
    tests = [(n[2:].replace("_", "-"), f) for n, f in sorted(globals().items())
             if n.startswith("t_") and callable(f)]
    for name, fn in tests:
        R.run("check-" + name, fn)
    R.exit()


if __name__ == "__main__":
    main()
