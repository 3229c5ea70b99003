#!/usr/bin/env bash
# `make bench`: every figure in one run, side by side with its peers, then
# bench/report.md, bench/report.svg and the report on stdout.
#
#   bench/run.sh               quick mode (a few minutes)
#   BENCH_FULL=1 bench/run.sh  more runs, density up to 100 sandboxes, and
#                              the nested test host figure
#
# A figure that fails is named in the report with the end of its log; the
# others still run, and the bench exits 0 (it never fails CI).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
here=$bench_top/bench
out=$(mktemp -d /tmp/hull-bench-run.XXXXXX)
trap 'rm -rf "$out"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export BENCH_SAMPLES=$out/samples.tsv
: >"$BENCH_SAMPLES"
mode=$(quick_or_full "quick" "full (BENCH_FULL=1)")

# The host.
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
meta "CPU" "$cpu, $(nproc) cores online, $(awk -F': ' '/^cpu MHz/ {printf "%.0f MHz", $2; exit}' /proc/cpuinfo)"
meta "memory" "$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
meta "host kernel" "$(uname -r)"
meta "KVM" "$(kvm_kind)"
if grep -qwE 'vmx|svm' /proc/cpuinfo; then
  meta "hypervisor used by hull" "hull-vmm on KVM (hardware virtualization)"
else
  meta "hypervisor used by hull" "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') TCG (no vmx/svm, so no hardware KVM)"
fi
meta "peers" "$(podman --version 2>/dev/null || echo "podman missing"), $(runc --version 2>/dev/null | head -1 || echo "runc missing")"
meta "guest kernel, initramfs" "$(cat "$bench_top/build/share/hull/kernel-release" 2>/dev/null || echo "?"), $(( $(stat -c %s "$HULL_INITRAMFS" 2>/dev/null || echo 0) / 1024 )) KiB"
meta "hull" "$(git -C "$bench_top" describe --always --dirty 2>/dev/null || echo "?")"
meta "mode" "$mode"
meta "started" "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

figure() { # NAME SCRIPT ARGS...: runs one figure; a failure is noted, not fatal
  local name=$1 script=$2 t0 status
  shift 2
  echo "bench: $name ..." >&2
  t0=$(now_us)
  "$script" "$@" >"$out/$name.log" 2>&1
  status=$?
  if ((status != 0)); then
    echo "bench: $name failed (exit $status); the end of its log:" >&2
    tail -n 5 "$out/$name.log" >&2
    note "$name" "FAILED (exit $status): $(tail -n 1 "$out/$name.log")"
  fi
  echo "bench: $name took $(( $(ms_since "$t0") / 1000 )) s" >&2
}
figure start "$here/boot/run.sh"
figure vmm "$here/vmm/run.sh"
figure density "$here/density/run.sh"
figure pull "$here/pull/run.sh"
figure push "$here/push/run.sh"
figure network "$here/network/run.sh"
# Figure 6: EROFS vs ext4 rootfs disks, build, size and guest read speed.
figure disk "$here/disk/run.sh"
# Figure 7: pods, joining a running VM against booting one.
figure pod "$here/pod/run.sh"
# Figure 8: bind mounts and volumes (9P) next to a bind mount under runc.
figure volumes "$here/volumes/run.sh"
extras=()
if [[ -n $bench_full ]]; then
  if [[ -e ${HULL_TESTHOST_KERNEL:-$bench_top/build/testhost/vmlinux} ]]; then
    figure testhost "$here/testhost/run.sh"
    extras=("$out/testhost.log")
  else
    note testhost "skipped: no test host kernel (make testhost-kernel)"
  fi
fi
meta "finished" "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

cp "$BENCH_SAMPLES" "$here/report.samples.tsv"
python3 "$here/report.py" "$BENCH_SAMPLES" "$here/report.md" "$here/report.svg" "${extras[@]}"
echo >&2
echo "bench: wrote $here/report.md, $here/report.svg and the raw samples, $here/report.samples.tsv" >&2
exit 0
