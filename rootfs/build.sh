#!/usr/bin/env bash
# Assembles the guest initramfs: the static hull-agent as /init and the one
# device node the kernel needs before devtmpfs exists. Nothing else.
#
#   rootfs/build.sh AGENT_BINARY OUT.cpio
#
# The archive is uncompressed on purpose: under TCG, gunzip in the guest
# costs more than reading a few more megabytes.
set -euo pipefail
agent=${1:?usage: build.sh AGENT_BINARY OUT.cpio}
out=${2:?usage: build.sh AGENT_BINARY OUT.cpio}

if ! file -b "$agent" | grep -q 'statically linked\|static-pie linked'; then
  echo "rootfs/build.sh: $agent is not a static binary" >&2
  exit 1
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/dev"
install -m 0755 "$agent" "$stage/init"
# The kernel opens /dev/console for init's stdio before anything is mounted.
mknod -m 0600 "$stage/dev/console" c 5 1

tmp="$out.tmp.$$"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) >"$tmp"
mv "$tmp" "$out"
echo "rootfs: $(stat -c %s "$out") bytes -> $out" >&2
