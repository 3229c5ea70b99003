#!/usr/bin/env bash
# Builds a hull kernel from Debian's linux-source-6.1 and caches it by content.
#
#   kernel-config/build.sh [guest|testhost]   -> prints the directory holding vmlinux, bzImage, config
#
# guest: the microVM guest kernel. testhost: the guest config plus KVM/KVM_AMD,
# for the nested AMD-V test host (a QEMU TCG VM) that tests hull-vmm.
#
# The cache key hashes the config fragments, this script and the exact
# linux-source package version, so a second run with nothing changed is a
# lookup. Cache root: $HULL_CACHE (default ~/.cache/hull).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
flavor=${1:-guest}
cache=${HULL_CACHE:-$HOME/.cache/hull}
jobs=${HULL_KERNEL_JOBS:-$(nproc)}

case "$flavor" in
  guest) fragments=("$here/guest.config") ;;
  testhost) fragments=("$here/guest.config" "$here/testhost.config") ;;
  *) echo "build.sh: unknown kernel flavor '$flavor' (known: guest, testhost)" >&2; exit 2 ;;
esac

log() { echo "kernel-config: $*" >&2; }

ensure_packages() {
  local missing=()
  for pkg in linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev xz-utils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

ensure_packages
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( { echo "$flavor $src_version"; cat "${BASH_SOURCE[0]}" "${fragments[@]}"; } | sha256sum | cut -c1-16)
out="$cache/kernel/$flavor-$key"

if [[ -f "$out/vmlinux" ]]; then
  log "cached $flavor kernel $out"
  echo "$out"
  exit 0
fi

mkdir -p "$cache/kernel" "$cache/src"
# One build at a time per cache: a second caller waits, then finds the result.
exec 9>"$cache/kernel/.lock"
flock 9
if [[ -f "$out/vmlinux" ]]; then echo "$out"; exit 0; fi

src="$cache/src/linux-source-6.1-$src_version"
if [[ ! -f "$src/.extracted" ]]; then
  log "extracting linux-source $src_version"
  rm -rf "$src" "$src.tmp"
  mkdir -p "$src.tmp"
  tar -xJf /usr/src/linux-source-6.1.tar.xz -C "$src.tmp" --strip-components=1
  touch "$src.tmp/.extracted"
  mv "$src.tmp" "$src"
fi

build="$cache/kernel/.build-$flavor-$key"
rm -rf "$build"
mkdir -p "$build"
started=$(date +%s)
log "configuring $flavor kernel in $build"
make -s -C "$src" O="$build" ARCH=x86_64 tinyconfig >&2
KCONFIG_CONFIG="$build/.config" "$src/scripts/kconfig/merge_config.sh" -m -O "$build" \
  "$build/.config" "${fragments[@]}" >/dev/null
make -s -C "$src" O="$build" ARCH=x86_64 olddefconfig >&2

# Every option we asked for must be in the final config exactly as asked.
bad=0
while IFS= read -r line; do
  [[ "$line" =~ ^CONFIG_([A-Za-z0-9_]+)=(.*)$ ]] || continue
  name=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
  if [[ "$want" == n ]]; then
    if grep -q "^CONFIG_$name=" "$build/.config"; then log "CONFIG_$name should be off"; bad=1; fi
  elif ! grep -qx "CONFIG_$name=$want" "$build/.config"; then
    log "CONFIG_$name=$want did not survive olddefconfig (missing dependency?)"; bad=1
  fi
done < <(cat "${fragments[@]}")
if ((bad)); then exit 1; fi

log "building $flavor kernel with -j$jobs (several minutes, once)"
make -s -C "$src" O="$build" ARCH=x86_64 -j"$jobs" vmlinux bzImage >"$build/make.log" 2>&1 || {
  tail -40 "$build/make.log" >&2; exit 1; }

staged="$out.tmp"
rm -rf "$staged"
mkdir -p "$staged"
cp "$build/vmlinux" "$staged/vmlinux"
cp "$build/arch/x86/boot/bzImage" "$staged/bzImage"
cp "$build/.config" "$staged/config"
make -s -C "$src" O="$build" ARCH=x86_64 kernelrelease >"$staged/release"
echo "$(( $(date +%s) - started ))" >"$staged/build-seconds"
mv "$staged" "$out"
rm -rf "$build"
log "built $flavor kernel $(cat "$out/release") in $(cat "$out/build-seconds")s: $out"
echo "$out"
