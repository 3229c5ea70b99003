#!/usr/bin/env bash
# Figure 8, host data in containers: a bind mount and a named volume under
# hull (9P2000.L over a virtio-serial port, served by the container's
# jailed share server) next to a bind mount under podman + runc on the
# same host directory kind. Each workload runs inside the container and
# times itself there (the guest's /proc/uptime, 10 ms steps, or the
# host's clock under runc, through the same busybox script):
#   - sequential write then read of one file (dd, 1 MiB blocks, fsync'd);
#   - creating, stat-ing and deleting many small files.
#
#   bench/volumes/run.sh [MiB] [FILES]   (bench/run.sh runs it)
#
# Under QEMU's TCG every request crosses an emulated virtio-serial port and
# the guest's 9P client runs emulated: the ratio says what that costs
# here, not on hardware KVM.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
mib=${1:-$(quick_or_full 64 256)}
files=${2:-$(quick_or_full 1000 10000)}
fig=volumes
bench_begin volumes
hull_load
podman_setup

# Prints "write_ms read_ms files_ms" for the directory /d.
script="
t() { cut -d' ' -f1 /proc/uptime | tr -d .; }
a=\$(t); dd if=/dev/zero of=/d/big bs=1M count=$mib conv=fsync 2>/dev/null; b=\$(t)
dd if=/d/big of=/dev/null bs=1M 2>/dev/null; c=\$(t); rm /d/big
mkdir /d/small; i=0; while [ \$i -lt $files ]; do : > /d/small/f\$i; i=\$((i+1)); done
ls -l /d/small >/dev/null; rm -r /d/small; e=\$(t)
echo \$(( (b-a)*10 )) \$(( (c-b)*10 )) \$(( (e-c)*10 ))"

record_run() { # SERIES "write read files"
  local series=$1 w r f
  read -r w r f <<<"$2"
  sample "$fig" "$series" "write MB/s" "$(awk -v m="$mib" -v ms="$w" 'BEGIN {printf "%.1f", m * 1.048576 / (ms > 0 ? ms : 1) * 1000}')"
  sample "$fig" "$series" "read MB/s" "$(awk -v m="$mib" -v ms="$r" 'BEGIN {printf "%.1f", m * 1.048576 / (ms > 0 ? ms : 1) * 1000}')"
  sample "$fig" "$series" "$files files create+stat+delete ms" "$f"
}

bind=$work/bind
mkdir -p "$bind"
"$hull" volume create bench-vol >/dev/null
for _ in $(seq "$(quick_or_full 1 3)"); do
  record_run "hull, bind mount (9P)" "$("$hull" run --rm -v "$bind:/d" "$bench_image" sh -c "$script")"
  record_run "hull, named volume (9P)" "$("$hull" run --rm -v bench-vol:/d "$bench_image" sh -c "$script")"
  # runc has no /proc/uptime of its own: the host's, the same clock.
  record_run "podman + runc, bind mount" "$(podman_run --rm -v "$bind:/d" "$bench_image" sh -c "$script")"
done
for what in "write MB/s" "read MB/s"; do
  ratio "$fig" "runc / hull bind, $what" "podman + runc, bind mount|$what" "hull, bind mount (9P)|$what"
done
ratio "$fig" "hull bind / runc, small files" "hull, bind mount (9P)|$files files create+stat+delete ms" "podman + runc, bind mount|$files files create+stat+delete ms"
note "$fig" "$mib MiB file, $files small files; timed inside the container in 10 ms steps; under TCG the guest's 9P client and the serial port are emulated"
