#!/usr/bin/env bash
# Figure 3, density: start idle busybox sandboxes (`sleep 3600`), 2 in
# flight, up to N = 10, 25 (and 50, 100 with BENCH_FULL=1), stopping early
# when the host has less than 20% of its memory available; at each N,
# record each sandbox's host memory (PSS of its processes, split into
# where it goes: memory.py) and idle CPU, the time to start them all, and
# `ps` latency. Podman with runc first, then hull with VM templates (each
# sandbox a clone of one template, the default), then hull booting every
# VM cold (HULL_TEMPLATE=off), one run.
# The first hull level also measures the guest memory each sandbox
# touches, from inside (/proc/meminfo through `hull exec`) and from the
# host, and on one sandbox what stays resident after the container
# allocates and frees memory (free page reporting gives it back).
#
# Figure 4, creation rate: rounds of K sandboxes started from an empty
# host, 2 in flight, hull and podman alternating; sandboxes per second.
#
#   bench/density/run.sh ["LEVELS"] [ROUNDS] [K]   (bench/run.sh runs it)
#
# BENCH_DENSITY_LEVELS, BENCH_RATE_ROUNDS and BENCH_RATE_K set the same
# through `make bench` (for example, the full mode's path at a small N).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
levels=${1:-${BENCH_DENSITY_LEVELS:-$(quick_or_full "10 25" "10 25 50 100")}}
rounds=${2:-${BENCH_RATE_ROUNDS:-$(quick_or_full 3 5)}}
per_round=${3:-${BENCH_RATE_K:-$(quick_or_full 4 10)}}
fill_mib=48   # what the container allocates and frees in the memory figure
floor_pct=${BENCH_MEM_FLOOR_PCT:-20}   # stop starting sandboxes below this MemAvailable
here=$bench_top/bench/density
bench_begin density
hull_load
kinds="hull hull-cold"
if podman_setup; then kinds="podman hull hull-cold"; fi

mem_available_pct() {
  awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} END {printf "%d", a * 100 / t}' /proc/meminfo
}
mem_available_mib() { awk '/^MemAvailable:/ {printf "%d", $2 / 1024}' /proc/meminfo; }
label() {
  case $1 in
    hull) echo "hull run -d" ;;
    hull-cold) echo "hull run -d, cold boot" ;;
    *) echo "podman run -d (runc)" ;;
  esac
}

start_one() { # KIND NAME LATENCY_FILE
  local t0; t0=$(now_us)
  if [[ $1 == hull ]]; then
    "$hull" run -d --name "$2" "$bench_image" sleep 3600 >/dev/null
  elif [[ $1 == hull-cold ]]; then
    HULL_TEMPLATE=off "$hull" run -d --name "$2" "$bench_image" sleep 3600 >/dev/null
  else
    podman_run -d --name "$2" "localhost/$bench_image" sleep 3600 >/dev/null
  fi
  echo "$(ms_since "$t0")" >>"$3"
}
stopped_early=
hull_field() { # ID FIELD: a field of `hull inspect ID`'s Hull section
  "$hull" inspect "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Hull"][sys.argv[1]])' "$2"
}
# guest_memory: the guest side of every running hull sandbox, and on one
# of them what stays resident on the host after its container allocates
# and frees memory (tmpfs pages, freed whole by rm).
guest_memory() {
  local id ids vpid mib side="guest side (hull exec cat /proc/meminfo)" total used shmem reserved
  # (not `hull ps -q | head -1`: hull dies of the closed pipe, and pipefail)
  mapfile -t ids < <("$hull" ps -q)
  id=${ids[0]}
  vpid=$(hull_field "$id" HypervisorPid)
  meta "a hull sandbox's hypervisor (measured)" "$(basename "$(readlink "/proc/$vpid/exe")") $(tr '\0' ' ' <"/proc/$vpid/cmdline" | grep -oE ' ((-machine|-M|-accel|-cpu|-smp|-m) [^ ]+|-object memory-backend[^ ]+|-device virtio-balloon[^ ]+)' | tr -d '\n')"
  for id in "${ids[@]}"; do
    mib=$(hull_field "$id" MemoryMiB)
    "$hull" exec "$id" cat /proc/meminfo | awk -v mib="$mib" '
      /^MemTotal:/ {t = $2} /^MemFree:/ {f = $2} /^Shmem:/ {s = $2}
      END {printf "%.2f\t%.2f\t%.2f\t%.2f\n", t / 1024, (t - f) / 1024, s / 1024, mib - t / 1024}' >"$work/meminfo" || continue
    IFS=$'\t' read -r total used shmem reserved <"$work/meminfo"
    sample memory "$side" "MemTotal MiB" "$total"
    sample memory "$side" "RAM size - MemTotal (kernel image, struct pages) MiB" "$reserved"
    sample memory "$side" "MemTotal - MemFree MiB" "$used"
    sample memory "$side" "… of it Shmem (unpacked initramfs, tmpfs) MiB" "$shmem"
  done
  id=${ids[0]}
  vpid=$(hull_field "$id" HypervisorPid)
  mib=$(hull_field "$id" MemoryMiB)
  side="one sandbox: guest RAM resident on the host"
  sample memory "$side" "idle MiB" "$(python3 "$here/memory.py" --guest-ram "$vpid" "$mib")"
  if "$hull" exec "$id" dd if=/dev/zero of=/dev/shm/bench-fill bs=1M count=$fill_mib 2>/dev/null; then
    sample memory "$side" "with a $fill_mib MiB tmpfs file written MiB" "$(python3 "$here/memory.py" --guest-ram "$vpid" "$mib")"
    "$hull" exec "$id" rm /dev/shm/bench-fill || true
    sleep 5   # the guest reports free pages 2 s after they gather
    sample memory "$side" "5 s after it is deleted MiB" "$(python3 "$here/memory.py" --guest-ram "$vpid" "$mib")"
  else
    note memory "the $fill_mib MiB allocation could not be written to /dev/shm"
  fi
}
start_many() { # KIND PREFIX FROM TO LATENCY_FILE: 2 in flight
  local i running=0
  for ((i = $3; i <= $4; i++)); do
    if (( $(mem_available_pct) < floor_pct )); then stopped_early=1; break; fi
    if ((running >= 2)); then wait -n || true; running=$((running - 1)); fi
    start_one "$1" "$2$i" "$5" &
    running=$((running + 1))
  done
  wait
}
count() { if [[ $1 == hull* ]]; then "$hull" ps -q | wc -l; else podman ps -q | wc -l; fi; }
rm_all() { if [[ $1 == hull* ]]; then hull_rm_all; else podman_rm_all; fi; }
inspect_all() {
  if [[ $1 == hull* ]]; then "$hull" inspect $("$hull" ps -q); else podman inspect $(podman ps -q); fi
}

# Figure 3.
for kind in $kinds; do
  rm_all "$kind"
  base_mib=$(mem_available_mib)
  have=0 elapsed_ms=0 first=1 stopped_early=
  for n in $levels; do
    [[ -n $stopped_early ]] && break
    : >"$work/lat"
    t0=$(now_us)
    start_many "$kind" d $((have + 1)) "$n" "$work/lat"
    elapsed_ms=$(( elapsed_ms + $(ms_since "$t0") ))
    have=$(count "$kind")
    if [[ $have -eq 0 ]]; then
      note density "$kind: no sandbox started$([[ -n $stopped_early ]] && echo ": host MemAvailable below $floor_pct%")"
      break
    fi
    series="$kind, N=$have"
    sleep 2   # let the last guests settle into idle
    extra=()
    if [[ $kind == hull && -n $first ]]; then extra=(--detail); fi
    inspect_all "$kind" | python3 "$here/memory.py" "${kind%-cold}" "$series" "$BENCH_SAMPLES" "${extra[@]}"
    sample density "$series" "time to start all N s" "$(awk -v ms="$elapsed_ms" 'BEGIN {printf "%.2f", ms / 1000}')"
    while read -r ms; do sample density "$series" "start latency while filling ms" "$ms"; done <"$work/lat"
    sample density "$series" "host MemAvailable drop per sandbox MiB" \
      "$(awk -v a="$base_mib" -v b="$(mem_available_mib)" -v n="$have" 'BEGIN {printf "%.1f", (a - b) / n}')"
    for _ in 1 2 3 4 5; do
      t1=$(now_us)
      if [[ $kind == hull* ]]; then "$hull" ps >/dev/null; else podman ps >/dev/null; fi
      sample density "$series" "ps ms" "$(ms_since "$t1")"
    done
    if [[ $kind == hull && -n $first ]]; then
      guest_memory
    fi
    if [[ $have -lt $n ]]; then
      note density "$kind: $have of $n sandboxes running$([[ -n $stopped_early ]] && echo ": stopped, host MemAvailable below $floor_pct%")"
      break
    fi
    first=
  done
  rm_all "$kind"
done
for n in $levels; do
  ratio density "hull / podman memory per sandbox, N=$n" "hull, N=$n|host memory per sandbox MiB" "podman, N=$n|host memory per sandbox MiB"
  ratio density "hull / podman time to start all, N=$n" "hull, N=$n|time to start all N s" "podman, N=$n|time to start all N s"
  ratio density "template clones / cold boots memory per sandbox, N=$n" "hull, N=$n|host memory per sandbox MiB" "hull-cold, N=$n|host memory per sandbox MiB"
  ratio density "template clones / cold boots time to start all, N=$n" "hull, N=$n|time to start all N s" "hull-cold, N=$n|time to start all N s"
done
ratio memory "guest RAM resident on the host / used inside the guest" "host side|guest RAM resident (RSS) MiB" "guest side (hull exec cat /proc/meminfo)|MemTotal - MemFree MiB"
note memory "every idle sandbox of the first hull level: inside, /proc/meminfo through hull exec; outside, the hypervisor's mapping of exactly the guest's RAM size (resident pages = guest memory the host really backs, including the kernel image and struct pages, which MemTotal leaves out, and pages the guest freed but has not reported)"
note memory "the allocation: \`dd\` of $fill_mib MiB into /dev/shm in the container, then \`rm\`; with free page reporting (virtio-balloon) the guest hands back freed blocks of 4 MiB (page_reporting_order 10 in this kernel, which has no HUGETLB_PAGE) and QEMU punches them out of guest RAM"
note density "hull: every VM a clone of one template (RAM mapped copy-on-write from the template's file, so pages the clones share count once in PSS); hull-cold: HULL_TEMPLATE=off, every VM boots its kernel"
note density "host memory per sandbox: PSS of the sandbox's processes (hull: supervisor + hypervisor, guest RAM included; podman: conmon + container), split by memory.py: rows starting with … are parts of it; neither counts kernel memory (page tables, cgroups, overlay mounts, page cache); idle CPU over 3 s; started 2 in flight; MemAvailable drop is noisy on a shared host"

# Figure 4.
for ((r = 1; r <= rounds; r++)); do
  for kind in $kinds; do
    : >"$work/lat"
    t0=$(now_us)
    start_many "$kind" "r${r}x" 1 "$per_round" "$work/lat"
    ms=$(ms_since "$t0")
    sample rate "$(label "$kind")" "sandboxes/s" "$(awk -v n="$(count "$kind")" -v ms="$ms" 'BEGIN {printf "%.3f", n * 1000 / ms}')"
    while read -r lat; do sample rate "$(label "$kind")" "start latency, 2 in flight ms" "$lat"; done <"$work/lat"
    t0=$(now_us)
    rm_all "$kind"
    sample rate "$(label "$kind")" "rm -f of the round, per sandbox ms" "$(( $(ms_since "$t0") / per_round ))"
  done
done
ratio rate "hull / podman sandboxes per second" "hull run -d|sandboxes/s" "podman run -d (runc)|sandboxes/s"
ratio rate "template clones / cold boots sandboxes per second" "hull run -d|sandboxes/s" "hull run -d, cold boot|sandboxes/s"
note rate "$rounds rounds of $per_round sandboxes (busybox sleep 3600) from an empty host, 2 in flight, hull and podman alternating; rate = sandboxes running / wall time of the round"
