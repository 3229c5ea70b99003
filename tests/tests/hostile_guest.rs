//! What a hostile guest, or a careless neighbour on the host, cannot get
//! (issue 21), end to end with real QEMU guests: a guest that floods its
//! serial console fills no more than the console's cap on the host; the
//! records under the run dir (with `-e` secrets in them) are owner-only;
//! QEMU runs under its own seccomp filter; one run directory's sweep never
//! takes another's writable layer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hull_tests::{ok, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";

/// Every file and directory under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_guest_flooding_its_console_fills_no_more_than_the_cap() {
    let hull = Hull::with_busybox();
    const LIMIT: u64 = 64 << 10;
    // 512 KiB down the guest's serial port: 8 times the cap.
    let script = "mknod /dev/serial c 4 64 && \
                  head -c 524288 /dev/zero | tr '\\0' x > /dev/serial && echo flooded";
    let out = hull
        .command(&[
            "run",
            "-d",
            "--name",
            "flood",
            "--privileged",
            IMAGE,
            "sh",
            "-c",
            &format!("{script}; sleep 600"),
        ])
        .env("HULL_CONSOLE_LOG_LIMIT", LIMIT.to_string())
        .output()
        .unwrap();
    ok(&out);
    hull_tests::eventually(300, "the flood to end", || {
        stdout(&hull.hull(&["logs", "flood"])).contains("flooded")
    });
    let logs: Vec<PathBuf> = walk(&hull.run_dir())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("console.log"))
        })
        .collect();
    let sizes: Vec<u64> = logs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    println!("console logs: {logs:?} {sizes:?}");
    assert_eq!(logs.len(), 2, "the log and one older file: {logs:?}");
    assert!(
        sizes.iter().all(|&s| s <= LIMIT),
        "each under the cap: {sizes:?}"
    );
    let older = logs
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".1"))
        .expect("rotated");
    let text = std::fs::read(older).unwrap();
    assert!(
        text.iter().filter(|&&b| b == b'x').count() > (LIMIT / 2) as usize,
        "the flood went through the console and was rotated"
    );
    // The container is unharmed and still answers.
    assert_eq!(
        stdout(&hull.hull(&["exec", "flood", "echo", "alive"])),
        "alive\n"
    );
    ok(&hull.hull(&["rm", "-f", "flood"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn records_logs_and_secrets_are_owner_only_and_qemu_is_jailed() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "secretive",
        "-e",
        "API_TOKEN=s3cret",
        IMAGE,
        "sh",
        "-c",
        "echo started; sleep 600",
    ]));
    hull_tests::eventually(60, "the container's output", || {
        stdout(&hull.hull(&["logs", "secretive"])).contains("started")
    });
    assert_eq!(mode(&hull.run_dir()), 0o700, "the run dir");
    // No directory lets others in; what holds secrets or the guest's
    // output is owner-only besides.
    let (mut secrets, mut logs) = (0, 0);
    for path in walk(&hull.run_dir()) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = meta.file_type();
        let secret =
            kind.is_file() && std::fs::read_to_string(&path).is_ok_and(|t| t.contains("s3cret"));
        let log = kind.is_file() && path.to_string_lossy().contains(".log");
        secrets += usize::from(secret);
        logs += usize::from(log);
        if kind.is_dir() || secret || log {
            assert_eq!(
                mode(&path) & 0o077,
                0,
                "{} is open to others: {:o}",
                path.display(),
                mode(&path)
            );
        }
    }
    assert!(secrets > 0, "the secret is somewhere in the record");
    assert!(
        logs >= 3,
        "supervisor, console and hypervisor logs at least"
    );

    // QEMU: jailed (an unprivileged id of its own, no capabilities, an
    // empty root), its own seccomp filter, no way back to privileges.
    let pid = hull.inspect("secretive")["State"]["Pid"]
        .as_u64()
        .expect("the hypervisor's pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.to_string_lossy().contains("qemu"), "{exe:?}");
    assert_eq!(field("Seccomp:"), "2", "QEMU's -sandbox filter");
    assert_eq!(field("NoNewPrivs:"), "1");
    let ids = |name: &str| -> Vec<u64> {
        field(name)
            .split_whitespace()
            .map(|id| id.parse().unwrap())
            .collect()
    };
    let uid = ids("Uid:")[0];
    assert!(uid >= 1 << 20, "QEMU runs as a VM's own uid, not {uid}");
    assert_eq!(ids("Uid:"), vec![uid; 4], "real, effective, saved, fs");
    assert_eq!(ids("Gid:"), vec![uid; 4]);
    assert_eq!(ids("Groups:"), vec![uid], "no other group");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert!(root.ends_with("jail"), "its root is its jail: {root:?}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "an empty one");
    assert_eq!(mode(&root), 0o500);
    // Its id is held by the lock QEMU inherited, for as long as it lives.
    let lock = std::fs::read_link(format!("/proc/{pid}/fd/4")).unwrap();
    assert!(lock.starts_with("/run/hull-jail-ids"), "{lock:?}");
    // Another container gets another id.
    ok(&hull.hull(&["run", "-d", "--name", "neighbour", IMAGE, "sleep", "600"]));
    let neighbour = hull.inspect("neighbour")["State"]["Pid"].as_u64().unwrap();
    let neighbour_status = std::fs::read_to_string(format!("/proc/{neighbour}/status")).unwrap();
    assert!(
        !neighbour_status.contains(&format!("Uid:\t{uid}\t")),
        "two VMs share uid {uid}"
    );
    ok(&hull.hull(&["rm", "-f", "neighbour"]));
    ok(&hull.hull(&["rm", "-f", "secretive"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn a_sweep_never_takes_another_run_dirs_writable_layer() {
    let hull = Hull::with_busybox();
    let other_run_dir = hull.run_dir().with_file_name("run-other");
    // A container of another run dir on the same root, with data in its
    // writable layer.
    let mut other = hull.command(&[
        "run",
        "-d",
        "--name",
        "neighbour",
        IMAGE,
        "sh",
        "-c",
        "echo kept > /data; sleep 600",
    ]);
    other.env("HULL_RUN_DIR", &other_run_dir);
    let id = stdout(&other.output().unwrap()).trim().to_string();
    assert_eq!(id.len(), 64, "the neighbour's id: {id:?}");
    let layer = hull.store_dir().join("sandboxes").join(&id[..12]);
    assert!(layer.is_dir(), "{}", layer.display());

    // A run in this run dir sweeps its own leftovers only.
    ok(&hull.hull(&["run", "--rm", IMAGE, "true"]));
    assert!(layer.is_dir(), "the neighbour's layer was swept");

    let in_other = |args: &[&str]| {
        let mut cmd = hull.command(args);
        cmd.env("HULL_RUN_DIR", &other_run_dir);
        cmd.output().unwrap()
    };
    assert_eq!(
        stdout(&in_other(&["exec", "neighbour", "cat", "/data"])),
        "kept\n"
    );
    ok(&in_other(&["rm", "-f", "neighbour"]));
    assert!(!layer.exists(), "its own rm takes it");
    hull.assert_no_sandbox_left();
}
