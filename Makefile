# ovlfs: `make` builds, `make demo` runs the built-in sample, `make check` runs every test.
# Longer runs: make fuzz | fsx | fuzz-options | fuzz-layers | fuzz-parsers | soak SECONDS=N.
CC ?= cc
CFLAGS ?= -O2 -g
WARN_CFLAGS = -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -Isrc
FUSE_CFLAGS = $(shell pkg-config --cflags fuse3 2>/dev/null)
FUSE_LIBS = $(shell pkg-config --libs fuse3 2>/dev/null)
BUILD ?= build
SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TSAN_FLAGS = -O1 -g -fsanitize=thread -fno-omit-frame-pointer

# The four parts (README "Layout"): the engine is a static library built without the FUSE
# include path, so a FUSE header in it fails the build; ovlfs, the unit tests and the
# libFuzzer harnesses link it. Objects keep their dependencies (-MMD): one changed file
# rebuilds its objects only, and make -j2 builds in parallel.
ENGINE_SRC = $(wildcard src/engine/*.c)
FRONT_SRC = $(wildcard src/fuse/*.c)
CLI_SRC = $(wildcard src/cli/*.c)
TOOLS_SRC = $(wildcard src/tools/*.c)
OPTIONS_SRC = src/cli/options.c src/cli/option_table.c src/cli/help.c src/cli/validate.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
ENGINE_LIB = $(BUILD)/libovlfs-engine.a
# test_engine: the shared harness (harness*.c) and one test_<area>.c per engine area.
# test_options: test_options*.c, over the parser's files.
OPTIONS_TEST_SRC = $(wildcard tests/unit/test_options*.c)
ENGINE_TEST_SRC = $(wildcard tests/unit/harness*.c) \
		  $(filter-out $(OPTIONS_TEST_SRC),$(wildcard tests/unit/test_*.c))
ALL_OBJ = $(call obj,$(ENGINE_SRC) $(FRONT_SRC) $(CLI_SRC) $(TOOLS_SRC) $(ENGINE_TEST_SRC) \
	  $(OPTIONS_TEST_SRC))

.PHONY: all deps demo check test unit mount-tests mount-tests-uring sanitize tsan clean format

all: $(BUILD)/ovlfs $(BUILD)/test_engine $(BUILD)/test_options

deps:
	bash scripts/install-deps.sh

# Only the front end (and main.c, which starts it) sees the FUSE headers.
$(call obj,$(FRONT_SRC) $(CLI_SRC)): EXTRA_CFLAGS = $(FUSE_CFLAGS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS) -MMD -MP -c -o $@ $<

-include $(ALL_OBJ:.o=.d)

$(ENGINE_LIB): $(call obj,$(ENGINE_SRC))
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/ovlfs: $(call obj,$(CLI_SRC) $(FRONT_SRC) $(TOOLS_SRC)) $(ENGINE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(FUSE_LIBS) -luring -lz -lpthread

$(BUILD)/test_engine: $(call obj,$(ENGINE_TEST_SRC)) $(ENGINE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ -lpthread

$(BUILD)/test_options: $(call obj,$(OPTIONS_TEST_SRC) $(OPTIONS_SRC)) $(ENGINE_LIB)
	$(CC) $(CFLAGS) -o $@ $^

demo: deps
	$(MAKE) $(BUILD)/ovlfs
	bash scripts/demo.sh $(BUILD)/ovlfs

unit: $(BUILD)/test_engine $(BUILD)/test_options
	$(BUILD)/test_engine
	$(BUILD)/test_options

mount-tests: $(BUILD)/ovlfs
	OVLFS_BIN=$(abspath $(BUILD)/ovlfs) /usr/bin/python3 -m pytest -q tests

# Every mount test again with requests over io_uring (-o uring=1; tests/uring/run.sh turns
# the kernel's fuse.enable_uring on for the run and back).
mount-tests-uring: $(BUILD)/ovlfs
	bash tests/uring/run.sh $(BUILD)/ovlfs

# Every test, then every test again under AddressSanitizer and UBSan.
check: deps
	$(MAKE) unit mount-tests mount-tests-uring
	$(MAKE) BUILD=build/san CFLAGS="$(SAN_FLAGS)" unit mount-tests
	$(MAKE) tsan
	$(MAKE) fuzz-smoke

# ThreadSanitizer over what runs concurrently: the engine's threaded unit test, the
# multi-process stress test and the fuzzer, over /dev/fuse and again over io_uring (a
# report stops the daemon: the test fails).
tsan: deps
	$(MAKE) BUILD=build/tsan CFLAGS="$(TSAN_FLAGS)" build/tsan/ovlfs build/tsan/test_engine
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" build/tsan/test_engine
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" OVLFS_BIN=$(abspath build/tsan/ovlfs) \
		/usr/bin/python3 -m pytest -q tests/test_stress.py tests/test_fuzz.py tests/test_uring.py
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" URING_TESTS="tests/test_stress.py tests/test_fuzz.py" \
		bash tests/uring/run.sh build/tsan/ovlfs

test: check

clean:
	rm -rf build

format:
	clang-format -i --style=file src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h \
		tests/libfuzzer/*.c tests/libfuzzer/*.h

# Opt-in: podman with ovlfs as its overlay mount_program, against fuse-overlayfs and the
# kernel driver, in a private storage (tests/podman/run.sh; installs podman, runc, busybox).
.PHONY: test-podman
test-podman: $(BUILD)/ovlfs
	bash tests/podman/install.sh
	bash tests/podman/run.sh $(BUILD)/ovlfs

# Side-by-side benchmark (native, kernel overlayfs, fuse-overlayfs, ovlfs); see bench/README.md.
.PHONY: bench bench-quick
bench:
	bash bench/bench.sh full

bench-quick:
	bash bench/bench.sh quick

# Developer workloads (git, tar, cp -a, rm -rf, find) on a generated source tree; opt-in.
# QUICK=1: 3 rounds on a 3k-file tree; ROOTLESS=1: the FUSE daemons mounted by nobody;
# APT=1: also apt-get install into a debootstrap'd lower (downloads from Debian once).
.PHONY: bench-apps
bench-apps:
	bash bench/bench.sh $(if $(QUICK),apps-quick,apps) $(if $(ROOTLESS),--rootless) \
		$(if $(APT),--apt)

# make install [PREFIX=/usr/local] [DESTDIR=staging dir]: the binary and ovlfs(1).
# mount -t fuse.ovlfs finds the binary through mount.fuse3 in /usr/local/bin, /usr/bin, ...
# make uninstall (same PREFIX and DESTDIR) removes exactly those two files.
PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
MAN1DIR = $(PREFIX)/share/man/man1
INSTALL ?= install

.PHONY: install uninstall
install: $(BUILD)/ovlfs doc/ovlfs.1
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MAN1DIR)
	$(INSTALL) -m 0755 $(BUILD)/ovlfs $(DESTDIR)$(BINDIR)/ovlfs
	$(INSTALL) -m 0644 doc/ovlfs.1 $(DESTDIR)$(MAN1DIR)/ovlfs.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ovlfs $(DESTDIR)$(MAN1DIR)/ovlfs.1

# Differential fuzzer against the kernel overlayfs (tests/difffuzz/): `make fuzz SECONDS=3600`
# runs seed after seed for that long, printing progress and a shrunk reproduction of every
# divergence (FUZZ_ARGS for more options: --help). MODE=off|redirect|metacopy (a comma list
# cycles seed by seed; default all) or the opt-in MODE=index: the kernel's and ovlfs's
# options (tests/difffuzz). fsx: the data-integrity exerciser on a lower-layer file through
# an ovlfs mount, `make fsx N=100000` (tests/test_fsx.py).
.PHONY: fuzz fsx
SECONDS ?= 300
N ?= 100000
FUZZ_ARGS ?=
MODE ?= all

$(BUILD)/fsx: tools/fsx.c
	@mkdir -p $(BUILD)
	$(CC) $(WARN_CFLAGS) $(CFLAGS) -o $@ tools/fsx.c

fuzz: $(BUILD)/ovlfs
	cd tests && OVLFS_BIN=$(abspath $(BUILD)/ovlfs) /usr/bin/python3 -m difffuzz \
		--seconds $(SECONDS) --mode $(MODE) $(FUZZ_ARGS)

fsx: $(BUILD)/ovlfs $(BUILD)/fsx
	OVLFS_BIN=$(abspath $(BUILD)/ovlfs) FSX_BIN=$(abspath $(BUILD)/fsx) FSX_OPS=$(N) \
		/usr/bin/python3 -m pytest -q -s tests/test_fsx.py

# libFuzzer harnesses (tests/libfuzzer/, built with clang into build/fuzz/): `make fuzz-options
# SECONDS=N` fuzzes the command-line parser and validation, `make fuzz-layers SECONDS=N` the
# engine over layer trees built from the fuzz bytes, `make fuzz-parsers` both. A crash leaves
# its input in build/fuzz/ (rerun: build/fuzz/fuzz_layers FILE). `make fuzz-smoke`: 20 s each,
# for check.
.PHONY: fuzz-options fuzz-layers fuzz-parsers fuzz-smoke
FUZZ_BUILD = build/fuzz
FUZZ_CC ?= clang
FUZZ_FLAGS = -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	     -fno-omit-frame-pointer
FUZZ_SMOKE_SECONDS ?= 20

# The engine library and the option parser again, instrumented (their own BUILD).
FUZZ_LIB_FLAGS = -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
		 -fno-omit-frame-pointer

.PHONY: fuzz-objects
fuzz-objects:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) CFLAGS="$(FUZZ_LIB_FLAGS)" \
		$(FUZZ_BUILD)/libovlfs-engine.a $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(OPTIONS_SRC))

$(FUZZ_BUILD)/fuzz_options: tests/libfuzzer/fuzz_options.c fuzz-objects
	$(FUZZ_CC) $(WARN_CFLAGS) $(FUZZ_FLAGS) -o $@ tests/libfuzzer/fuzz_options.c \
		$(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(OPTIONS_SRC)) $(FUZZ_BUILD)/libovlfs-engine.a

$(FUZZ_BUILD)/fuzz_layers: tests/libfuzzer/fuzz_layers.c tests/libfuzzer/layer_build.c \
			  tests/libfuzzer/fuzz_layers.h fuzz-objects
	$(FUZZ_CC) $(WARN_CFLAGS) $(FUZZ_FLAGS) -o $@ tests/libfuzzer/fuzz_layers.c \
		tests/libfuzzer/layer_build.c \
		$(FUZZ_BUILD)/libovlfs-engine.a -lpthread

# The first corpus directory gets the new inputs: a scratch one, the seeds stay as committed.
fuzz-options: $(FUZZ_BUILD)/fuzz_options
	@mkdir -p $(FUZZ_BUILD)/corpus-options
	$< -dict=tests/libfuzzer/options.dict -max_len=512 -timeout=10 -max_total_time=$(SECONDS) \
		-artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus-options \
		tests/libfuzzer/corpus/options

fuzz-layers: $(FUZZ_BUILD)/fuzz_layers
	@mkdir -p $(FUZZ_BUILD)/corpus-layers
	$< -timeout=20 -max_len=400 -len_control=0 -max_total_time=$(SECONDS) \
		-artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus-layers \
		tests/libfuzzer/corpus/layers

fuzz-parsers: fuzz-options fuzz-layers

fuzz-smoke:
	$(MAKE) fuzz-options fuzz-layers SECONDS=$(FUZZ_SMOKE_SECONDS)

# Soak (tests/soak.py): the stress workers, fsx and the differential fuzzer at once against
# ovlfs mounts for SECONDS, a line every 10 s with ops, errors and each daemon's RSS; exit
# status 1 on any error. SOAK_ARGS for more (--help), e.g. SOAK_ARGS="--lanes stress,fsx".
.PHONY: soak
SOAK_ARGS ?=
soak: $(BUILD)/ovlfs $(BUILD)/fsx
	OVLFS_BIN=$(abspath $(BUILD)/ovlfs) FSX_BIN=$(abspath $(BUILD)/fsx) \
		/usr/bin/python3 tests/soak.py --seconds $(SECONDS) $(SOAK_ARGS)
