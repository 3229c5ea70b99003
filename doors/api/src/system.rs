//! `_ping`, `version` and `info`: who answers, in Docker's shapes.

use std::sync::Arc;

use hull_container::Status;
use hyper::StatusCode;

use crate::error::ApiResult;
use crate::http::{full, ok_json, Response};
use crate::state::App;

/// The API version served: Docker 20.10's.
pub const API_VERSION: &str = "1.41";
/// The oldest version answered (Docker's own minimum).
pub const MIN_API_VERSION: &str = "1.12";

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn ping(head: bool) -> Response {
    hyper::Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Cache-Control", "no-cache, no-store, must-revalidate")
        .header("Pragma", "no-cache")
        .body(full(if head { "" } else { "OK" }))
        .expect("a static response")
}

fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

pub fn version() -> ApiResult {
    let kernel = kernel_release();
    ok_json(&serde_json::json!({
        "Platform": {"Name": "hull"},
        "Components": [{
            "Name": "Engine",
            "Version": VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": std::env::consts::ARCH,
                "KernelVersion": kernel,
            }
        }],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

/// Go's name for this machine's architecture, as Docker reports it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn info(app: &Arc<App>) -> ApiResult {
    let app = app.clone();
    let info = tokio::task::spawn_blocking(move || {
        let (mut running, mut paused, mut stopped) = (0, 0, 0);
        let all = app.containers().list();
        for c in &all {
            let state = c.state();
            match state.status() {
                Status::Running if state.paused => paused += 1,
                Status::Running => running += 1,
                _ => stopped += 1,
            }
        }
        let images = app
            .store()
            .ok()
            .and_then(|s| s.list().ok())
            .map_or(0, |l| l.len());
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        serde_json::json!({
            "ID": hostname,
            "Containers": all.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": stopped,
            "Images": images,
            "Driver": "hull-erofs-overlay",
            "DriverStatus": [],
            "DockerRootDir": app.root,
            "Plugins": {"Volume": ["local"], "Network": ["bridge"], "Log": ["json-file"]},
            "MemoryLimit": true,
            "SwapLimit": false,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "OomKillDisable": false,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": hull_container::record::format_time(hull_container::record::now_nanos()),
            "LoggingDriver": "json-file",
            "CgroupDriver": "none",
            "CgroupVersion": "2",
            "KernelVersion": kernel_release(),
            "OperatingSystem": "hull (each container in its own microVM)",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "NCPU": ncpu,
            "MemTotal": mem_total(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
            "Name": hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": VERSION,
            "Runtimes": {"hull": {"path": app.hull}},
            "DefaultRuntime": "hull",
            "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": ""},
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "SecurityOptions": ["name=seccomp,profile=default"],
            "Warnings": [],
        })
    })
    .await
    .map_err(|e| crate::error::ApiError::internal(format!("info: {e}")))?;
    ok_json(&info)
}

/// The host's memory in bytes, from /proc/meminfo.
fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
