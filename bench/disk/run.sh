#!/usr/bin/env bash
# Figure 6, the rootfs disk: EROFS (what hull builds) against ext4 of the
# same ~200 MB Debian image, for build time, size and guest read speed.
# Both disks are built by hull itself (`HULL_DISK_FS=erofs|ext4`) from the
# same unpacked layers; each read is a fresh `hull run` (a new VM, so the
# guest's page cache is cold, and the disk file is dropped from the host's
# page cache first) that times, inside the guest, reading every file of
# the root filesystem: `tar -cf - --one-file-system / | wc -c` through the
# container's overlay onto the disk. The two kinds alternate.
#
#   bench/disk/run.sh [N]      (bench/run.sh runs it; needs make all)
#
# Under QEMU's TCG (no hardware virtualization here) the guest's CPU is
# emulated, so the read figures are mostly the filesystem code's CPU
# cost, which is what tells the two formats apart.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-$(quick_or_full 5 15)}
need "$hull" "$HULL_KERNEL" "$HULL_INITRAMFS"
for tool in skopeo umoci debootstrap mkfs.ext4 mkfs.erofs python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: run make deps" >&2; exit 1; }
done
source "$bench_top/bench/pull/debian-image.sh"

bench_begin disk
bench_cleanup_hooks+=(hull_rm_all)
fig=disk
kinds=(erofs ext4)
skopeo --insecure-policy copy -q "oci:$layout:debian" "oci-archive:$work/debian.tar:bench/debian:1"
"$hull" load -i "$work/debian.tar" >/dev/null
rm -f "$work/debian.tar"
image=bench/debian:1

# Build time: each kind's disk from the layers unpacked once before (the
# first build, not counted, unpacks them).
HULL_DISK_FS=erofs "$hull" run --rm "$image" true
rm -f "$HULL_ROOT"/disks/*
for i in $(seq 3); do
  for kind in "${kinds[@]}"; do
    rm -f "$HULL_ROOT"/disks/*."$kind"
    HULL_DISK_FS=$kind HULL_LOG=hull_image=info "$hull" run --rm "$image" true 2>"$work/build.log"
    ms=$(sed 's/\x1b\[[0-9;]*m//g' "$work/build.log" | grep -o ' ms=[0-9]*' | cut -d= -f2 | head -1 || true)
    [[ -n $ms ]] && sample $fig "$kind disk" "build ms (from unpacked layers)" "$ms"
  done
done
for kind in "${kinds[@]}"; do
  d=$(ls "$HULL_ROOT"/disks/*."$kind")
  sample $fig "$kind disk" "file MiB" "$(awk -v b="$(stat -c %s "$d")" 'BEGIN {printf "%.1f", b / 1048576}')"
  sample $fig "$kind disk" "allocated MiB" "$(awk -v k="$(du -k "$d" | cut -f1)" 'BEGIN {printf "%.1f", k / 1024}')"
done

# Guest read speed, cold.
drop_host_cache() { # FILE: its pages out of the host's page cache
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$1"
}
# Prints "BYTES NS": what tar read and how long it took, in the guest.
read_all='s=$(date +%s%N); b=$(tar -C / -cf - --one-file-system . 2>/dev/null | wc -c); e=$(date +%s%N); echo "$b $((e - s))"'
for i in $(seq "$n"); do
  for kind in "${kinds[@]}"; do
    drop_host_cache "$(ls "$HULL_ROOT"/disks/*."$kind")"
    t0=$(now_us)
    out=$(HULL_DISK_FS=$kind "$hull" run --rm "$image" bash -c "$read_all")
    wall=$(ms_since "$t0")
    read -r bytes ns <<<"$out"
    sample $fig "$kind disk" "guest tar of / ms (cold)" "$((ns / 1000000))"
    sample $fig "$kind disk" "guest read MiB/s (cold)" "$(awk -v b="$bytes" -v ns="$ns" 'BEGIN {printf "%.1f", b / 1048576 / (ns / 1e9)}')"
    sample $fig "$kind disk" "hull run wall ms (boot + read)" "$wall"
    last_bytes=$bytes
  done
done
ratio $fig "ext4 / EROFS, guest read time" "ext4 disk|guest tar of / ms (cold)" "erofs disk|guest tar of / ms (cold)"
ratio $fig "ext4 / EROFS, disk build time" "ext4 disk|build ms (from unpacked layers)" "erofs disk|build ms (from unpacked layers)"
note $fig "$n cold reads per kind, alternating, each in a fresh VM ($(kvm_kind)); tar read $((last_bytes / 1048576)) MiB of the debootstrap minbase bookworm image through the container's overlay; build ms: 3 runs each, mkfs from layers hull had unpacked already"
