#!/usr/bin/env python3
"""Figure 2: launch -> first guest byte and launch -> exit of a stand-in
guest that writes one byte to the serial port and resets, under hull-vmm
and QEMU microvm (alternating, N runs each), and each VMM's RSS and PSS
while an idle stand-in guest runs. Called by run.sh; appends samples in
bench/lib.sh's format to SAMPLES.

    measure.py N RSS_RUNS HULL_VMM GUESTS_DIR SAMPLES
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import time

n, rss_runs, hull_vmm, guests, samples = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6]
bench = os.path.join(guests, "bench.elf")
idle = os.path.join(guests, "bench-idle.elf")
FIG = "vmm"

QEMU = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off", "-enable-kvm",
        "-cpu", "host,-arch-capabilities", "-m", "64", "-nodefaults", "-no-user-config",
        "-nographic", "-serial", "stdio", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
VMMS = {"hull-vmm": lambda k: [hull_vmm, "--kernel", k, "--memory", "64"]}
if shutil.which("qemu-system-x86_64"):
    VMMS["QEMU microvm -enable-kvm"] = lambda k: QEMU + ["-kernel", k]
ECHO = "/bin/echo (any process spawn, floor)"


def record(*fields):
    with open(samples, "a") as f:
        f.write("\t".join(str(x) for x in fields) + "\n")


def one_run(argv):
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    first = None
    fd = p.stdout.fileno()
    try:
        while True:
            r, _, _ = select.select([fd], [], [], 10)
            if not r:
                raise RuntimeError(f"{argv[0]}: no output within 10 s")
            b = os.read(fd, 4096)
            if first is None and b:
                first = time.perf_counter()
            if not b:
                break
    finally:
        p.kill()
        p.wait()
    end = time.perf_counter()
    if first is None:
        raise RuntimeError(f"{argv[0]}: guest wrote nothing")
    return (first - t0) * 1000, (end - t0) * 1000


def memory_kib(argv):
    """RSS and PSS of the VMM with an idle guest, 0.3 s after its first byte."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        os.read(p.stdout.fileno(), 1)
        time.sleep(0.3)
        found = {}
        with open(f"/proc/{p.pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    found[key] = int(rest.split()[0])
        return found["Rss"], found["Pss"]
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


for _ in range(n):  # alternating, so load from elsewhere hits all alike
    for name, mk in VMMS.items():
        first, end = one_run(mk(bench))
        record("sample", FIG, name, "launch to first guest byte ms", f"{first:.2f}")
        record("sample", FIG, name, "launch to exit ms", f"{end:.2f}")
    first, end = one_run(["/bin/echo", "X"])
    record("sample", FIG, ECHO, "launch to first guest byte ms", f"{first:.2f}")
    record("sample", FIG, ECHO, "launch to exit ms", f"{end:.2f}")
for _ in range(rss_runs):
    for name, mk in VMMS.items():
        rss, pss = memory_kib(mk(idle))
        record("sample", FIG, name, "RSS MiB, idle guest", f"{rss / 1024:.2f}")
        record("sample", FIG, name, "PSS MiB, idle guest", f"{pss / 1024:.2f}")
