use anyhow::Result;

use super::lifecycle::containers;
use crate::cli::{Cli, ContainersArgs};
use hull_container::record::{format_time, Container, ContainerState};

/// Docker's `inspect` fields where they mean the same thing here, plus a
/// `Hull` section with the VM.
pub fn inspect(cli: &Cli, args: &ContainersArgs) -> Result<i32> {
    let all = containers(cli);
    let mut found = Vec::new();
    let mut code = 0;
    for name in &args.containers {
        match all.find(name) {
            Ok(c) => {
                let state = c.settle();
                found.push(describe(&c, &state));
            }
            Err(e) => {
                eprintln!("hull: {e}");
                code = 1;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(code)
}

fn describe(c: &Container, state: &ContainerState) -> serde_json::Value {
    let cfg = &c.config;
    let process = cfg.spec.process().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let time = |t: Option<u64>| t.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), format_time);
    let memory = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .unwrap_or(0);
    serde_json::json!({
        "Id": cfg.id,
        "Created": format_time(cfg.created),
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.get(1..).unwrap_or_default(),
        "State": {
            "Status": state.status_name(),
            "Running": state.is_running(),
            "Paused": state.paused,
            "Restarting": false,
            "OOMKilled": state.oom_killed,
            "Dead": false,
            "Pid": state.vm_pid.unwrap_or(0),
            "ExitCode": state.exit_code.unwrap_or(0),
            "Error": state.error.clone().unwrap_or_default(),
            "StartedAt": time(state.started_at),
            "FinishedAt": time(state.finished_at),
        },
        "Image": cfg.image_id,
        "LogPath": c.log_path(),
        "Name": format!("/{}", cfg.name),
        "RestartCount": state.starts.saturating_sub(1),
        "Driver": "hull-erofs-overlay",
        "NetworkSettings": {
            "IPAddress": state.ip_address.clone().unwrap_or_default(),
            "Networks": cfg.network.as_ref().map(|n| serde_json::json!({
                n.as_str(): {
                    "IPAddress": state.ip_address.clone().unwrap_or_default(),
                    "Aliases": cfg.aliases,
                }
            })),
            "Ports": cfg.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        },
        "HostConfig": {
            "NetworkMode": match (&cfg.network, &cfg.shares_vm_with) {
                (_, Some(host)) => format!("container:{host}"),
                (Some(network), None) => network.clone(),
                (None, None) => "none".into(),
            },
            "AutoRemove": cfg.auto_remove,
            "Memory": memory,
            "NanoCpus": 0,
            "Runtime": "hull",
        },
        "Config": {
            "Hostname": cfg.spec.hostname().clone().unwrap_or_default(),
            "User": cfg.user,
            "Env": process.env().clone().unwrap_or_default(),
            "Cmd": args,
            "Image": cfg.image,
            "WorkingDir": process.cwd(),
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
        },
        "Hull": {
            "Hypervisor": cfg.hypervisor,
            "HypervisorPid": state.vm_pid,
            "SupervisorPid": state.supervisor.filter(|s| s.is_alive()).map(|s| s.pid),
            "GuestPid": state.pid,
            "VCPUs": cfg.vcpus,
            "MemoryMiB": cfg.memory_mib,
            "Kernel": cfg.kernel,
            "Initramfs": cfg.initramfs,
            "RootfsDisk": cfg.rootfs_disk,
            "RootfsType": cfg.fs_type,
            "WritableLayer": cfg.scratch_disk,
        },
    })
}
