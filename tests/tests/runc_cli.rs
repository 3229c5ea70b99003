//! hull's runc-compatible CLI (`hull-runc`) end to end: driven directly
//! the way a shim drives runc, then by the real clients from Debian —
//! containerd's runc shim (`ctr run --runc-binary`) and podman
//! (`--runtime`) — each booting real QEMU guests.
//!
//! The callers of a runc are subreapers that wait on the pid in
//! `--pid-file`; this test process plays that part (see
//! `hull_tests::ecosystem`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hull_tests::ecosystem::{
    become_subreaper, exec_and_ps, reap, reap_orphans, records, temp_dir, timed, Containerd,
};
use hull_tests::{artifact, eventually, image_archive, ok, processes_mentioning, stderr, stdout};

const IMAGE: &str = "hull-demo/busybox:latest";

fn hull_runc() -> PathBuf {
    let bin = artifact("HULL_BIN");
    let runc = bin.with_file_name("hull-runc");
    assert!(
        runc.exists(),
        "{} is missing: run `make hull`",
        runc.display()
    );
    runc
}

/// A bundle of the busybox test image (umoci's runtime config), with
/// `args` as the process.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new(args: &[&str]) -> Self {
        let dir = temp_dir("bundle");
        let layout = dir.path().join("oci");
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--insecure-policy"])
            .arg(format!(
                "oci-archive:{}",
                image_archive("busybox.tar").display()
            ))
            .arg(format!("oci:{}:latest", layout.display()))
            .output()
            .expect("run skopeo");
        ok(&out);
        let out = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(dir.path().join("bundle"))
            .output()
            .expect("run umoci");
        ok(&out);
        let bundle = Self { dir };
        bundle.set_process(args);
        bundle
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn set_process(&self, args: &[&str]) {
        let file = self.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        config["process"]["args"] = serde_json::json!(args);
        config["process"]["terminal"] = serde_json::json!(false);
        std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }
}

/// One hull-runc installation: its own root and log.
struct Runc {
    root: tempfile::TempDir,
}

impl Runc {
    fn new() -> Self {
        become_subreaper();
        Self {
            root: temp_dir("runc"),
        }
    }

    fn log(&self) -> PathBuf {
        self.root.path().join("runc.log")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(hull_runc());
        cmd.arg("--root")
            .arg(self.root.path().join("state"))
            .arg("--log")
            .arg(self.log())
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hull-runc")
    }

    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&ok(&self.run(&["state", id]))).expect("state prints JSON")
    }

    /// `create` with piped stdio; returns the supervisor's pid and the
    /// container's stdin, stdout and stderr.
    fn create(&self, bundle: &Bundle, id: &str) -> (i32, Container) {
        let pid_file = self.root.path().join(format!("{id}.pid"));
        let mut child = self
            .command(&["create", "--bundle"])
            .arg(bundle.path())
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn create");
        let stdio = Container {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            stderr: child.stderr.take().unwrap(),
        };
        let status = child.wait().unwrap();
        assert!(status.success(), "create exited {status}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid");
        (pid, stdio)
    }

    fn assert_nothing_left(&self) {
        let state = self.root.path().join("state");
        assert!(
            records(&state).is_empty(),
            "records left: {:?}",
            records(&state)
        );
        let names: Vec<_> = std::fs::read_dir(state.join("names"))
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert!(names.is_empty(), "names left: {names:?}");
        let sandboxes: Vec<_> = std::fs::read_dir(state.join("sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert!(sandboxes.is_empty(), "writable layers left: {sandboxes:?}");
        let procs = processes_mentioning(self.root.path().to_str().unwrap());
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }
}

struct Container {
    stdin: Option<std::process::ChildStdin>,
    stdout: std::process::ChildStdout,
    stderr: std::process::ChildStderr,
}

impl Container {
    fn output(mut self) -> (String, String) {
        drop(self.stdin.take());
        let mut out = String::new();
        let mut err = String::new();
        self.stdout.read_to_string(&mut out).unwrap();
        self.stderr.read_to_string(&mut err).unwrap();
        (out, err)
    }
}

/// An OCI process file for `exec --process`: `args` as root in `/`.
fn write_process(path: &Path, args: &[&str]) {
    let process = serde_json::json!({
        "args": args,
        "env": ["PATH=/bin:/usr/bin"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0}
    });
    std::fs::write(path, serde_json::to_vec(&process).unwrap()).unwrap();
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn runc_create_start_state_kill_delete_exec_and_errors() {
    let runc = Runc::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "echo out; echo err >&2; read line; echo got $line; exit 3",
    ]);

    // create → created (the supervisor's pid), start → running, its exit
    // status is the supervisor's, output went to the stdio given to create.
    let (pid, mut stdio) = runc.create(&bundle, "c1");
    let state = runc.state("c1");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    assert_eq!(state["id"], "c1");
    assert_eq!(state["bundle"], bundle.path().to_str().unwrap());
    assert!(state["rootfs"].as_str().unwrap().ends_with("rootfs"));
    ok(&runc.run(&["start", "c1"]));
    assert_eq!(runc.state("c1")["status"], "running");
    assert_eq!(
        ok(&runc.run(&["ps", "--format", "json", "c1"])).trim(),
        format!("[{pid}]")
    );
    stdio.stdin.as_mut().unwrap().write_all(b"x\n").unwrap();
    assert_eq!(reap(pid, 60), 3);
    let (out, err) = stdio.output();
    assert_eq!(out, "out\ngot x\n");
    assert_eq!(err, "err\n");
    let state = runc.state("c1");
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["pid"], 0);
    let out = runc.run(&["start", "c1"]);
    assert!(!out.status.success(), "start of a stopped container");
    ok(&runc.run(&["delete", "c1"]));
    let out = runc.run(&["state", "c1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    // A long-running one: exec --detach through a helper whose pid is
    // waited on, kill with a signal its trap turns into an exit code.
    bundle.set_process(&[
        "sh",
        "-c",
        "(trap 'echo child-term; exit' TERM; while true; do sleep 0.1; done) & child=$!; \
         trap 'wait $child; echo term; exit 42' TERM; \
         while true; do sleep 0.1; done",
    ]);
    let (pid, stdio) = runc.create(&bundle, "c2");
    ok(&runc.run(&["start", "c2"]));
    let process = runc.root.path().join("process.json");
    write_process(&process, &["sh", "-c", "echo exec-out; cat; exit 4"]);
    let exec_pid_file = runc.root.path().join("exec.pid");
    let mut exec = runc
        .command(&["exec", "--process"])
        .arg(&process)
        .arg("--detach")
        .arg("--pid-file")
        .arg(&exec_pid_file)
        .arg("c2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut exec_in = exec.stdin.take().unwrap();
    let mut exec_out = exec.stdout.take().unwrap();
    assert!(exec.wait().unwrap().success(), "exec --detach");
    let exec_pid = read_pid(&exec_pid_file);
    exec_in.write_all(b"typed\n").unwrap();
    drop(exec_in);
    assert_eq!(reap(exec_pid, 30), 4);
    let mut out = String::new();
    exec_out.read_to_string(&mut out).unwrap();
    assert_eq!(out, "exec-out\ntyped\n");
    // A detached exec dies with its helper, whose pid containerd and
    // podman hold for it: a SIGKILL to that pid must not leave the
    // process running in the guest.
    write_process(&process, &["sleep", "1000"]);
    let mut exec = runc
        .command(&["exec", "--process"])
        .arg(&process)
        .args(["--detach", "--pid-file"])
        .arg(&exec_pid_file)
        .arg("c2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(exec.wait().unwrap().success(), "exec --detach");
    let exec_pid = read_pid(&exec_pid_file);
    let guest_ps = || ok(&runc.run(&["exec", "c2", "ps", "-o", "args"]));
    assert!(guest_ps().contains("sleep 1000"), "{}", guest_ps());
    // SAFETY: signalling a child of ours that has not been reaped yet.
    unsafe { libc::kill(exec_pid, libc::SIGKILL) };
    reap(exec_pid, 30);
    eventually(30, "the exec'd process to die with its helper", || {
        !guest_ps().contains("sleep 1000")
    });
    let out = runc.run(&["delete", "c2"]);
    assert!(!out.status.success(), "delete of a running container");
    assert!(stderr(&out).contains("not stopped"), "{}", stderr(&out));
    // pause/resume: the guest's cgroup freezer.
    ok(&runc.run(&["pause", "c2"]));
    assert_eq!(runc.state("c2")["status"], "paused");
    ok(&runc.run(&["resume", "c2"]));
    assert_eq!(runc.state("c2")["status"], "running");
    // --all reaches the child too (without it the main process would wait
    // for its child for ever).
    ok(&runc.run(&["kill", "--all", "c2", "TERM"]));
    assert_eq!(reap(pid, 30), 42);
    assert_eq!(stdio.output().0, "child-term\nterm\n");
    let out = runc.run(&["kill", "c2", "KILL"]);
    assert!(
        stderr(&out).contains("container not running"),
        "{}",
        stderr(&out)
    );
    ok(&runc.run(&["delete", "c2"]));

    // delete --force of a running container, and of one never started.
    let (pid, _stdio3) = runc.create(&bundle, "c3");
    ok(&runc.run(&["start", "c3"]));
    ok(&runc.run(&["delete", "--force", "c3"]));
    assert_eq!(reap(pid, 30), 137);
    let (pid, _stdio4) = runc.create(&bundle, "c4");
    ok(&runc.run(&["delete", "--force", "c4"]));
    reap(pid, 30);
    ok(&runc.run(&["delete", "--force", "c4"]));

    // Errors: a missing command fails at create, as runc's does (podman
    // maps it to 127), and lands in the JSON log.
    bundle.set_process(&["no-such-command"]);
    let out = runc.run(&["create", "--bundle", bundle.path().to_str().unwrap(), "c5"]);
    assert_eq!(out.status.code(), Some(1));
    let log = std::fs::read_to_string(runc.log()).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"]
            .as_str()
            .unwrap()
            .contains("executable file not found in $PATH"),
        "{last}"
    );
    let out = runc.run(&["pause", "c5"]);
    assert!(
        !out.status.success(),
        "pause of a container that is not there"
    );
    let features: serde_json::Value = serde_json::from_str(&ok(&runc.run(&["features"]))).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(ok(&runc.run(&["--version"])).contains("hull-runc version"));
    runc.assert_nothing_left();
}

/// The verbs a runc user reaches for first, on a bundle made the way
/// runc's users make one: `spec`, edited with `jq`, then `run` in the
/// foreground (exit code, output, host hooks with their state), `run
/// --detach`, `list`, and every verb's error for an unknown id.
#[test]
fn runc_spec_run_list_hooks_and_unknown_ids() {
    let runc = Runc::new();
    let bundle = Bundle::new(&["true"]);
    let dir = bundle.path();
    // umoci wrote a config.json: spec refuses to overwrite it.
    let out = runc.run(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("exists. Remove it first"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(dir.join("config.json")).unwrap();
    ok(&runc.run(&["spec", "--bundle", dir.to_str().unwrap()]));
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(spec["hostname"], "runc");

    // Host hooks: each appends its kind and the state it read on stdin.
    let hooks_log = runc.root.path().join("hooks.log");
    let hook = |kind: &str| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("printf '{kind} ' >> {0}; cat >> {0}; echo >> {0}", hooks_log.display())]
        })
    };
    let edit = |filter: &str| {
        let out = Command::new("jq")
            .arg(filter)
            .arg(dir.join("config.json"))
            .output()
            .expect("run jq");
        let edited = ok(&out);
        std::fs::write(dir.join("config.json"), edited).unwrap();
    };
    edit(&format!(
        ".process.terminal = false | .process.args = [\"sh\", \"-c\", \"hostname; echo out; echo err >&2; exit 7\"] \
         | .hooks = {{\"prestart\": [{}], \"createRuntime\": [{}], \"poststart\": [{}], \"poststop\": [{}]}}",
        hook("prestart"),
        hook("createRuntime"),
        hook("poststart"),
        hook("poststop")
    ));

    // Foreground run: the container's output and exit status are run's,
    // and without --keep nothing is left.
    let out = runc.run(&["run", "--bundle", dir.to_str().unwrap(), "fg"]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "runc\nout\n");
    assert!(stderr(&out).contains("err"), "{}", stderr(&out));
    let log = std::fs::read_to_string(&hooks_log).unwrap();
    let kinds: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["prestart", "createRuntime", "poststart", "poststop"],
        "{log}"
    );
    for line in log.lines() {
        let (kind, state) = line.split_once(' ').unwrap();
        let state: serde_json::Value = serde_json::from_str(state).unwrap();
        assert_eq!(state["id"], "fg", "{kind}: {state}");
        assert_eq!(state["bundle"], dir.to_str().unwrap(), "{kind}");
        let want = match kind {
            "poststart" => "running",
            "poststop" => "stopped",
            _ => "creating",
        };
        assert_eq!(state["status"], want, "{kind}");
        assert_eq!(state["pid"].is_u64(), kind != "poststop", "{kind}: {state}");
    }
    assert!(records(&runc.root.path().join("state")).is_empty());

    // A failing createRuntime hook fails run with its name, leaving nothing.
    edit(".hooks = {\"createRuntime\": [{\"path\": \"/bin/false\"}]}");
    let out = runc.run(&["run", "--bundle", dir.to_str().unwrap(), "bad-hook"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("createRuntime hook 0 (/bin/false)"),
        "{}",
        stderr(&out)
    );
    assert!(records(&runc.root.path().join("state")).is_empty());

    // --detach: back once it runs; list shows it (table, json, -q).
    edit("del(.hooks) | .process.args = [\"sleep\", \"1000\"]");
    let pid_file = runc.root.path().join("bg.pid");
    let status = runc
        .command(&[
            "run",
            "--detach",
            "--bundle",
            dir.to_str().unwrap(),
            "--pid-file",
        ])
        .arg(&pid_file)
        .arg("bg")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "run --detach exited {status}");
    let pid = read_pid(&pid_file);
    assert_eq!(ok(&runc.run(&["list", "-q"])), "bg\n");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&runc.run(&["list", "--format", "json"]))).unwrap();
    assert_eq!(listed[0]["id"], "bg");
    assert_eq!(listed[0]["status"], "running");
    assert_eq!(listed[0]["pid"], pid);
    assert_eq!(listed[0]["owner"], "root");
    let table = ok(&runc.run(&["list"]));
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.ends_with("OWNER"),
        "{table}"
    );
    assert!(table.lines().nth(1).unwrap().contains("running"), "{table}");

    // Every verb names an unknown id, in runc's words, exit 1.
    for verb in [
        &["state", "nope"][..],
        &["start", "nope"],
        &["kill", "nope", "KILL"],
        &["delete", "nope"],
        &["exec", "nope", "true"],
        &["ps", "nope"],
        &["pause", "nope"],
        &["resume", "nope"],
        &["update", "--pids-limit", "5", "nope"],
        &["events", "--stats", "nope"],
        &["checkpoint", "nope"],
    ] {
        let out = runc.run(verb);
        assert_eq!(out.status.code(), Some(1), "{verb:?}");
        let said = stderr(&out);
        assert!(
            said.contains("container nope does not exist"),
            "{verb:?}: {said}"
        );
        assert_eq!(said.trim().lines().count(), 1, "{verb:?}: {said}");
    }
    assert!(ok(&runc.run(&["help"])).contains("list"));

    ok(&runc.run(&["kill", "bg", "9"]));
    assert_eq!(reap(pid, 30), 137);
    ok(&runc.run(&["delete", "bg"]));
    assert_eq!(ok(&runc.run(&["list", "--format", "json"])).trim(), "null");
    runc.assert_nothing_left();
}

#[test]
fn ctr_runs_tasks_through_hull_runc() {
    let containerd = Containerd::start();
    let runc = hull_runc();
    let runc = runc.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--runc-binary", runc];
        args.extend_from_slice(extra);
        containerd.ctr(&args)
    };

    let out = run(&["--rm", IMAGE, "t1", "sh", "-c", "echo hi from ctr; exit 7"]);
    assert_eq!(stdout(&out), "hi from ctr\n", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(7));

    // A bind mount through the runc shim and hull-runc.
    let host = hull_tests::ecosystem::temp_dir("ctr-runc-bind");
    std::fs::write(host.path().join("in.txt"), "host data\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        host.path().display()
    );
    let out = run(&[
        "--rm",
        "--mount",
        &mount,
        IMAGE,
        "tb",
        "sh",
        "-c",
        "cat /data/in.txt; echo guest data > /data/out.txt",
    ]);
    assert_eq!(stdout(&out), "host data\n", "stderr: {}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "guest data\n"
    );
    let out = run(&["--rm", IMAGE, "t1b", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    ok(&run(&[
        "-d",
        IMAGE,
        "t2",
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.1; done",
    ]));
    exec_and_ps(&containerd, "t2");
    ok(&containerd.ctr(&["task", "kill", "t2"]));
    eventually(30, "t2 to stop", || {
        ok(&containerd.ctr(&["task", "ls"])).contains("STOPPED")
    });
    ok(&containerd.ctr(&["task", "delete", "t2"]));
    ok(&containerd.ctr(&["container", "rm", "t2"]));

    // The wall time of `ctr run --rm IMAGE true`, hull next to runc.
    let (out, hull_time) = timed(|| run(&["--rm", IMAGE, "t3", "true"]));
    ok(&out);
    let (out, runc_time) = timed(|| containerd.ctr(&["run", "--rm", IMAGE, "t4", "true"]));
    ok(&out);
    eprintln!("ctr run --rm {IMAGE} true: hull-runc {hull_time:.2?}, runc {runc_time:.2?}");

    assert!(records(&containerd.runc_root()).is_empty(), "records left");
    let procs = processes_mentioning(containerd.runc_root().to_str().unwrap());
    assert!(procs.is_empty(), "processes left: {procs:?}");
}

/// podman 4.3 with its storage, locks, events and temp files under a temp
/// dir, configured through the environment (nothing under /etc changes).
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Self {
        become_subreaper();
        let dir = temp_dir("podman");
        let d = dir.path();
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\nnetns = \"none\"\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{0}/events.log\"\nlock_type = \"file\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/runroot\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        let podman = Self { dir };
        ok(&podman.podman(&[
            "load",
            "-q",
            "-i",
            image_archive("busybox.tar").to_str().unwrap(),
        ]));
        podman
    }

    fn command(&self, runtime: &str, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .arg("--runtime")
            .arg(runtime)
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn podman(&self, args: &[&str]) -> Output {
        self.command(hull_runc().to_str().unwrap(), args)
            .output()
            .expect("run podman")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f"]);
        let _ = self.podman(&["rmi", "-a", "-f"]);
        reap_orphans(10);
    }
}

/// podman calls `delete` without the `--root` it gave `create` (from its
/// cleanup process), so its containers live under hull-runc's default
/// root: the names recorded there.
fn default_root_names() -> Vec<String> {
    std::fs::read_dir(Path::new(hull_runtime_default_root()).join("names"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn hull_runtime_default_root() -> &'static str {
    "/run/hull-runc"
}

#[test]
fn podman_runs_containers_through_hull_runc() {
    let podman = Podman::new();
    let names_before = default_root_names();
    let with_name = |name: &str, args: &[&str]| {
        let mut all = vec!["run", "--name", name];
        all.extend_from_slice(args);
        podman.podman(&all)
    };
    let out = with_name("p1", &["--rm", IMAGE, "echo", "hi"]);
    assert_eq!(stdout(&out), "hi\n", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    // `-v` and podman's own binds (/etc/hosts, /etc/resolv.conf,
    // /etc/hostname, /run/.containerenv) reach the guest.
    let host = temp_dir("podman-volume");
    std::fs::write(host.path().join("in.txt"), "from the host\n").unwrap();
    let volume = format!("{}:/data", host.path().display());
    let out = with_name(
        "pv",
        &[
            "--rm",
            "-v",
            &volume,
            IMAGE,
            "sh",
            "-c",
            "cat /data/in.txt; echo back > /data/out.txt; \
             test -f /run/.containerenv && grep -q localhost /etc/hosts && echo binds",
        ],
    );
    assert_eq!(
        stdout(&out),
        "from the host\nbinds\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "back\n"
    );
    let out = with_name("p2", &["--rm", IMAGE, "sh", "-c", "exit 9"]);
    assert_eq!(out.status.code(), Some(9), "stderr: {}", stderr(&out));
    let out = with_name("p5", &["--rm", "-t", IMAGE, "sh", "-c", "tty; exit 6"]);
    assert!(stdout(&out).starts_with("/dev/pts/"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(6));
    let out = with_name("p3", &["--rm", IMAGE, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "stderr: {}", stderr(&out));

    let id = ok(&with_name(
        "p4",
        &[
            "-d",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    ));
    let id = id.trim().to_string();
    let out = podman.podman(&["exec", &id, "sh", "-c", "echo exec ok; exit 4"]);
    assert_eq!(stdout(&out), "exec ok\n", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(4));
    // With -t, conmon passes --console-socket: a pty on the host, a
    // terminal in the guest.
    let out = podman.podman(&["exec", "-t", &id, "tty"]);
    assert!(stdout(&out).starts_with("/dev/pts/"), "{}", stderr(&out));
    ok(&podman.podman(&["stop", "-t", "5", &id]));
    let inspect = ok(&podman.podman(&["inspect", "--format", "{{.State.ExitCode}}", &id]));
    assert_eq!(inspect.trim(), "0");
    ok(&podman.podman(&["rm", &id]));

    // The wall time of `podman run --rm IMAGE true`, hull next to runc.
    let (out, hull_time) = timed(|| podman.podman(&["run", "--rm", IMAGE, "true"]));
    ok(&out);
    let (out, runc_time) = timed(|| {
        podman
            .command("runc", &["run", "--rm", IMAGE, "true"])
            .output()
            .unwrap()
    });
    ok(&out);
    eprintln!("podman run --rm {IMAGE} true: hull-runc {hull_time:.2?}, runc {runc_time:.2?}");

    eventually(10, "podman's containers to be deleted", || {
        default_root_names()
            .iter()
            .all(|n| names_before.contains(n))
    });
    // podman's `container cleanup` (and conmon) of the last `--rm` run can
    // outlive the `podman run` by a moment: they must end, not be gone now.
    let dir = podman.dir.path().to_str().unwrap().to_string();
    let ended = (0..100).any(|_| {
        let gone = processes_mentioning(&dir).is_empty();
        if !gone {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        gone
    });
    let procs = processes_mentioning(&dir);
    assert!(ended && procs.is_empty(), "processes left: {procs:?}");
}
