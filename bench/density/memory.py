#!/usr/bin/env python3
"""Host memory and idle CPU of running sandboxes, one sample per sandbox,
and where that memory goes.

    memory.py hull|podman SERIES SAMPLES [--detail]
        reads `hull inspect` or `podman inspect` JSON of the running
        containers on stdin; appends samples in bench/lib.sh's format
    memory.py --guest-ram PID MIB
        prints the MiB of a hypervisor's guest RAM resident on the host

A sandbox's processes: for hull, the supervisor and everything under it
(the hypervisor); for podman, conmon and everything under it (the
container's processes). Host memory per sandbox is the sum of their PSS,
so pages shared between sandboxes (binaries, libraries, the guest kernel
file) count once overall. For hull it splits, mapping by mapping, into:
  guest RAM      the hypervisor's mapping of exactly MemoryMiB (resident
                 pages = guest memory the host really backs)
  translation    under TCG, QEMU's translated-code cache: its only
  cache          anonymous executable mapping (none under KVM)
  other private  the hypervisor's heap, stacks and device state
  shared files   the hypervisor's file mappings (its binary, libraries, the
                 guest kernel and initramfs QEMU loaded), PSS
  supervisor     hull's supervisor process
and for podman into conmon and the container's processes.
With --detail, the "memory" figure also gets the first-hand numbers of
each sandbox: resident and huge-page MiB of guest RAM.
"""
import json
import os
import sys
import time

CPU_WINDOW_S = 3.0
TICKS = os.sysconf("SC_CLK_TCK")
FIG = "density"
HUGE = ("AnonHugePages", "ShmemPmdMapped", "FilePmdMapped")


def mappings(pid):
    """Each mapping of pid: a dict of its smaps fields (KiB), plus its
    permissions and path ("" when anonymous or a [special] region)."""
    out = []
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                fields = line.split()
                if not fields:
                    continue
                head = fields[0]
                if not head.endswith(":"):
                    path = " ".join(fields[5:]) if len(fields) > 5 else ""
                    out.append({"perms": fields[1], "path": path})
                elif out and len(fields) >= 2 and fields[1].isdigit():
                    out[-1][head[:-1]] = int(fields[1])
    except OSError:
        pass
    return out


def pss(maps):
    return sum(m.get("Pss", 0) for m in maps)


def is_guest_ram(m, mib):
    return mib is not None and m.get("Size") == mib * 1024


def is_code_cache(m):
    # TCG's code buffer is the only anonymous mapping QEMU makes executable
    # (without split-wx, the default on x86 hosts).
    return "x" in m["perms"] and not m["path"].startswith("/")


def is_file(m):
    return m["path"].startswith("/") and not m["path"].startswith("/memfd:")


def guest_ram(pid, mib):
    """The guest RAM mapping of a hypervisor, or None."""
    return next((m for m in mappings(pid) if is_guest_ram(m, mib)), None)


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


def split(kind, root, vmm, mib, pids):
    """[(part, KiB)] of one sandbox, summing to its PSS."""
    if kind == "podman":
        rest = sum(pss(mappings(p)) for p in pids if p != root)
        return [("conmon", pss(mappings(root))), ("the container's processes", rest)]
    ram = code = private = files = 0
    for m in mappings(vmm) if vmm in pids else []:
        if is_guest_ram(m, mib):
            ram += m.get("Pss", 0)
        elif is_code_cache(m):
            code += m.get("Pss", 0)
        elif is_file(m):
            files += m.get("Pss", 0)
        else:
            private += m.get("Pss", 0)
    others = sum(pss(mappings(p)) for p in pids if p != vmm)
    return [
        ("guest RAM resident", ram),
        ("TCG translation cache (QEMU without KVM)", code),
        ("hypervisor's other private memory (heap, device state)", private),
        ("hypervisor's shared files (binary, libraries, guest kernel; PSS)", files),
        ("hull supervisor", others),
    ]


def record(samples, *fields):
    with open(samples, "a") as f:
        f.write("\t".join(str(x) for x in fields) + "\n")


def main(argv):
    if argv[1:2] == ["--guest-ram"]:
        m = guest_ram(int(argv[2]), int(argv[3]))
        print(f"{(m or {}).get('Rss', 0) / 1024:.2f}")
        return 0
    kind, series, samples = argv[1:4]
    detail = "--detail" in argv
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

    for (root, vmm, mib, pids), t0, t1 in zip(sandboxes, before, after):
        parts = split(kind, root, vmm, mib, pids)
        total = sum(kib for _, kib in parts)
        record(samples, "sample", FIG, series, "host memory per sandbox MiB", f"{total / 1024:.2f}")
        for part, kib in parts:
            record(samples, "sample", FIG, series, f"… {part} MiB", f"{kib / 1024:.2f}")
        record(samples, "sample", FIG, series, "idle CPU per sandbox %",
               f"{(t1 - t0) / TICKS / CPU_WINDOW_S * 100:.2f}")
        if detail and vmm is not None:
            ram = guest_ram(vmm, mib)
            if ram is not None:
                record(samples, "sample", "memory", "host side", "guest RAM resident (RSS) MiB",
                       f"{ram.get('Rss', 0) / 1024:.2f}")
                record(samples, "sample", "memory", "host side", "… of it in huge pages MiB",
                       f"{sum(ram.get(k, 0) for k in HUGE) / 1024:.2f}")
            code = sum(m.get("Rss", 0) for m in mappings(vmm) if is_code_cache(m))
            record(samples, "sample", "memory", "host side", "TCG translation cache resident MiB",
                   f"{code / 1024:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
