#!/bin/sh
# AFL++ (Debian's afl++) on the real smtpd binary, one process per
# session, where fuzz_smtpd.c runs smtpd.c inside the harness: this
# also covers main(), the configuration, the broker and the real
# deliver.  make check does not run it.
#
#   sh fuzz/afl.sh [MINUTES]          (default 20; as root)
#
# It builds obj/afl (afl-clang-fast, ASan and UBSan), makes the corpus
# from the client side of tests/transcripts/*.smtp, writes the test
# configuration (tests/dopistest.py's) and runs afl-fuzz in a network
# namespace with only loopback: the first half of the time the client
# is local (no TCPREMOTEIP: afl's input file is no socket, a local
# program that may relay), the second half a remote host that may not
# relay (TCPREMOTEIP=192.0.2.9), starting from what the first found.
# Everything goes to $AFL_DIR (default /tmp/afl, wiped first); finds
# are in $AFL_DIR/out-*/default/crashes and hangs.  Reproduce one with
# DOPIS_CONF=$AFL_DIR/conf [TCPREMOTEIP=192.0.2.9] obj/asan/bin/smtpd <FILE
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
minutes=${1:-20}
dir=${AFL_DIR:-/tmp/afl}
spool=$dir/spool

AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1 make -s obj/afl/bin/smtpd obj/afl/bin/deliver \
  CC=afl-clang-fast OBJ=obj/afl BIN=obj/afl/bin STATIC= CFLAGS="-O1 -g"

if mountpoint -q "$spool"; then umount "$spool"; fi
rm -rf "$dir"
mkdir -p "$dir/raw" "$dir/conf" "$spool"
# accepted messages must not fill the disk (and the deliver wrapper
# below empties it after each one anyway)
mount -t tmpfs -o size=64M tmpfs "$spool" || echo "no tmpfs: $spool is a plain directory" >&2
mkdir -p "$spool/mail/example.org/alice/.news" "$spool/queue" "$spool/custom"

# the client's bytes, read with run.py's own parser; cut at 16384 bytes
# as fuzz/seeds.py does, so that a few huge seeds do not slow it all
/usr/bin/python3 - "$top/tests" "$dir/raw" <<'EOF'
import glob, os, sys
sys.path.insert(0, sys.argv[1])
import run
for p in sorted(glob.glob(os.path.join(sys.argv[1], "transcripts", "*.smtp"))):
    t = run.Transcript(p)
    with open(os.path.join(sys.argv[2], t.name), "wb") as f:
        f.write("".join(t.input).encode("latin-1")[:16384])
EOF

cat >"$dir/conf/dopis.conf" <<EOF
hostname = mx.example.org
mailroot = $spool/mail
queue = $spool/queue
deliver = $dir/deliver
max_message_size = 10000
max_recipients = 5
timeout = 2
EOF
printf 'example.org\nexample.net\n' >"$dir/conf/localdomains"
printf 'alice@example.org\nbob@example.org\ncarol@example.net\ndave@example.org %s/custom/dave/\n' \
  "$spool" >"$dir/conf/users"
cat >"$dir/conf/aliases" <<'EOF'
postmaster@example.org: alice@example.org
team@example.org: alice@example.org, bob@example.org
loop1@example.org: loop2@example.org
loop2@example.org: loop1@example.org
@example.net: carol@example.net
fwd@example.org: someone@remote.test
EOF
printf 'spammer@evil.test\n@evil.test\nbanned@example.org\n' >"$dir/conf/restricted"
printf '10.1.0.0/16\n2001:db8::/32\n' >"$dir/conf/relayclients"
# fuzz_smtpd.c's cheap hashes of "secret": yescrypt would cost 25 ms a try
cat >"$dir/conf/passwd" <<'EOF'
alice@example.org:$1$dopisfz$rjeQwDgPqZ6NmLJqkUpbT1
bob@example.org:$5$rounds=1000$dopisfuzz$9pSkfT6YxzN2n9UEzjb5a7PchmchLwvax4Du1GnoUnA
EOF

# The real deliver (ASan's reports to a log: afl sees only smtpd's
# status), then every file in the spool goes, so it stays small.
cat >"$dir/deliver" <<EOF
#!/bin/sh
LD_PRELOAD= ASAN_OPTIONS=log_path=$dir/deliver-asan:detect_leaks=0 $top/obj/afl/bin/deliver "\$@"
rc=\$?
[ \$rc -lt 128 ] || echo "deliver died: status \$rc" >>$dir/deliver.log
find $spool -type f -delete
exit \$rc
EOF
chmod 755 "$dir/deliver"

# smtpd sleeps a second more after each failed AUTH: every session that
# fails twice would be a slow one, three times a hang
printf 'unsigned sleep(unsigned s) { (void)s; return 0; }\n' >"$dir/nosleep.c"
cc -shared -fPIC -o "$dir/nosleep.so" "$dir/nosleep.c"

export DOPIS_CONF="$dir/conf" AFL_PRELOAD="$dir/nosleep.so"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
smtpd=$top/obj/afl/bin/smtpd
half=$((minutes * 30))
unshare -n sh -u -c '
  ip link set lo up
  dir=$1 smtpd=$2 half=$3 dict=$4
  AFL_ALLOW_TMP=1 afl-cmin -i "$dir/raw" -o "$dir/in" -m none -t 5000 -- "$smtpd" >"$dir/cmin.log" 2>&1 ||
    cp -r "$dir/raw" "$dir/in"
  afl-fuzz -i "$dir/in" -o "$dir/out-local" -x "$dict" -t 5000 -m none -V "$half" -- "$smtpd" \
    >"$dir/local.log" 2>&1 || tail -n 20 "$dir/local.log" >&2
  # seeds that crash here are skipped (said in remote.log), not fatal
  AFL_SKIP_CRASHES=1 TCPREMOTEIP=192.0.2.9 afl-fuzz -i "$dir/out-local/default/queue" -o "$dir/out-remote" \
    -x "$dict" -t 5000 -m none -V "$half" -- "$smtpd" >"$dir/remote.log" 2>&1 || tail -n 20 "$dir/remote.log" >&2
' sh "$dir" "$smtpd" "$half" "$top/fuzz/smtpd.dict"

echo "corpus: $(ls "$dir/raw" | wc -l) transcripts, $(ls "$dir/in" | wc -l) after afl-cmin"
for run in local remote; do
  printf '%s:' "$run"
  for k in run_time execs_done execs_per_sec corpus_count bitmap_cvg stability saved_crashes saved_hangs; do
    printf ' %s=%s' "$k" "$(sed -n "s/^$k *: //p" "$dir/out-$run/default/fuzzer_stats" 2>/dev/null)"
  done
  echo
done
if [ -e "$dir/deliver.log" ] || ls "$dir"/deliver-asan* >/dev/null 2>&1; then
  echo "deliver failed: see $dir/deliver.log, $dir/deliver-asan.*"
fi
umount "$spool" 2>/dev/null || true
