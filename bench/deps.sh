#!/bin/sh
# What "make bench" needs before it enters the network namespace (which
# has no network): Debian packages installed with apt-get (tools and the
# peers' shared libraries, none of them an MTA), and the peers themselves
# -- Postfix (which also brings smtp-source and smtp-sink) and OpenSMTPD --
# downloaded and unpacked under bench/peers/, never installed: Debian's
# MTA packages conflict with each other and with a system install.
set -e
cd "$(dirname "$0")"
pkgs="gcc make libc6-dev ucspi-tcp systemd iproute2 util-linux e2fsprogs dnsmasq-base strace openssl
      gnuplot-nox libdb5.3 libicu72 libnsl2 libsasl2-2 libssl3 libevent-2.1-7 libpam0g zlib1g
      libcrypt1"
missing=
for p in $pkgs; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench needs these Debian packages; as root run:" >&2
    echo "  apt-get install -y$missing" >&2
    exit 1
  fi
  echo "bench: installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq $missing >/dev/null
fi
mkdir -p peers/deb
for pkg in postfix opensmtpd; do
  [ -d "peers/$pkg/usr/sbin" ] && continue
  (cd peers/deb && rm -f "${pkg}"_*.deb &&
   { apt-get download "$pkg" >/dev/null 2>&1 || { apt-get update -qq; apt-get download "$pkg" >/dev/null; }; })
  rm -rf "peers/$pkg.tmp"
  dpkg -x peers/deb/"${pkg}"_*.deb "peers/$pkg.tmp"
  mv "peers/$pkg.tmp" "peers/$pkg"
  echo "bench: $pkg unpacked into bench/peers/$pkg" >&2
done
