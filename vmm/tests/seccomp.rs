//! Real-KVM test: once a stand-in guest runs, every thread of hull-vmm is
//! under a seccomp filter (`Seccomp: 2` in /proc/PID/task/*/status), and
//! the VM still does what the filters must leave possible: snapshots,
//! attach-disk, removing its sockets. (Guest-initiated vsock connects,
//! restores and disk I/O under the filters are the other real-KVM tests.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);

/// PF_USER_WORKER: a kernel worker in the process's thread group (KVM's
/// `kvm-nx-lpage-recovery`), which never runs user code.
const PF_USER_WORKER: u64 = 0x4000;

/// The task's flags (field 9 of its stat, after the parenthesised name).
fn task_flags(stat: &str) -> u64 {
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(6).unwrap().parse().unwrap()
}

/// Each user thread's name and its status fields; kernel workers apart.
type Threads = BTreeMap<u32, (String, BTreeMap<String, String>)>;

fn threads(pid: u32) -> (Threads, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut workers = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let e = e.unwrap();
        let tid: u32 = e.file_name().to_str().unwrap().parse().unwrap();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap();
        if task_flags(&stat) & PF_USER_WORKER != 0 {
            workers.push(stat[stat.find('(').unwrap()..=stat.rfind(')').unwrap()].to_string());
            continue;
        }
        let status = std::fs::read_to_string(e.path().join("status")).unwrap();
        let fields: BTreeMap<String, String> = status
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        out.insert(tid, (fields["Name"].clone(), fields));
    }
    (out, workers)
}

#[test]
fn every_thread_runs_under_a_filter_once_the_guest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let api = dir.path().join("api.sock");
    let uds = dir.path().join("v.sock");
    let k = guest("standin64.elf");
    let mut vm = RunningVm::spawn(&[
        "--kernel",
        k.to_str().unwrap(),
        "--memory",
        "32",
        "--vcpus",
        "2",
        "--cmdline",
        "console=ttyS0 standin=hang",
        "--block",
        "placeholder,id=spare",
        "--vsock",
        &format!("cid=3,uds={}", uds.display()),
        "--api-socket",
        api.to_str().unwrap(),
    ]);
    vm.wait_for("the idle guest", T, |o| o.contains("hull-standin: idle"));
    // The API answers only once the event loop runs under its filter.
    let mut c = Api::connect(&api);
    assert_eq!(c.call("status"), "ok running");
    let (all, workers) = threads(vm.child.id());
    let names: Vec<&str> = all.values().map(|(n, _)| n.as_str()).collect();
    for want in ["hull-vmm", "vcpu0", "vcpu1", "host-fs"] {
        assert!(names.contains(&want), "no {want} thread: {names:?}");
    }
    assert_eq!(all.len(), 4, "unexpected threads: {names:?}");
    assert!(
        workers.iter().all(|w| w.starts_with("(kvm-")),
        "unexpected kernel workers: {workers:?}"
    );
    for (tid, (name, f)) in &all {
        assert_eq!(f["Seccomp"], "2", "thread {tid} ({name}) is not filtered");
        assert_eq!(f["NoNewPrivs"], "1", "thread {tid} ({name})");
        if let Some(n) = f.get("Seccomp_filters") {
            assert_eq!(n, "1", "thread {tid} ({name}) stacks filters");
        }
    }

    // What the event loop hands to the host-fs thread still works.
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    c.ok(&format!("attach-disk spare {}", disk.display()));
    let snap = dir.path().join("snap");
    c.ok(&format!("snapshot {}", snap.display()));
    assert!(snap.join("state").is_file() && snap.join("memory").is_file());
    let r = c.call(&format!(
        "attach-disk spare {}",
        dir.path().join("none").display()
    ));
    assert!(
        r.starts_with("error: ") && r.contains("No such file"),
        "{r}"
    );

    // A clean stop removes both socket files (on the host-fs thread).
    let (st, out, err) = vm.stop();
    assert_eq!(st.code(), Some(0), "{out}\n{err}");
    assert!(!err.contains("seccomp"), "{err}");
    assert!(!api.exists() && !uds.exists(), "socket files left behind");
}
