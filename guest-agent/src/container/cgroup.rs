//! The container's cgroup (v2): created under /sys/fs/cgroup/hull/<id>,
//! limits written from the spec's resources, the process cloned straight
//! into it (CLONE_INTO_CGROUP), OOM kills counted, removed at the end.
//! `stats` reads its usage back for `hull stats`. Block I/O limits go to
//! io.weight and io.max, with the container's disks already resolved to
//! real major:minor numbers (`super::blkio`).

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxResources};
use thiserror::Error;

use crate::syscall::Syscall;

/// Where the VM's cgroup2 hierarchy is mounted.
pub const ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "io"];

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cgroup: {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CgroupError {
    let what = what.into();
    move |source| CgroupError::Io { what, source }
}

pub struct Cgroup {
    path: PathBuf,
    dir: File,
}

/// runc's conversion of cgroup v1 cpu shares to a v2 weight.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// runc's conversion of a blkio weight (10–1000) to an io.weight (1–10000).
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

/// io.weight and io.max lines for the spec's blockIO: one write per
/// device and limit (io.max keeps what a line does not name).
fn block_io_files(block_io: &LinuxBlockIo, files: &mut Vec<(&'static str, String)>) {
    if let Some(weight) = block_io.weight() {
        files.push((
            "io.weight",
            format!("default {}", blkio_weight_to_io_weight(weight)),
        ));
    }
    for device in block_io.weight_device().iter().flatten() {
        if let Some(weight) = device.weight() {
            files.push((
                "io.weight",
                format!(
                    "{}:{} {}",
                    device.major(),
                    device.minor(),
                    blkio_weight_to_io_weight(weight)
                ),
            ));
        }
    }
    for (key, devices) in [
        ("rbps", block_io.throttle_read_bps_device()),
        ("wbps", block_io.throttle_write_bps_device()),
        ("riops", block_io.throttle_read_iops_device()),
        ("wiops", block_io.throttle_write_iops_device()),
    ] {
        for device in devices.iter().flatten() {
            files.push((
                "io.max",
                format!(
                    "{}:{} {key}={}",
                    device.major(),
                    device.minor(),
                    device.rate()
                ),
            ));
        }
    }
}

/// The files to write for the spec's resources: (file, value).
pub fn limit_files(resources: &LinuxResources) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    if let Some(memory) = resources.memory() {
        if let Some(limit) = memory.limit() {
            files.push((
                "memory.max",
                if limit < 0 {
                    "max".to_string()
                } else {
                    limit.to_string()
                },
            ));
        }
        if let Some(low) = memory.reservation().filter(|r| *r > 0) {
            files.push(("memory.low", low.to_string()));
        }
    }
    if let Some(cpu) = resources.cpu() {
        if cpu.quota().is_some() || cpu.period().is_some() {
            let quota = cpu
                .quota()
                .filter(|q| *q > 0)
                .map_or("max".to_string(), |q| q.to_string());
            files.push((
                "cpu.max",
                format!("{quota} {}", cpu.period().unwrap_or(100_000)),
            ));
        }
        if let Some(shares) = cpu.shares() {
            files.push(("cpu.weight", shares_to_weight(shares).to_string()));
        }
    }
    if let Some(pids) = resources.pids() {
        let limit = pids.limit();
        files.push((
            "pids.max",
            if limit <= 0 {
                "max".to_string()
            } else {
                limit.to_string()
            },
        ));
    }
    if let Some(block_io) = resources.block_io() {
        block_io_files(block_io, &mut files);
    }
    files
}

fn enable_controllers(sys: &dyn Syscall, dir: &Path) {
    for controller in CONTROLLERS {
        // A controller the kernel lacks fails here and then again, with a
        // clear error, when its limit file is written.
        let _ = sys.write_file(
            &dir.join("cgroup.subtree_control"),
            &format!("+{controller}"),
        );
    }
}

impl Cgroup {
    /// Creates `<root>/hull/<container_id>` (`root` is [`ROOT`] but in
    /// tests) with the limits of `resources`; its control files are
    /// written through `sys`.
    pub fn create(
        sys: &dyn Syscall,
        root: &Path,
        container_id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Self, CgroupError> {
        let parent = root.join("hull");
        enable_controllers(sys, root);
        fs::create_dir_all(&parent).map_err(io_err(format!("create {}", parent.display())))?;
        enable_controllers(sys, &parent);
        let path = parent.join(container_id);
        fs::create_dir(&path).map_err(io_err(format!("create {}", path.display())))?;
        let dir = File::open(&path).map_err(io_err(format!("open {}", path.display())))?;
        let cgroup = Self { path, dir };
        for (file, value) in resources.map(limit_files).unwrap_or_default() {
            sys.write_file(&cgroup.path.join(file), &value)
                .map_err(io_err(format!("set {file} to {value}")))?;
        }
        Ok(cgroup)
    }

    /// For CLONE_INTO_CGROUP.
    pub fn fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// How many processes the memory limit killed.
    pub fn oom_kills(&self) -> u64 {
        let events = fs::read_to_string(self.path.join("memory.events")).unwrap_or_default();
        events
            .lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kills every process left in the cgroup (`cgroup.kill`, Linux 5.14).
    pub fn kill_all(&self) {
        let _ = fs::write(self.path.join("cgroup.kill"), "1");
    }

    /// Removes the cgroup once its processes are gone (the kernel may take
    /// a moment after the last exit).
    pub fn remove(&self) {
        for _ in 0..100 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                // Removed already (the main process's end removes it).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        eprintln!("hull-agent: could not remove {}", self.path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_map_to_v2_files() {
        let resources: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":67108864},"cpu":{"quota":50000,"period":100000,"shares":1024},"pids":{"limit":20}}"#,
        )
        .unwrap();
        let files = limit_files(&resources);
        assert!(files.contains(&("memory.max", "67108864".into())));
        assert!(files.contains(&("cpu.max", "50000 100000".into())));
        assert!(files.contains(&("cpu.weight", "39".into())));
        assert!(files.contains(&("pids.max", "20".into())));
    }

    #[test]
    fn block_io_maps_to_io_max_and_io_weight() {
        let resources: LinuxResources = serde_json::from_str(
            r#"{"blockIO":{"weight":500,"weightDevice":[{"major":254,"minor":16,"weight":1000}],
                "throttleReadBpsDevice":[{"major":254,"minor":0,"rate":1048576}],
                "throttleWriteIOPSDevice":[{"major":254,"minor":0,"rate":100}]}}"#,
        )
        .unwrap();
        let files = limit_files(&resources);
        assert_eq!(
            files,
            vec![
                ("io.weight", "default 4950".to_string()),
                ("io.weight", "254:16 10000".to_string()),
                ("io.max", "254:0 rbps=1048576".to_string()),
                ("io.max", "254:0 wiops=100".to_string()),
            ]
        );
        assert_eq!(blkio_weight_to_io_weight(10), 1);
    }

    #[test]
    fn weights_follow_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
    }

    mod through_the_fake {
        use super::*;
        use crate::syscall::test::{Call, Recording};
        use crate::test_utils::TempDir;

        fn write(path: String, contents: &str) -> Call {
            Call::WriteFile {
                path,
                contents: contents.into(),
            }
        }

        #[test]
        fn controllers_are_enabled_then_the_limits_written() {
            let root = TempDir::new("cgroup");
            let sys = Recording::new();
            let resources: LinuxResources =
                serde_json::from_str(r#"{"memory":{"limit":1048576},"pids":{"limit":5}}"#).unwrap();
            let cgroup = Cgroup::create(&sys, root.path(), "c1", Some(&resources)).unwrap();
            assert_eq!(cgroup.path(), root.path().join("hull/c1"));
            assert!(cgroup.path().is_dir());
            let mut expected = Vec::new();
            for dir in ["", "hull/"] {
                for controller in CONTROLLERS {
                    expected.push(write(
                        root.str(&format!("{dir}cgroup.subtree_control")),
                        &format!("+{controller}"),
                    ));
                }
            }
            expected.push(write(root.str("hull/c1/memory.max"), "1048576"));
            expected.push(write(root.str("hull/c1/pids.max"), "5"));
            assert_eq!(sys.calls(), expected);
        }

        #[test]
        fn a_refused_limit_is_the_error() {
            let root = TempDir::new("cgroup-fail");
            let sys = Recording::new();
            sys.fail_when(|call| match call {
                Call::WriteFile { path, .. } if path.ends_with("memory.max") => Some(libc::EINVAL),
                _ => None,
            });
            let resources: LinuxResources =
                serde_json::from_str(r#"{"memory":{"limit":1}}"#).unwrap();
            let err = Cgroup::create(&sys, root.path(), "c2", Some(&resources))
                .err()
                .expect("memory.max was refused");
            let CgroupError::Io { what, source } = err;
            assert_eq!(what, "set memory.max to 1");
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
        }

        #[test]
        fn a_missing_controller_is_not_an_error_of_its_own() {
            let root = TempDir::new("cgroup-nocontroller");
            let sys = Recording::new();
            sys.fail_when(|call| match call {
                Call::WriteFile { contents, .. } if contents == "+io" => Some(libc::ENOENT),
                _ => None,
            });
            assert!(Cgroup::create(&sys, root.path(), "c3", None).is_ok());
        }
    }
}
