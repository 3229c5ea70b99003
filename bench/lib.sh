# Sourced by the bench scripts: paths, how figures record samples, podman
# in a private temp dir, and cleanup that leaves no container, VM, mount
# or temp dir behind.
#
# Samples go to $BENCH_SAMPLES, one per line, tab-separated:
#   sample FIGURE SERIES METRIC VALUE     one measurement (bench/report.py
#                                          turns them into min/median/p95/max)
#   ratio  FIGURE LABEL NUM DEN           NUM and DEN are "SERIES|METRIC";
#                                          the report divides their medians
#   note   FIGURE TEXT                    a line under the figure's table
#   meta   KEY VALUE                      host description
# A figure script run by hand (no BENCH_SAMPLES) prints its own table.

bench_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
hull=${HULL_BIN:-$bench_top/build/bin/hull}
export HULL_KERNEL=${HULL_KERNEL:-$bench_top/build/share/hull/vmlinux}
export HULL_INITRAMFS=${HULL_INITRAMFS:-$bench_top/build/share/hull/initramfs.cpio}
bench_images=${HULL_TEST_IMAGES:-$bench_top/build/images}
bench_image=hull-demo/busybox
bench_full=${BENCH_FULL:-0}
[[ $bench_full == 0 ]] && bench_full=

# quick_or_full QUICK FULL: the value for this mode.
quick_or_full() { if [[ -n $bench_full ]]; then echo "$2"; else echo "$1"; fi; }

record() { # KIND FIELDS...: one tab-separated line
  local IFS=$'\t'
  echo "$*" >>"$BENCH_SAMPLES"
}
sample() { record sample "$@"; }
ratio() { record ratio "$@"; }
note() { record note "$@"; }
meta() { record meta "$@"; }

now_us() { date +%s%6N; }
ms_since() { echo $(( ($(now_us) - $1) / 1000 )); }

need() { # FILE...: exits saying what to build when one is missing
  local f
  for f in "$@"; do
    [[ -e $f ]] || { echo "bench: $f is missing: run make all images" >&2; exit 1; }
  done
}

# bench_begin NAME: a work dir ($work) with a hull store and run dir of its
# own; on exit, bench_cleanup_hooks run, then the dir goes. A script run
# by hand gets its own samples file and prints its table at the end.
bench_cleanup_hooks=()
bench_begin() {
  work=$(mktemp -d "/tmp/hull-bench-$1.XXXXXX")
  export HULL_ROOT=$work/store HULL_RUN_DIR=$work/run
  bench_standalone=
  if [[ -z ${BENCH_SAMPLES:-} ]]; then
    export BENCH_SAMPLES=$work/samples.tsv
    bench_standalone=1
  fi
  trap bench_end EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
bench_end() {
  local status=$? hook
  trap - EXIT INT TERM
  for hook in "${bench_cleanup_hooks[@]}"; do
    "$hook" || true
  done
  if [[ -n $bench_standalone && -s $BENCH_SAMPLES ]]; then
    python3 "$bench_top/bench/report.py" --print "$BENCH_SAMPLES" || true
  fi
  kill_under "$work"
  umount_under "$work"
  rm -rf "$work"
  exit "$status"
}

# kill_under DIR: SIGKILL every process (but this shell) whose command line
# or environment names DIR: VMs and supervisors (`hull __supervise`, which
# carry HULL_RUN_DIR) that a failed `rm` left behind.
kill_under() {
  local dir=$1 pid pids=()
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if grep -qaF -- "$dir" "/proc/$pid/cmdline" "/proc/$pid/environ" 2>/dev/null; then
      pids+=("$pid")
    fi
  done
  ((${#pids[@]})) && kill -9 "${pids[@]}" 2>/dev/null
  return 0
}
umount_under() {
  local dir=$1 mnt
  awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done
}

# Hull: every container of this work dir's run dir, removed.
hull_rm_all() {
  "$hull" ps -aq 2>/dev/null | xargs -r -n 4 -P 2 "$hull" rm -f >/dev/null 2>&1 || true
}
hull_load() {
  need "$hull" "$HULL_KERNEL" "$HULL_INITRAMFS" "$bench_images/busybox.tar"
  "$hull" load -i "$bench_images/busybox.tar" >/dev/null
  bench_cleanup_hooks+=(hull_rm_all)
}

# Podman with runc, all its state and config under $work/podman (FACTS.md:
# cgroupfs, file events, no network, nofile within root's hard limit), its
# containers' cgroups under one parent named after $work; `podman_run`
# is `podman run` with that parent.
podman_setup() {
  command -v podman >/dev/null && command -v runc >/dev/null \
    || { echo "bench: podman or runc is missing: run bench/install-peers.sh" >&2; return 1; }
  local p=$work/podman
  mkdir -p "$p/cni" "$p/tmp"
  cat >"$p/containers.conf" <<EOF
[containers]
netns = "none"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
[network]
network_backend = "cni"
network_config_dir = "$p/cni"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$p/tmp/events.log"
runtime = "runc"
tmp_dir = "$p/tmp"
volume_path = "$p/volumes"
EOF
  cat >"$p/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$p/root"
runroot = "$p/runroot"
EOF
  cat >"$p/registries.conf" <<EOF
unqualified-search-registries = []
short-name-mode = "disabled"
EOF
  export CONTAINERS_CONF=$p/containers.conf CONTAINERS_STORAGE_CONF=$p/storage.conf \
    CONTAINERS_REGISTRIES_CONF=$p/registries.conf
  podman_cgroup=$(basename "$work")
  bench_cleanup_hooks+=(podman_teardown)
  podman load -q -i "$bench_images/busybox.tar" >/dev/null
}
podman_rm_all() {
  podman rm -af -t 0 >/dev/null 2>&1 || true
}
podman_run() { podman run --cgroup-parent "/$podman_cgroup" "$@"; }
podman_teardown() {
  local h
  podman_rm_all
  podman system reset -f >/dev/null 2>&1 || true
  for h in /sys/fs/cgroup/*/; do
    if [[ -d $h$podman_cgroup ]]; then
      find "$h$podman_cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
    fi
  done
}

# kvm_kind: what /dev/kvm is on this host, in a few words.
kvm_kind() {
  local hw=no
  grep -qwE 'vmx|svm' /proc/cpuinfo && hw=yes
  if [[ ! -e /dev/kvm ]]; then
    echo "no /dev/kvm"
  elif [[ -d /sys/module/kvm_pvm ]]; then
    echo "/dev/kvm from kvm_pvm (software), hardware virtualization: $hw"
  elif [[ $hw == yes ]]; then
    echo "/dev/kvm with hardware virtualization ($(grep -owE 'vmx|svm' /proc/cpuinfo | head -1))"
  else
    echo "/dev/kvm without vmx/svm"
  fi
}
