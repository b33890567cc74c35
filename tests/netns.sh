#!/bin/sh
# Run inside "unshare -n": bring loopback up, so tests reach 127.0.0.1
# and nothing else exists to reach.
set -e
ip link set lo up
exec "$@"
