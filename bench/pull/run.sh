#!/usr/bin/env bash
# `hull pull` (download + verify + unpack + EROFS disk) of a ~200 MB Debian
# root filesystem from a registry on 127.0.0.1, next to `skopeo copy` of
# the same image into an OCI directory and `umoci unpack` of that, in one
# run; then a second pull (must do no image work) and the disk next to an
# ext4 image of the same tree.
#
#   bench/pull/run.sh [N]      (make bench runs it; needs `make hull`)
#
# The image is made once with `debootstrap --variant=minbase bookworm`
# (Debian's mirror) and umoci, in two layers (/usr/share apart from the
# rest), and cached under ~/.cache/hull/bench/.
set -euo pipefail
n=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
hull=${HULL_BIN:-$top/build/bin/hull}
[[ -x "$hull" ]] || { echo "bench: $hull is missing: run make hull" >&2; exit 1; }
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

work=$(mktemp -d)
registry_pid=
cleanup() {
  # Keep the script's own status: waiting on the killed registry gives 143.
  local status=$?
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
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

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
: >"$work/pull" ; : >"$work/unpack" ; : >"$work/build" ; : >"$work/skopeo" ; : >"$work/umoci" ; : >"$work/both" ; : >"$work/again"
sync
for i in $(seq "$n"); do
  export HULL_ROOT=$work/store$i
  t0=$(now_ms)
  HULL_LOG=hull_runtime::image=info "$hull" pull --plain-http "$image" >/dev/null 2>"$work/pull$i.log"
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$work/pull"
  sed 's/\x1b\[[0-9;]*m//g' "$work/pull$i.log" >"$work/pull$i.txt"
  { grep -o 'unpack_ms=[0-9]*' "$work/pull$i.txt" || echo unpack_ms=0; } | cut -d= -f2 >>"$work/unpack"
  { grep -o ' ms=[0-9]*' "$work/pull$i.txt" || echo ms=0; } | cut -d= -f2 >>"$work/build"
  t0=$(now_ms)
  "$hull" pull --plain-http "$image" >/dev/null
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$work/again"

  t0=$(now_ms)
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$image" "oci:$work/sk$i:debian"
  t1=$(now_ms)
  umoci unpack --image "$work/sk$i:debian" "$work/bundle$i" >/dev/null
  t2=$(now_ms)
  echo $((t1 - t0)) >>"$work/skopeo"
  echo $((t2 - t1)) >>"$work/umoci"
  echo $((t2 - t0)) >>"$work/both"
  rm -rf "$work/sk$i"
  [[ $i -lt $n ]] && rm -rf "$work/store$i" "$work/bundle$i"
done

# Disk format, on the last unpacked tree: EROFS (what hull builds) vs ext4.
tree=$work/bundle$n/rootfs
disk=$(ls "$work/store$n"/disks/*.erofs)
t0=$(now_ms)
mkfs.erofs --quiet "$work/again.erofs" "$tree"
t1=$(now_ms)
kib=$(du -sk "$tree" | cut -f1)
size_mb=$(( kib * 13 / 10 / 1024 + 64 ))
mkfs.ext4 -q -O ^has_journal -d "$tree" "$work/disk.ext4" "${size_mb}M"
t2=$(now_ms)

gz_mb=$(du -cb "$layout"/blobs/sha256/* | tail -1 | awk '{printf "%.1f", $1/1048576}')
tree_mb=$(awk -v k="$kib" 'BEGIN {printf "%.1f", k/1024}')
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN {printf "%.1f", b/1048576}'; }
alloc() { awk -v k="$(du -k "$1" | cut -f1)" 'BEGIN {printf "%.1f", k/1024}'; }
pull=$(median <"$work/pull"); unpack=$(median <"$work/unpack"); build=$(median <"$work/build")
sk=$(median <"$work/skopeo"); um=$(median <"$work/umoci"); both=$(median <"$work/both")
again=$(median <"$work/again")

echo
echo "## hull pull vs skopeo copy + umoci unpack (median of $n, ms; image: debootstrap minbase, $tree_mb MB tree, $gz_mb MB of blobs, 2 layers)"
echo
echo "| step | ms |"
echo "|---|---|"
echo "| hull pull (download+verify, unpack, EROFS disk) | $pull |"
echo "|   of which unpacking the layers (decompress, apply, diff ids) | $unpack |"
echo "|   of which mkfs.erofs | $((build - unpack)) |"
echo "| skopeo copy docker:// → oci: | $sk |"
echo "| umoci unpack | $um |"
echo "| skopeo + umoci | $both |"
echo "| second hull pull of the same image (no image work) | $again |"
echo
echo "## disk of the same tree"
echo
echo "| format | build ms | file MB | allocated MB |"
echo "|---|---|---|---|"
echo "| EROFS (hull's) | $((t1 - t0)) | $(mb "$disk") | $(alloc "$disk") |"
echo "| ext4, no journal (mkfs.ext4 -d) | $((t2 - t1)) | $(mb "$work/disk.ext4") | $(alloc "$work/disk.ext4") |"
