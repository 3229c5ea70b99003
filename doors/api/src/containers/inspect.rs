//! `GET /containers/{id}/json`: Docker's inspect object, from the record
//! and its state.

use std::sync::Arc;

use hull_container::record::format_time;
use hull_container::{Container, ContainerState};

use crate::error::ApiResult;
use crate::http::ok_json;
use crate::state::App;

pub fn inspect(app: &Arc<App>, id: &str) -> ApiResult {
    let c = app.container(id)?;
    let state = c.settle();
    ok_json(&describe(&c, &state))
}

/// Docker's zero time for times that have not happened.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn describe(c: &Container, state: &ContainerState) -> serde_json::Value {
    let cfg = &c.config;
    let process = cfg.spec.process().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let time = |t: Option<u64>| t.map_or_else(|| ZERO_TIME.to_string(), format_time);
    let resources = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone());
    let memory = resources
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .unwrap_or(0);
    let nano_cpus = resources
        .as_ref()
        .and_then(|r| r.cpu().as_ref())
        .and_then(|cpu| Some((cpu.quota()?, cpu.period()?)))
        .map_or(0, |(quota, period)| {
            (quota.max(0) as u128 * 1_000_000_000 / period.max(1) as u128) as u64
        });
    let network_mode = match (&cfg.network, &cfg.shares_vm_with) {
        (_, Some(host)) => format!("container:{host}"),
        (Some(network), None) => network.clone(),
        (None, None) => "none".into(),
    };
    let binds: Vec<String> = cfg
        .spec
        .mounts()
        .iter()
        .flatten()
        .filter_map(|m| {
            let source = m.source().as_ref()?.to_string_lossy().into_owned();
            let n: usize = source.strip_prefix("hull-share:")?.parse().ok()?;
            let share = cfg.shares.get(n)?;
            let ro = if share.read_only { ":ro" } else { "" };
            let origin = share
                .volume
                .clone()
                .unwrap_or_else(|| share.source.to_string_lossy().into_owned());
            Some(format!("{origin}:{}{ro}", m.destination().display()))
        })
        .collect();
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
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": c.log_path(),
        "Name": format!("/{}", cfg.name),
        "RestartCount": state.starts.saturating_sub(1),
        "Driver": "hull-erofs-overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": {
            "Binds": binds,
            "NetworkMode": network_mode,
            "PortBindings": port_bindings(c),
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "AutoRemove": cfg.auto_remove,
            "Memory": memory,
            "NanoCpus": nano_cpus,
            "Runtime": "hull",
            "Privileged": false,
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
        "GraphDriver": {"Name": "hull-erofs-overlay", "Data": null},
        "Mounts": [],
        "Config": {
            "Hostname": cfg.spec.hostname().clone().unwrap_or_default(),
            "Domainname": "",
            "User": cfg.user,
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "StdinOnce": false,
            "Env": process.env().clone().unwrap_or_default(),
            "Cmd": args,
            "Image": cfg.image,
            "Volumes": null,
            "WorkingDir": process.cwd(),
            "Entrypoint": null,
            "OnBuild": null,
            "Labels": cfg.labels,
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "IPAddress": state.ip_address.clone().unwrap_or_default(),
            "Ports": ports_map(c),
            "Networks": networks(c, state),
        },
        "Hull": {
            "Hypervisor": cfg.hypervisor,
            "HypervisorPid": state.vm_pid,
            "SupervisorPid": state.supervisor.filter(|s| s.is_alive()).map(|s| s.pid),
            "GuestPid": state.pid,
            "VCPUs": cfg.vcpus,
            "MemoryMiB": cfg.memory_mib,
        },
    })
}

/// `"80/tcp"`-keyed values of the published ports.
fn port_key(m: &hull_net::forward::PortMapping) -> String {
    let text = m.to_string();
    // Display is `80/tcp -> 127.0.0.1:8080`.
    text.split(" -> ").next().unwrap_or_default().to_string()
}

fn port_bindings(c: &Container) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for m in &c.config.ports {
        let entry = map
            .entry(port_key(m))
            .or_insert_with(|| serde_json::json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(serde_json::json!({
                "HostIp": m.host_ip.to_string(),
                "HostPort": m.host_port.to_string(),
            }));
        }
    }
    serde_json::Value::Object(map)
}

fn ports_map(c: &Container) -> serde_json::Value {
    port_bindings(c)
}

/// The list shape of published ports (`GET /containers/json`).
pub fn port_list(c: &Container) -> Vec<serde_json::Value> {
    c.config
        .ports
        .iter()
        .map(|m| {
            let key = port_key(m);
            let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
            serde_json::json!({
                "IP": m.host_ip.to_string(),
                "PrivatePort": port.parse::<u16>().unwrap_or(0),
                "PublicPort": m.host_port,
                "Type": proto,
            })
        })
        .collect()
}

/// `NetworkSettings.Networks`.
pub fn networks(c: &Container, state: &ContainerState) -> serde_json::Value {
    let cfg = &c.config;
    match &cfg.network {
        Some(n) => serde_json::json!({
            n.as_str(): {
                "NetworkID": crate::networks::network_id(n),
                "IPAddress": state.ip_address.clone().unwrap_or_default(),
                "Aliases": cfg.aliases,
            }
        }),
        None => serde_json::json!({}),
    }
}
