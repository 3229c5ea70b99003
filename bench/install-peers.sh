#!/usr/bin/env bash
# Installs the peers `make bench` measures hull against (podman with runc),
# if missing. Apart from scripts/install-deps.sh so that `make test` does
# not pay for them.
set -euo pipefail
packages=(podman runc)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-peers: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
