//! Shared fixtures for hull's end-to-end tests.
//!
//! The tests drive the real `hull` binary with the real guest kernel,
//! initramfs and OCI archives that `make` builds; `make test` exports where
//! they are. Run outside `make`, a test fails saying what is missing rather
//! than passing quietly.

pub mod ecosystem;
pub mod registry;
pub mod runc;
pub mod testhost;
pub mod token_server;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A built artifact named by an environment variable `make` exports.
pub fn artifact(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the end-to-end tests through `make test` (or `make e2e`)")
    });
    assert!(
        path.exists(),
        "{var}={} does not exist: run `make` first",
        path.display()
    );
    path
}

/// An OCI archive from `tests/images/`, built by `make images`.
pub fn image_archive(name: &str) -> PathBuf {
    artifact("HULL_TEST_IMAGES").join(name)
}

/// One isolated hull installation: its own image store and run dir.
pub struct Hull {
    pub root: tempfile::TempDir,
    bin: PathBuf,
}

impl Default for Hull {
    fn default() -> Self {
        Self::new()
    }
}

impl Hull {
    pub fn new() -> Self {
        Self {
            root: tempfile::Builder::new()
                .prefix("hull-e2e")
                .tempdir()
                .expect("temp dir"),
            bin: artifact("HULL_BIN"),
        }
    }

    /// A store with the busybox test images loaded.
    pub fn with_busybox() -> Self {
        let hull = Self::new();
        for archive in ["busybox.tar", "busybox-app.tar"] {
            let out = hull.hull(&["load", "-i", image_archive(archive).to_str().unwrap()]);
            assert!(
                out.status.success(),
                "loading {archive}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        hull
    }

    pub fn store_dir(&self) -> PathBuf {
        self.root.path().join("store")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.path().join("run")
    }

    /// A `hull` command bound to this installation.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("HULL_ROOT", self.store_dir())
            .env("HULL_RUN_DIR", self.run_dir())
            .env("HULL_KERNEL", artifact("HULL_KERNEL"))
            .env("HULL_INITRAMFS", artifact("HULL_INITRAMFS"))
            .env("HULL_HYPERVISOR", "qemu")
            // The suite's installations share their VM templates: each
            // shape is booted once per suite, every other VM is a clone.
            .env("HULL_TEMPLATES", artifact("HULL_TEST_TEMPLATES"))
            .stdin(Stdio::null());
        cmd
    }

    pub fn hull(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("spawn hull")
    }

    /// `hull inspect NAME`: the container's object.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = ok(&self.hull(&["inspect", name]));
        let all: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
        all[0].clone()
    }

    /// Runs hull with `input` on its stdin.
    pub fn hull_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hull");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("wait hull");
        writer.join().expect("stdin writer");
        out
    }

    /// Asserts that no sandbox is left: an empty run dir, no writable
    /// layer, and no process (a VM) naming this installation.
    pub fn assert_no_sandbox_left(&self) {
        let entries = |dir: PathBuf| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        let run_dir = entries(self.run_dir());
        assert!(run_dir.is_empty(), "run dir not empty: {run_dir:?}");
        let layers = entries(self.store_dir().join("sandboxes"));
        assert!(layers.is_empty(), "writable layers left: {layers:?}");
        let vms = processes_mentioning(self.root.path().to_str().expect("utf-8 temp dir"));
        assert!(vms.is_empty(), "processes outlived hull: {vms:?}");
    }

    /// Every file under the store and run dir, for leak checks.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        walk(self.root.path(), &mut files);
        files.sort();
        files
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            walk(&path, out);
        }
        out.push(path);
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command succeeded; its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}; stdout: {}; stderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Waits until `check` holds, failing after `secs`.
pub fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Asserts hull failed with exit `code` and exactly one line on stderr that
/// contains `needle`.
pub fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit status; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err:?}");
    assert!(
        lines[0].contains(needle),
        "stderr {:?} should mention {needle:?}",
        lines[0]
    );
}

impl Drop for Hull {
    /// A failed test must not leave VMs or supervisors running: kill what
    /// names this installation (the assertions have already run).
    fn drop(&mut self) {
        // A warm pool's clones hold taps in a namespace of the host's: a
        // stop removes them (a kill would not).
        if self.run_dir().join("pool.sock").exists() {
            let _ = self.command(&["pool", "stop"]).output();
        }
        if let Some(root) = self.root.path().to_str() {
            for pid in pids_mentioning(root) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// Pids of processes whose command line mentions `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

/// Processes whose command line mentions `needle` (leak checks).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}
