#!/bin/sh
# Puts Postfix's smtp-sink, a destination for the relay's interop tests
# (tests/interop_relay*.py), into tests/work/peers/.  Debian's postfix
# package conflicts with every other MTA, so it is never installed:
# its .deb is downloaded and unpacked there instead.  make check runs
# this before it enters the network namespace, which has no network.
# Run the binary as
#   LD_LIBRARY_PATH=tests/work/peers/usr/lib/postfix \
#     tests/work/peers/usr/sbin/smtp-sink ...
set -e
cd "$(dirname "$0")/.."
dir=tests/work/peers
[ -x "$dir/usr/sbin/smtp-sink" ] && exit 0
mkdir -p "$dir/deb"
cd "$dir/deb"
rm -f postfix_*.deb
if ! apt-get download postfix >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq || true
    apt-get download postfix >/dev/null
  else
    echo "relay-peers.sh: cannot download the postfix package; as root run: apt-get update" >&2
    exit 1
  fi
fi
dpkg -x postfix_*.deb ..
[ -x ../usr/sbin/smtp-sink ]
echo "relay-peers.sh: smtp-sink unpacked into $dir" >&2
