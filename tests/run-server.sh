#!/bin/sh
# What "make run" runs (after "make deps all"): a dopis server for
# trying it out, on 127.0.0.1:2525 under tcpserver, with its
# configuration and all its state under ./var/ of the source tree.
#
# var/conf is made once, from the default configuration below; later
# runs keep what is there (so edits persist) and only add missing
# files and directories.  rm -rf var starts afresh.
#
# DOPIS_RUN_PORT=n uses port n instead of 2525 (for tests).
set -e

cd "$(dirname "$0")/.."
root=$(pwd -P)
var=$root/var
conf=$var/conf
port=${DOPIS_RUN_PORT:-2525}
host=dopis.local

for p in smtpd deliver; do
  if [ ! -x "$root/bin/$p" ]; then
    echo "run-server.sh: $root/bin/$p is missing: run make first" >&2
    exit 1
  fi
done
if ! command -v tcpserver >/dev/null 2>&1; then
  echo "run-server.sh: tcpserver is missing; as root run: apt-get install -y ucspi-tcp" >&2
  exit 1
fi

mkdir -p "$conf" "$var/mail" "$var/queue"

# newfile NAME: writes standard input to var/conf/NAME unless it exists
newfile() {
  if [ -e "$conf/$1" ]; then
    cat >/dev/null
  else
    cat >"$conf/$1.tmp"
    mv "$conf/$1.tmp" "$conf/$1"
    echo "created $conf/$1"
  fi
}

newfile dopis.conf <<EOF
# dopis.conf for "make run"; see man/dopis.conf.5.
# Relative paths are relative to this directory (var/conf).
hostname = $host
mailroot = ../mail
queue = ../queue
deliver = $root/bin/deliver
max_message_size = 26214400
max_recipients = 100
timeout = 300
EOF

newfile localdomains <<'EOF'
# Domains whose mail is delivered here.
example.org
localhost
EOF

newfile users <<'EOF'
# user@domain [maildir]; without a maildir: <mailroot>/<domain>/<user>/
you@example.org
EOF

newfile aliases <<'EOF'
# alias@domain: target, target   or   @domain: target (catch-all)
postmaster@example.org: you@example.org
postmaster@localhost: you@example.org
EOF

newfile restricted <<'EOF'
# Addresses (user@domain) or domains (@domain) refused as sender and
# as recipient.
EOF

newfile relayclients <<'EOF'
# IP addresses or CIDR blocks that may send to other domains.  Mail to
# other domains would wait in ../queue for the relay program; until
# you run one, leave this empty, and such mail is refused (550 5.7.1).
#127.0.0.1
#::1
EOF

cat <<EOF

dopis is listening on 127.0.0.1:$port (Ctrl-C stops it).

  Configuration:  $conf/
                  (dopis.conf, localdomains, users, aliases, restricted,
                  relayclients; edits apply to the next connection)
  Maildirs:       $var/mail/<domain>/<user>/
  Queue:          $var/queue/

Send a test message:

  swaks --server 127.0.0.1:$port --to you@example.org --from me@example.com

It lands in $var/mail/example.org/you/new/
(read it with e.g. "mlist $var/mail/example.org/you | mscan", or any
file viewer: one message per file).

A mail program (Thunderbird and the like) can send through it with:
outgoing server 127.0.0.1, port $port, connection security none,
no authentication (no certificate is configured here, so neither
STARTTLS nor AUTH is offered; see "Encryption and authentication" in
the README).

EOF

exec tcpserver -v -R -l "$host" 127.0.0.1 "$port" \
  env DOPIS_CONF="$conf" "$root/bin/smtpd"
