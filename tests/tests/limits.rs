//! `--ulimit`, block I/O limits and user namespaces, end to end: real QEMU,
//! guest kernel, agent and busybox image. What is checked is what the
//! container sees (its rlimits, its cgroup's io files, its maps and what
//! its root may do), never how long something took.

use hull_tests::{assert_one_line_error, ok, stderr, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";

/// A failed `run` left no container and no sandbox behind.
fn assert_nothing_created(hull: &Hull) {
    assert_eq!(ok(&hull.hull(&["ps", "-a", "-q"])), "");
    hull.assert_no_sandbox_left();
}

#[test]
fn ulimits_reach_the_process() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "nproc=64",
        "--ulimit",
        "core=0:unlimited",
        IMAGE,
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c; ulimit -Hc",
    ]);
    assert_eq!(ok(&out), "1024\n2048\n64\n64\n0\nunlimited\n");

    // Without --ulimit the default stays (nofile 1048576, as containerd).
    let out = hull.hull(&["run", "--rm", IMAGE, "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(ok(&out), "1048576\n1048576\n");
}

#[test]
fn bad_limits_are_one_line_errors_that_create_nothing() {
    let hull = Hull::with_busybox();
    let cases: &[(&[&str], &str)] = &[
        (&["--ulimit", "nofile=2048:1024"], "nofile=2048:1024"),
        (&["--ulimit", "files=10"], "files=10"),
        (&["--ulimit", "nproc=lots"], "nproc=lots"),
        (&["--blkio-weight", "5"], "--blkio-weight"),
        (&["--device-read-bps", "/dev/sda:1mb"], "/dev/sda:1mb"),
        (&["--device-write-iops", "rootfs:many"], "rootfs:many"),
        (&["--uidmap", "0:100000"], "0:100000"),
        (
            &["--uidmap", "0:100000:10", "--uidmap", "5:200000:10"],
            "5:200000:10",
        ),
        (&["--userns", "host", "--uidmap", "0:1:1"], "--userns"),
        (&["--uidmap", "1000:1000:1"], "id 0 of the container"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "true"]);
        assert_one_line_error(&hull.hull(&args), 125, needle);
    }
    assert_nothing_created(&hull);
}

#[test]
fn block_io_limits_land_in_the_containers_cgroup() {
    let hull = Hull::with_busybox();
    // The two disks under the root: the image (lower) and the writable
    // layer (upper); each gets its own io.max line.
    // busybox's dd prints no rate: time it with /proc/uptime.
    let script = "\
        cat /sys/fs/cgroup/io.weight; echo ---; cat /sys/fs/cgroup/io.max; echo ---; \
        dd if=/dev/zero of=/data bs=64k count=32 oflag=direct 2>/dev/null && \
        s=$(cut -d' ' -f1 /proc/uptime) && \
        dd if=/data of=/dev/null bs=64k iflag=direct 2>&1 && \
        e=$(cut -d' ' -f1 /proc/uptime) && \
        awk \"BEGIN { printf \\\"2 MiB in %.2f s: %.2f MiB/s\\\", $e - $s, 2 / ($e - $s) }\"";
    let out = hull.hull(&[
        "run",
        "--rm",
        "--blkio-weight",
        "500",
        "--device-read-bps",
        "rootfs:1mb",
        "--device-write-iops",
        "writable:100",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let text = ok(&out);
    let mut parts = text.split("---\n");
    let weight = parts.next().unwrap();
    let io_max = parts.next().unwrap();
    let dd = parts.next().unwrap_or_default();
    // runc's conversion of blkio weight 500 to io.weight.
    assert_eq!(weight.lines().next(), Some("default 4950"), "{text}");
    let lines: Vec<&str> = io_max.lines().collect();
    assert_eq!(lines.len(), 2, "one line per disk: {io_max}");
    let reads: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("rbps=1048576"))
        .collect();
    assert_eq!(reads.len(), 2, "both disks read-limited: {io_max}");
    let writable: Vec<&&str> = lines.iter().filter(|l| l.contains("wiops=100")).collect();
    assert_eq!(writable.len(), 1, "only the writable disk: {io_max}");
    assert!(writable[0].contains("wbps=max"), "{io_max}");
    let devices: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_ne!(devices[0], devices[1], "{io_max}");
    // A direct read of 2 MiB from the writable disk, limited to 1 MiB/s:
    // dd's own figure, printed, not asserted (no timing in tests).
    eprintln!("dd under --device-read-bps rootfs:1mb: {}", dd.trim());
    assert!(dd.contains("32+0 records in"), "{dd} {}", stderr(&out));
}

/// The uid_map/gid_map lines as (inside, outside, count).
fn map_lines(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .map(|l| {
            let n: Vec<u64> = l.split_whitespace().map(|f| f.parse().unwrap()).collect();
            (n[0], n[1], n[2])
        })
        .collect()
}

#[test]
fn a_user_namespace_maps_root_to_an_unprivileged_vm_user() {
    let hull = Hull::with_busybox();
    let script = "\
        cat /proc/self/uid_map; echo ---; cat /proc/self/gid_map; echo ---; \
        id -u; id -g; stat -c '%u:%g' /etc/passwd /bin/busybox; \
        touch /root/written && echo wrote; \
        mknod /tmp/null c 1 3 2>/dev/null; echo mknod=$?; ls /dev | tr '\\n' ' '";
    let out = hull.hull(&[
        "run",
        "--rm",
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:200000:65536",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let text = ok(&out);
    let mut parts = text.split("---\n");
    assert_eq!(
        map_lines(parts.next().unwrap()),
        vec![(0, 100_000, 65_536)],
        "{text}"
    );
    assert_eq!(map_lines(parts.next().unwrap()), vec![(0, 200_000, 65_536)]);
    let rest: Vec<&str> = parts.next().unwrap().lines().collect();
    assert_eq!(rest[..2], ["0", "0"], "root inside: {text}");
    // The image's files keep their owners as the container sees them
    // (idmapped layers), so root inside owns /root and may write there.
    assert_eq!(rest[2..4], ["0:0", "0:0"], "{text}");
    assert_eq!(rest[4], "wrote");
    // Root inside is not VM root: the kernel refuses it mknod, which
    // Docker's default capabilities allow VM root (checked below).
    assert_eq!(rest[5], "mknod=1", "{text}");
    assert_eq!(
        rest[6],
        "core fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero "
    );

    let out = hull.hull(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "mknod /tmp/null c 1 3; echo mknod=$?",
    ]);
    assert_eq!(ok(&out), "mknod=0\n", "without a user namespace");
}

#[test]
fn privileged_root_in_a_user_namespace_cannot_touch_the_vm() {
    let hull = Hull::with_busybox();
    // Every capability and no seccomp filter, but only over what the
    // namespace owns: the VM's sysctls stay VM root's.
    let script = "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null; echo sysctl=$?; \
                  grep CapEff /proc/self/status";
    let out = hull.hull(&[
        "run",
        "--rm",
        "--privileged",
        "--uidmap",
        "0:100000:65536",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let text = ok(&out);
    assert!(text.starts_with("sysctl=1\n"), "{text}");
    let cap_eff = text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in {text}"));
    const CAP_SYS_ADMIN: u32 = 21;
    assert!(cap_eff & (1 << CAP_SYS_ADMIN) != 0, "{text}");

    let out = hull.hull(&["run", "--rm", "--privileged", IMAGE, "sh", "-c", script]);
    assert!(
        ok(&out).starts_with("sysctl=0\n"),
        "VM root may: {}",
        stdout(&out)
    );
}

#[test]
fn exec_joins_the_containers_user_namespace() {
    let hull = Hull::with_busybox();
    let id = ok(&hull.hull(&[
        "run",
        "-d",
        "--uidmap",
        "0:100000:65536",
        IMAGE,
        "sleep",
        "1000",
    ]));
    let id = id.trim();
    let out = hull.hull(&["exec", id, "sh", "-c", "cat /proc/self/uid_map; id -u"]);
    let text = ok(&out);
    let mut lines = text.lines();
    assert_eq!(
        map_lines(lines.next().unwrap()),
        vec![(0, 100_000, 65_536)],
        "{text}"
    );
    assert_eq!(lines.next(), Some("0"));
    ok(&hull.hull(&["rm", "-f", id]));
}
