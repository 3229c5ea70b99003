//! Real-KVM tests of snapshot and restore: stand-in guests are saved
//! mid-run through the control API and restored with `--restore`, once or
//! twice from one snapshot, with devices in use; broken and mismatched
//! snapshots are refused with one line.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hull_vmm::persist::format;

const T: Duration = Duration::from_secs(60);

/// The numbers of complete `PREFIX N...` lines of `out`, in order.
fn numbers(out: &str, prefix: &str) -> Vec<u64> {
    out.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Asserts that the numbers run 0, 1, 2, … without a gap or a restart.
fn assert_consecutive(nums: &[u64], out: &str) {
    for (i, n) in nums.iter().enumerate() {
        assert_eq!(*n, i as u64, "the count broke off at line {i}:\n{out}");
    }
}

/// The highest `PREFIX N` number in `out` is at least `n`.
fn reached(out: &str, prefix: &str, n: u64) -> bool {
    numbers(out, prefix).last().is_some_and(|l| *l >= n)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts `guest` (a stand-in action) with the control API, waits until
/// `ready` holds for its output, snapshots it into `snap` and stops it;
/// returns the output it printed.
fn make_template(
    dir: &Path,
    snap: &Path,
    cmdline: &str,
    extra: &[&str],
    ready: impl Fn(&str) -> bool,
) -> String {
    let k = guest("standin64.elf");
    let api_path = dir.join("template.api");
    let mut args = vec![
        "--kernel",
        s(&k),
        "--memory",
        "64",
        "--cmdline",
        cmdline,
        "--api-socket",
        s(&api_path),
    ];
    args.extend_from_slice(extra);
    let mut vm = RunningVm::spawn(&args);
    vm.wait_for("the guest's ready output", T, ready);
    let mut api = Api::connect(&api_path);
    api.ok("pause");
    assert_eq!(api.call("status"), "ok paused");
    api.ok(&format!("snapshot {}", snap.display()));
    let (st, out, err) = vm.stop();
    assert!(st.success(), "template: {st}: {err}");
    assert!(!api_path.exists(), "the API socket file outlived the VM");
    out
}

#[test]
fn a_counting_guest_carries_on_where_it_stopped_in_two_clones() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    let template = make_template(
        dir.path(),
        &snap,
        "console=ttyS0 standin=count count_delay=2000",
        &[],
        |o| reached(o, "count ", 20),
    );
    let last = *numbers(&template, "count ").last().unwrap();
    let memory_before = std::fs::read(snap.join("memory")).unwrap();

    // Two clones of one snapshot, running at the same time.
    let restore = || RunningVm::spawn(&["--restore", s(&snap)]);
    let (mut a, mut b) = (restore(), restore());
    for vm in [&mut a, &mut b] {
        vm.wait_for("the count to go on", T, |o| reached(o, "count ", last + 30));
    }
    for vm in [a, b] {
        let (st, out, err) = vm.stop();
        assert!(st.success(), "clone: {st}: {err}");
        assert!(
            !out.contains("hull-standin: hello"),
            "the clone booted again:\n{out}"
        );
        let whole = format!("{template}{out}");
        let nums = numbers(&whole, "count ");
        assert_consecutive(&nums, &whole);
        assert!(*nums.last().unwrap() >= last + 30);
        assert!(!out.contains("FAIL"), "{out}");
    }
    // Clones map the memory file privately: it is never written.
    assert!(std::fs::read(snap.join("memory")).unwrap() == memory_before);
}

#[test]
fn a_clone_snapshots_again_into_the_directory_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    let first = make_template(
        dir.path(),
        &snap,
        "console=ttyS0 standin=count count_delay=2000",
        &[],
        |o| reached(o, "count ", 5),
    );
    let api_path = dir.path().join("clone.api");
    let mut clone = RunningVm::spawn(&["--restore", s(&snap), "--api-socket", s(&api_path)]);
    let mut api = Api::connect(&api_path);
    let start = *numbers(&first, "count ").last().unwrap();
    clone.wait_for("more counting", T, |o| reached(o, "count ", start + 10));
    // A snapshot of a running VM pauses it for the snapshot only.
    api.ok(&format!(
        "snapshot {}",
        dir.path().join("running").display()
    ));
    assert_eq!(api.call("status"), "ok running");
    // Paused, into the directory the clone was restored from.
    api.ok("pause");
    let second = clone.output();
    api.ok(&format!("snapshot {}", snap.display()));
    assert_eq!(api.call("status"), "ok paused");
    api.ok("resume");
    clone.wait_for("counting after resume", T, |o| o.len() > second.len());
    clone.stop();
    let mut again = RunningVm::spawn(&["--restore", s(&snap)]);
    let base = *numbers(&format!("{first}{second}"), "count ")
        .last()
        .unwrap();
    again.wait_for("the count from the second snapshot", T, |o| {
        reached(o, "count ", base + 10)
    });
    let (st, third, err) = again.stop();
    assert!(st.success(), "{err}");
    let whole = format!("{first}{second}{third}");
    assert_consecutive(&numbers(&whole, "count "), &whole);
    // An unusable directory is an error line, and the VM goes on.
    let bad = RunningVm::spawn(&["--restore", s(&snap), "--api-socket", s(&api_path)]);
    let mut api = Api::connect(&api_path);
    let r = api.call("snapshot /proc/no/such/dir");
    assert!(
        r.starts_with("error: cannot create snapshot directory /proc/no/such/dir"),
        "{r}"
    );
    assert_eq!(api.call("status"), "ok running");
    assert!(api.call("frobnicate").starts_with("error: unknown command"));
    let (st, _, _) = bad.stop();
    assert!(st.success());
}

#[test]
fn a_disk_in_use_keeps_working_after_restore() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 65536]).unwrap();
    let block = format!("{},id=data", disk.display());
    let template = make_template(
        dir.path(),
        &snap,
        "console=ttyS0 standin=blkloop count_delay=2000",
        &["--block", &block],
        |o| reached(o, "blkloop ", 5),
    );
    // The clone writes to a copy of the disk as the template left it.
    let copy = dir.path().join("clone.img");
    std::fs::copy(&disk, &copy).unwrap();
    let last = *numbers(&template, "blkloop ").last().unwrap();
    let mut clone = RunningVm::spawn(&[
        "--restore",
        s(&snap),
        "--block",
        &format!("{},id=data", copy.display()),
    ]);
    clone.wait_for("block requests after restore", T, |o| {
        reached(o, "blkloop ", last + 20)
    });
    let (st, out, err) = clone.stop();
    assert!(st.success(), "{err}");
    let whole = format!("{template}{out}");
    let nums = numbers(&whole, "blkloop ");
    assert_consecutive(&nums, &whole);
    let end = *nums.last().unwrap();
    let data = std::fs::read(&copy).unwrap();
    let sector = &data[(end % 16) as usize * 512..][..512];
    let want: Vec<u8> = (0..512u64).map(|j| (end * 7 + j) as u8).collect();
    assert_eq!(
        sector,
        &want[..],
        "the clone's last write is not in its disk"
    );
    // The read-only flag and the id must match the snapshot's slot.
    let o = run_vmm(
        &[
            "--restore",
            s(&snap),
            "--block",
            &format!("{},ro", copy.display()),
        ],
        T,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("block device 0 is read-write in the snapshot"),
        "{}",
        stderr(&o)
    );
    let o = run_vmm(
        &[
            "--restore",
            s(&snap),
            "--block",
            &format!("{},id=other", copy.display()),
        ],
        T,
    );
    assert!(
        stderr(&o).contains("id \"other\" given, the snapshot's is \"data\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_placeholder_disk_gets_a_file_and_the_guest_sees_its_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    make_template(
        dir.path(),
        &snap,
        "console=ttyS0 standin=hotdisk",
        &["--block", "placeholder,id=scratch"],
        |o| o.contains("hotdisk: capacity 0, waiting\n"),
    );
    let file = dir.path().join("real.img");
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 31 + 7) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let clone = RunningVm::spawn(&["--restore", s(&snap), "--block", s(&file)]);
    let (st, out, err) = clone.wait(T);
    assert!(st.success(), "{st}: {err}\n{out}");
    assert!(
        out.contains("hotdisk: config change, generation 1, capacity 16\n"),
        "{out}"
    );
    let want = format!("hotdisk: sector 0 fnv1a {:#x}\n", fnv1a(&data[..512]));
    assert!(out.contains(&want), "{out}\nwanted {want}");
    // Restored still as a placeholder, the guest goes on waiting.
    let mut empty = RunningVm::spawn(&["--restore", s(&snap), "--block", "placeholder"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!empty.output().contains("config change"));
    assert!(empty.child.try_wait().unwrap().is_none());
    let (st, _, _) = empty.stop();
    assert!(st.success());
}

/// Connects to the vsock host socket `uds`, asks for guest port 5001 and
/// returns the stream once the guest accepted.
fn vsock_connect(uds: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let start = Instant::now();
    let c = loop {
        match UnixStream::connect(uds) {
            Ok(c) => break c,
            Err(e) => {
                assert!(start.elapsed() < T, "{e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    c.set_read_timeout(Some(T)).unwrap();
    let mut w = c.try_clone().unwrap();
    w.write_all(b"CONNECT 5001\n").unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("OK "), "{line:?}");
    (w, r)
}

fn echo(w: &mut UnixStream, r: &mut BufReader<UnixStream>, what: &str) {
    w.write_all(format!("{what}\n").as_bytes()).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, format!("echo: {what}\n"));
}

#[test]
fn vsock_resets_its_connections_and_takes_new_ones_after_restore() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    let uds = dir.path().join("t.sock");
    let api_path = dir.path().join("t.api");
    let k = guest("standin64.elf");
    let mut t = RunningVm::spawn(&[
        "--kernel",
        s(&k),
        "--memory",
        "64",
        "--cmdline",
        "console=ttyS0 standin=vsockloop",
        "--vsock",
        &format!("cid=3,uds={}", uds.display()),
        "--api-socket",
        s(&api_path),
    ]);
    t.wait_for("vsock ready", T, |o| o.contains("vsockloop: cid 3 ready"));
    let (mut w, mut r) = vsock_connect(&uds);
    echo(&mut w, &mut r, "before");
    // A connection is open while the snapshot is taken.
    let mut api = Api::connect(&api_path);
    api.ok(&format!("snapshot {}", snap.display()));
    let (st, _, _) = t.stop();
    assert!(st.success());
    drop((w, r));

    let uds2 = dir.path().join("c.sock");
    let mut c = RunningVm::spawn(&[
        "--restore",
        s(&snap),
        "--vsock",
        &format!("cid=9,uds={}", uds2.display()),
    ]);
    c.wait_for("the transport reset", T, |o| {
        o.contains("vsockloop: event 0 cid 9\n")
    });
    let (mut w, mut r) = vsock_connect(&uds2);
    echo(&mut w, &mut r, "after");
    echo(&mut w, &mut r, "again");
    let (st, out, err) = c.stop();
    assert!(st.success(), "{err}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(!uds2.exists());
    // Without --vsock the snapshot's vsock slot has nothing to stand on.
    let o = run_vmm(&["--restore", s(&snap)], T);
    assert!(
        stderr(&o).contains("the snapshot has a vsock device: give --vsock uds=PATH"),
        "{}",
        stderr(&o)
    );
}

/// Runs `--restore dir` with `extra` and expects exit 1 with one line
/// containing `want`.
fn refused(dir: &Path, extra: &[&str], want: &str) {
    let mut args = vec!["--restore", s(dir)];
    args.extend_from_slice(extra);
    let o = run_vmm(&args, T);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
}

/// A snapshot directory with `state` as given and `memory` linked from `from`.
fn variant(root: &Path, name: &str, from: &Path, state: &[u8]) -> std::path::PathBuf {
    let d = root.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("state"), state).unwrap();
    std::fs::hard_link(from.join("memory"), d.join("memory")).unwrap();
    d
}

#[test]
fn broken_and_mismatched_snapshots_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let snap = root.join("snap");
    let other = root.join("other");
    make_template(root, &snap, "console=ttyS0 standin=count", &[], |o| {
        reached(o, "count ", 1)
    });
    make_template(root, &other, "console=ttyS0 standin=count", &[], |o| {
        reached(o, "count ", 1)
    });
    let state = std::fs::read(snap.join("state")).unwrap();
    let payload = format::open(&state).unwrap().to_vec();

    let truncated = variant(root, "truncated", &snap, &state[..state.len() / 2]);
    refused(
        &truncated,
        &[],
        "checksum mismatch (the file is corrupt or truncated)",
    );
    let tiny = variant(root, "tiny", &snap, &state[..10]);
    refused(&tiny, &[], "state file is truncated (10 bytes)");
    let mut flipped = state.clone();
    flipped[state.len() / 3] ^= 1;
    let corrupt = variant(root, "corrupt", &snap, &flipped);
    refused(&corrupt, &[], "checksum mismatch");
    let mut magic = state.clone();
    magic[0] = b'X';
    let not_ours = variant(root, "magic", &snap, &magic);
    refused(&not_ours, &[], "not a hull-vmm snapshot state file");
    let old = variant(
        root,
        "old",
        &snap,
        &format::seal_with(format::FORMAT_VERSION, "0.0.1-old", &payload),
    );
    refused(&old, &[], "snapshot made by hull-vmm \"0.0.1-old\"");
    let future = variant(
        root,
        "future",
        &snap,
        &format::seal_with(format::FORMAT_VERSION + 1, format::VMM_VERSION, &payload),
    );
    refused(
        &future,
        &[],
        &format!("snapshot format version {}", format::FORMAT_VERSION + 1),
    );
    let junk = variant(root, "junk", &snap, &format::seal(b"{\"memory\": 1}"));
    refused(&junk, &[], "state file payload is invalid");

    // The memory file must be the state's own, and whole.
    let mixed = variant(root, "mixed", &other, &state);
    refused(
        &mixed,
        &[],
        "belongs to another snapshot than the state file",
    );
    let short = root.join("short");
    std::fs::create_dir(&short).unwrap();
    std::fs::write(short.join("state"), &state).unwrap();
    let mem = std::fs::read(snap.join("memory")).unwrap();
    std::fs::write(short.join("memory"), &mem[..mem.len() - 4096]).unwrap();
    refused(&short, &[], "the snapshot needs");
    let none = root.join("none");
    std::fs::create_dir(&none).unwrap();
    refused(&none, &[], "cannot read");

    // Flags that do not fit the snapshot.
    let f = root.join("f.img");
    std::fs::write(&f, [0u8; 512]).unwrap();
    refused(
        &snap,
        &["--block", s(&f)],
        "the snapshot has 0 block device(s), 1 --block given",
    );
    refused(
        &snap,
        &["--memory", "64"],
        "--memory comes from the snapshot",
    );
    refused(&root.join("missing"), &[], "does not exist");
    // And the good one still restores.
    let vm = RunningVm::spawn(&["--restore", s(&snap)]);
    let (st, _, _) = {
        let mut vm = vm;
        vm.wait_for("counting", T, |o| o.contains("count "));
        vm.stop()
    };
    assert!(st.success());
}
