# civicmq - one Makefile for the core library, the Mosquitto plugin, tools and tests.
#
#   make            build everything into build/ (installs missing Debian packages first)
#   make test       lint, unit tests (plain and ASan+UBSan), fuzz regression, install check,
#                   docker check, integration tests (also with the broker under valgrind)
#   make docker-check  the Docker files and the systemd unit, without a Docker engine
#   make lint       clang-format check and banned-call grep
#   make format     rewrite sources with clang-format
#   make bench      benchmarks (see bench/README.md); results go to bench/RESULTS.md by hand
#   make install    honours DESTDIR and PREFIX; never overwrites files in SYSCONFDIR
#   make demo       the end-to-end demo (see README.md)
#
# Variables: CC, CFLAGS, LDFLAGS (respected), BUILD (output dir), SAN=1 (sanitizer build),
# WERROR=1 (warnings are errors; CI sets it), PREFIX, DESTDIR, SKIP_DEPS=1 (do not run
# scripts/ensure-deps.sh: the caller installed the packages, e.g. a Docker build stage).

.DEFAULT_GOAL := all
.SUFFIXES:
.DELETE_ON_ERROR:
# Keep objects that pattern chains would otherwise delete as intermediate.
.SECONDARY:

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib/civicmq
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc/civicmq
DOCDIR ?= $(PREFIX)/share/doc/civicmq
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system

SAN ?= 0
WERROR ?= 0
ifeq ($(SAN),1)
BUILD ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
CFLAGS ?= -O1 -g
else
BUILD ?= build
SANFLAGS :=
CFLAGS ?= -O2 -g
endif

CC ?= cc
FUZZCC ?= clang

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wvla -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN += -Werror
endif

PKG_CFLAGS := $(shell pkg-config --cflags json-c libcrypto 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs json-c libcrypto 2>/dev/null)
ifeq ($(PKG_LIBS),)
PKG_LIBS := -ljson-c -lcrypto
endif

CMQ_CPPFLAGS := -Icore -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L $(PKG_CFLAGS)
CMQ_CFLAGS := -std=c11 -fPIC -fvisibility=hidden $(WARN) $(SANFLAGS) -MMD -MP
ALL_CFLAGS = $(CMQ_CPPFLAGS) $(CPPFLAGS) $(CMQ_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)

CORE_SRC := $(sort $(wildcard core/*.c))
PLUGIN_SRC := $(sort $(wildcard plugin/*.c))
GATEWAY_SRC := $(sort $(wildcard gateway/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_HELPER_SRC := tests/unit/cmq_test.c
ITEST_SRC := $(sort $(wildcard tests/integration/test_*.c))
ITEST_HELPER_SRC := $(filter-out $(ITEST_SRC),$(sort $(wildcard tests/integration/*.c)))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
PLUGIN_OBJ := $(PLUGIN_SRC:%.c=$(BUILD)/%.o)
GATEWAY_OBJ := $(GATEWAY_SRC:%.c=$(BUILD)/%.o)
GATEWAY := $(BUILD)/civicmq-gateway
CORE_LIB := $(BUILD)/libcivicmq_core.a
PLUGIN := $(BUILD)/civicmq_plugin.so
TOOLS := $(BUILD)/civicmq-passwd $(BUILD)/civicmq-sim $(BUILD)/civicmq-dash $(BUILD)/civicmq-admin
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
ITEST_BIN := $(ITEST_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
ITEST_HELPER_OBJ := $(ITEST_HELPER_SRC:%.c=$(BUILD)/%.o)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps test unit unit-san integration integration-valgrind fuzz fuzz-regress lint format install \
	install-check uninstall clean bench demo passwd docker-check

all: $(DEPS_STAMP) $(CORE_LIB) $(PLUGIN) $(GATEWAY) $(TOOLS)

# Installs whatever Debian packages are missing (scripts/ensure-deps.sh), once per build dir.
SKIP_DEPS ?= 0
$(DEPS_STAMP): scripts/ensure-deps.sh
	@mkdir -p $(@D)
	@# Skipping leaves no stamp, so a later build without SKIP_DEPS still checks.
	@if [ "$(SKIP_DEPS)" != 1 ]; then sh scripts/ensure-deps.sh && touch $@; fi
deps: $(DEPS_STAMP)

# Every object waits for the package check, so a fresh machine builds in one step.
$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

# Only the mosquitto_plugin_* entry points are exported (-fvisibility=hidden elsewhere).
# Mosquitto's own symbols are resolved from the broker executable at load time.
$(PLUGIN): $(PLUGIN_OBJ) $(CORE_LIB)
	$(CC) -shared $(ALL_LDFLAGS) -o $@ $(PLUGIN_OBJ) $(CORE_LIB) $(PKG_LIBS)

# The gateway: Paho MQTT C (async, TLS) over the core.
$(GATEWAY): $(GATEWAY_OBJ) $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(GATEWAY_OBJ) $(CORE_LIB) $(PKG_LIBS) -lpaho-mqtt3as -lpthread

$(BUILD)/civicmq-passwd: $(BUILD)/tools/civicmq-passwd.o $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The sensor simulator and the dashboard client: libmosquitto (MQTT v5, TLS) clients.
$(BUILD)/civicmq-sim: $(BUILD)/tools/civicmq-sim.o $(BUILD)/tools/sim_payloads.o \
		$(BUILD)/tools/tool_opts.o $(BUILD)/tools/tool_mqtt.o $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lmosquitto

$(BUILD)/civicmq-dash: $(BUILD)/tools/civicmq-dash.o $(BUILD)/tools/tool_opts.o \
		$(BUILD)/tools/tool_mqtt.o $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lmosquitto

# The administration tool: offline on the files, online through $CONTROL/civicmq/v1.
$(BUILD)/civicmq-admin: $(BUILD)/tools/civicmq-admin.o $(BUILD)/tools/tool_opts.o \
		$(BUILD)/tools/tool_mqtt.o $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lmosquitto

# The loopback demo: drives the real broker, gateway and tools through the integration
# helpers (a broker on free ports, the example PKI, processes stopped by PID).
DEMO := $(BUILD)/civicmq-demo
$(DEMO): $(BUILD)/demo/civicmq-demo.o $(ITEST_HELPER_OBJ) $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lmosquitto

passwd: $(BUILD)/civicmq-passwd
	@$(BUILD)/civicmq-passwd

# ---- unit tests (CUnit, one binary per component) ----
$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/cmq_test.o $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcunit

unit: $(UNIT_BIN) $(TOOLS)
	@set -e; for t in $(UNIT_BIN); do \
		echo "== $$t"; CMQ_TEST_DATA=tests/unit/data CMQ_BUILD=$(BUILD) $$t; done

unit-san:
	@$(MAKE) --no-print-directory SAN=1 unit

# ---- integration tests (real mosquitto, real TLS, libmosquitto clients) ----
$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(ITEST_HELPER_OBJ) $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lmosquitto -lcunit

integration: all $(ITEST_BIN) $(DEMO)
	@set -e; for t in $(ITEST_BIN); do \
		echo "== $$t"; CMQ_BUILD=$(BUILD) CMQ_SRC=$(CURDIR) CMQ_PKI_DIR=$(CURDIR)/$(BUILD)/pki $$t; done

# The plugin inside a broker run under valgrind memcheck: no memory error, no leak in civicmq.
# Then the gateway under memcheck through the tests that stop it cleanly (a memory error or a
# definite leak makes it exit 99, which those tests check).
GATEWAY_VG_TESTS := pipeline_end_to_end,consent_grant_and_withdraw,aggregate_k_threshold,reload_with_broken_files_keeps_old,fail_closed
integration-valgrind: all $(ITEST_BIN)
	@rm -rf $(BUILD)/valgrind && mkdir -p $(BUILD)/valgrind
	@echo "== $(BUILD)/tests/integration/test_plugin (broker under valgrind)"
	@CMQ_BUILD=$(BUILD) CMQ_SRC=$(CURDIR) CMQ_PKI_DIR=$(CURDIR)/$(BUILD)/pki \
		CMQ_VG_DIR=$(CURDIR)/$(BUILD)/valgrind \
		CMQ_MOSQUITTO=$(CURDIR)/tests/integration/valgrind-mosquitto \
		$(BUILD)/tests/integration/test_plugin >$(BUILD)/valgrind/test.log 2>&1 || \
		{ tail -n 40 $(BUILD)/valgrind/test.log; exit 1; }
	@echo "== $(BUILD)/tests/integration/test_admin (broker under valgrind: the control API)"
	@CMQ_BUILD=$(BUILD) CMQ_SRC=$(CURDIR) CMQ_PKI_DIR=$(CURDIR)/$(BUILD)/pki \
		CMQ_VG_DIR=$(CURDIR)/$(BUILD)/valgrind \
		CMQ_MOSQUITTO=$(CURDIR)/tests/integration/valgrind-mosquitto \
		$(BUILD)/tests/integration/test_admin >$(BUILD)/valgrind/admin-test.log 2>&1 || \
		{ tail -n 40 $(BUILD)/valgrind/admin-test.log; exit 1; }
	@sh tests/integration/check-valgrind $(BUILD)/valgrind
	@echo "== $(BUILD)/tests/integration/test_gateway (the gateway under valgrind)"
	@CMQ_BUILD=$(BUILD) CMQ_SRC=$(CURDIR) CMQ_PKI_DIR=$(CURDIR)/$(BUILD)/pki \
		CMQ_TEST_ONLY=$(GATEWAY_VG_TESTS) \
		CMQ_GATEWAY_WRAPPER="valgrind --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite --suppressions=$(CURDIR)/tests/integration/gateway.supp \
		--log-file=$(CURDIR)/$(BUILD)/valgrind/gateway.%p.log" \
		$(BUILD)/tests/integration/test_gateway >$(BUILD)/valgrind/gateway-test.log 2>&1 || \
		{ tail -n 40 $(BUILD)/valgrind/gateway-test.log; \
		grep -l "ERROR SUMMARY: [1-9]" $(BUILD)/valgrind/gateway.*.log | head -n 1 | xargs -r cat; exit 1; }
	@echo "gateway under valgrind: $$(ls $(BUILD)/valgrind/gateway.*.log | wc -l) run(s), no memory errors or leaks"

# ---- fuzz targets (libFuzzer); `make test` replays the seed corpus, `make fuzz` explores ----
FUZZ_SECONDS ?= 60
$(BUILD)/fuzz/%: tests/fuzz/%.c $(CORE_SRC) $(wildcard core/*.h tests/*.h) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(FUZZCC) -g -O1 -fsanitize=fuzzer,address,undefined $(CMQ_CPPFLAGS) -o $@ $< $(CORE_SRC) \
		$(PKG_LIBS)

fuzz-regress: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); \
		echo "== $$f (seed corpus)"; $$f -runs=0 tests/fuzz/corpus/$$n >/dev/null 2>&1 || \
		{ $$f -runs=0 tests/fuzz/corpus/$$n; exit 1; }; done

fuzz: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); mkdir -p $(BUILD)/fuzz/corpus-$$n; \
		$$f -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n; done

# ---- benchmarks ----
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(ITEST_HELPER_OBJ) $(CORE_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lmosquitto

bench: all $(BENCH_BIN)
	@sh bench/run.sh $(BUILD)

# ---- the test command of README.md ----
test: lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-san
	@$(MAKE) --no-print-directory fuzz-regress
	@$(MAKE) --no-print-directory install-check
	@$(MAKE) --no-print-directory docker-check
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory integration-valgrind
	@echo "civicmq: all tests passed"

demo: all $(DEMO)
	@sh scripts/demo.sh $(BUILD)

# ---- style ----
LINT_SRC = $(wildcard core/*.[ch] plugin/*.[ch] gateway/*.[ch] tools/*.[ch] tests/*.h tests/unit/*.[ch] \
	tests/integration/*.[ch] tests/fuzz/*.c bench/*.c demo/*.c)
BANNED := \b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gets)[[:space:]]*\(

lint: $(DEPS_STAMP)
	@clang-format --dry-run --Werror $(LINT_SRC)
	@if grep -nE '$(BANNED)' $(LINT_SRC); then \
		echo "lint: banned call (use snprintf, memcpy with lengths, strtok_r, strtol)"; \
		exit 1; fi
	@echo "lint: ok"

format:
	clang-format -i $(LINT_SRC)

# ---- install ----
install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR) \
		$(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 0644 $(PLUGIN) $(DESTDIR)$(LIBDIR)/civicmq_plugin.so
	install -m 0755 $(TOOLS) $(GATEWAY) $(DESTDIR)$(BINDIR)/
	install -m 0755 certs/civicmq-pki $(DESTDIR)$(BINDIR)/civicmq-pki
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 config/README.md $(DESTDIR)$(DOCDIR)/configuration.md
	install -m 0644 config/*.json config/mosquitto.conf config/gateway.conf \
		$(DESTDIR)$(DOCDIR)/examples/
	@# A running city's configuration is never overwritten: examples go to /etc only once.
	@for f in config/*.json config/mosquitto.conf config/gateway.conf; do \
		t=$(DESTDIR)$(SYSCONFDIR)/$$(basename $$f); \
		if [ -e "$$t" ]; then echo "keeping existing $$t"; \
		else install -m 0640 $$f "$$t"; fi; done
	@# The unit names the default install paths; rewrite them for this PREFIX and SYSCONFDIR.
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/civicmq/|$(DOCDIR)/|g' \
		-e 's|/etc/civicmq|$(SYSCONFDIR)|g' config/civicmq-gateway.service \
		>$(BUILD)/civicmq-gateway.service
	install -m 0644 $(BUILD)/civicmq-gateway.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/civicmq-gateway.service

# `make test` checks that install works into a staging directory, and that the plugin
# exports nothing but Mosquitto's three entry points.
install-check: all
	@$(GATEWAY) --example-config | diff -u config/gateway.conf - || \
		{ echo "install-check: config/gateway.conf differs from civicmq-gateway --example-config"; \
		exit 1; }
	@rm -rf $(BUILD)/stage
	@$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(BUILD)/stage PREFIX=/usr >/dev/null
	@for f in usr/lib/civicmq/civicmq_plugin.so usr/bin/civicmq-passwd usr/bin/civicmq-pki \
		usr/bin/civicmq-gateway etc/civicmq/gateway.conf \
		etc/civicmq/policy.json etc/civicmq/mosquitto.conf \
		usr/share/doc/civicmq/configuration.md usr/share/doc/civicmq/examples/vendors.json \
		usr/lib/systemd/system/civicmq-gateway.service usr/bin/civicmq-admin; do \
		test -e $(BUILD)/stage/$$f || { echo "install-check: $$f missing"; exit 1; }; done
	@echo '{}' > $(BUILD)/stage/etc/civicmq/policy.json
	@$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(BUILD)/stage PREFIX=/usr >/dev/null
	@test "$$(cat $(BUILD)/stage/etc/civicmq/policy.json)" = '{}' || \
		{ echo "install-check: install overwrote an existing policy.json"; exit 1; }
	@exports=$$(nm -D --defined-only $(PLUGIN) | awk '$$2 == "T" {print $$3}' | sort | tr '\n' ' '); \
	test "$$exports" = "mosquitto_plugin_cleanup mosquitto_plugin_init mosquitto_plugin_version " || \
		{ echo "install-check: plugin exports: $$exports"; exit 1; }
	@echo "install-check: ok"

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/civicmq_plugin.so $(DESTDIR)$(BINDIR)/civicmq-pki \
		$(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(TOOLS) $(GATEWAY))) \
		$(DESTDIR)$(SYSTEMDUNITDIR)/civicmq-gateway.service
	@echo "configuration in $(DESTDIR)$(SYSCONFDIR) is left in place"

# The Docker deployment and the systemd unit, checked without a Docker engine (docker/check.sh).
docker-check: all
	@BUILD=$(BUILD) sh docker/check.sh

clean:
	rm -rf build

-include $(CORE_OBJ:.o=.d) $(PLUGIN_OBJ:.o=.d) $(GATEWAY_OBJ:.o=.d) $(UNIT_BIN:=.d) $(ITEST_BIN:=.d) \
	$(ITEST_HELPER_OBJ:.o=.d) $(BENCH_BIN:=.d) $(BUILD)/tests/unit/cmq_test.d \
	$(BUILD)/tools/civicmq-passwd.d $(BUILD)/tools/civicmq-sim.d $(BUILD)/tools/sim_payloads.d \
	$(BUILD)/tools/civicmq-dash.d $(BUILD)/tools/tool_opts.d \
	$(BUILD)/tools/tool_mqtt.d $(BUILD)/demo/civicmq-demo.d $(BUILD)/tools/civicmq-admin.d
