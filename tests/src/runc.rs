//! A hull-runc installation and busybox bundles for the runc suites
//! (`runc_update`, `runc_checkpoint`): one root per test, stdio kept off
//! the test's pipes, nothing left running when a test fails.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::ecosystem::{become_subreaper, records, temp_dir};
use crate::{artifact, image_archive, ok, pids_mentioning, processes_mentioning};

pub fn hull_runc() -> PathBuf {
    let runc = artifact("HULL_BIN").with_file_name("hull-runc");
    assert!(
        runc.exists(),
        "{} is missing: run `make hull`",
        runc.display()
    );
    runc
}

/// A bundle of the busybox test image (umoci's runtime config), with
/// `args` as the process.
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    pub fn new(args: &[&str]) -> Self {
        let dir = temp_dir("bundle");
        let layout = dir.path().join("oci");
        ok(&Command::new("skopeo")
            .args(["copy", "-q", "--insecure-policy"])
            .arg(format!(
                "oci-archive:{}",
                image_archive("busybox.tar").display()
            ))
            .arg(format!("oci:{}:latest", layout.display()))
            .output()
            .expect("run skopeo"));
        ok(&Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(dir.path().join("bundle"))
            .output()
            .expect("run umoci"));
        let file = dir.path().join("bundle/config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        config["process"]["args"] = serde_json::json!(args);
        config["process"]["terminal"] = serde_json::json!(false);
        std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }
}

/// One hull-runc installation: its own root.
pub struct Runc {
    pub root: tempfile::TempDir,
}

impl Default for Runc {
    fn default() -> Self {
        Self::new()
    }
}

impl Runc {
    pub fn new() -> Self {
        become_subreaper();
        Self {
            root: temp_dir("runc"),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(hull_runc());
        cmd.arg("--root")
            .arg(self.root.path().join("state"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hull-runc")
    }

    /// `create` with stdio to /dev/null; the supervisor's pid.
    pub fn create(&self, bundle: &Bundle, id: &str) -> i32 {
        let pid_file = self.root.path().join(format!("{id}.pid"));
        let status = self
            .command(&["create", "--bundle"])
            .arg(bundle.path())
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run create");
        assert!(status.success(), "create exited {status}");
        std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// `sh -c script` in the container; its output.
    pub fn sh(&self, id: &str, script: &str) -> Output {
        self.run(&["exec", id, "sh", "-c", script])
    }

    pub fn assert_nothing_left(&self) {
        let state = self.root.path().join("state");
        assert!(
            records(&state).is_empty(),
            "records left: {:?}",
            records(&state)
        );
        for dir in ["names", "sandboxes"] {
            let left: Vec<_> = std::fs::read_dir(state.join(dir))
                .into_iter()
                .flatten()
                .flatten()
                .collect();
            assert!(left.is_empty(), "{dir} left: {left:?}");
        }
        let procs = processes_mentioning(self.root.path().to_str().unwrap());
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }
}

impl Drop for Runc {
    /// A failed test must not leave VMs or supervisors running.
    fn drop(&mut self) {
        if let Some(root) = self.root.path().to_str() {
            for pid in pids_mentioning(root) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}
