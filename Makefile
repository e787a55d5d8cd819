# ragsafe build. `make` (tools and their man pages), `make install PREFIX=DIR`, `make check`, `make asan`,
# `make bench`, `make demo`. Each tool directory builds every *.c it holds into one
# executable; lib/ becomes libragsafe.a. V=1 shows the commands.

PREFIX  ?= /usr/local
CC      ?= cc
PKGS    := libpq libzstd libcrypto liburing jansson libarchive libcurl expat
CFLAGS  ?= -O2 -g
# Always added, even when CFLAGS comes from the command line (make asan does that).
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wformat=2 -Wno-format-nonliteral \
           -pthread -Ilib $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libcurl is not linked: lib/curl_dl.c loads it on first use, so the per-segment
# commands do not load it and its dependencies at every start.
LDLIBS  += -Wl,--as-needed $(shell pkg-config --libs $(filter-out libcurl,$(PKGS)) 2>/dev/null) -pthread
BUILD   ?= build

ifeq ($(V),1)
Q :=
else
Q := @
endif

TOOLS   := archive_cmd:ragsafe-archive restore_cmd:ragsafe-restore \
           basebackup:ragsafe-basebackup pitr:ragsafe-pitr milvus:ragsafe-milvus \
           files:ragsafe-files receive:ragsafe-receive
LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB_A   := $(BUILD)/libragsafe.a

tool_dir  = $(word 1,$(subst :, ,$1))
tool_name = $(word 2,$(subst :, ,$1))
BINS    := $(foreach t,$(TOOLS),$(if $(wildcard $(call tool_dir,$t)/*.c),$(BUILD)/bin/$(call tool_name,$t)))

# Man pages: generated from each tool's --help (scripts/gen-man.sh, help2man), so they
# cannot drift from it; man/*.h2m add the sections --help has no room for.
MANS    := $(BINS:$(BUILD)/bin/%=$(BUILD)/man/%.1)

UNIT_SRC := $(wildcard tests/unit/check_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
UNIT_HELP := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))

.PHONY: all install check unit integration asan bench demo deps clean
all: $(BINS) $(MANS)

$(BUILD)/%.o: %.c $(wildcard lib/*.h */*.h) | deps-ok
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(LIB_A): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

define tool_rule
$(BUILD)/bin/$(call tool_name,$1): $(patsubst %.c,$(BUILD)/%.o,$(wildcard $(call tool_dir,$1)/*.c)) $(LIB_A)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  LINK    $$@")
	$$(Q)$$(CC) $$(CFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach t,$(TOOLS),$(eval $(call tool_rule,$t)))

$(BUILD)/man/%.1: $(BUILD)/bin/% scripts/gen-man.sh $(wildcard man/*.h2m)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  MAN     $@")
	$(Q)scripts/gen-man.sh $< $@

$(BUILD)/tests/check_%: tests/unit/check_%.c $(UNIT_HELP) $(LIB_A)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(UNIT_HELP) $(LIB_A) $(shell pkg-config --libs check) $(LDLIBS)

# deps-ok: build needs the -dev packages; install them when missing (root only).
.PHONY: deps-ok
deps-ok:
	@pkg-config --exists $(PKGS) check && command -v help2man >/dev/null || scripts/install-deps.sh

deps:
	scripts/install-deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 $(MANS) $(DESTDIR)$(PREFIX)/share/man/man1/

# The README's test command. Unit tests then integration tests (real PostgreSQL 15).
check: deps-ok all $(UNIT_BIN)
	@scripts/install-deps.sh --check-only || scripts/install-deps.sh
	tests/run.sh $(BUILD)

unit: all $(UNIT_BIN)
	tests/run.sh --unit-only $(BUILD)

integration: all
	tests/run.sh --integration-only $(BUILD)

# Sanitized code runs several times slower: give check's per-test timeouts room.
asan:
	CK_TIMEOUT_MULTIPLIER=4 $(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" check

bench: all
	@scripts/install-deps.sh --check-only || scripts/install-deps.sh
	bench/run.sh $(BUILD)

demo: all
	@scripts/install-deps.sh --check-only || scripts/install-deps.sh
	scripts/demo.sh $(BUILD)

clean:
	rm -rf build build-asan
