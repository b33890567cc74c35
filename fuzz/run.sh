#!/bin/sh
# Runs the libFuzzer harnesses built in obj/fuzz (make fuzz-build):
#
#   sh fuzz/run.sh [-check] SECONDS NAME...
#
# Each runs for SECONDS on top of its committed seeds fuzz/corpus/NAME,
# which stay untouched: what it finds goes to obj/fuzz/corpus/NAME.  One
# line per harness says its executions and coverage.  The first crash,
# leak, timeout or broken invariant ends it all with status 1, the
# report shown and the input saved as obj/fuzz/crashes/NAME-*.
# -check (make check): also a bound on the executions, and a fixed
# per-input timeout, so that a slow machine cannot stretch it.
set -u
cd "$(dirname "$0")/.." || exit 1
check=0
if [ "${1:-}" = -check ]; then check=1; shift; fi
secs=${1:?usage: fuzz/run.sh [-check] SECONDS NAME...}
shift
mkdir -p obj/fuzz/crashes obj/fuzz/logs
for name in "$@"; do
  bin=obj/fuzz/fuzz_$name
  [ -x "$bin" ] || { echo "$bin is not built (make fuzz-build)" >&2; exit 1; }
  mkdir -p "obj/fuzz/corpus/$name" "fuzz/corpus/$name"
  # the options ("$@"; the names were expanded when the loop began)
  set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
         -artifact_prefix="obj/fuzz/crashes/$name-"
  [ -f "fuzz/$name.dict" ] && set -- "$@" -dict="fuzz/$name.dict"
  # smtpd logs every event on stderr: libFuzzer keeps its own and the
  # sanitizers' reports, and sends the rest to /dev/null; the harness
  # checks for leaks itself (see fuzz_smtpd.c)
  [ "$name" = smtpd ] && set -- "$@" -close_fd_mask=2 -max_len=16384 -detect_leaks=0
  [ $check = 1 ] && set -- "$@" -runs=2000000
  log=obj/fuzz/logs/$name.log
  if ! "$bin" "$@" "obj/fuzz/corpus/$name" "fuzz/corpus/$name" >"$log" 2>&1; then
    echo "FAIL fuzz_$name (log: $log, input: obj/fuzz/crashes/$name-*):" >&2
    grep -v '^#[0-9]' "$log" | tail -n 60 >&2
    exit 1
  fi
  # the last status line: "#N  DONE   cov: C ft: F corp: ..."
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(echo "$last" | sed -n 's/.*\(cov: [0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.*\(ft: [0-9]*\).*/\1/p')
  corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
  echo "ok fuzz_$name: ${runs:-?} runs in ${secs}s (${rate:-?}/s), $cov $ft, corpus ${corp:-?}"
done
