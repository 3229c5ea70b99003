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
# The image is made once with `debootstrap --variant=minbase bookworm`
# (Debian's mirror) and umoci, in two layers (/usr/share apart from the
# rest), and cached under ~/.cache/hull/bench/.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-$(quick_or_full 3 10)}
need "$hull"
for tool in docker-registry skopeo umoci debootstrap mkfs.ext4 mkfs.erofs; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: run make deps" >&2; exit 1; }
done

cache=${HULL_BENCH_CACHE:-$HOME/.cache/hull/bench}
mkdir -p "$cache"
rootfs_tar=$cache/debian-minbase.tar
layout=$cache/debian-oci
if [[ ! -f $rootfs_tar ]]; then
  echo "bench: debootstrap --variant=minbase bookworm (once, cached in $cache)" >&2
  rm -rf "$cache/rootfs.tmp"
  debootstrap --variant=minbase bookworm "$cache/rootfs.tmp" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1
  tar -C "$cache/rootfs.tmp" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$cache/rootfs.tmp"
fi
if [[ ! -f $layout/index.json ]]; then
  echo "bench: building the OCI image (once)" >&2
  tmp=$(mktemp -d "$cache/layout.XXXXXX")
  mkdir "$tmp/tree"
  tar -C "$tmp/tree" -xf "$rootfs_tar"
  umoci init --layout "$tmp/oci"
  umoci new --image "$tmp/oci:debian"
  umoci unpack --image "$tmp/oci:debian" "$tmp/bundle" >/dev/null
  # Layer 1: everything but /usr/share; layer 2: /usr/share.
  (cd "$tmp/tree" && tar --numeric-owner --exclude=./usr/share -cf - .) | tar -C "$tmp/bundle/rootfs" -xf -
  umoci repack --image "$tmp/oci:debian" "$tmp/bundle"
  umoci insert --image "$tmp/oci:debian" "$tmp/tree/usr/share" /usr/share
  umoci config --image "$tmp/oci:debian" --config.cmd /bin/bash
  umoci gc --layout "$tmp/oci"
  rm -rf "$layout"
  mv "$tmp/oci" "$layout"
  rm -rf "$tmp"
fi

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
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:debian" "docker://$image"

fig=pull
hull_series="hull pull (download, verify, unpack, EROFS disk)"
podman_series="podman pull (download, unpack to overlay)"
skopeo_series="skopeo copy + umoci unpack"
sync
for i in $(seq "$n"); do
  export HULL_ROOT=$work/store$i
  t0=$(now_us)
  HULL_LOG=hull_runtime::image=info "$hull" pull --plain-http "$image" >/dev/null 2>"$work/pull.log"
  sample $fig "$hull_series" "wall ms" "$(ms_since "$t0")"
  sed 's/\x1b\[[0-9;]*m//g' "$work/pull.log" >"$work/pull.txt"
  unpack=$(grep -o 'unpack_ms=[0-9]*' "$work/pull.txt" | cut -d= -f2 | head -1 || true)
  build=$(grep -o ' ms=[0-9]*' "$work/pull.txt" | cut -d= -f2 | head -1 || true)
  if [[ -n $unpack && -n $build ]]; then
    sample $fig "hull pull, of which unpacking the layers" "ms" "$unpack"
    sample $fig "hull pull, of which mkfs.erofs" "ms" "$((build - unpack))"
  fi
  t0=$(now_us)
  "$hull" pull --plain-http "$image" >/dev/null
  sample $fig "second hull pull (no image work)" "wall ms" "$(ms_since "$t0")"

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
disk=$(ls "$work/store$n"/disks/*.erofs)
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
