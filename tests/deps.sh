#!/bin/sh
# Installs what a build (deps.sh build) or the tests (deps.sh test)
# need from Debian's packages; as non-root prints the apt-get line.
set -e
case "$1" in
build) pkgs="gcc make libowfat-dev libtls-dev libssl-dev libcrypt-dev libudns-dev ucspi-tcp swaks" ;;
test)  pkgs="gcc make libowfat-dev libtls-dev libssl-dev libcrypt-dev openssl libudns-dev dnsmasq-base python3-aiosmtpd clang libclang-rt-14-dev ucspi-tcp swaks mblaze python3 systemd systemd-container iproute2 util-linux mandoc man-db valgrind strace" ;;
*) echo "usage: deps.sh build|test" >&2; exit 64 ;;
esac
missing=
for p in $pkgs; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "dopis needs these Debian packages; as root run:" >&2
  echo "  apt-get install -y$missing" >&2
  exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq $missing >/dev/null
