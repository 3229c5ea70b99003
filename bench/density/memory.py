#!/usr/bin/env python3
"""Host memory and idle CPU of running sandboxes, one sample per sandbox.
Reads `hull inspect` or `podman inspect` JSON of the running containers on
stdin; appends samples in bench/lib.sh's format to SAMPLES.

    memory.py hull|podman SERIES SAMPLES [--guest-memory]

A sandbox's processes: for hull, the supervisor and everything under it
(the hypervisor); for podman, conmon and everything under it (the
container's processes). Host memory per sandbox is the sum of their PSS,
so shared library pages count once overall. For hull the hypervisor's
guest RAM mapping (the anonymous mapping of exactly MemoryMiB) is also
reported on its own: that is the guest memory actually touched.
"""
import json
import os
import sys
import time

kind, series, samples = sys.argv[1:4]
guest_memory = "--guest-memory" in sys.argv
CPU_WINDOW_S = 3.0
TICKS = os.sysconf("SC_CLK_TCK")


def record(*fields):
    with open(samples, "a") as f:
        f.write("\t".join(str(x) for x in fields) + "\n")


def children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(root, kids):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def rollup(pid, key="Pss"):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def guest_ram(pid, mib):
    """(Rss, Pss, AnonHugePages) in KiB of the mapping of exactly mib MiB."""
    want, cur, found = mib * 1024, {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                if cur.get("Size") == want and found is None:
                    found = cur
                cur = {}
            elif head.endswith(":") and len(line.split()) >= 2 and line.split()[1].isdigit():
                cur[head[:-1]] = int(line.split()[1])
    if found is None and cur.get("Size") == want:
        found = cur
    if found is None:
        return None
    return found.get("Rss", 0), found.get("Pss", 0), found.get("AnonHugePages", 0)


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total


containers = json.load(sys.stdin)
kids = children_map()
sandboxes = []
for c in containers:
    if kind == "hull":
        root, vmm, mib = c["Hull"]["SupervisorPid"], c["Hull"]["HypervisorPid"], c["Hull"]["MemoryMiB"]
    else:
        root, vmm, mib = c["State"]["ConmonPid"], None, None
    sandboxes.append((root, vmm, mib, tree(root, kids)))

before = [cpu_ticks(pids) for *_, pids in sandboxes]
time.sleep(CPU_WINDOW_S)
after = [cpu_ticks(pids) for *_, pids in sandboxes]

FIG = "density"
for (root, vmm, mib, pids), t0, t1 in zip(sandboxes, before, after):
    pss = sum(rollup(p) for p in pids)
    record("sample", FIG, series, "host memory per sandbox MiB", f"{pss / 1024:.2f}")
    record("sample", FIG, series, "idle CPU per sandbox %", f"{(t1 - t0) / TICKS / CPU_WINDOW_S * 100:.2f}")
    if vmm is None:
        continue
    ram = guest_ram(vmm, mib)
    if ram is not None:
        record("sample", FIG, series, "guest RAM resident on host MiB", f"{ram[0] / 1024:.2f}")
    if guest_memory:
        sup = rollup(root)
        vmm_pss = rollup(vmm)
        record("sample", "memory", "host side", "supervisor PSS MiB", f"{sup / 1024:.2f}")
        record("sample", "memory", "host side", "hypervisor PSS MiB", f"{vmm_pss / 1024:.2f}")
        if ram is not None:
            record("sample", "memory", "host side", "guest RAM resident (RSS) MiB", f"{ram[0] / 1024:.2f}")
            record("sample", "memory", "host side", "of which transparent huge pages MiB", f"{ram[2] / 1024:.2f}")
            record("sample", "memory", "host side", "hypervisor PSS besides guest RAM MiB",
                   f"{(vmm_pss - ram[1]) / 1024:.2f}")
