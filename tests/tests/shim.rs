//! `containerd-shim-hull-v2` end to end: real containerd 1.6 and `ctr`,
//! each task in its own QEMU guest.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use hull_tests::ecosystem::{exec_and_ps, records, timed, Containerd};
use hull_tests::{eventually, ok};
use hull_tests::{pids_mentioning, processes_mentioning, stderr, stdout};

const IMAGE: &str = "hull-demo/busybox:latest";
const RUNTIME: &str = "io.containerd.hull.v2";

/// Where the shim keeps the records of a namespace.
fn shim_root(containerd: &Containerd) -> PathBuf {
    PathBuf::from("/run/hull-shim").join(&containerd.namespace)
}

fn run(containerd: &Containerd, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "--runtime", RUNTIME];
    all.extend_from_slice(args);
    containerd.ctr(&all)
}

/// No record, VM or supervisor of the namespace is left.
fn assert_nothing_left(containerd: &Containerd) {
    let root = shim_root(containerd);
    assert!(
        records(&root).is_empty(),
        "records left: {:?}",
        records(&root)
    );
    let procs = processes_mentioning(root.to_str().unwrap());
    assert!(procs.is_empty(), "processes left: {procs:?}");
}

#[test]
fn ctr_run_rm_prints_and_propagates_the_exit_code() {
    let containerd = Containerd::start();
    let out = run(
        &containerd,
        &[
            "--rm",
            IMAGE,
            "s1",
            "sh",
            "-c",
            "echo hi from the shim; exit 7",
        ],
    );
    assert_eq!(
        stdout(&out),
        "hi from the shim\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(7));

    // stdin reaches the task through containerd's FIFO.
    let mut child = Command::new("ctr")
        .arg("--address")
        .arg(containerd.dir.path().join("c.sock"))
        .args(["--namespace", &containerd.namespace])
        .args([
            "run",
            "--runtime",
            RUNTIME,
            "--rm",
            IMAGE,
            "s2",
            "sh",
            "-c",
            "read x; echo got $x",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"typed\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "got typed\n");

    // The wall time of `ctr run --rm IMAGE true`, hull's shim next to runc.
    let (out, hull_time) = timed(|| run(&containerd, &["--rm", IMAGE, "s3", "true"]));
    ok(&out);
    let (out, runc_time) = timed(|| containerd.ctr(&["run", "--rm", IMAGE, "r3", "true"]));
    ok(&out);
    eprintln!("ctr run --rm {IMAGE} true: {RUNTIME} {hull_time:.2?}, runc {runc_time:.2?}");
    assert_nothing_left(&containerd);
}

#[test]
fn ctr_run_mount_binds_a_host_directory_both_ways() {
    let containerd = Containerd::start();
    let host = hull_tests::ecosystem::temp_dir("shim-bind");
    std::fs::write(host.path().join("in.txt"), "host data\n").unwrap();
    let ro = hull_tests::ecosystem::temp_dir("shim-bind-ro");
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        host.path().display()
    );
    let ro_mount = format!(
        "type=bind,src={},dst=/ro,options=rbind:ro",
        ro.path().display()
    );
    let out = run(
        &containerd,
        &[
            "--rm",
            "--mount",
            &mount,
            "--mount",
            &ro_mount,
            IMAGE,
            "sb",
            "sh",
            "-c",
            "cat /data/in.txt; echo guest data > /data/out.txt; touch /ro/x 2>/dev/null || echo ro",
        ],
    );
    assert_eq!(stdout(&out), "host data\nro\n", "stderr: {}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "guest data\n"
    );
    assert!(!ro.path().join("x").exists());
    assert_nothing_left(&containerd);
}

#[test]
fn ctr_detached_task_exec_kill_delete() {
    let containerd = Containerd::start();
    ok(&run(
        &containerd,
        &[
            "-d",
            IMAGE,
            "d1",
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.1; done",
        ],
    ));
    exec_and_ps(&containerd, "d1");
    let metrics = ok(&containerd.ctr(&["task", "metrics", "d1"]));
    assert!(metrics.contains("memory.usage"), "{metrics}");
    ok(&containerd.ctr(&["task", "pause", "d1"]));
    assert!(ok(&containerd.ctr(&["task", "ls"])).contains("PAUSED"));
    ok(&containerd.ctr(&["task", "resume", "d1"]));
    assert!(ok(&containerd.ctr(&["task", "ls"])).contains("RUNNING"));
    ok(&containerd.ctr(&["task", "kill", "d1"]));
    eventually(30, "d1 to stop", || {
        ok(&containerd.ctr(&["task", "ls"])).contains("STOPPED")
    });
    let out = ok(&containerd.ctr(&["task", "delete", "d1"]));
    assert!(out.is_empty() || out.contains("42"), "{out}");
    ok(&containerd.ctr(&["container", "rm", "d1"]));
    assert_nothing_left(&containerd);
}

/// CRI's annotations for a pod's sandbox and for a container in it.
const SANDBOX: &str = "io.kubernetes.cri.container-type=sandbox";
const IN_POD: &str = "io.kubernetes.cri.container-type=container";
/// The pod's network namespace, as CRI names it in every container's spec.
const POD_NETNS: &str = "network:/proc/1/ns/net";
/// The sandbox's IPC and UTS namespaces, as CRI names them for its pod's
/// containers (host paths; hull makes them the sandbox's in the guest).
const POD_IPC: &str = "ipc:/proc/1/ns/ipc";
const POD_UTS: &str = "uts:/proc/1/ns/uts";

/// Hypervisor processes of the namespace's tasks.
fn vms(containerd: &Containerd) -> Vec<String> {
    processes_mentioning(shim_root(containerd).to_str().unwrap())
        .into_iter()
        .filter(|p| p.contains("qemu-system"))
        .collect()
}

#[test]
fn containers_of_one_pod_run_in_its_sandbox_vm() {
    let containerd = Containerd::start();
    // The page says which IPC and UTS namespaces the sandbox is in.
    let server = "mkdir -p /www && { readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; } > /www/index.html \
                  && exec httpd -f -p 8080 -h /www";
    // As CRI does, every container of the pod names the pod's network
    // namespace (a host path, which in hull means the VM's network).
    ok(&run(
        &containerd,
        &[
            "-d",
            "--with-ns",
            POD_NETNS,
            "--annotation",
            SANDBOX,
            IMAGE,
            "pod1",
            "sh",
            "-c",
            server,
        ],
    ));
    let sandbox_id = "io.kubernetes.cri.sandbox-id=pod1";
    ok(&run(
        &containerd,
        &[
            "-d",
            "--with-ns",
            POD_NETNS,
            "--annotation",
            IN_POD,
            "--annotation",
            sandbox_id,
            IMAGE,
            "app1",
            "sleep",
            "600",
        ],
    ));
    assert_eq!(vms(&containerd).len(), 1, "{:?}", vms(&containerd));
    let fetch = "for i in $(seq 1 40); do wget -qO- http://127.0.0.1:8080/ 2>/dev/null && break; sleep 0.5; done; \
                 readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; echo httpds=$(ps -o comm | grep -c httpd)";
    let out = run(
        &containerd,
        &[
            "--rm",
            "--with-ns",
            POD_NETNS,
            "--with-ns",
            POD_IPC,
            "--with-ns",
            POD_UTS,
            "--annotation",
            IN_POD,
            "--annotation",
            sandbox_id,
            IMAGE,
            "app2",
            "sh",
            "-c",
            fetch,
        ],
    );
    // The member reached the sandbox's server over their shared network,
    // is in the sandbox's IPC and UTS namespaces, and not in its PID one.
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text} / {}", stderr(&out));
    assert!(
        lines[0].starts_with("ipc:[") && lines[1].starts_with("uts:["),
        "{text}"
    );
    assert_eq!(lines[..2], lines[2..4], "{text}");
    assert_eq!(lines[4], "httpds=0");
    // A container of a pod whose sandbox is not running is refused.
    let out = run(
        &containerd,
        &[
            "--rm",
            "--annotation",
            IN_POD,
            "--annotation",
            "io.kubernetes.cri.sandbox-id=nope",
            IMAGE,
            "app3",
            "true",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    let _ = containerd.ctr(&["container", "rm", "app3"]);

    for id in ["app1", "pod1"] {
        ok(&containerd.ctr(&["task", "kill", "-s", "KILL", id]));
        eventually(30, "the task to stop", || {
            ok(&containerd.ctr(&["task", "ls"]))
                .lines()
                .any(|l| l.starts_with(id) && l.contains("STOPPED"))
        });
        ok(&containerd.ctr(&["task", "delete", id]));
        ok(&containerd.ctr(&["container", "rm", id]));
    }
    assert_nothing_left(&containerd);
}

#[test]
fn ctr_run_tty_gives_a_shell_under_a_pty() {
    let containerd = Containerd::start();
    // `script` gives ctr the terminal it insists on for -t.
    let ctr = format!(
        "ctr --address {} --namespace {} run -t --rm --runtime {RUNTIME} {IMAGE} t1 sh",
        containerd.dir.path().join("c.sock").display(),
        containerd.namespace
    );
    let mut child = Command::new("script")
        .args(["-qec", &ctr, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // Typed once the shell is up; a terminal keeps what comes early.
        std::thread::sleep(std::time::Duration::from_secs(3));
        std::io::Write::write_all(&mut stdin, b"tty; echo tty-ok; exit 3\n").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(30));
    });
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("tty-ok"), "{text:?}");
    assert_eq!(out.status.code(), Some(3), "{text:?}");
    drop(writer);
    assert_nothing_left(&containerd);
}

#[test]
fn killing_the_vmm_makes_containerd_see_the_task_exit() {
    let containerd = Containerd::start();
    ok(&run(&containerd, &["-d", IMAGE, "k1", "sleep", "1000"]));
    let root = shim_root(&containerd);
    let vmms: Vec<u32> = pids_mentioning(root.to_str().unwrap())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("qemu"))
        })
        .collect();
    assert_eq!(vmms.len(), 1, "one VM: {vmms:?}");
    ok(&Command::new("kill")
        .args(["-9", &vmms[0].to_string()])
        .output()
        .unwrap());
    eventually(30, "containerd to see k1 stop", || {
        ok(&containerd.ctr(&["task", "ls"])).contains("STOPPED")
    });
    ok(&containerd.ctr(&["task", "delete", "k1"]));
    ok(&containerd.ctr(&["container", "rm", "k1"]));
    assert_nothing_left(&containerd);
}
