#!/usr/bin/env python3
"""Figure 2b, restore: launch -> first guest byte of a VM restored from a
snapshot of a stand-in guest that counts on the serial port (standin=count,
PVH entry), under `hull-vmm --restore DIR` and QEMU microvm `-incoming
"exec:cat STATE"` (alternating, N runs each); how long taking the snapshot
took (hull-vmm's `snapshot DIR` over the control API, QEMU's `migrate` of
a stopped VM over QMP); and each clone's RSS and PSS 0.3 s after its first
byte. Called by run.sh; appends samples in bench/lib.sh's format to SAMPLES.

    restore.py N HULL_VMM GUESTS_DIR WORK_DIR SAMPLES
"""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

n, hull_vmm, guests, work, samples = int(sys.argv[1]), *sys.argv[2:6]
FIG = "vmm"
KERNEL = os.path.join(guests, "standin-pvh.elf")
CMDLINE = "console=ttyS0 standin=count count_delay=0"
HULL = "hull-vmm --restore"
QEMU_NAME = "QEMU microvm -incoming"
QEMU = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off", "-enable-kvm",
        "-cpu", "host,-arch-capabilities", "-m", "64", "-nodefaults", "-no-user-config",
        "-nographic", "-serial", "stdio", "-kernel", KERNEL, "-append", CMDLINE,
        # The clone runs as soon as the state is in (no `cont`).
        "-global", "migration.store-global-state=off"]


def record(*fields):
    with open(samples, "a") as f:
        f.write("\t".join(str(x) for x in fields) + "\n")


def spawn(argv):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)


def first_byte(p, what):
    r, _, _ = select.select([p.stdout.fileno()], [], [], 10)
    if not r or not os.read(p.stdout.fileno(), 4096):
        raise RuntimeError(f"{what}: no guest output within 10 s")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def line_client(path):
    for _ in range(1000):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s.makefile("rw")
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"cannot connect to {path}")


def hull_template(snap):
    api = os.path.join(work, "template.api")
    p = spawn([hull_vmm, "--kernel", KERNEL, "--memory", "64", "--cmdline", CMDLINE,
               "--api-socket", api])
    first_byte(p, "hull-vmm template")
    time.sleep(0.2)
    f = line_client(api)
    f.write("pause\n"); f.flush()
    assert f.readline().strip() == "ok"
    t0 = time.perf_counter()
    f.write(f"snapshot {snap}\n"); f.flush()
    reply = f.readline().strip()
    took = (time.perf_counter() - t0) * 1000
    stop(p)
    if reply != "ok":
        raise RuntimeError(f"hull-vmm snapshot: {reply}")
    return took


def qmp(f, cmd, **args):
    f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r:
            return r["return"]
        if "error" in r:
            raise RuntimeError(f"QMP {cmd}: {r['error']}")


def qemu_template(state):
    sock = os.path.join(work, "qmp.sock")
    p = spawn(QEMU + ["-qmp", f"unix:{sock},server=on,wait=off"])
    first_byte(p, "QEMU template")
    time.sleep(0.2)
    f = line_client(sock)
    f.readline()
    qmp(f, "qmp_capabilities")
    qmp(f, "stop")
    t0 = time.perf_counter()
    qmp(f, "migrate", uri=f"exec:cat > {state}")
    while qmp(f, "query-migrate").get("status") not in ("completed", "failed"):
        time.sleep(0.002)
    took = (time.perf_counter() - t0) * 1000
    qmp(f, "quit")
    p.wait()
    return took


def memory_kib(pid):
    found = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                found[key] = int(rest.split()[0])
    return found["Rss"], found["Pss"]


snap = os.path.join(work, "snapshot")
record("sample", FIG, HULL, "snapshot ms (pause, then save)", f"{hull_template(snap):.2f}")
restorers = {HULL: [hull_vmm, "--restore", snap]}
if shutil.which("qemu-system-x86_64"):
    state = os.path.join(work, "qemu.state")
    record("sample", FIG, QEMU_NAME, "snapshot ms (pause, then save)", f"{qemu_template(state):.2f}")
    restorers[QEMU_NAME] = QEMU + ["-incoming", f"exec:cat {state}"]

for i in range(n):  # alternating, so load from elsewhere hits all alike
    for name, argv in restorers.items():
        t0 = time.perf_counter()
        p = spawn(argv)
        try:
            first_byte(p, name)
            record("sample", FIG, name, "restore to first guest byte ms",
                   f"{(time.perf_counter() - t0) * 1000:.2f}")
            if i < 3:
                time.sleep(0.3)
                rss, pss = memory_kib(p.pid)
                record("sample", FIG, name, "RSS MiB, restored clone", f"{rss / 1024:.2f}")
                record("sample", FIG, name, "PSS MiB, restored clone", f"{pss / 1024:.2f}")
        finally:
            stop(p)
