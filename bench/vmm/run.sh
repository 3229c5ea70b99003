#!/usr/bin/env bash
# Figure 2, VMM overhead: a stand-in guest (tests/standin-guests/bench.S:
# one byte to the serial port, then reset) under hull-vmm and under QEMU
# microvm on this host's KVM; launch -> first guest byte, launch -> exit,
# and RSS/PSS with an idle stand-in guest. measure.py does the measuring.
# Then restore (restore.py): a counting stand-in guest snapshotted and
# restored, hull-vmm --restore against QEMU microvm -incoming.
#
#   bench/vmm/run.sh [N]     (bench/run.sh runs it; needs make vmm, gcc)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-$(quick_or_full 20 100)}
rss_runs=$(quick_or_full 3 10)
restore_runs=$(quick_or_full 12 50)
vmm=${HULL_VMM_BIN:-$bench_top/target/release/hull-vmm}
need "$vmm"
[[ -r /dev/kvm && -w /dev/kvm ]] || { echo "bench: no usable /dev/kvm: the VMM figure needs KVM" >&2; exit 1; }
bench_begin vmm
sh "$bench_top/tests/standin-guests/build.sh" "$work/guests" >/dev/null
python3 "$bench_top/bench/vmm/measure.py" "$n" "$rss_runs" "$vmm" "$work/guests" "$BENCH_SAMPLES"
ratio vmm "hull-vmm / QEMU microvm, first byte" "hull-vmm|launch to first guest byte ms" "QEMU microvm -enable-kvm|launch to first guest byte ms"
ratio vmm "hull-vmm / QEMU microvm, RSS" "hull-vmm|RSS MiB, idle guest" "QEMU microvm -enable-kvm|RSS MiB, idle guest"
mkdir -p "$work/restore"
python3 "$bench_top/bench/vmm/restore.py" "$restore_runs" "$vmm" "$work/guests" "$work/restore" "$BENCH_SAMPLES"
ratio vmm "hull-vmm / QEMU microvm, restore to first byte" "hull-vmm --restore|restore to first guest byte ms" "QEMU microvm -incoming|restore to first guest byte ms"
note vmm "restore: $restore_runs runs each, alternating, of a 64 MiB counting stand-in (PVH) saved once; hull-vmm maps the memory file MAP_PRIVATE, QEMU reads its migration stream (exec:cat)"
note vmm "$n runs each, alternating, 64 MiB guests; memory: $rss_runs runs, 0.3 s after the idle guest's first byte; KVM here: $(kvm_kind)"
