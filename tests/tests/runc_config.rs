//! A bundle's own config honoured inside the guest as runc honours it
//! (issue 22): every field set in config.json and checked from inside the
//! container by the output of shell commands — the process's umask,
//! groups, oom_score_adj, rlimits, the five capability sets,
//! no_new_privileges, I/O priority and scheduler; the sysctls, hostname
//! and domain name of its namespaces; its device nodes and device rules
//! (the cgroup's eBPF device filter); masked and read-only paths; the
//! createContainer and startContainer hooks that run in the guest. Then
//! the errors: a sysctl of the VM's kernel and a failing hook.
//!
//! The helpers are runc_cli.rs's (a bundle from the busybox test image by
//! skopeo and umoci; `hull-runc create` + `start`, waiting on the pid in
//! the pid file as a runc's caller does).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use hull_tests::ecosystem::{become_subreaper, reap, temp_dir};
use hull_tests::{artifact, image_archive, ok, stderr};

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

/// A bundle of the busybox test image (umoci's runtime config).
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Self {
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
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// Edits config.json.
    fn edit(&self, change: impl FnOnce(&mut serde_json::Value)) {
        let file = self.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        change(&mut config);
        std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// A shell script in the rootfs, executable.
    fn script(&self, path: &str, body: &str) {
        let file = self.rootfs().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
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

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(hull_runc());
        cmd.arg("--root")
            .arg(self.root.path().join("state"))
            .arg("--log")
            .arg(self.root.path().join("runc.log"))
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hull-runc")
    }

    /// `create` with its stdout and stderr piped; returns the
    /// supervisor's pid and the container's (stdout, stderr).
    fn create(&self, bundle: &Bundle, id: &str) -> (i32, std::process::Child) {
        let pid_file = self.root.path().join(format!("{id}.pid"));
        let mut child = self
            .command(&["create", "--bundle"])
            .arg(bundle.path())
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn create");
        // `create` exits at once; its stdio stays the container's.
        let status = child.wait().unwrap();
        assert!(status.success(), "create exited {status}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid");
        (pid, child)
    }
}

fn output(mut child: std::process::Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (out, err)
}

/// The value of the line `key=…` (or `key:…`) of `out`.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(['=', ':']))
        })
        .unwrap_or_else(|| panic!("no line {key} in:\n{out}"))
        .trim()
}

const SCRIPT: &str = r#"
echo "umask=$(umask)"
echo "groups=$(id -G)"
echo "uid=$(id -u)"
echo "oom=$(cat /proc/self/oom_score_adj)"
echo "nofile=$(ulimit -n)"
grep -E '^(Cap|NoNewPrivs)' /proc/self/status
echo "shmmax=$(cat /proc/sys/kernel/shmmax)"
echo "portstart=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
echo "hostname=$(hostname)"
echo "domainname=$(cat /proc/sys/kernel/domainname)"
echo "mydevice=$(ls -ln /dev/mydevice)"
echo "denied=$(head -c1 /dev/denied 2>&1)"
echo "allowed=$(head -c1 /dev/allowed 2>&1)"
echo "secret=$(cat /secret)"
echo "readonly=$(touch /rw-dir/x 2>&1)"
echo "sched=$(awk '{print $19, $41}' /proc/self/stat)"
echo "ionice=$(ionice)"
echo "create-state=$(cat /create-state | tr '\n' ' ')"
echo "start-state=$(cat /tmp/start-state | tr '\n' ' ')"
"#;

/// Bits of capabilities by number.
fn caps(numbers: &[u32]) -> String {
    format!("{:016x}", numbers.iter().fold(0u64, |m, n| m | 1 << n))
}

#[test]
fn the_bundles_config_is_honoured_inside_the_guest() {
    let runc = Runc::new();
    let bundle = Bundle::new();
    std::fs::write(bundle.rootfs().join("secret"), "top secret\n").unwrap();
    let rw = bundle.rootfs().join("rw-dir");
    std::fs::create_dir(&rw).unwrap();
    std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Chrooted into the container's root, as root, before pivot_root.
    bundle.script(
        "/hooks/create.sh",
        r#"{ cat; echo; echo "$1 $HOOKVAR $(id -u)"; } > /create-state"#,
    );
    // In the container, as its user, just before exec.
    bundle.script(
        "/hooks/start.sh",
        r#"{ cat; echo; echo "start $(id -u)"; } > /tmp/start-state"#,
    );
    bundle.edit(|c| {
        let p = &mut c["process"];
        p["terminal"] = false.into();
        p["args"] = serde_json::json!(["sh", "-c", SCRIPT]);
        p["user"] = serde_json::json!({"uid": 1000, "gid": 1000, "umask": 0o027, "additionalGids": [10, 20]});
        p["oomScoreAdj"] = 321.into();
        p["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
        p["scheduler"] = serde_json::json!({"policy": "SCHED_BATCH", "nice": 5});
        p["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 777, "hard": 777}]);
        p["noNewPrivileges"] = true.into();
        p["capabilities"] = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL",
                         "CAP_SETUID", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_FOWNER", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            // FOWNER is not inheritable, DAC_OVERRIDE not permitted: the
            // kernel raises neither (runc leaves them out too).
            "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_FOWNER", "CAP_DAC_OVERRIDE"]
        });
        c["hostname"] = "cfg-host".into();
        c["domainname"] = "cfg.example".into();
        c["hooks"] = serde_json::json!({
            "createContainer": [{"path": "/hooks/create.sh", "args": ["create.sh", "from-args"],
                                 "env": ["HOOKVAR=from-env"], "timeout": 20}],
            "startContainer": [{"path": "/hooks/start.sh"}]
        });
        let l = &mut c["linux"];
        l["sysctl"] = serde_json::json!({
            "kernel.shmmax": "123456789",
            "net.ipv4.ip_unprivileged_port_start": "99"
        });
        l["devices"] = serde_json::json!([
            {"path": "/dev/mydevice", "type": "c", "major": 1, "minor": 5,
             "fileMode": 0o640, "uid": 0, "gid": 20},
            // Numbers no driver has: the filter answers EPERM before the
            // kernel could answer ENXIO.
            {"path": "/dev/denied", "type": "c", "major": 240, "minor": 0, "fileMode": 0o666},
            {"path": "/dev/allowed", "type": "c", "major": 241, "minor": 0, "fileMode": 0o666}
        ]);
        // umoci's config denies every device (runc adds its defaults).
        l["resources"]["devices"] = serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 241, "minor": 0, "access": "r"}
        ]);
        l["maskedPaths"].as_array_mut().unwrap().push("/secret".into());
        l["readonlyPaths"].as_array_mut().unwrap().push("/rw-dir".into());
    });

    let (pid, stdio) = runc.create(&bundle, "cfg");
    ok(&runc.run(&["start", "cfg"]));
    assert_eq!(reap(pid, 120), 0, "the container's exit status");
    let (out, err) = output(stdio);
    println!("{out}\n{err}");

    assert_eq!(line(&out, "umask"), "0027");
    assert_eq!(line(&out, "groups"), "1000 10 20", "additionalGids only");
    assert_eq!(line(&out, "uid"), "1000");
    assert_eq!(line(&out, "oom"), "321");
    assert_eq!(line(&out, "nofile"), "777");
    // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, KILL 5, SETUID 7, NET_BIND_SERVICE 10.
    assert_eq!(line(&out, "CapInh"), caps(&[0, 1, 5, 10]));
    assert_eq!(line(&out, "CapBnd"), caps(&[0, 1, 3, 5, 7, 10]));
    assert_eq!(line(&out, "CapAmb"), caps(&[5, 10]));
    // A user other than root has, after exec, its ambient set.
    assert_eq!(line(&out, "CapPrm"), caps(&[5, 10]));
    assert_eq!(line(&out, "CapEff"), caps(&[5, 10]));
    assert_eq!(line(&out, "NoNewPrivs"), "1");
    assert_eq!(line(&out, "shmmax"), "123456789");
    assert_eq!(line(&out, "portstart"), "99");
    assert_eq!(line(&out, "hostname"), "cfg-host");
    assert_eq!(line(&out, "domainname"), "cfg.example");
    let device: Vec<&str> = line(&out, "mydevice").split_whitespace().collect();
    assert_eq!(device[0], "crw-r-----", "{device:?}");
    assert_eq!((device[2], device[3]), ("0", "20"), "{device:?}");
    assert_eq!((device[4], device[5]), ("1,", "5"), "{device:?}");
    assert!(
        line(&out, "denied").ends_with("Operation not permitted"),
        "{out}"
    );
    assert!(
        line(&out, "allowed").ends_with("No such device or address"),
        "the rule lets it through to the kernel: {out}"
    );
    assert_eq!(line(&out, "secret"), "", "masked");
    assert!(
        line(&out, "readonly").ends_with("Read-only file system"),
        "{out}"
    );
    assert_eq!(line(&out, "sched"), "5 3", "nice 5, SCHED_BATCH");
    assert!(line(&out, "ionice").contains("best-effort"), "{out}");
    assert!(line(&out, "ionice").ends_with('6'), "{out}");

    let create = line(&out, "create-state");
    let (state, rest) = create
        .split_once("} ")
        .expect("state, then the hook's line");
    let state: serde_json::Value = serde_json::from_str(&format!("{state}}}")).unwrap();
    assert_eq!(state["id"], "cfg");
    assert_eq!(state["bundle"], bundle.path().to_str().unwrap());
    assert!(
        !state["annotations"].to_string().contains("org.hull."),
        "hull's own annotations stay out: {state}"
    );
    assert_eq!(state["status"], "creating");
    assert!(state["pid"].as_u64().unwrap() > 1, "{state}");
    assert!(state["ociVersion"].is_string(), "{state}");
    assert_eq!(rest.trim(), "from-args from-env 0");
    let start = line(&out, "start-state");
    let (state, rest) = start.split_once("} ").expect("state, then the hook's line");
    let state: serde_json::Value = serde_json::from_str(&format!("{state}}}")).unwrap();
    assert_eq!(state["id"], "cfg");
    assert_eq!(state["status"], "created");
    assert_eq!(rest.trim(), "start 1000");
    ok(&runc.run(&["delete", "cfg"]));

    // Errors fail the start (when the guest first sees the spec) with one
    // line naming the field: a sysctl of the VM's kernel…
    bundle.edit(|c| {
        c["linux"]["sysctl"] = serde_json::json!({"kernel.panic": "1"});
    });
    let (pid, _stdio) = runc.create(&bundle, "bad-sysctl");
    let out = runc.run(&["start", "bad-sysctl"]);
    assert!(!out.status.success(), "start with a bad sysctl");
    let message = stderr(&out);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(
        message.contains(r#"linux.sysctl "kernel.panic" is not namespaced"#),
        "{message}"
    );
    ok(&runc.run(&["delete", "--force", "bad-sysctl"]));
    reap(pid, 60);

    // …and a startContainer hook that fails.
    bundle.script("/hooks/fail.sh", "exit 3");
    bundle.edit(|c| {
        c["linux"]["sysctl"] = serde_json::json!({});
        c["hooks"]["startContainer"] = serde_json::json!([{"path": "/hooks/fail.sh"}]);
    });
    let (pid, _stdio) = runc.create(&bundle, "bad-hook");
    let out = runc.run(&["start", "bad-hook"]);
    assert!(!out.status.success(), "start with a failing hook");
    let message = stderr(&out);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(
        message.contains("startContainer hook 0 (/hooks/fail.sh) exited with status 3"),
        "{message}"
    );
    ok(&runc.run(&["delete", "--force", "bad-hook"]));
    reap(pid, 60);
}
