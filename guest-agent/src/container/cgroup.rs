//! The container's cgroup (v2): created under /sys/fs/cgroup/hull/<id>,
//! limits written from the spec's resources, the process cloned straight
//! into it (CLONE_INTO_CGROUP), OOM kills counted, removed at the end.
//! `stats` reads its usage back for `hull stats`. Block I/O limits go to
//! io.weight and io.max, with the container's disks already resolved to
//! real major:minor numbers (`super::blkio`). `update` writes new limits
//! into a running container's cgroup (`runc update`), as runc's cgroup v2
//! driver (`opencontainers/cgroups` `fs2`) does: a value of 0 is "not
//! set", -1 is `max`, and OCI's memory+swap becomes `memory.swap.max`.

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
const CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids", "io"];

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cgroup: {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cgroup: {0}")]
    Invalid(&'static str),
    #[error("cgroup: invalid memory limit {0}")]
    InvalidMemory(i64),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CgroupError {
    let what = what.into();
    move |source| CgroupError::Io { what, source }
}

pub struct Cgroup {
    path: PathBuf,
    dir: File,
}

/// runc's conversion of cgroup v1 cpu shares to a v2 weight (its
/// quadratic fit since runc 1.3: 2 → 1, 1024 → 100, 262144 → 10000); 0
/// is "not set".
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

/// A limit as cgroup v2 files take it: 0 is not set, -1 (or any negative
/// value) is `max` (runc's `numToStr`).
fn limit_value(value: i64) -> Option<String> {
    match value {
        0 => None,
        v if v < 0 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// `memory.swap.max` for OCI's `swap` (memory+swap, as cgroup v1 counts
/// it) with the memory `limit`: runc's `ConvertMemorySwapToCgroupV2Value`.
fn swap_max(swap: i64, limit: i64) -> Result<Option<String>, CgroupError> {
    let swap_only = match (swap, limit) {
        // Unlimited memory and no word on swap: both unlimited.
        (0, -1) => -1,
        (-1 | 0, _) | (_, -1) => swap,
        (_, 0) => {
            return Err(CgroupError::Invalid(
                "unable to set swap limit without memory limit",
            ))
        }
        (_, l) if l < 0 => return Err(CgroupError::InvalidMemory(l)),
        (s, l) if s < l => {
            return Err(CgroupError::Invalid(
                "memory+swap limit should be >= memory limit",
            ))
        }
        (s, l) => s - l,
    };
    Ok(match swap_only {
        // memory+swap equal to memory: no swap at all.
        0 if swap > 0 => Some("0".into()),
        v => limit_value(v),
    })
}

/// runc's conversion of a blkio weight (10–1000) to an io.weight (1–10000).
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

/// io.weight and io.max lines for the spec's blockIO: one write per
/// device and limit (io.max keeps what a line does not name).
fn block_io_files(block_io: &LinuxBlockIo, files: &mut Vec<(&'static str, String)>) {
    // 0 is "not set", as for runc.
    if let Some(weight) = block_io.weight().filter(|w| *w > 0) {
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

/// The files to write for the spec's resources: (file, value), in the
/// order runc's fs2 driver writes them. Realtime CPU limits have no cgroup
/// v2 file and are ignored, as runc ignores them there.
pub fn limit_files(resources: &LinuxResources) -> Result<Vec<(&'static str, String)>, CgroupError> {
    let mut files = Vec::new();
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
    if let Some(memory) = resources.memory() {
        let limit = memory.limit().unwrap_or(0);
        if let Some(swap) = swap_max(memory.swap().unwrap_or(0), limit)? {
            files.push(("memory.swap.max", swap));
        }
        if let Some(max) = limit_value(limit) {
            files.push(("memory.max", max));
        }
        if let Some(low) = limit_value(memory.reservation().unwrap_or(0)) {
            files.push(("memory.low", low));
        }
    }
    if let Some(block_io) = resources.block_io() {
        block_io_files(block_io, &mut files);
    }
    if let Some(cpu) = resources.cpu() {
        let weight = shares_to_weight(cpu.shares().unwrap_or(0));
        if weight != 0 {
            files.push(("cpu.weight", weight.to_string()));
        }
        let quota = cpu.quota().unwrap_or(0);
        let period = cpu.period().unwrap_or(0);
        if quota != 0 || period != 0 {
            let quota = if quota > 0 {
                quota.to_string()
            } else {
                "max".to_string()
            };
            let period = if period == 0 { 100_000 } else { period };
            files.push(("cpu.max", format!("{quota} {period}")));
        }
        for (file, value) in [("cpuset.cpus", cpu.cpus()), ("cpuset.mems", cpu.mems())] {
            if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                files.push((file, value.clone()));
            }
        }
    }
    Ok(files)
}

/// `resources` for an update, completed from the cgroup's current
/// `cpu.max` and `memory.max`: a quota without a period (or a period
/// without a quota) keeps the other half, and a swap limit is counted from
/// the memory limit in force when the update does not set one (runc takes
/// both from its saved config).
pub fn complete_update(
    resources: &LinuxResources,
    cpu_max: &str,
    memory_max: &str,
) -> LinuxResources {
    let mut resources = resources.clone();
    let current = |text: &str| -> Option<i64> {
        match text.trim() {
            "max" => Some(-1),
            n => n.parse().ok(),
        }
    };
    if let Some(cpu) = resources.cpu_mut() {
        let mut now = cpu_max.split_whitespace();
        let (now_quota, now_period) = (now.next().and_then(current), now.next());
        match (cpu.quota().unwrap_or(0), cpu.period().unwrap_or(0)) {
            (0, p) if p != 0 => {
                cpu.set_quota(now_quota);
            }
            (q, 0) if q != 0 => {
                cpu.set_period(now_period.and_then(|p| p.parse().ok()));
            }
            _ => {}
        }
    }
    if let Some(memory) = resources.memory_mut() {
        let swap = memory.swap().unwrap_or(0);
        if swap != 0 && swap != -1 && memory.limit().unwrap_or(0) == 0 {
            memory.set_limit(current(memory_max));
        }
    }
    resources
}

/// Writes `files` under `dir`. A `memory.swap.max` that the kernel does
/// not have is left alone: runc leaves it for `max` and `0`, and hull
/// for any value too, since a guest kernel without swap accounting has no
/// swap either (podman and Docker write memory+swap into every spec that
/// has a memory limit).
fn write_files(
    sys: &dyn Syscall,
    dir: &Path,
    files: &[(&'static str, String)],
) -> Result<(), CgroupError> {
    for (file, value) in files {
        match sys.write_file(&dir.join(file), value) {
            Ok(()) => {}
            Err(e) if *file == "memory.swap.max" && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("set {file} to {value}"))(e)),
        }
    }
    Ok(())
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
        let files = resources.map(limit_files).transpose()?.unwrap_or_default();
        write_files(sys, &cgroup.path, &files)?;
        Ok(cgroup)
    }

    /// Writes the limits `resources` sets (`runc update`); the ones it
    /// leaves out stay as they are.
    pub fn update(&self, sys: &dyn Syscall, resources: &LinuxResources) -> Result<(), CgroupError> {
        let read = |file: &str| fs::read_to_string(self.path.join(file)).unwrap_or_default();
        let resources = complete_update(resources, &read("cpu.max"), &read("memory.max"));
        write_files(sys, &self.path, &limit_files(&resources)?)
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
        let files = limit_files(&resources).unwrap();
        assert!(files.contains(&("memory.max", "67108864".into())));
        assert!(files.contains(&("cpu.max", "50000 100000".into())));
        assert!(files.contains(&("cpu.weight", "100".into())));
        assert!(files.contains(&("pids.max", "20".into())));
    }

    fn files_of(json: &str) -> Result<Vec<(&'static str, String)>, CgroupError> {
        limit_files(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn zero_is_not_set_and_minus_one_is_max() {
        assert_eq!(
            files_of(r#"{"memory":{"limit":0,"reservation":0,"swap":0},"cpu":{"shares":0,"quota":0,"period":0,"cpus":"","mems":""}}"#)
                .unwrap(),
            vec![]
        );
        assert_eq!(
            files_of(
                r#"{"memory":{"limit":-1,"reservation":-1},"cpu":{"quota":-1},"pids":{"limit":-1}}"#
            )
            .unwrap(),
            vec![
                ("pids.max", "max".to_string()),
                ("memory.swap.max", "max".to_string()),
                ("memory.max", "max".to_string()),
                ("memory.low", "max".to_string()),
                ("cpu.max", "max 100000".to_string()),
            ]
        );
    }

    #[test]
    fn swap_is_memory_plus_swap_as_in_oci() {
        let swap = |swap: i64, limit: i64| swap_max(swap, limit).map_err(|e| e.to_string());
        assert_eq!(
            swap(192 << 20, 64 << 20),
            Ok(Some((128u64 << 20).to_string()))
        );
        assert_eq!(swap(64 << 20, 64 << 20), Ok(Some("0".into())));
        assert_eq!(swap(-1, 64 << 20), Ok(Some("max".into())));
        assert_eq!(swap(0, 64 << 20), Ok(None));
        assert_eq!(swap(0, -1), Ok(Some("max".into())));
        assert_eq!(swap(1 << 30, -1), Ok(Some((1u64 << 30).to_string())));
        assert_eq!(
            swap(32 << 20, 64 << 20),
            Err("cgroup: memory+swap limit should be >= memory limit".into())
        );
        assert_eq!(
            swap(32 << 20, 0),
            Err("cgroup: unable to set swap limit without memory limit".into())
        );
    }

    #[test]
    fn cpusets_and_weights_are_written_realtime_is_not() {
        assert_eq!(
            files_of(r#"{"cpu":{"shares":2,"cpus":"0-1","mems":"0","realtimeRuntime":950000,"realtimePeriod":1000000},"blockIO":{"weight":1000}}"#)
                .unwrap(),
            vec![
                ("io.weight", "default 10000".to_string()),
                ("cpu.weight", "1".to_string()),
                ("cpuset.cpus", "0-1".to_string()),
                ("cpuset.mems", "0".to_string()),
            ]
        );
    }

    #[test]
    fn an_update_keeps_what_it_does_not_name() {
        let update = |json: &str, cpu_max: &str, memory_max: &str| {
            let resources = serde_json::from_str(json).unwrap();
            limit_files(&complete_update(&resources, cpu_max, memory_max)).unwrap()
        };
        // A quota alone keeps the period in force, a period alone the quota.
        assert_eq!(
            update(r#"{"cpu":{"quota":20000}}"#, "max 50000\n", "max\n"),
            vec![("cpu.max", "20000 50000".to_string())]
        );
        assert_eq!(
            update(r#"{"cpu":{"period":250000}}"#, "20000 50000\n", "max\n"),
            vec![("cpu.max", "20000 250000".to_string())]
        );
        assert_eq!(
            update(r#"{"cpu":{"period":250000}}"#, "max 50000\n", "max\n"),
            vec![("cpu.max", "max 250000".to_string())]
        );
        // Swap alone counts from the memory limit in force.
        assert_eq!(
            update(r#"{"memory":{"swap":100663296}}"#, "", "67108864\n"),
            vec![
                ("memory.swap.max", "33554432".to_string()),
                ("memory.max", "67108864".to_string()),
            ]
        );
        // An empty update writes nothing.
        assert_eq!(update("{}", "max 100000", "max"), vec![]);
    }

    #[test]
    fn block_io_maps_to_io_max_and_io_weight() {
        let resources: LinuxResources = serde_json::from_str(
            r#"{"blockIO":{"weight":500,"weightDevice":[{"major":254,"minor":16,"weight":1000}],
                "throttleReadBpsDevice":[{"major":254,"minor":0,"rate":1048576}],
                "throttleWriteIOPSDevice":[{"major":254,"minor":0,"rate":100}]}}"#,
        )
        .unwrap();
        let files = limit_files(&resources).unwrap();
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
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(512), 59);
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
            expected.push(write(root.str("hull/c1/pids.max"), "5"));
            expected.push(write(root.str("hull/c1/memory.max"), "1048576"));
            assert_eq!(sys.calls(), expected);
        }

        #[test]
        fn an_update_writes_into_the_containers_cgroup() {
            let root = TempDir::new("cgroup-update");
            let sys = Recording::new();
            let cgroup = Cgroup::create(&sys, root.path(), "c4", None).unwrap();
            std::fs::write(cgroup.path().join("cpu.max"), "max 100000\n").unwrap();
            std::fs::write(cgroup.path().join("memory.max"), "max\n").unwrap();
            let before = sys.calls().len();
            // No swap accounting in this kernel: memory.swap.max is missing.
            sys.fail_when(|call| match call {
                Call::WriteFile { path, .. } if path.ends_with("memory.swap.max") => {
                    Some(libc::ENOENT)
                }
                _ => None,
            });
            let resources: LinuxResources = serde_json::from_str(
                r#"{"memory":{"limit":67108864,"swap":134217728},"cpu":{"quota":50000,"shares":1024},"pids":{"limit":20}}"#,
            )
            .unwrap();
            cgroup.update(&sys, &resources).unwrap();
            assert_eq!(
                sys.calls()[before..].to_vec(),
                vec![
                    write(root.str("hull/c4/pids.max"), "20"),
                    write(root.str("hull/c4/memory.swap.max"), "67108864"),
                    write(root.str("hull/c4/memory.max"), "67108864"),
                    write(root.str("hull/c4/cpu.weight"), "100"),
                    write(root.str("hull/c4/cpu.max"), "50000 100000"),
                ]
            );
        }

        #[test]
        fn a_refused_update_is_the_error() {
            let root = TempDir::new("cgroup-update-fail");
            let sys = Recording::new();
            let cgroup = Cgroup::create(&sys, root.path(), "c5", None).unwrap();
            sys.fail_when(|call| match call {
                Call::WriteFile { path, .. } if path.ends_with("pids.max") => Some(libc::EINVAL),
                _ => None,
            });
            let resources: LinuxResources =
                serde_json::from_str(r#"{"pids":{"limit":3}}"#).unwrap();
            let err = cgroup.update(&sys, &resources).unwrap_err();
            assert_eq!(err.to_string(), "cgroup: set pids.max to 3");
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
            let CgroupError::Io { what, source } = err else {
                panic!("not an I/O error: {err}");
            };
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
