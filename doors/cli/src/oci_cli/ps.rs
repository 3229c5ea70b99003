//! `ps` (host pids standing for the container, see the module docs) and
//! `features`.

use anyhow::{anyhow, Result};
use serde_json::json;

use super::args::{PsArgs, RuncArgs};
use super::find;

pub fn ps(args: &RuncArgs, ps: &PsArgs) -> Result<i32> {
    let container = find(args, &ps.id)?;
    let pids: Vec<i32> = container
        .live_supervisor()
        .map(|p| p.pid)
        .into_iter()
        .collect();
    match ps.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            println!("PID CMD");
            for pid in pids {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                println!("{pid} {}", comm.trim());
            }
        }
        other => return Err(anyhow!("invalid format {other:?}: use table or json")),
    }
    Ok(0)
}

/// What runc's `features` reports, for what hull does.
pub fn features() -> Result<i32> {
    let features = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": [],
        "mountOptions": [
            "bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
            "sync", "async", "dirsync", "remount", "mand", "nomand", "atime", "noatime",
            "diratime", "nodiratime", "relatime", "norelatime", "strictatime", "defaults",
            "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
            "runbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": hull_protocol::CAPABILITY_NAMES,
            "cgroup": {"v1": false, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true, "actions": [
                "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_LOG"
            ]},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.hull.vm": "true"
        }
    });
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(0)
}
