//! `POST /containers/create`: Docker's container config and HostConfig
//! become a [`RunRequest`]; the library plans it, and the record and its
//! writable layer are made. Nothing runs until `start`. Settings hull
//! does not have are refused by name (400), never dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use hull_container::volume::{self, MountRequest};
use hull_container::{ContainerConfig, Paths, RunRequest};
use hull_net::forward::PortMapping;
use hyper::StatusCode;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::http::{json, read_json, Query, Request};
use crate::state::App;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub image: String,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub host_config: Option<HostConfig>,
    pub networking_config: Option<NetworkingConfig>,
    pub healthcheck: Option<serde_json::Value>,
    pub stop_signal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub mounts: Option<Vec<MountSpec>>,
    pub tmpfs: Option<BTreeMap<String, String>>,
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    pub publish_all_ports: bool,
    pub memory: i64,
    pub nano_cpus: i64,
    pub pids_limit: Option<i64>,
    pub network_mode: Option<String>,
    pub auto_remove: bool,
    pub restart_policy: Option<RestartPolicy>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub runtime: Option<String>,
    // What hull has no answer for: refused when set.
    pub volumes_from: Option<Vec<String>>,
    pub links: Option<Vec<String>>,
    pub devices: Option<Vec<serde_json::Value>>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub userns_mode: Option<String>,
    pub extra_hosts: Option<Vec<String>>,
    pub dns: Option<Vec<String>>,
    pub cpu_shares: i64,
    pub cpuset_cpus: Option<String>,
    pub memory_swap: i64,
    pub ulimits: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountSpec {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, Option<EndpointConfig>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    pub aliases: Option<Vec<String>>,
}

pub async fn create(app: &Arc<App>, query: &Query, req: Request) -> ApiResult {
    let body: CreateBody = read_json(req).await?;
    let request = run_request(query.get("name"), body)?;
    let app = app.clone();
    let id = tokio::task::spawn_blocking(move || make(&app, &request))
        .await
        .map_err(|e| ApiError::internal(format!("create: {e}")))??;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({"Id": id, "Warnings": []}),
    ))
}

/// Plans, records and gives the container its writable layer; a failure
/// leaves nothing behind.
fn make(app: &App, request: &RunRequest) -> ApiResult<String> {
    let paths = Paths {
        root: &app.root,
        run_dir: &app.run_dir,
    };
    let containers = app.containers();
    let plan = ContainerConfig::from_run(request, paths, &containers).map_err(|e| {
        // Docker's words for an image that is not here, which its CLI
        // answers by pulling.
        match e {
            hull_container::Error::Image(hull_image::Error::NotFound(_)) => {
                ApiError::not_found(format!("No such image: {}", request.image))
            }
            other => other.into(),
        }
    })?;
    hull_container::private::ensure_dir(&app.run_dir)
        .map_err(|e| ApiError::internal(format!("create {}: {e}", app.run_dir.display())))?;
    containers.sweep(&app.root, false);
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    let container = containers.create(plan.config)?;
    let owner = container.layer_owner();
    if let Err(e) = hull_sandbox::scratch::create(&app.root, container.short_id(), &owner) {
        containers.remove(&container);
        volume::remove_anonymous(&app.root, &containers, &container.config);
        return Err(ApiError::internal(format!(
            "create the writable layer: {e}"
        )));
    }
    Ok(container.config.id.clone())
}

/// Docker's create body as hull's request; what hull cannot do is a 400
/// naming it.
pub fn run_request(name: Option<&str>, body: CreateBody) -> ApiResult<RunRequest> {
    if body.image.is_empty() {
        return Err(ApiError::bad_request("Config.Image is required"));
    }
    if body.healthcheck.as_ref().is_some_and(|h| !h.is_null()) {
        return Err(unsupported("Healthcheck"));
    }
    let host = body.host_config.unwrap_or_default();
    refuse_unsupported(&host)?;
    // The server's own environment is not the client's: `KEY` alone
    // (which the docker CLI resolves itself) is not looked up here.
    let env = body
        .env
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| kv.contains('='))
        .collect();
    let (entrypoint, mut cmd) = match body.entrypoint {
        None => (None, Vec::new()),
        Some(list) if list.iter().all(String::is_empty) => (Some(String::new()), Vec::new()),
        Some(list) => {
            let mut list = list.into_iter();
            (list.next(), list.collect())
        }
    };
    cmd.extend(body.cmd.unwrap_or_default());
    let network_mode = host.network_mode.clone().unwrap_or_default();
    let network = match network_mode.as_str() {
        "" | "default" | "bridge" => hull_net::DEFAULT_NETWORK.to_string(),
        "host" => return Err(unsupported("HostConfig.NetworkMode host")),
        other => other.to_string(),
    };
    let aliases = body
        .networking_config
        .and_then(|n| n.endpoints_config)
        .and_then(|mut e| e.remove(&network_mode).flatten())
        .and_then(|e| e.aliases)
        .unwrap_or_default();
    Ok(RunRequest {
        image: body.image,
        name: name
            .filter(|n| !n.is_empty())
            .map(|n| n.trim_start_matches('/').to_string()),
        hostname: body.hostname.filter(|h| !h.is_empty()),
        process: hull_container::spec::RunOverrides {
            entrypoint,
            cmd,
            env,
            workdir: body.working_dir.filter(|w| !w.is_empty()),
            user: body.user.filter(|u| !u.is_empty()),
        },
        tty: body.tty,
        terminal_size: body.tty.then_some((24, 80)),
        open_stdin: body.open_stdin,
        auto_remove: host.auto_remove,
        memory_bytes: (host.memory > 0).then_some(host.memory as u64),
        cpus: (host.nano_cpus > 0).then(|| host.nano_cpus as f64 / 1e9),
        pids_limit: host.pids_limit.filter(|p| *p > 0),
        read_only: host.readonly_rootfs,
        privileged: host.privileged,
        cap_add: host.cap_add.clone().unwrap_or_default(),
        cap_drop: host.cap_drop.clone().unwrap_or_default(),
        security_opt: host.security_opt.clone().unwrap_or_default(),
        limits: Default::default(),
        network,
        ports: ports(&host)?,
        aliases,
        hypervisor: std::env::var("HULL_HYPERVISOR").unwrap_or_else(|_| "auto".into()),
        kernel: None,
        initramfs: None,
        no_template: false,
        template_scope: None,
        mounts: mounts(&host)?,
        labels: body.labels.unwrap_or_default(),
        keep_vm_for_export: false,
    })
}

fn unsupported(what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported by hull"))
}

/// Settings hull cannot honour, refused by name when set.
fn refuse_unsupported(host: &HostConfig) -> ApiResult<()> {
    if let Some(policy) = &host.restart_policy {
        if !matches!(policy.name.as_str(), "" | "no") {
            return Err(unsupported(&format!(
                "HostConfig.RestartPolicy {:?}",
                policy.name
            )));
        }
    }
    fn set<T>(v: &Option<Vec<T>>) -> bool {
        v.as_ref().is_some_and(|l| !l.is_empty())
    }
    let checks = [
        ("HostConfig.VolumesFrom", set(&host.volumes_from)),
        ("HostConfig.Links", set(&host.links)),
        ("HostConfig.Devices", set(&host.devices)),
        ("HostConfig.ExtraHosts", set(&host.extra_hosts)),
        ("HostConfig.Dns", set(&host.dns)),
        ("HostConfig.Ulimits", set(&host.ulimits)),
        ("HostConfig.PublishAllPorts", host.publish_all_ports),
        ("HostConfig.CpuShares", host.cpu_shares != 0),
        ("HostConfig.MemorySwap", host.memory_swap > 0),
        (
            "HostConfig.CpusetCpus",
            host.cpuset_cpus.as_ref().is_some_and(|s| !s.is_empty()),
        ),
        (
            "HostConfig.PidMode",
            host.pid_mode.as_ref().is_some_and(|s| !s.is_empty()),
        ),
        (
            "HostConfig.IpcMode",
            host.ipc_mode
                .as_ref()
                .is_some_and(|s| !matches!(s.as_str(), "" | "private" | "shareable")),
        ),
        (
            "HostConfig.UsernsMode",
            host.userns_mode.as_ref().is_some_and(|s| !s.is_empty()),
        ),
        (
            "HostConfig.Runtime",
            host.runtime
                .as_ref()
                .is_some_and(|s| !matches!(s.as_str(), "" | "hull" | "runc")),
        ),
    ];
    match checks.iter().find(|(_, on)| *on) {
        Some((what, _)) => Err(unsupported(what)),
        None => Ok(()),
    }
}

/// `PortBindings` as hull's mappings (a host port is required: hull does
/// not pick one).
fn ports(host: &HostConfig) -> ApiResult<Vec<PortMapping>> {
    let mut out = Vec::new();
    for (container_port, bindings) in host.port_bindings.iter().flatten() {
        for b in bindings.iter().flatten() {
            if b.host_port.is_empty() {
                return Err(unsupported(&format!(
                    "a published port without a host port ({container_port})"
                )));
            }
            let spec = if b.host_ip.is_empty() {
                format!("{}:{container_port}", b.host_port)
            } else {
                format!("{}:{}:{container_port}", b.host_ip, b.host_port)
            };
            out.push(
                PortMapping::parse(&spec)
                    .map_err(|e| ApiError::bad_request(format!("HostConfig.PortBindings: {e}")))?,
            );
        }
    }
    Ok(out)
}

/// `Binds`, then `Mounts`, then `Tmpfs`, through the library's own
/// parsers of `-v`, `--mount` and `--tmpfs`.
fn mounts(host: &HostConfig) -> ApiResult<Vec<MountRequest>> {
    let bad = |e: hull_container::Error| ApiError::from(e);
    let mut out = Vec::new();
    for bind in host.binds.iter().flatten() {
        out.push(volume::parse_volume_flag(bind).map_err(bad)?);
    }
    for m in host.mounts.iter().flatten() {
        let mut spec = format!("type={},target={}", m.kind, m.target);
        if !m.source.is_empty() {
            spec.push_str(&format!(",source={}", m.source));
        }
        if m.read_only {
            spec.push_str(",readonly");
        }
        out.push(volume::parse_mount_flag(&spec).map_err(bad)?);
    }
    for (path, opts) in host.tmpfs.iter().flatten() {
        let spec = if opts.is_empty() {
            path.clone()
        } else {
            format!("{path}:{opts}")
        };
        out.push(volume::parse_tmpfs_flag(&spec).map_err(bad)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> CreateBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn dockers_create_body_becomes_a_run_request() {
        let r = run_request(
            Some("web"),
            body(
                r#"{"Image":"busybox","Cmd":["echo","hi"],"Env":["A=1","FROM_CLIENT"],
                    "Labels":{"app":"x"},"Tty":false,"OpenStdin":true,
                    "HostConfig":{"Memory":67108864,"NanoCpus":2000000000,"AutoRemove":true,
                      "NetworkMode":"default","PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},
                      "RestartPolicy":{"Name":"no"}}}"#,
            ),
        )
        .unwrap();
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.process.cmd, ["echo", "hi"]);
        assert_eq!(r.process.env, ["A=1"]);
        assert_eq!(r.labels.get("app").map(String::as_str), Some("x"));
        assert_eq!(r.memory_bytes, Some(64 << 20));
        assert_eq!(r.cpus, Some(2.0));
        assert!(r.auto_remove && r.open_stdin);
        assert_eq!(r.network, hull_net::DEFAULT_NETWORK);
        assert_eq!(r.ports.len(), 1);
    }

    #[test]
    fn an_entrypoint_list_keeps_its_arguments_before_cmd() {
        let r = run_request(
            None,
            body(r#"{"Image":"b","Entrypoint":["sh","-c"],"Cmd":["exit 3"]}"#),
        )
        .unwrap();
        assert_eq!(r.process.entrypoint.as_deref(), Some("sh"));
        assert_eq!(r.process.cmd, ["-c", "exit 3"]);
    }

    #[test]
    fn what_hull_cannot_do_is_refused_by_name() {
        let e = run_request(
            None,
            body(r#"{"Image":"b","HostConfig":{"RestartPolicy":{"Name":"always"}}}"#),
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("RestartPolicy"), "{}", e.message);
        let e = run_request(
            None,
            body(r#"{"Image":"b","HostConfig":{"NetworkMode":"host"}}"#),
        )
        .unwrap_err();
        assert!(e.message.contains("NetworkMode host"), "{}", e.message);
        let e = run_request(None, body(r#"{"Cmd":["true"]}"#)).unwrap_err();
        assert!(e.message.contains("Image"), "{}", e.message);
    }
}
