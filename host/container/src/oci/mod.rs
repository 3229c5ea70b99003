//! The OCI runtime spec hull sends to the agent for a container, built the
//! way the Docker daemon builds it for runc: default mounts, namespaces,
//! capabilities, masked and read-only paths, the default seccomp profile,
//! and the limits given on the command line.

pub mod limits;
pub mod resources;
mod seccomp_default;

// Every capability, for `--privileged` and `--cap-add ALL`.
use hull_protocol::CAPABILITY_NAMES as ALL_CAPABILITIES;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};
use thiserror::Error;

use crate::spec::ProcessPlan;

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// How the container's syscalls are filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompChoice {
    #[default]
    Default,
    Unconfined,
    /// A profile in Docker's JSON format (which is also the OCI one).
    Profile(Value),
}

/// Security and limit options of `hull run`.
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    pub hostname: String,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: SeccompChoice,
    pub no_new_privileges: bool,
    pub read_only: bool,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    /// A terminal of (rows, columns) for the process.
    pub terminal: Option<(u16, u16)>,
    /// `--ulimit`, block I/O limits, user namespace.
    pub limits: limits::Limits,
}

#[derive(Debug, Error)]
pub enum OciError {
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("the seccomp profile is not valid")]
    BadSeccompProfile(#[source] serde_json::Error),
    #[error("building the runtime spec")]
    Spec(#[source] serde_json::Error),
}

/// "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" all name CAP_NET_ADMIN.
fn canonical_capability(name: &str) -> Result<String, OciError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if full == "CAP_ALL" || ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(OciError::UnknownCapability(name.to_string()))
    }
}

/// The capability set after `--privileged`, `--cap-add` and `--cap-drop`
/// (drops apply first, then adds, as Docker does).
pub fn capabilities(options: &ContainerOptions) -> Result<Vec<String>, OciError> {
    if options.privileged {
        return Ok(ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect());
    }
    let drops: Vec<String> = options
        .cap_drop
        .iter()
        .map(|c| canonical_capability(c))
        .collect::<Result<_, _>>()?;
    let adds: Vec<String> = options
        .cap_add
        .iter()
        .map(|c| canonical_capability(c))
        .collect::<Result<_, _>>()?;
    let base: &[&str] = if drops.iter().any(|c| c == "CAP_ALL") {
        &[]
    } else {
        DEFAULT_CAPABILITIES
    };
    let mut caps: Vec<String> = base
        .iter()
        .map(|c| c.to_string())
        .filter(|c| !drops.contains(c))
        .collect();
    let added: &[&str] = if adds.iter().any(|c| c == "CAP_ALL") {
        ALL_CAPABILITIES
    } else {
        &[]
    };
    for cap in added
        .iter()
        .map(|c| c.to_string())
        .chain(adds.into_iter().filter(|c| c != "CAP_ALL"))
    {
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    Ok(caps)
}

/// The spec for a container running `plan`. The user is resolved in the
/// guest (it needs the image's /etc/passwd), so the spec's is 0:0.
pub fn build_spec(plan: &ProcessPlan, options: &ContainerOptions) -> Result<Spec, OciError> {
    let caps = capabilities(options)?;
    let privileged = options.privileged;
    let sys_options = if privileged {
        vec!["nosuid", "noexec", "nodev"]
    } else {
        vec!["nosuid", "noexec", "nodev", "ro"]
    };
    let cgroup_options = if privileged {
        vec!["nosuid", "noexec", "nodev"]
    } else {
        vec!["ro", "nosuid", "noexec", "nodev"]
    };
    let mounts = json!([
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": cgroup_options},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]);
    let seccomp = match (&options.seccomp, privileged) {
        (_, true) | (SeccompChoice::Unconfined, _) => Value::Null,
        (SeccompChoice::Default, _) => seccomp_default::profile(&caps),
        (SeccompChoice::Profile(profile), _) => {
            // Validate here, so a bad file is the user's one-line error.
            serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(profile.clone())
                .map_err(OciError::BadSeccompProfile)?;
            profile.clone()
        }
    };
    let mut resources = serde_json::Map::new();
    if let Some(bytes) = options.memory_bytes {
        resources.insert("memory".into(), json!({"limit": bytes}));
    }
    if let Some(cpus) = options.cpus {
        let period = 100_000u64;
        resources.insert(
            "cpu".into(),
            json!({"quota": (cpus * period as f64) as i64, "period": period}),
        );
    }
    if let Some(limit) = options.pids_limit {
        resources.insert("pids".into(), json!({"limit": limit}));
    }
    if let Some(block_io) = limits::block_io(&options.limits.block_io) {
        resources.insert("blockIO".into(), block_io);
    }
    let mut linux = json!({
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
        "resources": resources,
    });
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if let Some(id_maps) = &options.limits.id_maps {
        limits::user_namespace(&mut linux, id_maps);
    }
    if !seccomp.is_null() {
        linux["seccomp"] = seccomp;
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": options.terminal.is_some(),
            "consoleSize": options.terminal.map(|(rows, cols)| json!({"height": rows, "width": cols})),
            "user": {"uid": 0, "gid": 0},
            "args": plan.args,
            "env": plan.env,
            "cwd": plan.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": limits::rlimits(&options.limits),
            "noNewPrivileges": options.no_new_privileges,
        },
        "root": {"path": "rootfs", "readonly": options.read_only},
        "hostname": options.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    serde_json::from_value(spec).map_err(OciError::Spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ProcessPlan {
        ProcessPlan {
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: String::new(),
        }
    }

    #[test]
    fn default_spec_looks_like_dockers() {
        let spec = build_spec(
            &plan(),
            &ContainerOptions {
                hostname: "h".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(
            process
                .capabilities()
                .as_ref()
                .unwrap()
                .bounding()
                .as_ref()
                .unwrap()
                .len(),
            14
        );
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_some());
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert_eq!(spec.hostname().as_deref(), Some("h"));
        assert_eq!(spec.mounts().as_ref().unwrap().len(), 7);
    }

    #[test]
    fn privileged_drops_confinement() {
        let options = ContainerOptions {
            privileged: true,
            ..Default::default()
        };
        let spec = build_spec(&plan(), &options).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().is_none());
        assert_eq!(
            capabilities(&options).unwrap().len(),
            ALL_CAPABILITIES.len()
        );
    }

    #[test]
    fn cap_add_and_drop_follow_docker() {
        let options = ContainerOptions {
            cap_add: vec!["net_admin".into()],
            cap_drop: vec!["CHOWN".into()],
            ..Default::default()
        };
        let caps = capabilities(&options).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        let options = ContainerOptions {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["KILL".into()],
            ..Default::default()
        };
        assert_eq!(
            capabilities(&options).unwrap(),
            vec!["CAP_KILL".to_string()]
        );
        let options = ContainerOptions {
            cap_add: vec!["CAP_FLY".into()],
            ..Default::default()
        };
        assert!(matches!(
            capabilities(&options),
            Err(OciError::UnknownCapability(_))
        ));
    }

    #[test]
    fn limits_land_in_resources() {
        let options = ContainerOptions {
            memory_bytes: Some(64 << 20),
            cpus: Some(1.5),
            pids_limit: Some(20),
            ..Default::default()
        };
        let spec = build_spec(&plan(), &options).unwrap();
        let resources = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(150_000));
        assert_eq!(resources.pids().as_ref().unwrap().limit(), 20);
    }
}
