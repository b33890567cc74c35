# dopis: make (build), make run (a server on 127.0.0.1:2525), make check
# (every test).  Objects go to $(OBJ), programs to $(BIN), so a
# sanitizer build can sit beside the normal one (see check-asan).
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CPPFLAGS += -D_GNU_SOURCE -Ilib
LDLIBS   = -l:libowfat.a
OBJ     ?= obj
BIN     ?= bin
PYTHON   = /usr/bin/python3

LIBSRC  = lib/config.c lib/address.c lib/route.c lib/envelope.c lib/log.c \
          lib/id.c lib/queue.c lib/queueinfo.c lib/fsync.c lib/xtext.c lib/passwd.c lib/deliverpipe.c lib/sibling.c
LIBOBJ  = $(LIBSRC:%.c=$(OBJ)/%.o)
# an archive, so that each program links only the parts it uses
LIBA    = $(OBJ)/libdopis.a
SMTPD_OBJ   = $(OBJ)/smtpd.o $(OBJ)/smtpd_data.o $(OBJ)/smtpd_tls.o
DELIVER_OBJ = $(OBJ)/deliver/deliver.o $(OBJ)/deliver/maildir.o
RELAY_OBJ   = $(OBJ)/relay/relay.o $(OBJ)/relay/state.o $(OBJ)/relay/mx.o \
              $(OBJ)/relay/client.o $(OBJ)/relay/wire.o $(OBJ)/relay/spawn.o \
              $(OBJ)/relay/bounce.o
PROGS = $(BIN)/smtpd $(BIN)/deliver $(BIN)/relay

all: $(PROGS)

$(OBJ)/%.o: %.c $(wildcard lib/*.h) $(wildcard deliver/*.h) $(wildcard relay/*.h) smtpd.h smtpd_tls.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

$(LIBA): $(LIBOBJ)
	rm -f $@
	ar rcs $@ $^

$(BIN)/smtpd: $(SMTPD_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ltls -lcrypt

$(BIN)/deliver: $(DELIVER_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/relay: $(RELAY_OBJ) $(LIBA)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ludns

deps:
	@sh tests/deps.sh build

# Builds with clang too (warnings are errors there), then runs every
# test inside a network namespace that has only loopback.
check: deps
	@sh tests/deps.sh test
	@sh tests/relay-peers.sh
	$(MAKE) all CFLAGS="$(CFLAGS) -Werror"
	$(MAKE) all CC=clang OBJ=obj/clang BIN=obj/clang/bin CFLAGS="-O2 -g -Werror"
	$(MAKE) all CC=clang OBJ=obj/asan BIN=obj/asan/bin \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined"
	unshare -n sh tests/netns.sh $(PYTHON) tests/run.py

run: deps all
	@sh tests/run-server.sh

clean:
	rm -rf obj bin

.PHONY: all deps check run clean
