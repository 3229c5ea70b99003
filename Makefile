# hull: `make demo` builds everything and runs a container in a microVM;
# `make test` runs the whole test suite (what CI runs).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

BUILD      := $(CURDIR)/build
SHARE      := $(BUILD)/share/hull
BIN        := $(BUILD)/bin
IMAGES     := $(BUILD)/images
AGENT_TARGET := x86_64-unknown-linux-gnu
CARGO      ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

export HULL_KERNEL    := $(SHARE)/vmlinux
export HULL_INITRAMFS := $(SHARE)/initramfs.cpio
export HULL_BZIMAGE   := $(SHARE)/bzImage
export HULL_BIN       := $(BIN)/hull
export HULL_TEST_IMAGES := $(IMAGES)
# The nested AMD-V test host (tests/src/testhost.rs) and the VMM it runs.
export HULL_TESTHOST_KERNEL := $(BUILD)/testhost/vmlinux
export HULL_VMM_BIN := $(CURDIR)/target/release/hull-vmm
# The VM templates the end-to-end suite's installations share.
export HULL_TEST_TEMPLATES := $(BUILD)/e2e-templates

.PHONY: all deps kernel testhost-kernel agent initramfs hull shim vmm api images demo test lint unit fuzz e2e bench bench-deps clean

all: kernel initramfs hull shim vmm api

deps:
	@scripts/install-deps.sh

# The guest kernel is cached by content hash under ~/.cache/hull.
kernel: deps
	@mkdir -p $(SHARE)
	@out=$$(kernel-config/build.sh guest) && cp -u "$$out/vmlinux" $(SHARE)/vmlinux \
	  && cp -u "$$out/bzImage" $(SHARE)/bzImage && cp "$$out/release" $(SHARE)/kernel-release

# The test host's kernel: the guest config plus KVM/KVM_AMD, same cache.
testhost-kernel: deps
	@mkdir -p $(BUILD)/testhost
	@out=$$(kernel-config/build.sh testhost) && cp -u "$$out/vmlinux" $(HULL_TESTHOST_KERNEL)

# The agent is PID 1 in the guest: a static binary (glibc, crt-static).
agent:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p hull-agent --target $(AGENT_TARGET)

initramfs: deps agent
	@mkdir -p $(SHARE)
	@rootfs/build.sh target/$(AGENT_TARGET)/release/hull-agent $(HULL_INITRAMFS)

hull:
	$(CARGO) build --release -p hull-cli
	@mkdir -p $(BIN)
	@install -m 0755 target/release/hull $(BIN)/hull
	@ln -sf hull $(BIN)/hull-runc

# containerd's runtime v2 shim (`ctr run --runtime io.containerd.hull.v2`);
# it runs `hull` from its own directory.
shim:
	$(CARGO) build --release -p hull-shim
	@mkdir -p $(BIN)
	@install -m 0755 target/release/containerd-shim-hull-v2 $(BIN)/containerd-shim-hull-v2

vmm:
	$(CARGO) build --release -p hull-vmm

# The Docker Engine API server (`hull system service` runs it from here).
api:
	$(CARGO) build --release -p hull-api
	@mkdir -p $(BIN)
	@install -m 0755 target/release/hull-api $(BIN)/hull-api

images: deps
	@mkdir -p $(IMAGES)
	@tests/images/make-busybox-image.sh $(IMAGES)/busybox.tar hull-demo/busybox:latest
	@tests/images/make-busybox-image.sh --workdir-user $(IMAGES)/busybox-app.tar hull-demo/busybox-app:latest

demo: all images
	$(BIN)/hull load -i $(IMAGES)/busybox.tar
	$(BIN)/hull run --rm hull-demo/busybox sh -c 'echo hello from $$(uname -r) in a VM'
	@echo "(host kernel: $$(uname -r))"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: kernel
	$(CARGO) test --workspace --exclude hull-tests

# Every fuzz target (fuzz/, vmm/fuzz/) for FUZZ_RUNS executions each, on
# the stable toolchain; the table of executions and crashes is printed
# and kept in build/fuzz/report.md.
fuzz:
	@fuzz/run.sh

e2e: all images testhost-kernel
	@mkdir -p $(BUILD) && rm -rf $(HULL_TEST_TEMPLATES) && mkdir -p $(HULL_TEST_TEMPLATES) && tests/leak-check.sh snapshot $(BUILD)/leaks.before
	$(CARGO) test --no-fail-fast -p hull-tests -- --test-threads=2
	@tests/leak-check.sh compare $(BUILD)/leaks.before

test: lint unit fuzz e2e

# Quick by default; BENCH_FULL=1 for more runs, density up to 100 and the
# nested test host (if `make testhost-kernel` has built its kernel).
bench: all images bench-deps
	@bench/run.sh

# The peers `make bench` measures hull against (podman, runc); not needed by `make test`.
bench-deps: deps
	@bench/install-peers.sh

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
