#!/usr/bin/env python3
"""Times VMM launch -> first guest byte and launch -> exit, and measures
the VMM's RSS with an idle guest. Called by run.sh."""
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

n = int(sys.argv[1])
hull = sys.argv[2]
guests = sys.argv[3]
bench = os.path.join(guests, "bench.elf")
idle = os.path.join(guests, "bench-idle.elf")

QEMU = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off", "-enable-kvm",
        "-cpu", "host,-arch-capabilities", "-m", "64", "-nodefaults", "-no-user-config",
        "-nographic", "-serial", "stdio", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
VMMS = {
    "hull-vmm": lambda k: [hull, "--kernel", k, "--memory", "64"],
    "qemu microvm": lambda k: QEMU + ["-kernel", k],
}


def one_run(argv):
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    first = None
    fd = p.stdout.fileno()
    while True:
        r, _, _ = select.select([fd], [], [], 10)
        if not r:
            p.kill()
            raise RuntimeError(f"{argv[0]}: no output within 10 s")
        b = os.read(fd, 4096)
        if first is None and b:
            first = time.perf_counter()
        if not b:
            break
    p.wait()
    end = time.perf_counter()
    if first is None:
        raise RuntimeError(f"{argv[0]}: guest wrote nothing")
    return (first - t0) * 1000, (end - t0) * 1000


def rss_kib(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.read(p.stdout.fileno(), 1)
    time.sleep(0.3)
    with open(f"/proc/{p.pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    return rss


def fmt(xs):
    return f"{statistics.median(xs):7.2f} ({min(xs):6.2f}-{max(xs):6.2f})"


rows = []
# What spawning any process costs this harness on this machine right now.
echo = [one_run(["/bin/echo", "X"]) for _ in range(n)]
base = ([f for f, _ in echo], [e for _, e in echo])
for name, mk in VMMS.items():
    if name.startswith("qemu") and not shutil.which("qemu-system-x86_64"):
        continue
    firsts, exits = [], []
    for _ in range(n):
        f, e = one_run(mk(bench))
        firsts.append(f)
        exits.append(e)
    rss = statistics.median([rss_kib(mk(idle)) for _ in range(3)])
    rows.append((name, firsts, exits, rss))

print(f"N={n} runs, milliseconds: median (min-max); RSS: median of 3, idle guest; "
      f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
print(f"{'VMM':<14} {'launch->first byte':>24} {'launch->exit':>24} {'RSS MB':>8}")
for name, firsts, exits, rss in rows:
    print(f"{name:<14} {fmt(firsts):>24} {fmt(exits):>24} {rss / 1024:8.1f}")
print(f"{'(/bin/echo)':<14} {fmt(base[0]):>24} {fmt(base[1]):>24} {'-':>8}")
