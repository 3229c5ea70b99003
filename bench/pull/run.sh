#!/usr/bin/env bash
# Figure 5, image pull and conversion: `hull pull` (download + verify +
# unpack + EROFS disk) of a ~200 MB Debian root filesystem from a registry
# on 127.0.0.1, next to `podman pull` (download + unpack into overlay
# storage) and `skopeo copy` into an OCI directory + `umoci unpack` of the
# same image, alternating; a second `hull pull` (must do no image work);
# and the EROFS disk next to an ext4 image of the same tree.
#
#   bench/pull/run.sh [N]      (bench/run.sh runs it; needs make hull deps)
#
# Also: pulling a second image on the same two layers plus a small one,
# into a store that has the first (the shared base is not unpacked again).
#
# The image is made once (bench/pull/debian-image.sh) with `debootstrap
# --variant=minbase bookworm` and umoci, in two layers (/usr/share apart
# from the rest), and cached under ~/.cache/hull/bench/.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-$(quick_or_full 3 10)}
need "$hull"
for tool in docker-registry skopeo umoci debootstrap mkfs.ext4 mkfs.erofs; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: run make deps" >&2; exit 1; }
done

source "$(dirname "$0")/debian-image.sh"

bench_begin pull
peers=1
podman_setup || peers=
registry_pid=
stop_registry() {
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null || true
  fi
}
bench_cleanup_hooks+=(stop_registry)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $addr
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -sf "http://$addr/v2/" >/dev/null && break; sleep 0.1; done
image=$addr/bench/debian:1
image_b=$addr/bench/debian-b:1
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:debian" "docker://$image"
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout_b:debian-b" "docker://$image_b"

fig=pull
hull_series="hull pull (download, verify, unpack, EROFS disk)"
podman_series="podman pull (download, unpack to overlay)"
skopeo_series="skopeo copy + umoci unpack"
sync
for i in $(seq "$n"); do
  export HULL_ROOT=$work/store$i
  t0=$(now_us)
  HULL_LOG=hull_image=info "$hull" pull --plain-http "$image" >/dev/null 2>"$work/pull.log"
  sample $fig "$hull_series" "wall ms" "$(ms_since "$t0")"
  sed 's/\x1b\[[0-9;]*m//g' "$work/pull.log" >"$work/pull.txt"
  unpack=$(grep -o 'unpack_ms=[0-9]*' "$work/pull.txt" | cut -d= -f2 | head -1 || true)
  build=$(grep -o ' ms=[0-9]*' "$work/pull.txt" | cut -d= -f2 | head -1 || true)
  if [[ -n $unpack && -n $build ]]; then
    sample $fig "hull pull, of which unpacking the layers" "ms" "$unpack"
    sample $fig "hull pull, of which mkfs.erofs" "ms" "$((build - unpack))"
  fi
  disk=$(ls "$HULL_ROOT"/disks/*.erofs)
  t0=$(now_us)
  "$hull" pull --plain-http "$image" >/dev/null
  sample $fig "second hull pull (no image work)" "wall ms" "$(ms_since "$t0")"
  # Another image on the same base: its small layer, and a disk.
  t0=$(now_us)
  HULL_LOG=hull_image=info "$hull" pull --plain-http "$image_b" >/dev/null 2>"$work/pull.log"
  sample $fig "hull pull of a second image sharing the base" "wall ms" "$(ms_since "$t0")"
  sed 's/\x1b\[[0-9;]*m//g' "$work/pull.log" >"$work/pull.txt"
  unpack=$(grep -o 'unpack_ms=[0-9]*' "$work/pull.txt" | cut -d= -f2 | head -1 || true)
  build=$(grep -o ' ms=[0-9]*' "$work/pull.txt" | cut -d= -f2 | head -1 || true)
  if [[ -n $unpack && -n $build ]]; then
    sample $fig "second image sharing the base, of which unpacking" "ms" "$unpack"
    sample $fig "second image sharing the base, of which mkfs.erofs" "ms" "$((build - unpack))"
  fi

  if [[ -n $peers ]]; then
    t0=$(now_us)
    podman pull -q --tls-verify=false "$image" >/dev/null
    sample $fig "$podman_series" "wall ms" "$(ms_since "$t0")"
    podman rmi -a -f >/dev/null
  fi

  t0=$(now_us)
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$image" "oci:$work/sk$i:debian"
  t1=$(now_us)
  umoci unpack --image "$work/sk$i:debian" "$work/bundle$i" >/dev/null
  t2=$(now_us)
  sample $fig "$skopeo_series" "wall ms" "$(( (t2 - t0) / 1000 ))"
  sample $fig "skopeo copy docker:// → oci:" "ms" "$(( (t1 - t0) / 1000 ))"
  sample $fig "umoci unpack" "ms" "$(( (t2 - t1) / 1000 ))"
  rm -rf "$work/sk$i"
  if [[ $i -lt $n ]]; then rm -rf "$work/store$i" "$work/bundle$i"; fi
done
ratio $fig "hull pull / podman pull" "$hull_series|wall ms" "$podman_series|wall ms"
ratio $fig "hull pull / skopeo + umoci" "$hull_series|wall ms" "$skopeo_series|wall ms"

# Disk format, on the last unpacked tree: EROFS (what hull builds) vs ext4.
tree=$work/bundle$n/rootfs
t0=$(now_us)
mkfs.erofs --quiet "$work/again.erofs" "$tree"
sample $fig "mkfs.erofs of the tree (hull's disk)" "ms" "$(ms_since "$t0")"
kib=$(du -sk "$tree" | cut -f1)
size_mb=$(( kib * 13 / 10 / 1024 + 64 ))
t0=$(now_us)
mkfs.ext4 -q -O ^has_journal -d "$tree" "$work/disk.ext4" "${size_mb}M" 2>"$work/mkfs.err" \
  || { cat "$work/mkfs.err" >&2; exit 1; }
sample $fig "mkfs.ext4 -d of the tree, no journal" "ms" "$(ms_since "$t0")"
allocated_mib() { awk -v k="$(du -k "$1" | cut -f1)" 'BEGIN {printf "%.1f", k / 1024}'; }
sample $fig "EROFS disk (hull's)" "allocated MiB" "$(allocated_mib "$disk")"
sample $fig "ext4 disk of the same tree" "allocated MiB" "$(allocated_mib "$work/disk.ext4")"
gz_mib=$(du -cb "$layout"/blobs/sha256/* | tail -1 | awk '{printf "%.1f", $1 / 1048576}')
note $fig "$n runs each, alternating; image: debootstrap minbase bookworm, $((kib / 1024)) MiB tree, $gz_mib MiB of blobs, 2 layers, served by docker-registry on 127.0.0.1"
