//! `spec`: the config.json runc writes for a new bundle (runc's
//! `specconv.Example`, field for field), so that bundles made for runc
//! and edited with `jq` start from the same document.

use std::io::Write;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use super::args::{RuncArgs, SpecArgs};

/// runc's default config.json.
pub fn default_spec() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// runc's `ToRootless`: a user namespace mapping the caller's ids to root,
/// no network namespace of its own, /sys bound rather than mounted, no
/// cgroup mount or resources, devpts without the tty group.
fn make_rootless(spec: &mut Value) {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let linux = &mut spec["linux"];
    let namespaces = linux["namespaces"].as_array_mut().expect("namespaces");
    namespaces.retain(|ns| ns["type"] != "network" && ns["type"] != "user");
    namespaces.push(json!({"type": "user"}));
    linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
    linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    if let Some(map) = linux.as_object_mut() {
        map.remove("resources");
    }
    let mounts = spec["mounts"].as_array_mut().expect("mounts");
    mounts.retain(|m| m["type"] != "cgroup");
    for mount in mounts.iter_mut() {
        if mount["destination"] == "/sys" {
            *mount = json!({"destination": "/sys", "type": "none", "source": "/sys",
                            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
        if let Some(options) = mount["options"].as_array_mut() {
            options.retain(|o| o != "gid=5");
        }
    }
}

pub fn spec(args: &RuncArgs, spec: &SpecArgs) -> Result<i32> {
    let mut config = default_spec();
    if args.rootless.as_deref() == Some("true") {
        make_rootless(&mut config);
    }
    let path = spec.bundle.join("config.json");
    // runc refuses to overwrite, in these words.
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(anyhow!("File {} exists. Remove it first", path.display()));
        }
        Err(e) => return Err(anyhow!("write {}: {e}", path.display())),
    };
    let mut text = serde_json::to_string_pretty(&config)?;
    text.push('\n');
    file.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_a_valid_oci_spec() {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(default_spec()).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_ref().unwrap(), &["sh"]);
        assert_eq!(spec.hostname().as_deref(), Some("runc"));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(spec.mounts().as_ref().unwrap().len(), 7);
    }

    #[test]
    fn the_rootless_spec_maps_the_caller_and_drops_the_network_namespace() {
        let mut value = default_spec();
        make_rootless(&mut value);
        let spec: oci_spec::runtime::Spec = serde_json::from_value(value).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let types: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(types.contains(&oci_spec::runtime::LinuxNamespaceType::User));
        assert!(!types.contains(&oci_spec::runtime::LinuxNamespaceType::Network));
        assert_eq!(linux.uid_mappings().as_ref().unwrap().len(), 1);
        assert!(linux.resources().is_none());
        let mounts = spec.mounts().as_ref().unwrap();
        assert!(mounts.iter().all(|m| m.typ().as_deref() != Some("cgroup")));
        assert!(mounts.iter().all(|m| !m
            .options()
            .clone()
            .unwrap_or_default()
            .contains(&"gid=5".to_string())));
    }

    #[test]
    fn spec_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        use clap::Parser;
        let bundle = dir.path().to_str().unwrap();
        let args =
            RuncArgs::try_parse_from(["hull-runc", "spec", "--rootless", "-b", bundle]).unwrap();
        let super::super::args::RuncCommand::Spec(spec) = args.command.as_ref().unwrap() else {
            panic!("not spec");
        };
        assert_eq!(super::spec(&args, spec).unwrap(), 0);
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert!(
            written["linux"]["uidMappings"].is_array(),
            "--rootless: {written}"
        );
        let err = super::spec(&args, spec).unwrap_err().to_string();
        assert!(err.contains("exists. Remove it first"), "{err}");
    }
}
