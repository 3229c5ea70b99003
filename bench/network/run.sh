#!/usr/bin/env bash
# Network figures, side by side in one run:
#   - bulk TCP throughput container → container (same hull network),
#     host → published port → container, and between two plain host
#     network namespaces over a veth pair (the floor a VM path is measured
#     against);
#   - latency of small request/response round trips through a published
#     port, next to the same over the veth pair.
#
#   bench/network/run.sh [MB] [ROUND_TRIPS]   (defaults 1024 and 1000)
set -euo pipefail
mb=${1:-1024}
trips=${2:-1000}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
hull=${HULL_BIN:-$top/build/bin/hull}
images=${HULL_TEST_IMAGES:-$top/build/images}
[[ -x "$hull" ]] || { echo "bench: $hull is missing: run make hull" >&2; exit 1; }
work=$(mktemp -d /tmp/hull-bench-network.XXXXXX)
export HULL_ROOT=$work/store HULL_RUN_DIR=$work/run
tag=$$
ns_a=hullbench-a-$tag ns_b=hullbench-b-$tag
cleanup() {
  "$hull" ps -aq 2>/dev/null | xargs -r "$hull" rm -f >/dev/null 2>&1 || true
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  pkill -9 -f "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$hull" load -i "$images/busybox.tar" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Host tools in python3: a sink, a sender, an echo server and a pinger.
py=$work/net.py
cat > "$py" <<'PY'
import socket, sys, time
mode = sys.argv[1]
if mode == "sink":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3]))); s.listen(1); c, _ = s.accept()
    while c.recv(1 << 20): pass
elif mode == "send":
    host, port, mb = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for _ in range(300):
        try:
            c = socket.create_connection((host, port)); break
        except OSError: time.sleep(0.1)
    block = b"\0" * (1 << 20); t = time.time()
    for _ in range(mb): c.sendall(block)
    c.shutdown(socket.SHUT_WR); c.recv(1); print(f"{mb / (time.time() - t):.1f}")
elif mode == "echo":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3]))); s.listen(1); c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (d := c.recv(4096)): c.sendall(d)
elif mode == "ping":
    host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for _ in range(300):
        try:
            c = socket.create_connection((host, port)); break
        except OSError: time.sleep(0.1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lat = []
    for _ in range(n):
        t = time.perf_counter(); c.sendall(b"x" * 64); got = 0
        while got < 64: got += len(c.recv(64 - got))
        lat.append((time.perf_counter() - t) * 1e6)
    print("\n".join(f"{v:.0f}" for v in lat))
PY

echo "bench/network: veth between two host namespaces" >&2
ip netns add "$ns_a"; ip netns add "$ns_b"
ip link add "hb-a-$tag" netns "$ns_a" type veth peer name "hb-b-$tag" netns "$ns_b"
ip -n "$ns_a" addr add 10.250.0.1/24 dev "hb-a-$tag"; ip -n "$ns_b" addr add 10.250.0.2/24 dev "hb-b-$tag"
ip -n "$ns_a" link set "hb-a-$tag" up; ip -n "$ns_b" link set "hb-b-$tag" up
ip netns exec "$ns_b" python3 "$py" sink 10.250.0.2 5001 & sink=$!
veth_mbs=$(ip netns exec "$ns_a" python3 "$py" send 10.250.0.2 5001 "$mb"); wait $sink || true
ip netns exec "$ns_b" python3 "$py" echo 10.250.0.2 5002 & echo_pid=$!
ip netns exec "$ns_a" python3 "$py" ping 10.250.0.2 5002 "$trips" >"$work/veth.lat"; kill $echo_pid 2>/dev/null || true

echo "bench/network: container → container ($mb MB)" >&2
# -i: busybox nc ends the connection when its own stdin ends.
"$hull" run -d -i --name sink hull-demo/busybox sh -c 'nc -l -p 5000 | wc -c' >/dev/null
# Retry until the sink listens; time only the transfer that connected.
c2c=$("$hull" run --rm hull-demo/busybox sh -c "
  for i in \$(seq 1 150); do
    s=\$(cut -d' ' -f1 /proc/uptime)
    if dd if=/dev/zero bs=1048576 count=$mb 2>/dev/null | nc sink 5000; then
      e=\$(cut -d' ' -f1 /proc/uptime)
      awk \"BEGIN { printf \\\"%.1f\\\", $mb / (\$e - \$s + 0.01) }\"
      sleep 1  # let the FIN leave before the VM powers off
      exit 0
    fi
    sleep 0.2
  done; exit 1")
timeout 120 "$hull" wait sink >/dev/null || true
received=$("$hull" logs sink | tr -d '[:space:]')
[[ $received == $((mb << 20)) ]] || { echo "bench: the sink got $received bytes, not $((mb << 20))" >&2; exit 1; }
"$hull" rm -f sink >/dev/null

echo "bench/network: host → published port ($mb MB)" >&2
port=$(free_port)
"$hull" run -d -i --name pub -p "$port:5000" hull-demo/busybox sh -c 'nc -l -p 5000 > /dev/null' >/dev/null
sleep 2
pub_mbs=$(python3 "$py" send 127.0.0.1 "$port" "$mb")
"$hull" rm -f pub >/dev/null

echo "bench/network: $trips round trips through a published port" >&2
port=$(free_port)
"$hull" run -d --name echo -p "$port:7" hull-demo/busybox nc -l -p 7 -e cat >/dev/null
sleep 2
python3 "$py" ping 127.0.0.1 "$port" "$trips" >"$work/pub.lat"
"$hull" rm -f echo >/dev/null

quantiles() { sort -n "$1" | awk '{a[NR]=$1} END {printf "%d/%d/%d/%d", a[1], a[int(NR*0.5)+1], a[int(NR*0.95)], a[int(NR*0.99)]}'; }
printf '\n%-46s %10s\n' "network, $mb MB bulk TCP" "MB/s"
printf '%-46s %10s\n' "veth between two host namespaces (floor)" "$veth_mbs"
printf '%-46s %10s\n' "hull container → container" "$c2c"
printf '%-46s %10s\n' "host → hull published port → container" "$pub_mbs"
printf '\n%-46s %28s\n' "$trips round trips of 64 B (µs)" "min / median / p95 / p99"
printf '%-46s %28s\n' "veth between two host namespaces" "$(quantiles "$work/veth.lat")"
printf '%-46s %28s\n' "host → hull published port → container" "$(quantiles "$work/pub.lat")"

# Samples for `make bench`'s report (bench/lib.sh's format).
if [[ -n ${BENCH_SAMPLES:-} ]]; then
  rec() { local IFS=$'\t'; echo "$*" >>"$BENCH_SAMPLES"; }
  rec sample network "veth, two host namespaces" "MB/s ($mb MB)" "$veth_mbs"
  rec sample network "hull container → container" "MB/s ($mb MB)" "$c2c"
  rec sample network "host → hull published port" "MB/s ($mb MB)" "$pub_mbs"
  while read -r v; do rec sample network "veth, two host namespaces" "round trip µs" "$v"; done <"$work/veth.lat"
  while read -r v; do rec sample network "host → hull published port" "round trip µs" "$v"; done <"$work/pub.lat"
  rec ratio network "published port / veth, round trip" "host → hull published port|round trip µs" "veth, two host namespaces|round trip µs"
  rec note network "bulk numbers are one transfer each; under TCG the guest's CPU, not the path, is the limit"
fi
