#!/usr/bin/python3
"""Interop: fault injection (issue 6) against smtpd under tcpserver.

disk-full     the mailroot and the queue on a tmpfs of 256 KiB mounted by
              the test (needs root; skipped otherwise).  With the
              filesystem full, a message is answered 451 4.3.0 (deliver
              exits 75), nothing is half-written (no file in any new/,
              none left in any tmp/ or in queue/tmp/); once the space is
              freed the next message is answered 250 and delivered.
kill-deliver  ~200 messages (120 in the sanitizer build), each to one or
              two local users, through a `deliver =` wrapper that runs
              one deliver in two under strace, which kills it with
              SIGKILL on entry to a chosen system call (the n-th read,
              openat, write, copy_file_range, fsync, rename, or
              exit_group: after the last rename), from a plan drawn with
              a fixed seed (DOPIS_FAULT_SEED).  The
              client behaves like an MTA: a message answered 4xx is sent
              again (a new attempt with a new Message-ID, the same
              Subject), up to 16 times.  Checked: every attempt answered
              250 is in each recipient's Maildir exactly once; no message
              is lost; an attempt answered 451 that is in a Maildir
              anyway (the one window SMTP allows: killed after the rename
              and before its exit status reached smtpd) is counted as a
              duplicate and reported, not failed.  Killed delivers may
              leave files in Maildir tmp/ (the Maildir convention: never
              visible, swept later); they are counted, not failed.
              Prints one line the README quotes:
                kill-deliver: sent N, kills injected K, answered 250 A,
                delivered D, lost 0, duplicates n

Run by tests/run.py (once per build); alone:
    unshare -n sh tests/netns.sh /usr/bin/python3 tests/interop_faults.py
"""

import os
import random
import re
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dopistest as T  # noqa: E402

PASS, SMTPD, DELIVER, SANITIZED = T.this_build()
BASE = os.path.join(T.WORK, PASS, "interop_faults")
R = T.Results()

NMSG = 120 if SANITIZED else 200
MAX_TRIES = 16


def sub_files(tmp, sub):
    """Every file in a directory named sub (new, tmp, cur) in the
    Maildirs under tmp/fs/mail, and for "tmp" in the queue's tmp/."""
    out = []
    for root, dirs, names in os.walk(tmp):
        if os.path.basename(root) == sub:
            out += [os.path.join(root, n) for n in names]
    return out


# ---------------------------------------------------------------- disk full

def test_disk_full():
    tmp = os.path.join(BASE, "disk-full")
    if os.geteuid() != 0:
        return R.run("faults-disk-full", lambda: [])  # needs root for mount; nothing to check
    T.fresh_dir(tmp)
    fs = os.path.join(tmp, "fs")
    os.makedirs(fs)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", fs],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        return R.run("faults-disk-full", lambda: ["mount -t tmpfs failed: %s" % mounted.stderr])
    srv = None
    try:
        # setup() wipes tmp: the mount point is a subdirectory it keeps
        # out of by writing the configuration under tmp/conf only
        confdir = os.path.join(tmp, "conf")
        os.makedirs(confdir, exist_ok=True)
        os.makedirs(os.path.join(fs, "mail"))
        os.makedirs(os.path.join(fs, "queue"))
        conf = T.default_conf(tmp, DELIVER)
        conf["mailroot"] = os.path.join(fs, "mail")
        conf["queue"] = os.path.join(fs, "queue")
        with open(os.path.join(confdir, "dopis.conf"), "w") as f:
            f.write("".join("%s = %s\n" % kv for kv in conf.items()))
        for name, lines in T.default_files(tmp).items():
            with open(os.path.join(confdir, name), "w", encoding="latin-1") as f:
                f.write("".join(l + "\n" for l in lines))
        srv, port = T.start_tcpserver(tmp, confdir, SMTPD, SANITIZED)

        def check():
            probs = []
            body = ("x" * 70 + "\r\n") * 100     # 7 KB (max_message_size 10000)
            msg = lambda n: ("From: a@remote.test\r\nTo: alice@example.org\r\n"  # noqa: E731
                             "Subject: disk-full %d\r\nMessage-ID: <df-%d@remote.test>\r\n\r\n%s"
                             % (n, n, body)).encode()
            # a first message creates alice's Maildir (and the queue's dirs)
            with T.smtp(port) as s:
                s.sendmail("a@remote.test", ["alice@example.org"], msg(1))
            # fill the filesystem: one big file, then small ones for the rest
            filler = os.path.join(fs, "filler")
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError:
                pass
            os.close(fd)
            n = 0
            while True:
                try:
                    fd = os.open(os.path.join(fs, "fill%d" % n), os.O_WRONLY | os.O_CREAT, 0o600)
                    n += 1
                    os.write(fd, b"\0")
                    os.close(fd)
                except OSError:
                    break
            before_new = set(sub_files(fs, "new"))
            with T.smtp(port) as s:
                code = None
                try:
                    s.sendmail("a@remote.test", ["alice@example.org", "bob@example.org"], msg(2))
                    probs.append("a message was accepted (250) on a full filesystem")
                except smtplib.SMTPDataError as e:
                    code, text = e.smtp_code, e.smtp_error
                    if code not in (451, 452) or not re.match(rb"4\.3\.[01] ", text):
                        probs.append("full disk: %d %r, expected 451 4.3.0 or 452 4.3.1" % (code, text))
                    print("    disk full: smtpd answered %d %s" % (code, text.decode("latin-1")))
                except smtplib.SMTPRecipientsRefused as e:
                    probs.append("full disk: RCPT refused %r (expected the refusal after DATA)" % e.recipients)
                c, _ = s.noop()
                if c != 250:
                    probs.append("NOOP after the failure: %d" % c)
            if set(sub_files(fs, "new")) != before_new:
                probs.append("something appeared in a new/ on a full filesystem: %s" % sorted(
                    set(sub_files(fs, "new")) - before_new))
            left = sub_files(fs, "tmp")
            if left:
                probs.append("half-written files left in tmp/: %s" % left)
            if T.queue_count(fs):
                probs.append("a message was queued on a full filesystem")
            # free the space: the next message goes through
            os.unlink(filler)
            for i in range(n):
                os.unlink(os.path.join(fs, "fill%d" % i))
            with T.smtp(port) as s:
                try:
                    s.sendmail("a@remote.test", ["alice@example.org", "bob@example.org"], msg(3))
                except smtplib.SMTPException as e:
                    probs.append("after freeing space: %r" % e)
            got = {}
            for f in sub_files(fs, "new"):
                with open(f, "rb") as fh:
                    m = re.search(rb"^Subject: (disk-full \d+)", fh.read(), re.M)
                got.setdefault(m.group(1).decode() if m else f, []).append(f)
            want = {"disk-full 1": 1, "disk-full 3": 2}
            have = {k: len(v) for k, v in got.items()}
            if have != want:
                probs.append("delivered %r, expected %r" % (have, want))
            left = sub_files(fs, "tmp")
            if left:
                probs.append("files left in tmp/: %s" % left)
            return probs
        ok = R.run("faults-disk-full", check)
    except Exception as e:
        ok = R.run("faults-disk-full", lambda: ["could not start: %r" % e])
    finally:
        T.stop(srv)
        subprocess.run(["umount", "-l", fs], capture_output=True)
    err = T.server_log(tmp)
    rep = T.sanitizer_report(err) if SANITIZED else ""
    if rep:
        R.run("faults-disk-full-sanitizer", lambda: ["sanitizer report:\n" + rep])
    elif not ok:
        print("    server log:\n" + "\n".join("      " + l for l in err.splitlines()[-10:]))


# ---------------------------------------------------------------- kill -9

# test wrapper of deliver: the n-th run takes the n-th line of the plan,
# "-" (run deliver as it is) or "SYSCALL WHEN": deliver runs under
# strace, which kills it with SIGKILL as it enters its WHEN-th SYSCALL.
# Deterministic where a timer is not: the kill lands inside deliver on
# a fast machine as on a slow one.  A kill is recorded, then passed on
# to smtpd as the wrapper's own death by SIGKILL.
WRAPPER = r"""#!/bin/sh
n=$(cat "%(dir)s/count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" >"%(dir)s/count"
set -- $(sed -n "${n}p" "%(dir)s/plan")
[ "${1:--}" = - ] && exec "%(deliver)s"
# LeakSanitizer cannot run under ptrace
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
strace -qq -o /dev/null -e trace="$1" -e inject="$1":signal=KILL:when="$2" "%(deliver)s"
rc=$?
if [ "$rc" -eq 137 ]; then
  echo "$1:$2" >>"%(dir)s/kills"
  kill -9 $$
fi
exit "$rc"
"""

# where deliver is killed: (system call, how many of them to choose
# from); exit_group is after the last rename and directory fsync, the
# window in which a message is delivered but answered 451
KILL_POINTS = [("read", 4), ("openat", 12), ("write", 3), ("copy_file_range", 1),
               ("fsync", 3), ("rename", 2), ("exit_group", 1)]


def test_kill_deliver():
    tmp = os.path.join(BASE, "kill-deliver")
    T.fresh_dir(tmp)
    wrapper = os.path.join(tmp, "deliver-killer")
    state = os.path.join(tmp, "killer")
    kills = os.path.join(state, "kills")
    confdir = T.setup(tmp, DELIVER, {"deliver": wrapper})
    os.makedirs(state)
    with open(wrapper, "w") as f:
        f.write(WRAPPER % {"dir": state, "deliver": DELIVER})
    os.chmod(wrapper, 0o755)
    rnd = random.Random(int(os.environ.get("DOPIS_FAULT_SEED", "6")))
    with open(os.path.join(state, "plan"), "w") as f:
        for _ in range(NMSG * MAX_TRIES):
            if rnd.random() < 0.5:
                f.write("-\n")
            else:
                sc, most = rnd.choice(KILL_POINTS)
                f.write("%s %d\n" % (sc, rnd.randint(1, most)))
    srv = None
    try:
        srv, port = T.start_tcpserver(tmp, confdir, SMTPD, SANITIZED)

        def check():
            probs = []
            answered = {}      # attempt id -> (code, rcpts, subject)
            unsent = []
            attempt = 0
            body = "".join("line %d of the body\r\n" % i for i in range(60))
            for n in range(NMSG):
                rcpts = ["alice@example.org"] if n % 2 else ["alice@example.org", "bob@example.org"]
                subj = "kill-test %d" % n
                done = False
                for _ in range(MAX_TRIES):
                    attempt += 1
                    mid = "<kill-%d@remote.test>" % attempt
                    msg = ("From: a@remote.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n\r\n%s"
                           % (", ".join(rcpts), subj, mid, body)).encode()
                    code = None
                    try:
                        with T.smtp(port) as s:
                            s.sendmail("a@remote.test", rcpts, msg)
                            code = 250
                    except smtplib.SMTPDataError as e:
                        code = e.smtp_code
                        if code != 451:
                            probs.append("attempt %s: %d %r" % (mid, code, e.smtp_error))
                    except (smtplib.SMTPException, OSError) as e:
                        probs.append("attempt %s: %r" % (mid, e))
                        code = -1
                    answered[mid] = (code, rcpts, subj)
                    if code == 250:
                        done = True
                        break
                    time.sleep(rnd.random() * 0.01)
                if not done:
                    unsent.append(subj)
            # read back every Maildir
            copies = {}        # (message id, rcpt) -> count
            for rc in ("alice@example.org", "bob@example.org"):
                for f in T.maildir_files(T.maildir_of(tmp, rc)):
                    with open(f, "rb") as fh:
                        m = re.search(rb"^Message-ID: (<kill-\d+@remote.test>)", fh.read(), re.M)
                    if not m:
                        probs.append("%s: no Message-ID (a partial file?)" % f)
                        continue
                    k = (m.group(1).decode(), rc)
                    copies[k] = copies.get(k, 0) + 1
            ok250 = [mid for mid, a in answered.items() if a[0] == 250]
            for mid in ok250:
                for rc in answered[mid][1]:
                    c = copies.get((mid, rc), 0)
                    if c != 1:
                        probs.append("%s answered 250: %d copies for %s" % (mid, c, rc))
            dup_attempts = 0
            per_subject = {}
            for (mid, rc), c in copies.items():
                code, rcpts, subj = answered.get(mid, (None, [], None))
                if code is None or rc not in rcpts:
                    probs.append("%s delivered to %s but never sent there" % (mid, rc))
                    continue
                if code != 250:
                    dup_attempts += 1
                per_subject[(subj, rc)] = per_subject.get((subj, rc), 0) + c
            # a 451'd attempt: deliver died after the final dot, before
            # smtpd could reply -- the one window SMTP allows.  Killed
            # while renaming into several new/ directories (which no
            # rename makes atomic), it can be in some Maildirs; the
            # client's retry then duplicates those copies.  Counted,
            # not hidden; what must hold is that every 250 is delivered
            # (checked below: lost 0).
            nothing = everywhere = partial = 0
            for mid, (code, rcpts, subj) in answered.items():
                if code == 250:
                    continue
                have = [rc for rc in rcpts if copies.get((mid, rc))]
                if not have:
                    nothing += 1
                elif len(have) == len(rcpts):
                    everywhere += 1
                else:
                    partial += 1
            print("    kill-deliver: attempts answered 451: %d delivered nowhere, %d to every "
                  "recipient, %d to some (killed between its renames); the last two are the "
                  "duplicate window" % (nothing, everywhere, partial))
            lost = 0
            dups = 0
            for mid, (code, rcpts, subj) in answered.items():
                for rc in rcpts:
                    n = per_subject.get((subj, rc), 0)
                    if code == 250 and n == 0:
                        lost += 1
            for k, n in per_subject.items():
                if n > 1:
                    dups += n - 1
            where = {}
            if os.path.exists(kills):
                with open(kills) as f:
                    for k in f.read().split():
                        sc = k.split(":")[0]
                        where[sc] = where.get(sc, 0) + 1
            nkills = sum(where.values())
            print("    kill-deliver: killed at " + ", ".join(
                "%s %d" % (sc, where.get(sc, 0)) for sc, _ in KILL_POINTS))
            leftovers = sum(len(T.maildir_files(md, "tmp")) for md in T.all_maildirs(tmp))
            delivered = sum(copies.values())
            print("    kill-deliver: sent %d messages (%d attempts, %d recipients' copies answered 250), "
                  "kills injected %d, answered 250 %d, answered 451 %d, delivered %d copies, "
                  "lost %d, duplicates %d (451 but delivered: %d), left in tmp/ %d" % (
                      NMSG, attempt, sum(len(answered[m][1]) for m in ok250), nkills, len(ok250),
                      sum(1 for a in answered.values() if a[0] == 451), delivered, lost, dups,
                      dup_attempts, leftovers))
            if lost:
                probs.append("%d messages answered 250 were lost" % lost)
            if unsent:
                probs.append("%d messages never answered 250 in %d tries: %s" % (
                    len(unsent), MAX_TRIES, unsent[:5]))
            if nkills < NMSG // 4:
                probs.append("only %d kills hit a running deliver: the fault injection did not work"
                             % nkills)
            missed = [sc for sc, _ in KILL_POINTS if not where.get(sc)]
            if missed:
                probs.append("deliver was never killed at %s" % ", ".join(missed))
            return probs + T.queue_problems(tmp)
        ok = R.run("faults-kill-deliver", check)
    except Exception as e:
        ok = R.run("faults-kill-deliver", lambda: ["could not start the server: %r" % e])
    finally:
        T.stop(srv)
    err = T.server_log(tmp)
    rep = T.sanitizer_report(err) if SANITIZED else ""
    if rep:
        R.run("faults-kill-deliver-sanitizer", lambda: ["sanitizer report:\n" + rep])
    elif not ok:
        print("    server log:\n" + "\n".join("      " + l for l in err.splitlines()[-10:]))


def main():
    test_disk_full()
    test_kill_deliver()
    R.exit()


if __name__ == "__main__":
    main()
