#!/usr/bin/python3
"""Crash test of the relay: kill -9 at chosen moments, many times, over
a queue of many messages, then let it finish; no recipient may be lost,
and a recipient may arrive twice only through the one window SMTP
allows (our final dot sent, the reply not yet recorded): so at most one
duplicated transaction per kill.  The same for failure reports: every
bounced recipient is reported, duplicates (a kill between deliver's
exit and the state record) are counted.

Peers: Postfix's smtp-sink, one accepting everything (sink.test,
sink2.test), one refusing every RCPT with 5xx (bounce.test); dnsmasq
for the MX records.  Shares its set-up with interop_relay.py.

The kills: each relay runs under strace, which sends it SIGKILL on
entry to the n-th call of a system call drawn from a seeded plan
(read, sendto, openat, rename, unlink, fsync, write, poll): a
kill lands inside the relay however fast the machine is, where a timer
would mostly find it already gone.  The test fails if fewer than half
the runs were killed.

When the queue does not end empty, the failure shows what the relay
logged in the passes that should have emptied it; every relay's log is
kept in tests/work/PASS/interop_relay_crash/logs/.

Run by tests/run.py once per build; alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_relay_crash.py
"""

import collections
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_relay as IR  # noqa: E402
import dopistest as T  # noqa: E402

NMSG = 150
KILLS = 40
# (system call, the n-th call is drawn from 1..most)
# (small: each run gets a few transactions further; one that is not
# killed works off the whole queue)
KILL_POINTS = [("read", 12), ("sendto", 12), ("openat", 160), ("rename", 3), ("unlink", 6),
               ("fsync", 6), ("write", 12), ("poll", 16)]
R = T.Results()


def make_queue():
    """Messages with 1-3 recipients over three domains; returns the
    expected deliveries {(seq, rcpt)} and bounces {(seq, rcpt)}."""
    rnd = random.Random(1234)
    want, bounce = set(), set()
    for i in range(NMSG):
        rcpts = []
        for j in range(rnd.randint(1, 3)):
            dom = rnd.choice(["sink.test", "sink.test", "sink2.test", "bounce.test"])
            rcpts.append("r%d.%d@%s" % (i, j, dom))
        body = b"line\n" * rnd.randint(1, 2000)
        IR.deliver("alice@example.org", rcpts, IR.message("crash %d" % i, body))
        for r in rcpts:
            (bounce if r.endswith("@bounce.test") else want).add((i, r))
    return want, bounce


def received(sink):
    """{(seq, rcpt): times} from the smtp-sink dumps."""
    got = {}
    for f in sink.files():
        with open(f, "rb") as fh:
            d = fh.read()
        m = re.search(rb"^Subject: crash (\d+)$", d, re.M)
        if not m:
            continue
        seq = int(m.group(1))
        for r in re.findall(rb"^X-Rcpt-Args: <([^>]*)>", d, re.M):
            k = (seq, r.decode())
            got[k] = got.get(k, 0) + 1
    return got


def reported():
    """{(seq, rcpt): times} from the failure reports in alice's Maildir."""
    got = {}
    for m in IR.mails("alice@example.org"):
        try:
            per, rcpts, orig = IR.dsn_fields(m)
        except AssertionError:
            continue
        s = re.search(r"^Subject: crash (\d+)$", orig.get_payload() if isinstance(orig.get_payload(), str)
                      else str(orig.get_payload()[0]), re.M)
        if not s:
            continue
        for x in rcpts:
            if x["Action"] != "failed":
                continue
            r = x["Final-Recipient"].split(";", 1)[1].strip()
            k = (int(s.group(1)), r)
            got[k] = got.get(k, 0) + 1
    return got


def queue_states():
    """What the queue holds: {(state, attempts, status, text): recipients}."""
    c = collections.Counter()
    for m in IR.infos().values():
        for _, st in m["rcpts"]:
            c[(st["state"], st["attempts"], st.get("status", "-"), st.get("text", ""))] += 1
    return c


def info_without_mess():
    """Info files whose message file is gone: the relay leaves such an
    entry alone ("no-message"), so it never leaves the queue."""
    def ls(sub):
        d = os.path.join(IR.TMP, "queue", sub)
        return set(os.listdir(d)) if os.path.isdir(d) else set()
    return sorted(ls("info") - ls("mess"))


def pass_summary(err):
    """One line for a relay's log (with the log of the delivers it ran):
    its events and results, counted."""
    c = collections.Counter()
    for line in err.splitlines():
        m = re.match(r"(\S+) .*?\b(?:event|status)=(\S+)", line)
        c["%s %s" % m.groups() if m else "other"] += 1
    return ", ".join("%s %d" % kv for kv in sorted(c.items())) or "nothing logged"


def t_kill_loop(sink, bsink, logdir):
    # one connection at a time: a kill can then catch one transaction
    # at most between its final dot and its state record
    IR.setup("crash", {"retry_min": "1", "retry_max": "1", "max_connections": "1"})
    sink.clear()
    T.fresh_dir(logdir)
    want, bounce = make_queue()
    rnd = random.Random(99)
    kills = 0
    where = collections.Counter()
    # LeakSanitizer cannot run under ptrace
    env = dict(IR.env(), ASAN_OPTIONS=(os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":"))
    for k in range(KILLS):
        if T.queue_count(IR.TMP) == 0:
            break
        sc, most = rnd.choice(KILL_POINTS)
        when = rnd.randint(1, most)
        with open(os.path.join(logdir, "kill-%02d.log" % k), "wb") as log:
            p = subprocess.run(["strace", "-qq", "-o", "/dev/null", "-e", "trace=" + sc,
                                "-e", "inject=%s:signal=KILL:when=%d" % (sc, when), IR.RELAY, "-f"],
                               env=env, stdout=subprocess.DEVNULL, stderr=log, timeout=60)
        if p.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
            kills += 1
            where[sc] += 1
    print("    relay killed at: " + ", ".join("%s %d" % (sc, where[sc]) for sc, _ in KILL_POINTS))
    # then to completion: every run is a full pass
    passes = []
    for k in range(10):
        if T.queue_count(IR.TMP) == 0:
            break
        rc, err = IR.relay("-f", timeout=120)
        passes.append(err)
        with open(os.path.join(logdir, "pass-%02d.log" % k), "w") as log:
            log.write(err)
        if rc != 0:
            return ["relay exited %d: %s" % (rc, err[-2000:])]
    probs = []
    if kills < KILLS // 2:
        probs.append("only %d of %d relays were killed: the fault injection did not work" % (kills, KILLS))
    # nothing but this test touches the queue now: a pass that finds it
    # locked did not run, and the checks below would blame the relay
    for k, err in enumerate(passes):
        if "event=busy" in err:
            probs.append("pass %d after the kills found the queue locked: %s" % (k, err.strip()[-500:]))
    orphans = info_without_mess()
    if orphans:
        probs.append("%d info files without their message, never sent: %s" % (len(orphans), orphans[:5]))
    if T.queue_count(IR.TMP):
        left = queue_states()
        probs.append("queue not empty at the end: %d messages; recipients (state, attempts, "
                     "status, text): %s; e.g. %r" % (
                         T.queue_count(IR.TMP),
                         "; ".join("%d %r" % (n, k) for k, n in left.most_common(5)),
                         list(IR.infos().items())[:1]))
        for k, err in enumerate(passes):
            probs.append("  relay -f pass %d after the kills: %s" % (k, pass_summary(err)))
        if passes:
            probs.append("  its log, last lines:\n" + "\n".join(
                "      " + l for l in passes[-1].splitlines()[-15:]))
        else:
            probs.append("  no relay -f pass ran after the kills")
        probs.append("  every relay's log: %s" % logdir)
    got = received(sink)
    lost = sorted(want - set(got))
    extra = sorted(set(got) - want)
    dups = {k: n for k, n in got.items() if n > 1}
    rep = reported()
    blost = sorted(bounce - set(rep))
    bdups = {k: n for k, n in rep.items() if n > 1}
    print("    %d kills; %d deliveries expected, %d lost, %d duplicated (%d extra copies); "
          "%d bounces expected, %d unreported, %d reported twice" % (
              kills, len(want), len(lost), len(dups), sum(n - 1 for n in dups.values()),
              len(bounce), len(blost), len(bdups)))
    if lost:
        probs.append("lost deliveries: %r" % lost[:20])
    if extra:
        probs.append("deliveries nobody asked for: %r" % extra[:20])
    # a kill in the window after the dot duplicates one transaction
    # (one message to one domain) at most
    dup_txns = set((seq, r.split("@", 1)[1]) for (seq, r) in dups)
    if len(dup_txns) > kills:
        probs.append("%d duplicated transactions after %d kills" % (len(dup_txns), kills))
    if blost:
        probs.append("bounces never reported: %r" % blost[:20])
    if len(bdups) > kills:
        probs.append("%d twice-reported bounces after %d kills" % (len(bdups), kills))
    probs += T.maildir_problems(IR.TMP)
    tmpq = os.path.join(IR.TMP, "queue", "tmp")
    left = [f for f in os.listdir(tmpq)] if os.path.isdir(tmpq) else []
    if len(left) > kills:
        probs.append("%d files left in queue/tmp" % len(left))
    return probs


def main():
    base = T.fresh_dir(os.path.join(T.WORK, IR.PASS, "interop_relay_crash"))
    if not os.access(IR.RELAY, os.X_OK) or not os.access(IR.SINK, os.X_OK):
        print("FAIL interop_relay_crash: %s or %s is missing" % (IR.RELAY, IR.SINK))
        return 1
    IR.HOSTS.update({"mx.sink2.test": "127.0.0.12", "mx.bounce.test": "127.0.0.14"})
    IR.MX.extend([("sink2.test", "mx.sink2.test", 10), ("bounce.test", "mx.bounce.test", 10)])
    procs = []
    try:
        procs.append(IR.start_dnsmasq(base))
        sink = IR.Sink("127.0.0.12", base)
        bsink = IR.Sink("127.0.0.14", base, ["-f", "RCPT"])
        procs += [sink, bsink]
        R.run("relay_crash_kill9", t_kill_loop, sink, bsink, os.path.join(base, "logs"))
    finally:
        for p in procs:
            if isinstance(p, subprocess.Popen):
                T.stop(p)
            else:
                p.stop()
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
