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
for p in smtpd deliver relay; do
  cp bin/$p bench/work/dopis/$p.tmp && mv bench/work/dopis/$p.tmp bench/work/dopis/$p
done
for t in durable forkexec rsstrace; do
  gcc -O2 -Wall -Wextra -o bench/work/bin/$t bench/tools/$t.c
done
gcc -O2 -static -o bench/work/bin/noop bench/tools/noop.c
gcc -O2 -Wall -shared -fPIC -o bench/work/bin/backlog.so bench/tools/backlog.c -ldl
# the experiment "static binaries": the objects make built (SMTPD_LINK and
# DELIVER_LINK, from the Makefile), linked statically (Debian ships
# libtls.a, libssl.a, libcrypto.a, libcrypt.a); skipped when that fails
rm -f bench/work/bin/smtpd-static bench/work/bin/deliver-static
slink=${SMTPD_LINK:-obj/smtpd.o obj/smtpd_data.o obj/smtpd_tls.o obj/libdopis.a -l:libowfat.a}
dlink=${DELIVER_LINK:-obj/deliver/deliver.o obj/deliver/maildir.o obj/libdopis.a -l:libowfat.a}
# shellcheck disable=SC2086
{ ${CC:-cc} -O2 -static -o bench/work/bin/smtpd-static $slink -ltls -lssl -lcrypto -lcrypt -lpthread &&
  ${CC:-cc} -O2 -static -o bench/work/bin/deliver-static $dlink; } >/dev/null 2>&1 ||
  { rm -f bench/work/bin/smtpd-static bench/work/bin/deliver-static
    echo "bench: no static build, the experiment is skipped" >&2; }
exec unshare -n -m --propagation private /usr/bin/python3 bench/bench.py "$@"
