#!/usr/bin/python3
"""The dopis benchmark (make bench): dopis against Postfix and OpenSMTPD on
this machine, in one sitting, runs alternated.  See bench/README.

Runs as root inside "unshare -n -m" (bench/bench.sh starts it): a network
namespace with only loopback, and a private mount namespace in which
/etc, /run, /var/spool, /var/lib and /usr/libexec are overlays (so the
peers' users, resolv.conf and compiled-in paths exist without touching
the host), and every spool and Maildir is on a fresh journaled ext4 on a
loop device, unmounted and deleted at the end.

Writes bench/work/results.json, bench/RESULTS.md and bench/results.png.
Environment: BENCH_RUNS=n (default 5), BENCH_QUICK=1 (one run of smaller
workloads, for trying the benchmark out), BENCH_KEEP=1 (keep bench/work/
logs; the image is always deleted).
"""

import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B = os.path.join(ROOT, "bench")
WORK = os.path.join(B, "work")
PEERS = os.path.join(B, "peers")
TOOLS = os.path.join(WORK, "bin")
DOPIS = os.path.join(WORK, "dopis")   # bench.sh's copy of bin/smtpd, deliver, relay
LOGS = os.path.join(WORK, "logs")
FS = os.path.join(WORK, "fs")
IMG = os.path.join(WORK, "fs.img")
OVL = os.path.join(WORK, "ovl")

PF = os.path.join(PEERS, "postfix")
PF_LIB = os.path.join(PF, "usr/lib/postfix")
PF_SBIN = os.path.join(PF, "usr/lib/postfix/sbin")
OS = os.path.join(PEERS, "opensmtpd")

QUICK = os.environ.get("BENCH_QUICK") == "1"
RUNS = int(os.environ.get("BENCH_RUNS") or (1 if QUICK else 5))
N_SMALL = 400 if QUICK else 2000
N_BIG = 100 if QUICK else 500
N_RELAY = 400 if QUICK else 2000
RELAY_DOMAINS = 10 if QUICK else 50
RELAY_RUNS = int(os.environ.get("BENCH_RELAY_RUNS") or (1 if QUICK else min(RUNS, 3)))
BIG_MESSAGE = 50 * 1000 * 1000
LIMIT_SECS = 1.5 if QUICK else 3.0

RCPT = "bench@example.org"
SENDER = "load@client.test"
HOST = "127.0.0.1"
SINK = "127.0.0.2"
PORTS = {"dopis-tcpserver": 2525, "dopis-socket": 2526, "postfix": 2527, "opensmtpd": 2528,
         "dopis-dynamic": 2530}
RSS_PORT = 2529
SERVERS = ["dopis-tcpserver", "dopis-socket", "postfix", "opensmtpd"]
LABEL = {"dopis-tcpserver": "dopis (tcpserver)", "dopis-socket": "dopis (systemd-socket-activate)",
         "postfix": "Postfix", "opensmtpd": "OpenSMTPD",
         "dopis-dynamic": "dopis, dynamically linked (comparison)"}
# the comparison: the same smtpd and deliver objects linked dynamically
# (bench.sh), as they were before make linked them statically; under
# tcpserver, in these workloads only
DYNAMIC_SMTPD = os.path.join(TOOLS, "smtpd-dynamic")
DYNAMIC_DELIVER = os.path.join(TOOLS, "deliver-dynamic")
COMPARISON_WORKLOADS = ("1k-s1-one", "1k-s16-one")

# the workloads: (key, messages, bytes, sessions, one message per connection?)
WORKLOADS = [
    ("1k-s1-one", N_SMALL, 1024, 1, True),
    ("1k-s16-one", N_SMALL, 1024, 16, True),
    ("1k-s1-many", N_SMALL, 1024, 1, False),
    ("1k-s16-many", N_SMALL, 1024, 16, False),
    ("100k-s1-one", N_BIG, 102400, 1, True),
    ("100k-s16-one", N_BIG, 102400, 16, True),
    ("100k-s1-many", N_BIG, 102400, 1, False),
    ("100k-s16-many", N_BIG, 102400, 16, False),
]

USERS = {  # name: uid (gid the same), made in the overlay /etc only
    "bench": 64720, "benchpf": 64721, "benchpd": 64722, "opensmtpd": 64723, "opensmtpq": 64724,
}

PROCS = []      # (name, Popen) started here, stopped at the end
MOUNTS = []     # mount points, unmounted in reverse at the end

# CPU accounting: a cpuacct cgroup (v1) for the benchmark, one child per
# server and one for the driver and load; removed at the end.  What the
# machine's CPUs did outside it during a run is "foreign" load: other
# users of this machine (and kernel threads, the loop device's I/O too).
CG_ROOT = "/sys/fs/cgroup/cpuacct"
CG = os.path.join(CG_ROOT, "dopis-bench")
CG_ON = False


def cg_setup():
    global CG_ON
    if not os.path.isfile(os.path.join(CG_ROOT, "cpuacct.usage")):
        return
    cg_remove()
    os.makedirs(os.path.join(CG, "driver"), exist_ok=True)
    with open(os.path.join(CG, "driver", "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    CG_ON = True


def cg_remove():
    if not os.path.isdir(CG):
        return
    try:
        with open(os.path.join(CG_ROOT, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    except OSError:
        pass
    for d in os.listdir(CG):
        if os.path.isdir(os.path.join(CG, d)):
            try:
                os.rmdir(os.path.join(CG, d))
            except OSError:
                pass
    try:
        os.rmdir(CG)
    except OSError:
        pass


def cg_enter(name):
    """A preexec_fn: the new process (and all it starts) into CG/name."""
    if not CG_ON:
        return None
    d = os.path.join(CG, name)
    os.makedirs(d, exist_ok=True)

    def enter():
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write("0")
    return enter


def cg_usage(name=""):
    """CPU nanoseconds used in CG/name so far (0 without cgroups)."""
    if not CG_ON:
        return 0
    try:
        with open(os.path.join(CG, name, "cpuacct.usage")) as f:
            return int(f.read())
    except OSError:
        return 0


def busy_ns():
    """Busy CPU time of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (v[0] + v[1] + v[2] + v[5] + v[6]) * 1e9 / hz


class Meter:
    """Elapsed time, CPU of one server's cgroup and foreign CPU."""

    def __init__(self, server=None):
        self.server = server
        self.t = time.monotonic()
        self.busy = busy_ns()
        self.ours = cg_usage()
        self.srv = cg_usage(server) if server else 0

    def read(self):
        dt = time.monotonic() - self.t
        busy = busy_ns() - self.busy
        ours = cg_usage() - self.ours
        r = {"elapsed": dt, "server_cpu_s": (cg_usage(self.server) - self.srv) / 1e9 if self.server else None}
        r["foreign_cores"] = max(0.0, (busy - ours) / 1e9 / dt) if CG_ON and dt > 0 else None
        return r


WAIT_BUDGET = [300.0]   # seconds of waiting for quiet left in this sitting


def wait_quiet(max_wait=20):
    """Waits (up to max_wait s, and 300 s in all) until the rest of the
    machine uses less than 0.3 of a core over 0.4 s; returns how long
    it waited."""
    t0 = time.monotonic()
    while True:
        m = Meter()
        time.sleep(0.4)
        f = m.read()["foreign_cores"]
        waited = time.monotonic() - t0
        if f is None or f < 0.3 or waited > min(max_wait, WAIT_BUDGET[0]):
            WAIT_BUDGET[0] = max(0.0, WAIT_BUDGET[0] - max(0.0, waited - 0.4))
            return waited
        time.sleep(0.6)


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def run(args, check=True, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s" % (" ".join(args), r.returncode,
                                                  r.stdout.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


def start(name, args, env=None, cgroup=None, **kw):
    logf = open(os.path.join(LOGS, name + ".log"), "ab")
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                         env=env, preexec_fn=cg_enter(cgroup or name), **kw)
    logf.close()
    PROCS.append((name, p))
    return p


def stop_all():
    for name, p in reversed(PROCS):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10
    for name, p in reversed(PROCS):
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    PROCS.clear()


def mount(args, point):
    run(["mount"] + args + [point])
    MOUNTS.append(point)


def unmount_all():
    for m in reversed(MOUNTS):
        subprocess.run(["umount", m], stderr=subprocess.DEVNULL)
        if os.path.ismount(m):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
    MOUNTS.clear()


def write(path, text, mode=0o644, owner=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    if owner:
        os.chown(path, USERS[owner], USERS[owner])


def mkdirs(path, owner=None, mode=0o755, group=None):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner:
        os.chown(path, USERS[owner], USERS[group or owner])


def wait_port(port, host=HOST, timeout=20, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server on port %d exited %s" % (port, proc.returncode))
        try:
            s = socket.create_connection((host, port), 0.5)
            s.recv(512)   # the greeting: the server is up
            s.sendall(b"QUIT\r\n")
            s.recv(512)
            s.close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing answers on %s:%d" % (host, port))


def count(d):
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


def empty_dir(d):
    if not os.path.isdir(d):
        return
    for e in os.scandir(d):
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path)
        else:
            os.unlink(e.path)


def pf_env():
    return {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": PF_LIB, "LANG": "C"}


# ------------------------------------------------------------------ setup

def setup_namespace():
    run(["ip", "link", "set", "lo", "up"])
    for d in (WORK, LOGS, FS, OVL):
        os.makedirs(d, exist_ok=True)
    mount(["-t", "tmpfs", "-o", "size=64m", "benchovl"], OVL)
    # overlays: writable views of host directories, writes kept in OVL
    lowers = {"/etc": "/etc", "/run": "/run", "/var/spool": "/var/spool", "/var/lib": "/var/lib",
              "/usr/libexec": os.path.join(OS, "usr/libexec") + ":/usr/libexec"}
    for point, lower in lowers.items():
        key = point.strip("/").replace("/", "_")
        up, wk = os.path.join(OVL, key + ".up"), os.path.join(OVL, key + ".wk")
        os.makedirs(up)
        os.makedirs(wk)
        mount(["-t", "overlay", "-o", "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, up, wk),
               "overlay"], point)
    with open("/etc/passwd", "a") as pw, open("/etc/group", "a") as gr:
        for name, uid in USERS.items():
            pw.write("%s:x:%d:%d:dopis bench:/nonexistent:/usr/sbin/nologin\n" % (name, uid, uid))
            gr.write("%s:x:%d:\n" % (name, uid))
    if os.path.islink("/etc/resolv.conf"):
        os.unlink("/etc/resolv.conf")
    write("/etc/resolv.conf", "nameserver 127.0.0.1\n")
    write("/etc/mailname", "opensmtpd.bench.test\n")
    with open("/etc/hosts", "w") as f:
        f.write("127.0.0.1 localhost\n")
    # the file system for every spool and Maildir
    if os.path.exists(IMG):
        os.unlink(IMG)
    run(["truncate", "-s", "8G", IMG])
    run(["mkfs.ext4", "-q", "-F", IMG])
    mount(["-o", "loop", IMG], FS)


def start_dns():
    args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-negcache",
            "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53", "--user=root",
            "--pid-file=", "--local=/test/", "--cache-size=10000",
            "--host-record=localhost,127.0.0.1", "--host-record=mx.relay.test,%s" % SINK]
    if os.environ.get("BENCH_DNSLOG"):
        args += ["--log-queries", "--log-facility=" + os.path.join(LOGS, "dnsmasq-queries.log")]
    for i in range(1, 51):
        args.append("--mx-host=d%d.relay.test,mx.relay.test,10" % i)
    start("dnsmasq", args)
    deadline = time.time() + 10
    while time.time() < deadline:
        if "mx.relay.test" in run(["getent", "hosts", "mx.relay.test"], check=False):
            return
        time.sleep(0.05)
    raise RuntimeError("dnsmasq does not answer")


def setup_dopis(name="dopis-conf", deliver=None):
    conf = os.path.join(WORK, name)
    if os.path.isdir(conf):
        shutil.rmtree(conf)
    mkdirs(os.path.join(FS, "dopis"), "bench")
    write(os.path.join(conf, "dopis.conf"),
          "hostname = dopis.bench.test\n"
          "mailroot = %s/dopis/mail\nqueue = %s/dopis/queue\ndeliver = %s\n"
          "max_message_size = 60000000\n" % (FS, FS, deliver or DOPIS + "/deliver"))
    write(os.path.join(conf, "localdomains"), "example.org\n")
    write(os.path.join(conf, "users"), RCPT + "\n")
    write(os.path.join(conf, "relayclients"), "127.0.0.1\n")
    for d in ("dopis/mail", "dopis/queue"):
        mkdirs(os.path.join(FS, d), "bench", 0o700)
    for d in ("tmp", "new", "cur"):
        mkdirs(os.path.join(FS, "dopis/mail/example.org/bench", d), "bench", 0o700)
    os.chown(os.path.join(FS, "dopis/mail/example.org"), USERS["bench"], USERS["bench"])
    os.chown(os.path.join(FS, "dopis/mail/example.org/bench"), USERS["bench"], USERS["bench"])
    return conf


def dopis_env(conf):
    return {"PATH": "/usr/bin:/bin", "DOPIS_CONF": conf, "LANG": "C"}


def start_dopis_tcpserver(conf, port, name, wrap=(), smtpd=None):
    uid = str(USERS["bench"])
    p = start(name, ["tcpserver", "-c", "400", "-b", "1024", "-H", "-R", "-l", "dopis.bench.test",
                     "-u", uid, "-g", uid, HOST, str(port)] + list(wrap)
              + [smtpd or DOPIS + "/smtpd"], env=dopis_env(conf))
    wait_port(port, proc=p)
    return p


def start_dopis_socket(conf, port):
    uid = str(USERS["bench"])
    p = start("dopis-socket", ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups",
                               "systemd-socket-activate", "--accept", "--inetd",
                               "-l", "%s:%d" % (HOST, port), "-E", "DOPIS_CONF=" + conf,
                               "-E", "PATH=/usr/bin:/bin", DOPIS + "/smtpd"])
    wait_port(port, proc=p)
    return p


PF_MASTER_CF = """\
%(host)s:%(port)d inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# every main.cf setting that differs from Postfix's defaults, with why;
# RESULTS.md lists them
PF_SETTINGS = [
    ("compatibility_level", "3.6", "no compatibility warnings"),
    ("queue_directory", "<loop ext4>/postfix/spool", "the spool on the benchmark's file system"),
    ("data_directory", "<loop ext4>/postfix/data", "likewise"),
    ("daemon_directory, shlib_directory, command_directory, meta_directory",
     "the extracted package, the private config", "run from the extracted package"),
    ("mail_owner, setgid_group", "benchpf, benchpd", "users made in the namespace's /etc"),
    ("import_environment", "defaults + LD_LIBRARY_PATH", "daemons find the package's libraries"),
    ("master.cf", "chroot column n for every service; smtpd on 127.0.0.1:%d" % PORTS["postfix"],
     "no chroot from a private config"),
    ("myhostname, mydestination", "postfix.bench.test, (empty)", "example.org is a virtual domain"),
    ("inet_interfaces, inet_protocols, mynetworks", "127.0.0.1, ipv4, 127.0.0.0/8", "loopback only"),
    ("virtual_mailbox_domains, virtual_mailbox_base, virtual_mailbox_maps",
     "example.org, <loop ext4>/postfix/mail, inline:{bench@example.org=example.org/bench/}",
     "delivery to a Maildir by the virtual agent"),
    ("virtual_uid_maps, virtual_gid_maps", "static:<uid of bench>", "the Maildir's owner"),
    ("smtpd_recipient_restrictions", "check_recipient_access inline:{relay.test=HOLD}",
     "relay test: queued mail waits on hold until released (no effect on example.org)"),
    ("maillog_file (+ maillog_file_prefixes)", "a file under bench/work/logs",
     "a log file like the other servers' (default: syslog)"),
]


def setup_postfix():
    etc = os.path.join(WORK, "postfix-etc")
    if os.path.isdir(etc):
        shutil.rmtree(etc)
    os.makedirs(etc)
    spool, data, mail = (os.path.join(FS, "postfix", d) for d in ("spool", "data", "mail"))
    mkdirs(spool, mode=0o755)
    for d in ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
              "private", "saved", "trace"):
        mkdirs(os.path.join(spool, d), "benchpf", 0o700)
    mkdirs(os.path.join(spool, "maildrop"), "benchpf", 0o730, "benchpd")
    mkdirs(os.path.join(spool, "public"), "benchpf", 0o710, "benchpd")
    mkdirs(os.path.join(spool, "pid"), mode=0o755)
    mkdirs(data, "benchpf", 0o700)
    for d in ("", "/example.org", "/example.org/bench", "/example.org/bench/tmp",
              "/example.org/bench/new", "/example.org/bench/cur"):
        mkdirs(mail + d, "bench", 0o700)
    shutil.copy(os.path.join(PF, "usr/share/postfix/dynamicmaps.cf"), etc)
    os.makedirs(os.path.join(etc, "dynamicmaps.cf.d"))
    uid = USERS["bench"]
    main = """\
compatibility_level = 3.6
queue_directory = %(spool)s
data_directory = %(data)s
daemon_directory = %(sbin)s
shlib_directory = %(lib)s
command_directory = %(pf)s/usr/sbin
meta_directory = %(etc)s
mail_owner = benchpf
setgid_group = benchpd
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME LD_LIBRARY_PATH=%(lib)s
myhostname = postfix.bench.test
mydomain = bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = example.org
virtual_mailbox_base = %(mail)s
virtual_mailbox_maps = inline:{ bench@example.org=example.org/bench/ }
virtual_uid_maps = static:%(uid)d
virtual_gid_maps = static:%(uid)d
smtpd_recipient_restrictions = check_recipient_access inline:{ relay.test=HOLD }
maillog_file_prefixes = /
maillog_file = %(logs)s/postfix-maillog
""" % {"spool": spool, "data": data, "sbin": PF_SBIN, "lib": PF_LIB, "pf": PF, "etc": etc,
       "mail": mail, "uid": uid, "logs": LOGS}
    write(os.path.join(etc, "main.cf"), main)
    write(os.path.join(etc, "master.cf"), PF_MASTER_CF % {"host": HOST, "port": PORTS["postfix"]})
    return etc


def start_postfix(etc):
    # its own process group: master kills the group when it stops
    p = start("postfix", [os.path.join(PF_SBIN, "master"), "-c", etc, "-d"],
              env=dict(pf_env(), MAIL_CONFIG=etc), start_new_session=True)
    wait_port(PORTS["postfix"], proc=p)
    return p


def pf_queue_count():
    n = 0
    for q in ("incoming", "active", "deferred", "hold", "maildrop"):
        for dp, dn, fn in os.walk(os.path.join(FS, "postfix/spool", q)):
            n += len(fn)
    return n


OS_SETTINGS = [
    ("smtp limit max-mails", "10000", "default 100 mails per session; the workloads send up to 2000"),
    ("listen backlog", "1024 (LD_PRELOAD bench/tools/backlog.c)",
     "compiled in as 5: 16 clients reconnecting for each message stall in SYN retries"),
    ("listen on", "lo inet4 port %d" % PORTS["opensmtpd"], "loopback only"),
    ("action local", 'maildir "<loop ext4>/opensmtpd/mail/%{user.username}"',
     "delivery to a Maildir (mail.maildir) as the system user bench"),
    ("action relay / match", "relay (MX lookup) for any other domain, from local",
     "relay test"),
    ("spool, /etc/mailname, users", "/var/spool/smtpd on the loop ext4; opensmtpd.bench.test; "
     "opensmtpd, opensmtpq, bench", "compiled-in paths, bind-mounted in the namespace"),
]


def setup_opensmtpd():
    conf = os.path.join(WORK, "opensmtpd.conf")
    spool = os.path.join(FS, "opensmtpd/spool")
    mail = os.path.join(FS, "opensmtpd/mail")
    mkdirs(spool, mode=0o711)
    mkdirs("/var/spool/smtpd", mode=0o711)
    mount(["--bind", spool], "/var/spool/smtpd")
    mkdirs("/var/lib/opensmtpd/empty", mode=0o755)
    # smtpctl insists on being setgid opensmtpq, as the package installs it
    ctl = os.path.join(TOOLS, "smtpctl")
    shutil.copy(os.path.join(OS, "usr/sbin/smtpctl"), ctl)
    os.chown(ctl, 0, USERS["opensmtpq"])
    os.chmod(ctl, 0o2755)
    mkdirs(mail, mode=0o755)
    for d in ("", "/tmp", "/new", "/cur"):
        mkdirs(os.path.join(mail, "bench") + d, "bench", 0o700)
    write(conf, """\
smtp limit max-mails 10000
listen on lo inet4 port %d
action "local" maildir "%s/%%{user.username}"
action "relay" relay
match from any for domain "example.org" action "local"
match from local for any action "relay"
""" % (PORTS["opensmtpd"], mail), mode=0o644)
    return conf


def start_opensmtpd(conf):
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "LD_PRELOAD": os.path.join(TOOLS, "backlog.so")}
    p = start("opensmtpd", [os.path.join(OS, "usr/sbin/smtpd"), "-d", "-f", conf], env=env)
    wait_port(PORTS["opensmtpd"], proc=p)
    return p


def os_queue_count():
    n = 0
    q = os.path.join(FS, "opensmtpd/spool/queue")
    if os.path.isdir(q):
        for b in os.scandir(q):
            n += count(b.path)
    for d in ("incoming", "temporary"):
        n += count(os.path.join(FS, "opensmtpd/spool", d))
    return n


def dopis_queue_count():
    return count(os.path.join(FS, "dopis/queue/info"))


MAILDIR = {
    "dopis-tcpserver": "dopis/mail/example.org/bench",
    "dopis-dynamic": "dopis/mail/example.org/bench",
    "dopis-socket": "dopis/mail/example.org/bench",
    "postfix": "postfix/mail/example.org/bench",
    "opensmtpd": "opensmtpd/mail/bench",
}


def queue_count(server):
    if server == "postfix":
        return pf_queue_count()
    if server == "opensmtpd":
        return os_queue_count()
    return dopis_queue_count()


# ------------------------------------------------------------------ load

def smtp_source(port, n, size, sessions, one, rcpt=RCPT, extra=()):
    args = [os.path.join(PF, "usr/sbin/smtp-source"), "-s", str(sessions), "-m", str(n),
            "-l", str(size), "-f", SENDER, "-t", rcpt, "-M", "client.test"]
    if not one:
        args.append("-d")
    args += list(extra) + ["%s:%d" % (HOST, port)]
    return args


def clean_server(server):
    md = os.path.join(FS, MAILDIR[server])
    deadline = time.time() + 120
    while queue_count(server) and time.time() < deadline:
        time.sleep(0.05)
    for d in ("new", "cur", "tmp"):
        empty_dir(os.path.join(md, d))
    os.sync()


def one_run(server, wl):
    key, n, size, sessions, one = wl
    clean_server(server)
    waited = wait_quiet()
    newdir = os.path.join(FS, MAILDIR[server], "new")
    args = smtp_source(PORTS[server], n, size, sessions, one)
    meter = Meter(server)
    t0 = meter.t
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=pf_env())
    t1 = time.monotonic()
    out = r.stdout.decode(errors="replace")
    timeout = max(120, n / 5)
    while count(newdir) < n:
        if time.monotonic() - t1 > timeout:
            raise RuntimeError("%s %s: %d of %d delivered after %ds\n%s"
                               % (server, key, count(newdir), n, timeout, out))
        time.sleep(0.002)
    m = meter.read()
    t2 = time.monotonic()
    if r.returncode != 0 or out.strip():
        log("warning: %s %s: smtp-source exited %d: %s" % (server, key, r.returncode, out.strip()[:300]))
    return {"accepted": n / (t1 - t0), "delivered": n / (t2 - t0), "accept_s": t1 - t0,
            "deliver_s": t2 - t0, "errors": out.count("error") + out.count("fatal"),
            "cpu_ms_per_msg": m["server_cpu_s"] * 1000 / n if CG_ON else None,
            "foreign_cores": m["foreign_cores"], "waited_s": waited}


def warm_up():
    for s in SERVERS:
        one_run(s, ("warm", 50, 1024, 4, True))


# ------------------------------------------------------------------ limits

def limits_once():
    d = os.path.join(FS, "limits")
    res = {}
    for w in (1, 16):
        for order in ("maildir", "late"):
            sub = os.path.join(d, "w%d%s" % (w, order))
            os.makedirs(sub, exist_ok=True)
            wait_quiet()
            out = run([os.path.join(TOOLS, "durable"), sub, str(w), str(LIMIT_SECS), "1024", order])
            res["durable_%d%s" % (w, "" if order == "maildir" else "_late")] = float(out.split()[0])
            shutil.rmtree(sub)
            os.sync()
    for par in (1, 2):
        out = run([os.path.join(TOOLS, "forkexec"), os.path.join(TOOLS, "noop"), str(par),
                   str(LIMIT_SECS / 2)])
        res["forkexec_%d" % par] = float(out.split()[0])
    return res


# ------------------------------------------------------------------ memory

def proc_status(pid):
    st = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                st[k] = v.strip()
    except OSError:
        return None
    return st


def peer_memory():
    """VmHWM (kB) of each resident process of Postfix and OpenSMTPD, by
    role: peaks over the whole sitting (they serve every run)."""
    res = {"postfix": {}, "opensmtpd": {}}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        pid = int(e)
        try:
            exe = os.readlink("/proc/%d/exe" % pid)
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        st = proc_status(pid)
        if not st or "VmHWM" not in st:
            continue
        hwm = int(st["VmHWM"].split()[0])
        if exe.startswith(PF):
            role = os.path.basename(exe)
            res["postfix"].setdefault(role, []).append(hwm)
        elif exe.startswith(OS):
            role = cmd.replace("smtpd: ", "") if cmd.startswith("smtpd: ") else "parent"
            role = role.split("(")[0].strip() or "parent"
            res["opensmtpd"].setdefault(role, []).append(hwm)
    return res


def setup_dopis_tls():
    """dopis's configuration with tls_cert and tls_key set (a
    self-signed P-256 certificate made here), for the memory runs."""
    conf = setup_dopis("dopis-conf-tls")
    key, cert = os.path.join(conf, "key.pem"), os.path.join(conf, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=dopis.bench.test"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chown(key, USERS["bench"], USERS["bench"])
    os.chmod(key, 0o600)
    with open(os.path.join(conf, "dopis.conf"), "a") as f:
        f.write("tls_cert = cert.pem\ntls_key = key.pem\n")
    return conf


def starttls_sessions(port, n, size):
    """n sessions one after another, each STARTTLS, EHLO, one message
    of size bytes, QUIT (Python's smtplib and ssl; no certificate
    check: the certificate is the bench's own).  Returns how many the
    server accepted."""
    import smtplib
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = ("Subject: tls\r\n\r\n" + "x" * 76 + "\r\n") * max(1, size // 78)
    ok = 0
    for _ in range(n):
        with smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=30) as s:
            s.starttls(context=ctx)
            s.ehlo("client.test")
            if not s.sendmail(SENDER, [RCPT], body):
                ok += 1
    return ok


def dopis_memory(conf, smtpd=None, cases=None):
    """Exact peak RSS of each smtpd session and each deliver, from
    bench/tools/rsstrace (ptrace, PTRACE_EVENT_EXIT), under tcpserver.
    A case whose sessions count is "starttls" runs that many STARTTLS
    sessions (starttls_sessions) instead of smtp-source."""
    mkdirs(os.path.join(LOGS, "rss"), "bench")
    rlog = os.path.join(LOGS, "rss", "rss.log")
    res = {}
    p = start_dopis_tcpserver(conf, RSS_PORT, "dopis-rss",
                              [os.path.join(TOOLS, "rsstrace"), rlog], smtpd=smtpd)
    try:
        cases = cases or [
            ("1 KiB, 16 sessions, one per connection", N_SMALL // 4, 1024, 16, True),
            ("1 KiB, 16 sessions, many per connection", N_SMALL // 4, 1024, 16, False),
            ("100 KiB, 16 sessions, many per connection", N_BIG // 4, 102400, 16, False),
            ("one 50 MB message", 1, BIG_MESSAGE, 1, True)]
        for label, n, size, sessions, one in cases:
            clean_server("dopis-tcpserver")
            if os.path.exists(rlog):
                os.unlink(rlog)
            newdir = os.path.join(FS, MAILDIR["dopis-tcpserver"], "new")
            if sessions == "starttls":
                r = subprocess.CompletedProcess([], 0 if starttls_sessions(RSS_PORT, n, size) == n else 1)
            else:
                r = subprocess.run(smtp_source(RSS_PORT, n, size, sessions, one),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=pf_env())
            deadline = time.time() + 60
            while count(newdir) < n and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
            # name pid VmHWM RssAnon RssFile parent (kB; RssAnon and
            # RssFile at exit; parent: the name of the process that
            # forked it).  An smtpd forked by smtpd is the session's
            # broker (it starts deliver); "smtpd" is the session itself.
            rows = []
            with open(rlog) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3:
                        nm = parts[0]
                        if nm.startswith("smtpd") and len(parts) > 5 and parts[5].startswith("smtpd"):
                            nm = "broker"
                        rows.append((nm, [int(x) for x in parts[2:5]]))

            def col(prog, i):
                return [v[i] for nm, v in rows if nm.startswith(prog) and len(v) > i and v[i] >= 0]
            x = {"delivered": count(newdir), "expected": n, "rc": r.returncode}
            for prog in ("smtpd", "broker", "deliver", "tlsd"):
                for i, what in enumerate(("", "_anon", "_file")):
                    v = col(prog, i)
                    x[prog + what + "_max"] = max(v) if v else None
                    x[prog + what + "_median"] = statistics.median(v) if v else None
                x[prog + "_n"] = len(col(prog, 0))
            res[label] = x
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait()
    clean_server("dopis-tcpserver")
    return res


# ------------------------------------------------------------------ durability

def fsync_counts(pids_of, n=100):
    """System calls that make data durable, per message, counted by
    strace -f attached to every process of each server over n messages
    (1 KiB, 1 session, one per connection)."""
    res = {}
    for server in SERVERS:
        pids = pids_of(server)
        clean_server(server)
        outf = os.path.join(LOGS, "strace-%s.txt" % server)
        args = ["strace", "-f", "-c", "-o", outf, "-e",
                "trace=fsync,fdatasync,sync_file_range,rename,renameat,renameat2,link,linkat,"
                "unlink,unlinkat,execve,clone,clone3,fork,vfork"]
        for p in pids:
            args += ["-p", str(p)]
        st = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        newdir = os.path.join(FS, MAILDIR[server], "new")
        subprocess.run(smtp_source(PORTS[server], n, 1024, 1, True), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=pf_env())
        deadline = time.time() + 60
        while (count(newdir) < n or queue_count(server)) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
        st.send_signal(signal.SIGINT)
        st.wait()
        calls = {}
        with open(outf) as f:
            for line in f:
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
                if m:
                    calls[m.group(2)] = int(m.group(1))
        per = lambda *names: sum(calls.get(x, 0) for x in names) / n
        res[server] = {"fsync": per("fsync", "fdatasync", "sync_file_range"),
                       "rename_link": per("rename", "renameat", "renameat2", "link", "linkat"),
                       "unlink": per("unlink", "unlinkat"),
                       "exec": per("execve"), "fork": per("clone", "clone3", "fork", "vfork")}
    return res


def server_pids(server):
    if server in ("dopis-tcpserver", "dopis-socket"):
        return [p.pid for nm, p in PROCS if nm == server]
    base = PF if server == "postfix" else OS
    pids = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % e).startswith(base):
                    pids.append(int(e))
            except OSError:
                pass
    return pids


# ------------------------------------------------------------------ relay

def inject_relay(port):
    per = N_RELAY // RELAY_DOMAINS
    procs = []
    for i in range(1, RELAY_DOMAINS + 1):
        procs.append(subprocess.Popen(
            smtp_source(port, per, 1024, 1, False, rcpt="user%d@d%d.relay.test" % (i, i)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=pf_env()))
        if len(procs) >= 10:
            procs.pop(0).wait()
    for p in procs:
        p.wait()


def wait_queued(server, n, timeout=60):
    """Waits until n messages are queued, or the count stops growing for
    3 s (some were refused: logged); returns the count."""
    deadline = time.time() + timeout
    last, since = -1, time.time()
    while time.time() < deadline:
        c = queue_count(server)
        if c >= n:
            return c
        if c != last:
            last, since = c, time.time()
        elif time.time() - since > 3:
            break
        time.sleep(0.05)
    c = queue_count(server)
    if c < n * 0.9:
        raise RuntimeError("%s: %d of %d messages queued" % (server, c, n))
    log("warning: %s: only %d of %d messages queued" % (server, c, n))
    return c


def wait_empty(server, t0, timeout=120 if QUICK else 600):
    while queue_count(server):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("%s: queue not empty after %ds (%d left)"
                               % (server, timeout, queue_count(server)))
        time.sleep(0.005)
    return time.monotonic() - t0


def relay_dopis(conf):
    inject_relay(PORTS["dopis-tcpserver"])
    n = wait_queued("dopis-tcpserver", N_RELAY)
    os.sync()
    time.sleep(0.5)
    env = dict(dopis_env(conf), NAMESERVERS="127.0.0.1")
    wait_quiet()
    relog = open(os.path.join(LOGS, "dopis-relay.log"), "ab")
    meter = Meter("dopis-relay")
    t0 = meter.t
    r = subprocess.run(["setpriv", "--reuid", str(USERS["bench"]), "--regid", str(USERS["bench"]),
                        "--clear-groups", DOPIS + "/relay"], env=env, stdout=relog, stderr=relog,
                       preexec_fn=cg_enter("dopis-relay"))
    t = wait_empty("dopis-tcpserver", t0)
    m = meter.read()
    relog.close()
    if r.returncode:
        log("warning: relay exited %d" % r.returncode)
    return relay_result(t, m, n)


def relay_result(t, m, n):
    return {"rate": n / t, "cpu_ms_per_msg": m["server_cpu_s"] * 1000 / n if CG_ON else None,
            "foreign_cores": m["foreign_cores"], "messages": n}


def relay_postfix(etc):
    inject_relay(PORTS["postfix"])
    n = wait_queued("postfix", N_RELAY)
    os.sync()
    time.sleep(0.5)
    env = pf_env()
    wait_quiet()
    meter = Meter("postfix")
    t0 = meter.t
    run([os.path.join(PF, "usr/sbin/postsuper"), "-c", etc, "-H", "ALL"], env=env)
    run([os.path.join(PF, "usr/sbin/postqueue"), "-c", etc, "-f"], env=env)
    t = wait_empty("postfix", t0)
    return relay_result(t, meter.read(), n)


def relay_opensmtpd():
    smtpctl = os.path.join(TOOLS, "smtpctl")
    run([smtpctl, "pause", "mta"])
    inject_relay(PORTS["opensmtpd"])
    wait_queued("opensmtpd", N_RELAY)
    os.sync()
    time.sleep(0.5)
    t0 = time.monotonic()
    run([smtpctl, "resume", "mta"])
    return N_RELAY / wait_empty("opensmtpd", t0)


# ------------------------------------------------------------------ profile

def profile_dopis(server="dopis-tcpserver", wl=None):
    """perf (cpu-clock) over one run of the 16-session, one message per
    connection, 1 KiB workload; where dopis's CPU time goes."""
    wl = wl or ("profile", N_SMALL, 1024, 16, True)
    data = os.path.join(WORK, "perf.data")
    try:
        probe = subprocess.run(["perf", "stat", "-e", "cpu-clock", "true"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if probe.returncode:
            return None
    except FileNotFoundError:
        return None
    # attached to tcpserver: perf follows every smtpd and deliver it
    # starts, and nothing else on the machine
    pids = ",".join(str(p) for p in server_pids(server))
    # with call graphs (-g): the kernel's stacks say which system call a
    # sample of smtpd's start-up belongs to (execve, the seccomp filter)
    pr = subprocess.Popen(["perf", "record", "-q", "-g", "-e", "cpu-clock", "-F", "4000",
                           "-p", pids, "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    r = one_run(server, wl)
    pr.send_signal(signal.SIGINT)
    pr.wait()
    out = {"run": r}
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm",
                          "--stdio", "-g", "none"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out["by_comm"] = parse_perf(rep.stdout.decode(errors="replace"))
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm,dso",
                          "--stdio", "-g", "none"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out["by_dso"] = parse_perf(rep.stdout.decode(errors="replace"))[:25]
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "sym",
                          "--stdio", "-g", "none"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out["by_sym"] = parse_perf(rep.stdout.decode(errors="replace"))[:25]
    # per program, the share of its own samples spent under each
    # function, callees included (--children): where a start goes
    out["children"] = {}
    for comm in ("smtpd", "deliver", "tcpserver"):
        rep = subprocess.run(["perf", "report", "-i", data, "--children", "--comm", comm,
                              "--percentage", "relative", "--sort", "sym", "--stdio", "-g", "none"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        rows = {}
        for line in rep.stdout.decode(errors="replace").splitlines():
            m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[([k.])\]\s+(\S+)", line)
            if m and m.group(4) in PERF_PARTS:
                rows.setdefault(m.group(4), float(m.group(1)))
        out["children"][comm] = rows
    os.unlink(data)
    return out


# kernel (and libc) functions whose inclusive share of a program's samples
# the report names: exec, the seccomp filter (and its BPF JIT), fork,
# exit, page faults, the socket calls
PERF_PARTS = ("__x64_sys_execve", "do_execveat_common.isra.0", "bprm_execve", "load_elf_binary",
              "do_seccomp", "seccomp_set_mode_filter", "bpf_prog_select_runtime", "bpf_int_jit_compile",
              "bpf_jit_binary_pack_finalize", "__do_sys_clone", "__do_sys_clone3", "kernel_clone",
              "__x64_sys_exit_group", "do_exit", "do_group_exit", "exit_mmap", "asm_exc_page_fault",
              "exc_page_fault", "entry_SYSCALL_64", "__libc_start_main_impl", "_dl_relocate_object",
              "_dl_start", "_start", "__x64_sys_prctl", "__do_sys_prctl")


def parse_perf(text):
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*\S)\s*$", line)
        if m and not line.lstrip().startswith("#"):
            rows.append((float(m.group(1)), re.sub(r"\s{2,}", "  ", m.group(2))))
    return rows


def syscall_time(server="dopis-tcpserver", n=None):
    """strace -c -f (wall time per system call) over the profiled workload,
    for the one thing perf cannot see: time spent waiting (fsync)."""
    n = n or N_SMALL // 4
    pids = server_pids(server)
    outf = os.path.join(LOGS, "strace-time-%s.txt" % server)
    args = ["strace", "-f", "-c", "-w", "-o", outf]
    for p in pids:
        args += ["-p", str(p)]
    clean_server(server)
    st = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    subprocess.run(smtp_source(PORTS[server], n, 1024, 16, True), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=pf_env())
    time.sleep(0.5)
    st.send_signal(signal.SIGINT)
    st.wait()
    rows = []
    with open(outf) as f:
        for line in f:
            m = re.match(r"\s*([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$", line)
            if m:
                rows.append({"pct": float(m.group(1)), "secs": float(m.group(2)),
                             "calls": int(m.group(4)), "name": m.group(6)})
    clean_server(server)
    return {"n": n, "rows": rows[:15]}


def exec_costs(conf):
    """fork+exec+exit per second, both CPUs busy (2 loops): the static
    no-op, dopis's smtpd (to its end of input; static, as make builds
    it), the dynamically linked smtpd of the comparison, and deliver
    (which fails at once on empty input), likewise both builds."""
    res = {}
    progs = [("noop (static)", os.path.join(TOOLS, "noop")), ("smtpd", DOPIS + "/smtpd"),
             ("smtpd, dynamically linked (comparison)", DYNAMIC_SMTPD), ("deliver", DOPIS + "/deliver"),
             ("deliver, dynamically linked (comparison)", DYNAMIC_DELIVER)]
    env = dopis_env(conf)
    for label, prog in progs:
        if not os.path.exists(prog):
            continue
        rates = []
        for _ in range(2):
            wait_quiet(5)
            out = run([os.path.join(TOOLS, "forkexec"), prog, "2", "1.0"], env=env)
            rates.append(float(out.split()[0]))
        res[label] = {"rate": statistics.median(rates), "cpu_ms": 2000 / statistics.median(rates)}
    return res


def relay_syscalls(conf, etc):
    """System calls per relayed message: strace -f -c over a relay of
    N_RELAY/4 messages, dopis's relay and all of Postfix's processes."""
    res = {}
    n = N_RELAY // 4
    names = "fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,link,linkat,connect"
    for server in ("dopis", "postfix"):
        port = PORTS["dopis-tcpserver" if server == "dopis" else "postfix"]
        qs = "dopis-tcpserver" if server == "dopis" else "postfix"
        per = max(1, n // RELAY_DOMAINS)
        procs = [subprocess.Popen(smtp_source(port, per, 1024, 1, False,
                                              rcpt="user%d@d%d.relay.test" % (i, i)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=pf_env())
                 for i in range(1, RELAY_DOMAINS + 1)]
        for p in procs:
            p.wait()
        total = per * RELAY_DOMAINS
        total = wait_queued(qs, total)
        outf = os.path.join(LOGS, "strace-relay-%s.txt" % server)
        if server == "dopis":
            env = dict(dopis_env(conf), NAMESERVERS="127.0.0.1")
            t0 = time.monotonic()
            subprocess.run(["strace", "-f", "-c", "-w", "-o", outf, "-e", "trace=" + names,
                            "setpriv", "--reuid", str(USERS["bench"]), "--regid", str(USERS["bench"]),
                            "--clear-groups", DOPIS + "/relay"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.monotonic() - t0
            wait_empty(qs, time.monotonic())
        else:
            args = ["strace", "-f", "-c", "-o", outf, "-e", "trace=" + names]
            for pid in server_pids("postfix"):
                args += ["-p", str(pid)]
            st = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            run([os.path.join(PF, "usr/sbin/postsuper"), "-c", etc, "-H", "ALL"], env=pf_env())
            run([os.path.join(PF, "usr/sbin/postqueue"), "-c", etc, "-f"], env=pf_env())
            wait_empty(qs, time.monotonic())
            time.sleep(0.5)
            st.send_signal(signal.SIGINT)
            st.wait()
        calls, secs = {}, {}
        with open(outf) as f:
            for line in f:
                m = re.match(r"\s*[\d.]+\s+([\d.]+)\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
                if m:
                    calls[m.group(3)] = int(m.group(2))
                    secs[m.group(3)] = float(m.group(1))
        per_msg = lambda *xs: sum(calls.get(x, 0) for x in xs) / total
        res[server] = {"fsync": per_msg("fsync", "fdatasync"),
                       "rename_link": per_msg("rename", "renameat", "renameat2", "link", "linkat"),
                       "unlink": per_msg("unlink", "unlinkat"), "connect": per_msg("connect"),
                       "messages": total}
        if server == "dopis":
            # wall time in fsync against the relay's whole run (under strace)
            res[server]["elapsed_s"] = elapsed
            res[server]["fsync_s"] = secs.get("fsync", 0) + secs.get("fdatasync", 0)
    return res


# ------------------------------------------------------------------ facts

def machine_facts():
    f = {}
    with open("/proc/cpuinfo") as c:
        for line in c:
            if line.startswith("model name"):
                f["cpu"] = line.split(":", 1)[1].strip()
                break
    f["cores"] = os.cpu_count()
    f["kernel"] = platform.release()
    with open("/proc/meminfo") as m:
        f["memory_gib"] = round(int(m.readline().split()[1]) / 1024 / 1024, 1)
    for line in open("/proc/mounts"):
        parts = line.split()
        if parts[1] == FS:
            f["fs"] = "%s on %s (%s), a fresh 8 GiB image made by mkfs.ext4 -q -F" % (
                parts[2], parts[0], parts[3])
        if parts[1] == "/":
            f["rootfs"] = "%s on %s (%s)" % (parts[2], parts[0], parts[3])
    tune = run(["dumpe2fs", "-h", IMG], check=False)
    m = re.search(r"Filesystem features:\s*(.*)", tune)
    f["fs_features"] = m.group(1).strip() if m else "?"
    return f


def versions():
    v = {}
    head = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False).strip()
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                check=False).strip()
    v["dopis"] = "git %s%s" % (head, " (with uncommitted changes)" if dirty else "")
    for pkg, d in (("postfix", PF), ("opensmtpd", OS)):
        debs = [x for x in os.listdir(os.path.join(PEERS, "deb")) if x.startswith(pkg + "_")]
        v[pkg] = debs[0].split("_")[1] if debs else "?"
    for pkg in ("ucspi-tcp", "systemd", "dnsmasq-base", "gcc", "libtls28", "libowfat-dev"):
        v[pkg] = run(["dpkg-query", "-W", "-f=${Version}", pkg], check=False).strip() or "?"
    v["python3"] = platform.python_version()
    return v


# ------------------------------------------------------------------ main

def save(results):
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def med(xs):
    return statistics.median(xs) if xs else None


def main():
    results = {"quick": QUICK, "runs": RUNS, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "n_small": N_SMALL, "n_big": N_BIG, "n_relay": N_RELAY,
               "relay_domains": RELAY_DOMAINS, "relay_runs": RELAY_RUNS}
    t_start = time.monotonic()
    cg_setup()
    results["cgroups"] = CG_ON
    results["postfix_settings"] = PF_SETTINGS
    results["opensmtpd_settings"] = OS_SETTINGS
    setup_namespace()
    results["machine"] = machine_facts()
    results["versions"] = versions()
    start_dns()
    conf = setup_dopis()
    etc = setup_postfix()
    osconf = setup_opensmtpd()
    start_dopis_tcpserver(conf, PORTS["dopis-tcpserver"], "dopis-tcpserver")
    start_dopis_socket(conf, PORTS["dopis-socket"])
    start_postfix(etc)
    start_opensmtpd(osconf)
    servers_all = list(SERVERS)
    if os.path.exists(DYNAMIC_SMTPD) and os.path.exists(DYNAMIC_DELIVER):
        dconf = setup_dopis("dopis-conf-dynamic", DYNAMIC_DELIVER)
        start_dopis_tcpserver(dconf, PORTS["dopis-dynamic"], "dopis-dynamic", smtpd=DYNAMIC_SMTPD)
        servers_all.append("dopis-dynamic")
    start("smtp-sink", [os.path.join(PF, "usr/sbin/smtp-sink"), "-u", "bench",
                        "%s:25" % SINK, "1024"], env=pf_env())
    wait_port(25, host=SINK)
    log("servers up; warming up")
    warm_up()
    phases = os.environ.get("BENCH_PHASES", "rounds,relay,memory,durability,profile").split(",")

    results["limits"] = []
    results["runs_raw"] = {w[0]: {s: [] for s in servers_all} for w in WORKLOADS}
    for rnd in range(RUNS if "rounds" in phases else 0):
        log("round %d of %d: limits" % (rnd + 1, RUNS))
        results["limits"].append(limits_once())
        for wi, wl in enumerate(WORKLOADS):
            here = [x for x in servers_all if x != "dopis-dynamic" or wl[0] in COMPARISON_WORKLOADS]
            k = (rnd + wi) % len(here)
            order = here[k:] + here[:k]
            for s in order:
                r = one_run(s, wl)
                results["runs_raw"][wl[0]][s].append(r)
                log("  %-14s %-16s accepted %7.1f/s delivered %7.1f/s"
                    % (wl[0], s, r["accepted"], r["delivered"]))
        save(results)

    log("relay")
    results["relay"] = {"dopis": [], "postfix": []}
    for rnd in range(RELAY_RUNS if "relay" in phases else 0):
        order = [("dopis", lambda: relay_dopis(conf)), ("postfix", lambda: relay_postfix(etc))]
        k = rnd % len(order)
        for name, fn in order[k:] + order[:k]:
            r = fn()
            results["relay"][name].append(r)
            log("  relay %-10s %7.1f msg/s" % (name, r["rate"]))

    if "memory" in phases:
        save(results)
        log("memory")
        results["peer_memory"] = peer_memory()
        results["dopis_memory"] = dopis_memory(conf)
        if "dopis-dynamic" in servers_all:
            results["dopis_memory_dynamic"] = dopis_memory(
                dconf, DYNAMIC_SMTPD, [("1 KiB, 16 sessions, one per connection", N_SMALL // 4, 1024, 16, True),
                                     ("one 50 MB message", 1, BIG_MESSAGE, 1, True)])
        # TLS configured: plaintext sessions (smtp-source), and STARTTLS
        # ones, in which dopis-tlsd does the TLS
        results["dopis_memory_tls"] = dopis_memory(
            setup_dopis_tls(), None, [("1 KiB, 16 sessions, one per connection", N_SMALL // 4, 1024, 16, True),
                                      ("1 KiB, STARTTLS, one per connection", 50, 1024, "starttls", True)])
    if "durability" in phases:
        save(results)
        log("durability (strace)")
        results["durability"] = fsync_counts(server_pids)
    if "profile" in phases:
        save(results)
        log("profile")
        results["profile"] = profile_dopis()
        results["syscalls"] = syscall_time()
        results["exec_costs"] = exec_costs(conf)
        results["relay_syscalls"] = relay_syscalls(conf, etc)
    results["elapsed_s"] = time.monotonic() - t_start
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    if os.getuid() != 0:
        sys.exit("bench.py: run it through bench/bench.sh (root, in unshare -n -m)")
    if len(sys.argv) > 1 and sys.argv[1] == "--report":
        res = json.load(open(os.path.join(WORK, "results.json")))
    else:
        if os.path.isdir(LOGS):
            shutil.rmtree(LOGS)
        os.makedirs(LOGS)
        try:
            res = main()
        finally:
            stop_all()
            unmount_all()
            cg_remove()
            if os.path.exists(IMG):
                os.unlink(IMG)
    sys.path.insert(0, B)
    import report  # noqa: E402
    report.write(res, B, WORK)
