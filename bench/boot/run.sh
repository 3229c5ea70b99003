#!/usr/bin/env bash
# Figure 1, start latency: `hull run --rm IMAGE true` from a VM template
# (the default: the VM is a restored clone), from the warm pool (a clone
# restored ahead, taken ready; the pool is full before each of these runs,
# and lives in a run dir of its own so the other series never take from
# it) and booting cold (`--no-template`), wall clock and phases from
# HULL_TIMINGS, next to `podman run --rm` with runc of the
# same image and a bare QEMU boot of the same kernel and initramfs (the
# agent, told of a channel that does not exist, does its boot steps and
# powers off at once). The three alternate, so load from the rest of the
# machine hits them alike.
#
#   bench/boot/run.sh [N]     (bench/run.sh runs it; needs make all images)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n=${1:-$(quick_or_full 5 20)}
fig=start
bench_begin boot
hull_load
peers=1
podman_setup || peers=

khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2*1000; exit}' /proc/cpuinfo)
bare_boot() { # the same machine as hull's QEMU backend (host/sandbox/src/hypervisor/qemu.rs) builds
  qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
    -machine q35,memory-backend=ram -accel tcg,tb-size=16 -cpu max -smp 1 -m 512M \
    -object memory-backend-memfd,id=ram,size=512M -device virtio-balloon-pci,free-page-reporting=on -device virtio-scsi-pci,id=scsi0 \
    -kernel "$HULL_KERNEL" -initrd "$HULL_INITRAMFS" \
    -append "console=ttyS0 reboot=t panic=-1 acpi=off quiet i8042.noaux i8042.nomux i8042.dumbkbd hull.channel=bench scsi_mod.scan=manual tsc_early_khz=$khz" \
    -serial none </dev/null >/dev/null 2>&1
}
hull_true() { "$hull" run --rm "$bench_image" true; }
pool_run=$work/pool-run
pooled() { HULL_RUN_DIR=$pool_run "$hull" "$@"; }
pool_stop() { pooled pool stop >/dev/null 2>&1 || true; }
bench_cleanup_hooks+=(pool_stop)
hull_pooled() { pooled run --rm "$bench_image" true; }
hull_cold() { "$hull" run --rm --no-template "$bench_image" true; }
podman_true() { podman_run --rm "localhost/$bench_image" true; }

# Phase intervals from one HULL_TIMINGS file: phases FILE LAUNCH_US KEYS
# NAMES, KEYS the phases in order (after launch), NAMES "|"-separated, one
# per interval. Both the CLI and the supervisor it spawns mark cli_start:
# the second one is the supervisor's start. The last cli_exit is
# whichever of the two ends last. (The CLI's supervisor_ready overlaps the
# supervisor's own phases; it is not used.) The guest's steps (guest_*)
# split the container's start inside the VM.
guest_keys="guest_request guest_network guest_disks guest_overlay guest_identity guest_cgroup guest_spawn guest_stdio container_started container_exited cli_exit"
guest_names="container start: request in|network|disks found, mounted|overlay|user, mounts planned|cgroup|spawn|stdio|reply out|container runs \`true\`|exit and teardown"
phases() { # FILE LAUNCH_US KEYS NAMES
  awk -v launch="$2" -v keys="$3" -v names="$4" '
    $1 == "cli_start" && ("cli_start" in t) { $1 = "supervisor_start" }
    !($1 in t) || $1 == "cli_exit" { t[$1] = $2 }
    END {
      n = split("launch " keys, k, " ")
      split(names, name, "|")
      t["launch"] = launch
      for (i = 1; i < n; i++) {
        if (!(k[i] in t) || !(k[i + 1] in t)) { print "missing phase " k[i + 1] > "/dev/stderr"; exit 1 }
        printf "%s\t%.1f\n", name[i], (t[k[i + 1]] - t[k[i]]) / 1000
      }
    }' "$1"
}
# A VM of its own: booted cold or restored from a template.
own_phases() { # FILE LAUNCH_US
  phases "$1" "$2" "cli_start image_resolved writable_layer_ready supervisor_start hypervisor_spawned agent_ready $guest_keys" \
    "hull process start|image resolve|disk ready (image disk, writable layer)|supervisor start|hypervisor spawn|guest kernel to agent ready|$guest_names"
}
# The pooled path: no supervisor or hypervisor starts on it.
pool_phases() { # FILE LAUNCH_US
  phases "$1" "$2" "cli_start image_resolved writable_layer_ready pool_taken disks_plugged agent_ready $guest_keys" \
    "hull process start|image resolve|disk ready (image disk, writable layer)|take a ready clone|network, resume, disks hot-added|agent wake|$guest_names"
}

hull_true   # converts the image and makes the template once, not counted
pooled pool start --size 1 >/dev/null
pooled pool status --wait 300 >/dev/null
hull_pooled
if [[ -n $peers ]]; then podman_true; fi
bare_boot
# timed_run NAME SERIES PHASES COMMAND: one run of COMMAND, its wall time
# as SERIES and its phases (PHASES: own_phases or pool_phases) as "hull
# phase, NAME".
timed_run() {
  local name=$1 series=$2 phases_of=$3 t0 phase ms
  shift 3
  t0=$(now_us)
  HULL_TIMINGS=$work/timings.$name.$i "$@"
  sample $fig "$series" "wall ms" "$(ms_since "$t0")"
  while IFS=$'\t' read -r phase ms; do
    sample $fig "hull phase, $name" "$phase ms" "$ms"
  done < <("$phases_of" "$work/timings.$name.$i" "$t0")
}

for i in $(seq "$n"); do
  timed_run "template clone" "hull run --rm (template clone)" own_phases hull_true
  pooled pool status --wait 120 >/dev/null
  timed_run "warm pool" "hull run --rm (warm pool)" pool_phases hull_pooled
  timed_run "cold boot" "hull run --rm --no-template (cold boot)" own_phases hull_cold
  if [[ -n $peers ]]; then
    t0=$(now_us); podman_true
    sample $fig "podman run --rm (runc)" "wall ms" "$(ms_since "$t0")"
  fi
  t0=$(now_us); bare_boot
  sample $fig "bare QEMU boot, same kernel+initramfs" "wall ms" "$(ms_since "$t0")"
done

ratio $fig "hull template clone / podman+runc" "hull run --rm (template clone)|wall ms" "podman run --rm (runc)|wall ms"
ratio $fig "hull warm pool / podman+runc" "hull run --rm (warm pool)|wall ms" "podman run --rm (runc)|wall ms"
ratio $fig "hull warm pool / template clone" "hull run --rm (warm pool)|wall ms" "hull run --rm (template clone)|wall ms"
ratio $fig "hull cold boot / podman+runc" "hull run --rm --no-template (cold boot)|wall ms" "podman run --rm (runc)|wall ms"
ratio $fig "hull template clone / cold boot" "hull run --rm (template clone)|wall ms" "hull run --rm --no-template (cold boot)|wall ms"
ratio $fig "hull cold boot / bare QEMU boot" "hull run --rm --no-template (cold boot)|wall ms" "bare QEMU boot, same kernel+initramfs|wall ms"
ratio $fig "restore / boot (hypervisor spawn → agent ready)" "hull phase, template clone|guest kernel to agent ready ms" "hull phase, cold boot|guest kernel to agent ready ms"
note $fig "$n runs each, alternating; image $bench_image already converted; QEMU TCG q35, 1 vCPU, 512 MiB on a memfd, 16 MiB translation cache, free page reporting (hull's QEMU backend); guest kernel $(cat "$bench_top/build/share/hull/kernel-release" 2>/dev/null || basename "$HULL_KERNEL"), initramfs $(( $(stat -c %s "$HULL_INITRAMFS") / 1024 )) KiB"
note $fig "phases from HULL_TIMINGS; hypervisor spawn ends when the QEMU process is spawned, so QEMU's own start-up falls in the guest-kernel phase; for a clone that phase is QEMU's start, the restore of the template's state (-incoming), the disks hot-added and the agent's wake; a pooled clone did its restore before the run (pool of 1, full before each pooled run, refilled a second after the take)"
