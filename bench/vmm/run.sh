#!/bin/sh
# hull-vmm benchmark: N runs of a stand-in guest that writes one byte to
# the serial port and resets, under hull-vmm and under QEMU microvm, and
# the RSS of each VMM while an idle stand-in guest runs.
# Usage: bench/vmm/run.sh [N]   (default N=20; needs gcc, python3, and
# qemu-system-x86_64 for the comparison column)
set -eu
N=${1:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p hull-vmm --manifest-path "$root/Cargo.toml"
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sh "$root/tests/standin-guests/build.sh" "$work" >/dev/null
exec python3 "$root/bench/vmm/measure.py" "$N" "$target/release/hull-vmm" "$work"
