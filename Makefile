# dopis: make (build), make run (a server on 127.0.0.1:2525), make check
# (every test).  Objects go to $(OBJ), programs to $(BIN), so a
# sanitizer build can sit beside the normal one (see check-asan).
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CPPFLAGS += -D_GNU_SOURCE -Ilib
LDLIBS   = -l:libowfat.a
# smtpd and deliver start once per connection and once per message, and
# dopis-tlsd once per TLS session: linked statically they skip the
# dynamic loader (bench/RESULTS.md).  smtpd links no TLS library at all:
# dopis-tlsd does its TLS.  The sanitizer, fuzzing and clang builds link
# dynamically (STATIC=).  ld warns that getaddrinfo, gethostbyname and
# dlopen want glibc's shared NSS and loader at run time: OpenSSL and
# libtls's client side name them, dopis-tlsd never calls them, hence
# --no-warnings.
STATIC  ?= -static -Wl,--no-warnings
TLSLIBS  = -ltls -lssl -lcrypto -lpthread
OBJ     ?= obj
BIN     ?= bin
PYTHON   = /usr/bin/python3

LIBSRC  = lib/config.c lib/address.c lib/route.c lib/envelope.c lib/log.c \
          lib/id.c lib/queue.c lib/queueinfo.c lib/fsync.c lib/xtext.c lib/passwd.c lib/deliverpipe.c lib/sibling.c lib/sandbox.c lib/date.c lib/smtpreply.c
LIBOBJ  = $(LIBSRC:%.c=$(OBJ)/%.o)
# an archive, so that each program links only the parts it uses
LIBA    = $(OBJ)/libdopis.a
SMTPD_OBJ   = $(OBJ)/smtpd.o $(OBJ)/smtpd_data.o
DELIVER_OBJ = $(OBJ)/deliver/deliver.o $(OBJ)/deliver/maildir.o
TLSD_OBJ    = $(OBJ)/tlsd/tlsd.o $(OBJ)/smtpd_tls.o
RELAY_OBJ   = $(OBJ)/relay/relay.o $(OBJ)/relay/state.o $(OBJ)/relay/mx.o \
              $(OBJ)/relay/client.o $(OBJ)/relay/wire.o $(OBJ)/relay/spawn.o \
              $(OBJ)/relay/bounce.o $(OBJ)/relay/reply.o $(OBJ)/relay/tls.o \
              $(OBJ)/relay/auth.o
QUEUE_OBJ   = $(OBJ)/queue/queue.o $(OBJ)/queue/show.o $(OBJ)/queue/out.o
# smtpd_tls.o: check loads the certificate and key as smtpd does
CHECK_OBJ   = $(OBJ)/check/check.o $(OBJ)/smtpd_tls.o
SENDMAIL_OBJ = $(OBJ)/sendmail/sendmail.o $(OBJ)/sendmail/header.o $(OBJ)/sendmail/addrlist.o \
               $(OBJ)/sendmail/spool.o $(OBJ)/sendmail/compose.o $(OBJ)/sendmail/submit.o
PROGS = $(BIN)/smtpd $(BIN)/deliver $(BIN)/tlsd $(BIN)/relay $(BIN)/queue $(BIN)/check $(BIN)/sendmail

all: $(PROGS)

$(OBJ)/%.o: %.c $(wildcard lib/*.h) $(wildcard deliver/*.h) $(wildcard relay/*.h) $(wildcard queue/*.h) $(wildcard sendmail/*.h) smtpd.h smtpd_tls.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

$(LIBA): $(LIBOBJ)
	rm -f $@
	ar rcs $@ $^

$(BIN)/smtpd: $(SMTPD_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) $(STATIC) -o $@ $^ $(LDLIBS) -lcrypt

$(BIN)/deliver: $(DELIVER_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) $(STATIC) -o $@ $^ $(LDLIBS)

# the TLS side of a session: started only for STARTTLS and port 465
$(BIN)/tlsd: $(TLSD_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) $(STATIC) -o $@ $^ $(LDLIBS) $(TLSLIBS)

$(BIN)/relay: $(RELAY_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ludns -ltls

$(BIN)/sendmail: $(SENDMAIL_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/queue: $(QUEUE_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/check: $(CHECK_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ltls -lcrypt

deps:
	@sh tests/deps.sh build

# Builds with clang too (warnings are errors there), then runs every
# test inside a network namespace that has only loopback, then each
# fuzzing harness briefly (fuzz-check, below).
check: deps
	@sh tests/deps.sh test
	@sh tests/relay-peers.sh
	$(MAKE) all CFLAGS="$(CFLAGS) -Werror"
	# clang's build links dynamically, with DWARF 4: test_valgrind runs it
	# (valgrind 3.19 reports glibc's static start-up code as using
	# uninitialised memory, and cannot read clang 14's DWARF 5)
	$(MAKE) all CC=clang OBJ=obj/clang BIN=obj/clang/bin CFLAGS="-O2 -gdwarf-4 -Werror" STATIC=
	$(MAKE) all CC=clang OBJ=obj/asan BIN=obj/asan/bin \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" STATIC=
	unshare -n sh tests/netns.sh $(PYTHON) tests/run.py
	# every transcript again over TCP, its input split into two writes
	# (at every offset where framing is tested): the outcome must not change
	unshare -n sh tests/netns.sh $(PYTHON) tests/run.py --pass smtpd --no-interop --split
	$(MAKE) fuzz-check

run: deps all
	@sh tests/run-server.sh

# The benchmark against Postfix and OpenSMTPD (root; bench/README):
# writes bench/RESULTS.md and bench/results.png.  BENCH_RUNS=n (default
# 5), BENCH_QUICK=1 for a short try.  make check does not run it.
# SMTPD_LINK and DELIVER_LINK: bench.sh links these objects once more,
# dynamically, for its comparison row (what static linking gives).
bench: deps all
	@SMTPD_LINK="$(SMTPD_OBJ) $(LIBA) $(LDLIBS)" DELIVER_LINK="$(DELIVER_OBJ) $(LIBA) $(LDLIBS)" \
	  sh bench/bench.sh

# libFuzzer harnesses (fuzz/README), built with clang into obj/fuzz:
# make fuzz runs each for FUZZ_SECONDS on its corpus; fuzz-check (in
# check) each for FUZZ_CHECK_SECONDS.  Both stop at the first crash.
FUZZ = smtpd address config queueinfo reply xtext passwd
FUZZ_SECONDS ?= 60
FUZZ_CHECK_SECONDS ?= 10
FUZZ_CFLAGS = -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

fuzz-build:
	$(MAKE) $(FUZZ:%=obj/fuzz/fuzz_%) CC=clang OBJ=obj/fuzz CFLAGS="$(FUZZ_CFLAGS)" LDFLAGS=

fuzz: fuzz-build
	sh fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ)

fuzz-check: fuzz-build
	sh fuzz/run.sh -check $(FUZZ_CHECK_SECONDS) $(FUZZ)

# a harness, with libowfat's byte/str/case functions instrumented too
$(OBJ)/fuzz_%: $(OBJ)/fuzz/fuzz_%.o $(OBJ)/fuzz/common.o $(OBJ)/fuzz/owfat.o $(LIBA)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) $(LDLIBS) -ltls -lcrypt
$(FUZZ:%=$(OBJ)/fuzz/fuzz_%.o) $(OBJ)/fuzz/common.o: fuzz/fuzz.h
$(OBJ)/fuzz/owfat.o: fuzz/owfat.c
$(OBJ)/fuzz_smtpd: $(OBJ)/fuzz/smtpd-fuzz.o $(OBJ)/smtpd_data.o
$(OBJ)/fuzz_reply: $(OBJ)/relay/reply.o
# smtpd.c with its DOPIS_FUZZ block: sessions in one process
$(OBJ)/fuzz/smtpd-fuzz.o: smtpd.c $(wildcard lib/*.h) smtpd.h smtpd_tls.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Dmain=smtpd_main -DDOPIS_FUZZ $(CFLAGS) $(WARN) -c -o $@ smtpd.c

# make install [PREFIX=/usr/local] [DESTDIR=] [NO_SENDMAIL_LINK=1]:
# programs as $(SBINDIR)/dopis-NAME, the sendmail and mailq links, man
# pages, systemd units (@SBINDIR@ in them replaced), sysusers.d and
# tmpfiles.d entries, and the sample configuration into /etc/dopis only
# when there is no dopis.conf there yet.  UNITDIR: systemd searches
# /usr/local/lib/systemd/system and /usr/lib/systemd/system; with another
# PREFIX use UNITDIR=/etc/systemd/system.  make uninstall removes all
# but the configuration.
PREFIX  ?= /usr/local
SBINDIR  = $(PREFIX)/sbin
MANDIR   = $(PREFIX)/share/man
DOCDIR   = $(PREFIX)/share/doc/dopis
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR  ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR  ?= $(PREFIX)/lib/tmpfiles.d
CONFDIR  = /etc/dopis
# build name:installed name; a program not (yet) in PROGS is skipped
INSTALL_NAMES = smtpd:dopis-smtpd deliver:dopis-deliver tlsd:dopis-tlsd relay:dopis-relay \
                queue:dopis-queue check:dopis-check sendmail:dopis-sendmail
INSTALL_PAIRS = $(foreach p,$(INSTALL_NAMES),$(if $(filter $(BIN)/$(firstword $(subst :, ,$(p))),$(PROGS)),$(p)))
# link:target, made when the target is installed (not with NO_SENDMAIL_LINK=1)
INSTALL_LINKS = $(if $(filter 1,$(NO_SENDMAIL_LINK)),,sendmail:dopis-sendmail mailq:dopis-queue)
UNITS    = $(notdir $(wildcard systemd/*.service systemd/*.socket systemd/*.timer systemd/*.path))
MAN5     = $(notdir $(wildcard man/*.5))
MAN8     = $(notdir $(wildcard man/*.8))

install: all
	install -d -m 755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DOCDIR)/tcpserver
	@set -e; for p in $(INSTALL_PAIRS); do \
	  [ -f $(BIN)/$${p%%:*} ] || { echo "$(BIN)/$${p%%:*} is not built: not installed"; continue; }; \
	  echo "install -m 755 $(BIN)/$${p%%:*} $(DESTDIR)$(SBINDIR)/$${p#*:}"; \
	  install -m 755 $(BIN)/$${p%%:*} $(DESTDIR)$(SBINDIR)/$${p#*:}; done
	@set -e; for l in $(INSTALL_LINKS); do \
	  if [ -e $(DESTDIR)$(SBINDIR)/$${l#*:} ]; then \
	    echo "ln -sf $${l#*:} $(DESTDIR)$(SBINDIR)/$${l%%:*}"; \
	    ln -sf $${l#*:} $(DESTDIR)$(SBINDIR)/$${l%%:*}; fi; done
	@set -e; for m in $(MAN5); do install -m 644 man/$$m $(DESTDIR)$(MANDIR)/man5/$$m; done
	@set -e; for m in $(MAN8); do install -m 644 man/$$m $(DESTDIR)$(MANDIR)/man8/$$m; done
	@set -e; for u in $(UNITS); do \
	  sed 's|@SBINDIR@|$(SBINDIR)|g' systemd/$$u >$(DESTDIR)$(UNITDIR)/$$u.tmp; \
	  chmod 644 $(DESTDIR)$(UNITDIR)/$$u.tmp; mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u; done
	install -m 644 systemd/dopis.sysusers $(DESTDIR)$(SYSUSERSDIR)/dopis.conf
	install -m 644 systemd/dopis.tmpfiles $(DESTDIR)$(TMPFILESDIR)/dopis.conf
	sed 's|@SBINDIR@|$(SBINDIR)|g' conf/tcpserver/run >$(DESTDIR)$(DOCDIR)/tcpserver/run
	chmod 755 $(DESTDIR)$(DOCDIR)/tcpserver/run
	install -m 644 conf/tcpserver/tcp.rules $(DESTDIR)$(DOCDIR)/tcpserver/tcp.rules
	@set -e; if [ -e $(DESTDIR)$(CONFDIR)/dopis.conf ]; then \
	  echo "$(DESTDIR)$(CONFDIR)/dopis.conf exists: the configuration is left alone"; \
	else \
	  install -d -m 755 $(DESTDIR)$(CONFDIR); \
	  for f in conf/*; do [ -f $$f ] || continue; \
	    echo "install -m 644 $$f $(DESTDIR)$(CONFDIR)/"; install -m 644 $$f $(DESTDIR)$(CONFDIR)/; done; \
	  if [ -e $(DESTDIR)$(CONFDIR)/passwd ]; then chmod 640 $(DESTDIR)$(CONFDIR)/passwd; \
	    if getent group dopis >/dev/null; then chgrp dopis $(DESTDIR)$(CONFDIR)/passwd; fi; fi; \
	fi

uninstall:
	@for p in $(INSTALL_NAMES); do echo "rm -f $(DESTDIR)$(SBINDIR)/$${p#*:}"; rm -f $(DESTDIR)$(SBINDIR)/$${p#*:}; done
	@for l in sendmail:dopis-sendmail mailq:dopis-queue; do \
	  if [ "$$(readlink $(DESTDIR)$(SBINDIR)/$${l%%:*} 2>/dev/null)" = "$${l#*:}" ]; then \
	    echo "rm -f $(DESTDIR)$(SBINDIR)/$${l%%:*}"; rm -f $(DESTDIR)$(SBINDIR)/$${l%%:*}; fi; done
	cd $(DESTDIR)$(MANDIR)/man5 2>/dev/null && rm -f $(MAN5) || true
	cd $(DESTDIR)$(MANDIR)/man8 2>/dev/null && rm -f $(MAN8) || true
	cd $(DESTDIR)$(UNITDIR) 2>/dev/null && rm -f $(UNITS) || true
	rm -f $(DESTDIR)$(SYSUSERSDIR)/dopis.conf $(DESTDIR)$(TMPFILESDIR)/dopis.conf
	rm -f $(DESTDIR)$(DOCDIR)/tcpserver/run $(DESTDIR)$(DOCDIR)/tcpserver/tcp.rules
	rmdir $(DESTDIR)$(DOCDIR)/tcpserver $(DESTDIR)$(DOCDIR) 2>/dev/null || true

clean:
	rm -rf obj bin

.PHONY: all deps check run bench clean install uninstall fuzz fuzz-build fuzz-check
