#!/usr/bin/env bash
# `hull run IMAGE true` next to a bare QEMU boot of the same kernel and
# initramfs to /init (the agent, told of a channel that does not exist,
# does its boot steps and powers off at once), so the runtime's own
# overhead shows as a ratio.
#
#   bench/boot/run.sh [N]      (make bench runs it; needs `make all images`)
set -euo pipefail
n=${1:-10}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
hull=${HULL_BIN:-$top/build/bin/hull}
kernel=${HULL_KERNEL:-$top/build/share/hull/vmlinux}
initramfs=${HULL_INITRAMFS:-$top/build/share/hull/initramfs.cpio}
archive=${HULL_TEST_IMAGES:-$top/build/images}/busybox.tar
for f in "$hull" "$kernel" "$initramfs" "$archive"; do
  [[ -e "$f" ]] || { echo "bench: $f is missing: run make all images" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HULL_ROOT=$work/store HULL_RUN_DIR=$work/run HULL_HYPERVISOR=qemu HULL_KERNEL=$kernel HULL_INITRAMFS=$initramfs

khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2*1000; exit}' /proc/cpuinfo)
bare_boot() {
  qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
    -machine q35,accel=tcg -cpu max -smp 1 -m 512 \
    -kernel "$kernel" -initrd "$initramfs" \
    -append "console=ttyS0 reboot=t panic=-1 acpi=off quiet i8042.noaux i8042.nomux i8042.dumbkbd hull.channel=bench tsc_early_khz=$khz" \
    -serial none >/dev/null 2>&1
}

"$hull" load -i "$archive" >/dev/null
"$hull" run --rm hull-demo/busybox true   # converts the image once

now_ms() { date +%s%3N; }
timed() { # file command... : appends the command's wall time in ms
  local file=$1; shift
  local t0; t0=$(now_ms)
  "$@"
  echo $(( $(now_ms) - t0 )) >>"$file"
}
# Interleaved, so a change in machine load hits both sides alike.
for _ in $(seq "$n"); do
  timed "$work/hull.raw" "$hull" run --rm hull-demo/busybox true
  timed "$work/bare.raw" bare_boot
done
sort -n "$work/hull.raw" >"$work/hull.times"
sort -n "$work/bare.raw" >"$work/bare.times"

stat_of() { # file -> "median min max"
  awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%d %d %d\n", m, a[1], a[NR]}' "$1"
}
read -r hm hmin hmax < <(stat_of "$work/hull.times")
read -r bm bmin bmax < <(stat_of "$work/bare.times")
echo
echo "boot benchmark: N=$n, QEMU TCG q35, $(basename "$kernel") $(stat -c %s "$kernel") bytes, initramfs $(stat -c %s "$initramfs") bytes"
printf '%-44s %10s %10s %10s\n' "what" "median ms" "min ms" "max ms"
printf '%-44s %10s %10s %10s\n' "hull run --rm hull-demo/busybox true" "$hm" "$hmin" "$hmax"
printf '%-44s %10s %10s %10s\n' "bare qemu boot to /init, same kernel+initramfs" "$bm" "$bmin" "$bmax"
awk -v h="$hm" -v b="$bm" 'BEGIN {printf "ratio hull / bare (median): %.2f; hull overhead: %d ms\n", h/b, h-b}'
