# msgsync -- build, test, install, demo, bench.
#   make [WERROR=1] [SANITIZE=address,undefined] [all|check|conformance|install|demo|bench]
#   make fuzz [FUZZ_SECONDS=30]

PREFIX	?= /usr/local
BINDIR	?= $(PREFIX)/bin
MANDIR	?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
DOCDIR	?= $(PREFIX)/share/doc/msgsync
CC	?= cc
CFLAGS	?= -O2 -g
PYTHON	?= python3

PKGS	 = libcurl libpq libcjson libconfig libcrypto libssl
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
	   lib/engine.c lib/err.c lib/gaps.c lib/http.c lib/jsonf.c lib/log.c lib/mark.c \
	   lib/output.c lib/progress.c lib/registry.c lib/signals.c lib/status.c \
	   lib/strmap.c lib/time.c lib/tls.c lib/walk.c lib/coverage.c lib/link.c lib/media.c \
	   lib/search.c lib/phone.c lib/identity.c lib/changes.c \
	   lib/migrations.c $(CONN_SRCS)
# Connectors: one file each, discovered; telegram has its own directory.
CONN_SRCS = $(sort $(wildcard lib/connectors/*.c lib/connectors/*/*.c))
LIB_OBJS = $(LIB_SRCS:.c=.o)
BINS	 = full-sync incr-sync status-poll sync-status media-sync sync-search sync-changes
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:.c=)
MIGRATIONS = $(sort $(wildcard migrations/*.sql))
MANS	 = man/full-sync.1 man/incr-sync.1 man/status-poll.1 man/sync-status.1 \
	   man/media-sync.1 man/sync-search.1 man/sync-changes.1 man/msgsync.conf.5 man/msgsync.7

.PHONY: all check boundary unit e2e conformance install uninstall demo bench clean deps lint \
	fuzz fuzz-build fuzz-toolchain

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

full-sync incr-sync status-poll media-sync: %: cmd/%.o cmd/pass.o lib/libsync.a
	$(CC) $(ALL_LDFLAGS) -o $@ $< cmd/pass.o lib/libsync.a $(LDLIBS)

sync-status sync-search sync-changes: %: cmd/%.o lib/libsync.a
	$(CC) $(ALL_LDFLAGS) -o $@ $< lib/libsync.a $(LDLIBS)

tests/unit/test_%: tests/unit/test_%.c tests/unit/t.h tests/unit/canned.h lib/libsync.a
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

# Fuzzing (tests/fuzz/, tests/README): libFuzzer targets built with clang,
# ASan and UBSan, from library objects of their own in $(FUZZ_DIR) (never
# mixed with the build above).  make fuzz runs each target for
# FUZZ_SECONDS over its seed corpus (tests/fuzz/corpus/NAME); what it
# finds goes to $(FUZZ_DIR)/corpus/NAME, a crash to $(FUZZ_DIR)/crash-*.
FUZZ_CC	?= clang
FUZZ_SECONDS ?= 30
# FUZZ_SEED=N FUZZ_RUNS=M: the same inputs on every run, at most M of them
# within FUZZ_SECONDS (CI: its verdict is reproducible, not luck); the
# default is a new seed each time, exploring.
FUZZ_SEED ?= 0
FUZZ_RUNS ?= -1
FUZZ_DIR = tests/fuzz/build
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	   -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -pthread \
	      $(WARN) $(PKG_CFLAGS) -Ilib -g -O1 $(FUZZ_SAN) \
	      -fsanitize=fuzzer-no-link
FUZZ_SRCS = $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES = $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
FUZZ_BINS = $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_NAMES))
FUZZ_LIB_OBJS = $(addprefix $(FUZZ_DIR)/,$(LIB_OBJS))
.SECONDARY: $(FUZZ_LIB_OBJS)
# fuzz_telegram serves its input through the fake TDLib.
$(FUZZ_DIR)/fuzz_telegram: $(FAKE_TDJSON)

$(FUZZ_DIR)/lib/%.o: lib/%.c lib/sync.h lib/connector.h lib/internal.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -iquote $(dir $<) -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/unit/canned.h \
    $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Itests/unit -fsanitize=fuzzer -o $@ $< \
	    $(FUZZ_LIB_OBJS) $(LDLIBS)

# Says what is missing rather than failing in the middle of a build.
fuzz-toolchain:
	@mkdir -p $(FUZZ_DIR)
	@printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' \
	    > $(FUZZ_DIR)/probe.c
	@$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $(FUZZ_DIR)/probe \
	    $(FUZZ_DIR)/probe.c >$(FUZZ_DIR)/probe.log 2>&1 || { \
	    echo "make fuzz: '$(FUZZ_CC)' cannot build libFuzzer targets" \
	        "(-fsanitize=fuzzer,address,undefined):"; \
	    sed 's/^/  /' $(FUZZ_DIR)/probe.log | head -n 5; \
	    echo "make fuzz: it needs clang and its runtime libraries (Debian and" \
	        "Ubuntu: clang libclang-rt-dev; Fedora: clang compiler-rt);" \
	        "scripts/install-deps installs them"; exit 1; }

fuzz-build: fuzz-toolchain lib/migrations.c
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz: fuzz-build
	@fail=0; for n in $(FUZZ_NAMES); do \
	    mkdir -p $(FUZZ_DIR)/corpus/$$n; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	    if ! LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp \
	        $(FUZZ_DIR)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) \
	        -seed=$(FUZZ_SEED) -runs=$(FUZZ_RUNS) \
	        -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	        -artifact_prefix=$(FUZZ_DIR)/crash-$$n- \
	        $(FUZZ_DIR)/corpus/$$n tests/fuzz/corpus/$$n \
	        >$(FUZZ_DIR)/$$n.log 2>&1; then \
	        fail=$$((fail + 1)); echo "FAIL fuzz_$$n (log: $(FUZZ_DIR)/$$n.log)"; \
	        grep -E '^(==[0-9]+==|SUMMARY|fuzz:|.*runtime error)' $(FUZZ_DIR)/$$n.log | head -n 8; \
	    else \
	        grep -E '^Done [0-9]+ runs' $(FUZZ_DIR)/$$n.log | sed 's/^/  /'; fi; \
	done; \
	echo "fuzz: $(words $(FUZZ_NAMES)) targets, $$fail failed"; test $$fail -eq 0

# Installs what is missing (scripts/install-deps says what it does).
deps:
	@sh scripts/install-deps --check >/dev/null 2>&1 || { \
	    echo "make: some dependencies are missing; running scripts/install-deps"; \
	    bash scripts/install-deps; }

check: deps boundary
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(FAKE_TDJSON) $(TDLIB)
	@$(MAKE) --no-print-directory unit e2e conformance

unit: $(UNIT_BINS)
	@pass=0; fail=0; for t in $(UNIT_BINS); do \
	    if ./$$t; then pass=$$((pass + 1)); else fail=$$((fail + 1)); \
	    echo "FAIL $$t"; fi; done; \
	echo "unit: $$pass passed, $$fail failed"; test $$fail -eq 0

e2e: all $(FAKE_TDJSON)
	$(PYTHON) tests/e2e/run.py --top "$(CURDIR)"

# Every connector through the same fault matrix (tests/conformance/).
conformance: all $(FAKE_TDJSON)
	$(PYTHON) tests/conformance/conformance.py --top "$(CURDIR)"

# A connector sees lib/connector.h and nothing else of the engine.
boundary:
	@bad=$$(grep -lE '#include "(internal|db)\.h"|<(curl/curl|libpq-fe|pthread)\.h>' \
	    lib/connectors/*.c lib/connectors/*/*.c || true); \
	if [ -n "$$bad" ]; then echo "boundary: these connectors reach past connector.h: $$bad"; exit 1; fi
	@bad=$$(grep -l 'sync_http_add_header' lib/connectors/*.c lib/connectors/*/*.c || true); \
	if [ -n "$$bad" ]; then echo "boundary: these connectors place credentials (declare .auth): $$bad"; exit 1; fi

lint:
	mandoc -Tlint -W warning $(MANS)

# Builds quietly (compiler warnings still show), so the story stays short.
demo: deps
	@$(MAKE) --no-print-directory -q all $(FAKE_TDJSON) || { \
	    echo "make demo: building the programs"; \
	    $(MAKE) --no-print-directory -s all $(FAKE_TDJSON); }
	@bash scripts/demo

bench: deps
	@$(MAKE) --no-print-directory all
	bash scripts/bench

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(DOCDIR)
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)
	install -m 644 man/full-sync.1 man/incr-sync.1 man/status-poll.1 \
	    man/sync-status.1 man/media-sync.1 man/sync-search.1 \
	    man/sync-changes.1 \
	    $(DESTDIR)$(MANDIR)/man1
	install -m 644 man/msgsync.conf.5 $(DESTDIR)$(MANDIR)/man5
	install -m 644 man/msgsync.7 $(DESTDIR)$(MANDIR)/man7
	install -m 644 scripts/msgsync.conf.example scripts/crontab.example \
	    $(DESTDIR)$(DOCDIR)
	install -d $(DESTDIR)$(DOCDIR)/systemd
	for f in scripts/systemd/*.service scripts/systemd/*.timer; do \
	    sed 's|/usr/local/bin/|$(BINDIR)/|g' $$f \
	        > $(DESTDIR)$(DOCDIR)/systemd/$${f##*/} && \
	    chmod 644 $(DESTDIR)$(DOCDIR)/systemd/$${f##*/} || exit 1; done

uninstall:
	cd $(DESTDIR)$(BINDIR) && rm -f $(BINS)
	rm -f $(DESTDIR)$(MANDIR)/man1/full-sync.1 $(DESTDIR)$(MANDIR)/man1/incr-sync.1 \
	    $(DESTDIR)$(MANDIR)/man1/status-poll.1 $(DESTDIR)$(MANDIR)/man1/sync-status.1 \
	    $(DESTDIR)$(MANDIR)/man1/media-sync.1 $(DESTDIR)$(MANDIR)/man1/sync-search.1 \
	    $(DESTDIR)$(MANDIR)/man1/sync-changes.1 \
	    $(DESTDIR)$(MANDIR)/man5/msgsync.conf.5 $(DESTDIR)$(MANDIR)/man7/msgsync.7
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -f $(BINS) lib/*.o lib/connectors/*.o lib/connectors/*/*.o cmd/*.o lib/libsync.a lib/migrations.c $(UNIT_BINS) \
	    $(FAKE_TDJSON)
	rm -rf tests/e2e/__pycache__ tests/fake/__pycache__ tests/conformance/__pycache__ $(FUZZ_DIR)
