#!/usr/bin/env bash
# Figure 7, pods: starting a container in a VM of its own next to starting
# one in a running container's VM (`--network container:NAME`: disks and
# an agent port hot-added, no boot), alternating so machine load hits both
# alike; and, measured inside the guest, the time from the guest kernel's
# start to the container's first instruction (its /proc/uptime).
#
#   bench/pod/run.sh [N]     (bench/run.sh runs it; needs make all images)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-$(quick_or_full 5 20)}
fig=pod
bench_begin pod
hull_load

"$hull" run --rm "$bench_image" true # converts the image once, not counted
"$hull" run -d --name pod-host "$bench_image" sleep 100000 >/dev/null

timed() { # SERIES COMMAND...: one wall-clock sample in ms
  local series=$1 t0
  shift
  t0=$(now_us)
  "$@" >/dev/null
  sample "$fig" "$series" "ms" "$(ms_since "$t0")"
}
for _ in $(seq "$n"); do
  timed "hull run --rm (a VM of its own)" "$hull" run --rm "$bench_image" true
  timed "hull run --rm --network container:pod-host (joins its VM)" \
    "$hull" run --rm --network container:pod-host "$bench_image" true
  uptime_s=$("$hull" run --rm "$bench_image" cut -d' ' -f1 /proc/uptime)
  sample "$fig" "guest kernel start → container process (in the guest)" "ms" \
    "$(awk -v s="$uptime_s" 'BEGIN { printf "%d", s * 1000 }')"
done
ratio "$fig" "joining / own VM" \
  "hull run --rm --network container:pod-host (joins its VM)|ms" \
  "hull run --rm (a VM of its own)|ms"
note "$fig" "the guest figure is /proc/uptime as read by the container's first process: kernel boot, agent, root and namespaces"
