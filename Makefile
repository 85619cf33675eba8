# msgsync -- build, test, install, demo, bench.
#   make [WERROR=1] [SANITIZE=address,undefined] [all|check|install|demo|bench]

PREFIX	?= /usr/local
BINDIR	?= $(PREFIX)/bin
MANDIR	?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
DOCDIR	?= $(PREFIX)/share/doc/msgsync
CC	?= cc
CFLAGS	?= -O2 -g
PYTHON	?= python3

PKGS	 = libcurl libpq libcjson libconfig libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN	 = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	   -Wformat=2 -Wno-format-nonliteral
ifeq ($(WERROR),1)
WARN	+= -Werror
endif
ifneq ($(SANITIZE),)
SAN	 = -fsanitize=$(SANITIZE) -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined
endif

ALL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
	     -pthread $(WARN) $(SAN) $(PKG_CFLAGS) -Ilib -Icmd $(CFLAGS)
ALL_LDFLAGS = $(SAN) -pthread $(LDFLAGS)
LDLIBS	 = $(PKG_LIBS) -ldl -lm

LIB_SRCS = lib/batch.c lib/buf.c lib/cli.c lib/config.c lib/cursor.c lib/db.c \
	   lib/engine.c lib/err.c lib/http.c lib/jsonf.c lib/log.c lib/mark.c \
	   lib/output.c lib/registry.c lib/signals.c lib/status.c lib/strmap.c \
	   lib/time.c lib/walk.c lib/migrations.c $(CONN_SRCS)
# Connectors: one file each, discovered; telegram has its own directory.
CONN_SRCS = $(sort $(wildcard lib/connectors/*.c lib/connectors/*/*.c))
LIB_OBJS = $(LIB_SRCS:.c=.o)
BINS	 = full-sync incr-sync status-poll sync-status
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:.c=)
MIGRATIONS = $(sort $(wildcard migrations/*.sql))
MANS	 = man/full-sync.1 man/incr-sync.1 man/status-poll.1 man/sync-status.1 \
	   man/msgsync.conf.5 man/msgsync.7

.PHONY: all check boundary unit e2e install uninstall demo bench clean deps lint

all: $(BINS)

lib/migrations.c: $(MIGRATIONS) scripts/embed-migrations
	sh scripts/embed-migrations $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

lib/%.o: lib/%.c lib/sync.h lib/connector.h lib/internal.h
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# A connector includes connector.h and nothing else of lib/ (make check
# refuses one that reaches for internal.h).
lib/connectors/%.o: lib/connectors/%.c lib/sync.h lib/connector.h
	$(CC) $(ALL_CFLAGS) -iquote $(dir $<) -c -o $@ $<

lib/connectors/telegram/telegram.o lib/connectors/telegram/tgexport.o: \
    lib/connectors/telegram/tgexport.h
lib/connectors/telegram/telegram.o lib/connectors/telegram/tdjson.o: \
    lib/connectors/telegram/tdjson.h

cmd/%.o: cmd/%.c lib/sync.h cmd/pass.h
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

lib/libsync.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $(LIB_OBJS)

full-sync incr-sync status-poll: %: cmd/%.o cmd/pass.o lib/libsync.a
	$(CC) $(ALL_LDFLAGS) -o $@ $< cmd/pass.o lib/libsync.a $(LDLIBS)

sync-status: cmd/sync-status.o lib/libsync.a
	$(CC) $(ALL_LDFLAGS) -o $@ $< lib/libsync.a $(LDLIBS)

tests/unit/test_%: tests/unit/test_%.c tests/unit/t.h lib/libsync.a
	$(CC) $(ALL_CFLAGS) -Itests/unit -Ilib/connectors/telegram $(ALL_LDFLAGS) -o $@ $< lib/libsync.a $(LDLIBS)

# The fake TDLib of the end-to-end tests (never sanitized: it is loaded
# into sanitized and plain binaries alike).
FAKE_TDJSON = tests/fake/tdjson/libtdjson.so
$(FAKE_TDJSON): tests/fake/tdjson/fake_tdjson.c
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) \
	    -O2 -g -fPIC -shared $(PKG_CFLAGS) -o $@ $< $(PKG_LIBS)

# The real TDLib (npm's prebuilt one) for the loading and sign-in tests.
TDLIB = tests/.tdlib/libtdjson.so
$(TDLIB):
	sh scripts/fetch-tdlib tests/.tdlib

# Installs what is missing (scripts/install-deps says what it does).
deps:
	@sh scripts/install-deps --check >/dev/null 2>&1 || { \
	    echo "make: some dependencies are missing; running scripts/install-deps"; \
	    bash scripts/install-deps; }

check: deps boundary
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(FAKE_TDJSON) $(TDLIB)
	@$(MAKE) --no-print-directory unit e2e

unit: $(UNIT_BINS)
	@pass=0; fail=0; for t in $(UNIT_BINS); do \
	    if ./$$t; then pass=$$((pass + 1)); else fail=$$((fail + 1)); \
	    echo "FAIL $$t"; fi; done; \
	echo "unit: $$pass passed, $$fail failed"; test $$fail -eq 0

e2e: all $(FAKE_TDJSON)
	$(PYTHON) tests/e2e/run.py --top "$(CURDIR)"

# A connector sees lib/connector.h and nothing else of the engine.
boundary:
	@bad=$$(grep -lE '#include "(internal|db)\.h"|<(curl/curl|libpq-fe|pthread)\.h>' \
	    lib/connectors/*.c $$(ls lib/connectors/*/*.c | grep -v /tdjson.c) || true); \
	if [ -n "$$bad" ]; then echo "boundary: these connectors reach past connector.h: $$bad"; exit 1; fi

lint:
	mandoc -Tlint -W warning $(MANS)

demo: deps
	@$(MAKE) --no-print-directory all $(FAKE_TDJSON)
	bash scripts/demo

bench: deps
	@$(MAKE) --no-print-directory all
	bash scripts/bench

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(DOCDIR)
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)
	install -m 644 man/full-sync.1 man/incr-sync.1 man/status-poll.1 \
	    man/sync-status.1 $(DESTDIR)$(MANDIR)/man1
	install -m 644 man/msgsync.conf.5 $(DESTDIR)$(MANDIR)/man5
	install -m 644 man/msgsync.7 $(DESTDIR)$(MANDIR)/man7
	install -m 644 scripts/msgsync.conf.example scripts/crontab.example \
	    scripts/msgsync.service scripts/msgsync.timer $(DESTDIR)$(DOCDIR)

uninstall:
	cd $(DESTDIR)$(BINDIR) && rm -f $(BINS)
	rm -f $(DESTDIR)$(MANDIR)/man1/full-sync.1 $(DESTDIR)$(MANDIR)/man1/incr-sync.1 \
	    $(DESTDIR)$(MANDIR)/man1/status-poll.1 $(DESTDIR)$(MANDIR)/man1/sync-status.1 \
	    $(DESTDIR)$(MANDIR)/man5/msgsync.conf.5 $(DESTDIR)$(MANDIR)/man7/msgsync.7
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -f $(BINS) lib/*.o lib/connectors/*.o lib/connectors/*/*.o cmd/*.o lib/libsync.a lib/migrations.c $(UNIT_BINS) \
	    $(FAKE_TDJSON)
	rm -rf tests/e2e/__pycache__ tests/fake/__pycache__
