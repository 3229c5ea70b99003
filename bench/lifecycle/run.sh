#!/usr/bin/env bash
# Lifecycle figures: `hull ps` and `hull ps -a` with N containers running
# (each in its own VM, `-m 32m`), next to `ls` of the run directory as the
# floor; then `hull run -d` (to running) and `hull rm -f` per container.
#
#   bench/lifecycle/run.sh [N] [SAMPLES]     (by hand; make bench times `hull ps`
#                                            at each density level instead)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-50}
samples=${2:-20}
bench_begin lifecycle
hull_load

ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "bench/lifecycle: starting $n containers (hull run -d -m 32m … sleep 3600), 4 at a time" >&2
start=$(ms)
seq 1 "$n" | xargs -P 4 -I{} "$hull" run -d -m 32m --name c{} hull-demo/busybox sleep 3600 >/dev/null
started=$(( $(ms) - start ))
running=$("$hull" ps -q | wc -l)
[[ $running -eq $n ]] || { echo "bench: only $running of $n containers run" >&2; exit 1; }

time_cmd() {
  for _ in $(seq 1 "$samples"); do
    local t0; t0=$(ms); "$@" >/dev/null; echo $(( $(ms) - t0 ))
  done | median
}
ps_ms=$(time_cmd "$hull" ps)
psa_ms=$(time_cmd "$hull" ps -a --format json)
inspect_ms=$(time_cmd "$hull" inspect c1)
ls_ms=$(time_cmd ls -l "$HULL_RUN_DIR")

start=$(ms)
"$hull" ps -aq | xargs "$hull" rm -f >/dev/null
removed=$(( $(ms) - start ))
left=$(find "$HULL_RUN_DIR" "$HULL_ROOT/sandboxes" -mindepth 1 2>/dev/null | wc -l)

printf '\n%-44s %10s\n' "lifecycle, $n containers (median of $samples)" "ms"
printf '%-44s %10s\n' "hull ps" "$ps_ms"
printf '%-44s %10s\n' "hull ps -a --format json" "$psa_ms"
printf '%-44s %10s\n' "hull inspect (one)" "$inspect_ms"
printf '%-44s %10s\n' "ls -l of the run dir (floor)" "$ls_ms"
printf '%-44s %10s\n' "hull run -d x$n, 4 in parallel (total)" "$started"
printf '%-44s %10s\n' "hull rm -f of all $n (total)" "$removed"
printf '%-44s %10s\n' "files left after rm" "$left"
