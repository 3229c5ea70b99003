# Sourced by bench/pull/run.sh and bench/disk/run.sh: makes (once) the
# ~200 MB Debian image both measure and sets $layout to its OCI layout
# (image name `debian`, two layers: /usr/share apart from the rest) and
# $layout_b to a second image on the same two layers plus a small one
# (`debian-b`, for building an image that shares a base).
#
# The image is made with `debootstrap --variant=minbase bookworm`
# (Debian's mirror) and umoci, and cached under ~/.cache/hull/bench/.
cache=${HULL_BENCH_CACHE:-$HOME/.cache/hull/bench}
mkdir -p "$cache"
rootfs_tar=$cache/debian-minbase.tar
layout=$cache/debian-oci
layout_b=$cache/debian-b-oci
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
if [[ ! -f $layout_b/index.json ]]; then
  tmp=$(mktemp -d "$cache/layout-b.XXXXXX")
  cp -a "$layout" "$tmp/oci"
  mkdir "$tmp/app"
  echo "debian-b: the base plus this file" >"$tmp/app/release"
  umoci insert --image "$tmp/oci:debian" --tag debian-b "$tmp/app" /srv/app
  umoci gc --layout "$tmp/oci"
  rm -rf "$layout_b"
  mv "$tmp/oci" "$layout_b"
  rm -rf "$tmp"
fi
