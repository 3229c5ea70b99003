#!/usr/bin/env bash
# Image push: `hull push` of the ~200 MB Debian (debootstrap) image to a
# registry on 127.0.0.1, next to `skopeo copy` of the same image from an
# OCI layout, each to a fresh repository (every blob uploaded), then
# again to the same repository (every blob already there), alternating.
#
#   bench/push/run.sh [N]      (bench/run.sh runs it; needs make hull)
#
# The image is bench/pull/debian-image.sh's (made once, cached under
# ~/.cache/hull/bench/), loaded into hull's store once.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-$(quick_or_full 3 10)}
need "$hull"
for tool in docker-registry skopeo umoci debootstrap; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: run make deps" >&2; exit 1; }
done

source "$(dirname "$0")/../pull/debian-image.sh"

bench_begin push
# A fresh registry (new port, empty storage) for every push measured, so
# nothing is there and skopeo's blob-info cache (keyed by host:port)
# cannot turn uploads into mounts.
registry_pid=
stop_registry() {
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=
  fi
}
bench_cleanup_hooks+=(stop_registry)
start_registry() { # NAME: sets $addr
  local port
  stop_registry
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  addr=127.0.0.1:$port
  cat >"$work/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry-$1
http:
  addr: $addr
YML
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -sf "http://$addr/v2/" >/dev/null && break; sleep 0.1; done
}

# Into hull's store, as an OCI archive of the same layout skopeo copies.
skopeo --insecure-policy copy -q "oci:$layout:debian" "oci-archive:$work/debian.tar:bench/debian:1"
"$hull" load -i "$work/debian.tar" >/dev/null

fig=push
hull_series="hull push (every blob uploaded)"
skopeo_series="skopeo copy oci: → docker:// (every blob uploaded)"
sync
for i in $(seq "$n"); do
  start_registry "hull$i"
  t0=$(now_us)
  "$hull" push --plain-http bench/debian:1 "$addr/bench/hull$i:1" >"$work/push.log"
  sample $fig "$hull_series" "wall ms" "$(ms_since "$t0")"
  grep -q ': Pushed' "$work/push.log" || { cat "$work/push.log" >&2; exit 1; }
  t0=$(now_us)
  "$hull" push --plain-http bench/debian:1 "$addr/bench/hull$i:1" >"$work/push.log"
  sample $fig "hull push again (every blob there)" "wall ms" "$(ms_since "$t0")"

  start_registry "skopeo$i"
  t0=$(now_us)
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:debian" "docker://$addr/bench/skopeo$i:1"
  sample $fig "$skopeo_series" "wall ms" "$(ms_since "$t0")"
  t0=$(now_us)
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:debian" "docker://$addr/bench/skopeo$i:1"
  sample $fig "skopeo copy again (every blob there)" "wall ms" "$(ms_since "$t0")"
  stop_registry
  rm -rf "$work/registry-hull$i" "$work/registry-skopeo$i"
done
ratio $fig "hull push / skopeo copy" "$hull_series|wall ms" "$skopeo_series|wall ms"
gz_mib=$(du -cb "$layout"/blobs/sha256/* | tail -1 | awk '{printf "%.1f", $1 / 1048576}')
note $fig "$n runs each, alternating; image: debootstrap minbase bookworm, $gz_mib MiB of blobs, 2 layers, each to a fresh docker-registry on 127.0.0.1 (plain HTTP)"
