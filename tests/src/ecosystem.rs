//! Fixtures for the tests that drive hull through the ecosystem's real
//! clients: containerd (with its runc shim, or hull's own shim) and podman.
//!
//! Their callers of a runtime are subreapers that wait on the pids a
//! runtime reports; the tests play that part, and reap the containerd
//! shims and conmons that get reparented to them (PID 1 here does not
//! reap orphans).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::{artifact, eventually, image_archive, ok, stderr, stdout};

/// A temp dir the suite's leak check knows (`hull-e2e*`).
pub fn temp_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hull-e2e-{what}"))
        .tempdir()
        .expect("temp dir")
}

/// Makes this process the subreaper of what it starts, once.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    });
}

/// Waits for `pid` (a child of ours, or an orphan we reap) to exit and
/// returns its exit status as a shell reports it.
pub fn reap(pid: i32, secs: u64) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on one pid with a valid out-pointer.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(
            got >= 0,
            "waitpid {pid}: {}",
            std::io::Error::last_os_error()
        );
        if got == pid {
            if libc::WIFEXITED(status) {
                return libc::WEXITSTATUS(status);
            }
            return 128 + libc::WTERMSIG(status);
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} did not exit in {secs} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reaps orphans reparented to us (containerd shims, conmon) as they exit;
/// waits up to `secs` for those still running.
pub fn reap_orphans(secs: u64) {
    let me = std::process::id().to_string();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut left = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let orphan = comm.starts_with("containerd-shim") || comm.starts_with("conmon");
            if fields.get(1) != Some(&me.as_str()) || !orphan {
                continue;
            }
            if fields.first() == Some(&"Z") {
                let mut status = 0;
                // SAFETY: waitpid on one zombie child with a valid out-pointer.
                unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            } else {
                left += 1;
            }
        }
        if left == 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ctr task exec` into the running task `id` brings its output and exit
/// code back, and `ctr task ps` lists the one pid that stands for the VM.
pub fn exec_and_ps(containerd: &Containerd, id: &str) {
    let out = containerd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo in exec; exit 5",
    ]);
    assert_eq!(stdout(&out), "in exec\n", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(5));
    let ps = ok(&containerd.ctr(&["task", "ps", id]));
    assert_eq!(ps.lines().count(), 2, "one pid stands for the VM: {ps}");
}

/// Record directories (12 hex digits) left under a hull-runc root.
pub fn records(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 12 && n.chars().all(|c| c.is_ascii_hexdigit()))
        .collect()
}

/// Namespaces unique to each containerd a test process starts.
static NEXT_NAMESPACE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// containerd 1.6 on its own temp config and sockets, CRI off.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    daemon: Child,
    pub namespace: String,
}

impl Containerd {
    /// Starts containerd with hull's `build/bin` first on its PATH (where
    /// it finds `containerd-shim-hull-v2`) and the busybox image imported.
    pub fn start() -> Self {
        become_subreaper();
        let dir = temp_dir("containerd");
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/c.sock\"\n\
             [ttrpc]\n  address = \"{0}/c.sock.ttrpc\"\n\
             [debug]\n  address = \"{0}/debug.sock\"\n",
            d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let bin = artifact("HULL_BIN");
        let path = format!(
            "{}:{}",
            bin.parent().expect("bin dir").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let daemon = Command::new("containerd")
            .env("PATH", path)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (Debian package containerd; make deps)");
        let containerd = Self {
            dir,
            daemon,
            namespace: format!(
                "hull-e2e-{}-{}",
                std::process::id(),
                NEXT_NAMESPACE.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ),
        };
        eventually(30, "containerd's socket", || {
            containerd.ctr(&["version"]).status.success()
        });
        ok(&containerd.ctr(&[
            "images",
            "import",
            image_archive("busybox.tar").to_str().unwrap(),
        ]));
        containerd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.path().join("c.sock"))
            .args(["--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// Where containerd's runc shim keeps runc state (`--root`).
    pub fn runc_root(&self) -> PathBuf {
        Path::new("/run/containerd/runc").join(&self.namespace)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: kill on our own child.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let _ = self.daemon.wait();
        reap_orphans(10);
        let _ = std::fs::remove_dir_all(self.runc_root());
        // hull's shim keeps its records (and a scratch template) here.
        let _ = std::fs::remove_dir_all(Path::new("/run/hull-shim").join(&self.namespace));
    }
}

pub fn timed(f: impl FnOnce() -> Output) -> (Output, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}
