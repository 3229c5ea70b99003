#!/usr/bin/env bash
# Installs the Debian packages hull's build, demo and tests need, if missing.
set -euo pipefail
packages=(
  # guest kernel build
  linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev xz-utils
  # VMs, disks, initramfs
  qemu-system-x86 erofs-utils e2fsprogs cpio file iproute2 nftables
  # test and demo images
  busybox-static skopeo umoci
  # pull tests: a real registry on loopback, htpasswd for its Basic auth,
  # raw pushes, zstd layers; the pull benchmark's Debian image
  docker-registry apache2-utils curl zstd debootstrap
  # the ecosystem tests: real containerd (ctr, its runc shim) and podman
  containerd podman runc conmon
  # the Engine API tests: Debian's docker 20.10 client (dockerd is never
  # started) and the Python SDK
  docker.io python3-docker
)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # docker.io's postinst would start dockerd; only its client is used.
  if [[ " ${missing[*]} " == *" docker.io "* && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
