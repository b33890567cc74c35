#!/bin/sh
# make bench: packages and peers (bench/deps.sh), the measuring tools
# (bench/tools/*.c into bench/work/bin), then bench/bench.py inside a
# network namespace with only loopback and a private mount namespace.
# BENCH_RUNS=n (default 5) and BENCH_QUICK=1 (one short run) pass through.
set -e
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "make bench: needs root (unshare, mount, a loop device)" >&2
  exit 1
fi
sh bench/deps.sh
mkdir -p bench/work/bin bench/work/dopis
# a snapshot of the build: bin/ may be rebuilt while the benchmark runs
for p in smtpd deliver tlsd relay; do
  cp bin/$p bench/work/dopis/$p.tmp && mv bench/work/dopis/$p.tmp bench/work/dopis/$p
done
for t in durable forkexec rsstrace; do
  gcc -O2 -Wall -Wextra -o bench/work/bin/$t bench/tools/$t.c
done
gcc -O2 -static -o bench/work/bin/noop bench/tools/noop.c
gcc -O2 -Wall -shared -fPIC -o bench/work/bin/backlog.so bench/tools/backlog.c -ldl
# the comparison "dynamically linked": the objects make built (SMTPD_LINK
# and DELIVER_LINK, from the Makefile), linked as before static linking
# became the default (make links bin/smtpd and bin/deliver with -static):
# libcrypt and glibc as shared libraries (smtpd links no TLS library:
# dopis-tlsd does TLS); skipped when that fails
rm -f bench/work/bin/smtpd-dynamic bench/work/bin/deliver-dynamic
slink=${SMTPD_LINK:-obj/smtpd.o obj/smtpd_data.o obj/libdopis.a -l:libowfat.a}
dlink=${DELIVER_LINK:-obj/deliver/deliver.o obj/deliver/maildir.o obj/libdopis.a -l:libowfat.a}
# shellcheck disable=SC2086
{ ${CC:-cc} -O2 -o bench/work/bin/smtpd-dynamic $slink -lcrypt &&
  ${CC:-cc} -O2 -o bench/work/bin/deliver-dynamic $dlink; } >/dev/null 2>&1 ||
  { rm -f bench/work/bin/smtpd-dynamic bench/work/bin/deliver-dynamic
    echo "bench: no dynamic build, the comparison is skipped" >&2; }
exec unshare -n -m --propagation private /usr/bin/python3 bench/bench.py "$@"
