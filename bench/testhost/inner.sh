# Runs inside the test host (busybox sh, under `sh -e`): hull-vmm next to
# QEMU microvm -enable-kvm, booting the same guest kernel and agent
# initramfs to the agent's first console line, then to VMM exit.
#
# `hull.channel=bench` makes the agent, right after its boot steps (new
# root, /proc, /sys, /dev, cgroup2), print "hull-agent: unknown
# hull.channel=bench ..." and power off, so both VMMs run exactly the same
# guest work, with no devices but the serial console.
n=${BENCH_N:-10}
base="console=ttyS0 quiet panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd hull.channel=bench"
run_vmm() {
  /hull/measure hull-agent: 120 hull-vmm --kernel "$HULL_KERNEL" --initramfs "$HULL_INITRAMFS" \
    --memory 256 --vcpus 1 --cmdline "$base reboot=k pci=off" --console stdout
}
run_qemu() {
  /hull/measure hull-agent: 120 qemu-system-x86_64 -M microvm,x-option-roms=off,acpi=off \
    -enable-kvm -cpu host -m 256 -smp 1 -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$HULL_KERNEL" -initrd "$HULL_INITRAMFS" -append "$base reboot=t" -serial stdio
}
# One warm-up each (not counted), then alternate so drift hits both alike.
run_vmm >/dev/null
run_qemu >/dev/null
i=0
while [ $i -lt "$n" ]; do
  echo "hull-vmm $(run_vmm)" >>/tmp/bench.raw
  echo "qemu $(run_qemu)" >>/tmp/bench.raw
  i=$((i + 1))
done
cat /tmp/bench.raw
# Every run must have reached userspace and exited cleanly.
if grep -v 'status=0' /tmp/bench.raw | grep -q . || grep -q 'userspace_ms=-1' /tmp/bench.raw; then
  echo "bench: some runs failed (see above)"
  exit 1
fi
awk '
  { vmm = $1; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[vmm, kv[1], ++c[vmm, kv[1]]] = kv[2] } }
  function median(vmm, k,   n, i, j, t, a) {
    n = c[vmm, k]; for (i = 1; i <= n; i++) a[i] = v[vmm, k, i]
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    lo[vmm, k] = a[1]; hi[vmm, k] = a[n]
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    split("userspace_ms exit_ms rss_kb", keys, " ")
    split("launch -> guest userspace (ms)|launch -> exit (ms)|VMM peak RSS (KiB)", names, "|")
    printf "%-32s %22s %22s %8s\n", "median [min-max], N=" c["hull-vmm", "exit_ms"], "hull-vmm", "qemu microvm+kvm", "ratio"
    for (i = 1; i <= 3; i++) {
      k = keys[i]; a = median("hull-vmm", k); b = median("qemu", k)
      printf "%-32s %9.0f [%5.0f-%5.0f] %9.0f [%5.0f-%5.0f] %8.2f\n", names[i], a, lo["hull-vmm", k], hi["hull-vmm", k], b, lo["qemu", k], hi["qemu", k], a / b
    }
  }' /tmp/bench.raw
