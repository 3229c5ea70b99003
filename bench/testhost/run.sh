#!/usr/bin/env bash
# hull-vmm vs QEMU microvm -enable-kvm inside the nested AMD-V test host:
# launch -> guest userspace, launch -> exit, VMM peak RSS, N runs each
# (bench/testhost/inner.sh does the measuring in there). Absolute numbers
# are slow (the test host is emulated); the ratio is what counts.
#
#   bench/testhost/run.sh [N]    (make bench runs it; needs make all images testhost-kernel)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
export BENCH_N=${1:-${BENCH_N:-10}}
export HULL_BIN=${HULL_BIN:-$top/build/bin/hull}
export HULL_KERNEL=${HULL_KERNEL:-$top/build/share/hull/vmlinux}
export HULL_INITRAMFS=${HULL_INITRAMFS:-$top/build/share/hull/initramfs.cpio}
export HULL_TEST_IMAGES=${HULL_TEST_IMAGES:-$top/build/images}
export HULL_TESTHOST_KERNEL=${HULL_TESTHOST_KERNEL:-$top/build/testhost/vmlinux}
export HULL_VMM_BIN=${HULL_VMM_BIN:-$top/target/release/hull-vmm}
for f in "$HULL_BIN" "$HULL_KERNEL" "$HULL_INITRAMFS" "$HULL_TESTHOST_KERNEL" "$HULL_VMM_BIN"; do
  [[ -e "$f" ]] || { echo "bench: $f is missing: run make all images testhost-kernel" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -static -O2 -Wall -o "$work/measure" "$here/measure.c"
export HULL_BENCH_MEASURE=$work/measure
cd "$top"
cargo test -q --release -p hull-tests --test testhost_bench -- --ignored --nocapture
