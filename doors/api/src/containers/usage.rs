//! `top`, `stats` and `resize`: questions for the container's agent,
//! relayed by its supervisor, in Docker's shapes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hull_container::lifecycle;
use hull_container::supervisor::control::{AgentReply, AgentRequest, ControlReply, ControlRequest};
use hull_container::Container;
use hyper::StatusCode;

use crate::error::{ApiError, ApiResult};
use crate::http::{empty, ok_json, streaming, Query};
use crate::state::App;

pub async fn top(app: &Arc<App>, id: &str) -> ApiResult {
    let c = app.container(id)?;
    if !c.state().is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.config.id
        )));
    }
    let request = ControlRequest::Agent {
        request: AgentRequest::ListProcesses {
            container_id: c.config.id.clone(),
        },
    };
    let ControlReply::Agent {
        answer: AgentReply::Processes { processes },
    } = lifecycle::ask(&c, &request).await?
    else {
        return Err(ApiError::internal("unexpected supervisor reply"));
    };
    let rows: Vec<Vec<String>> = processes
        .into_iter()
        .map(|p| {
            vec![
                p.uid.to_string(),
                p.pid.to_string(),
                p.ppid.to_string(),
                p.command,
            ]
        })
        .collect();
    ok_json(&serde_json::json!({
        "Titles": ["UID", "PID", "PPID", "CMD"],
        "Processes": rows,
    }))
}

/// One sample of the agent's counters and when it was taken.
async fn sample(c: &Container) -> Option<hull_protocol::ContainerStats> {
    let request = ControlRequest::Agent {
        request: AgentRequest::Stats {
            container_id: c.config.id.clone(),
        },
    };
    match lifecycle::ask(c, &request).await {
        Ok(ControlReply::Agent {
            answer: AgentReply::Stats(s),
        }) => Some(s),
        _ => None,
    }
}

/// Docker's stats object; `pre` is the previous sample (CPU use is the
/// difference between two).
fn docker_stats(
    c: &Container,
    now: &hull_protocol::ContainerStats,
    pre: Option<&hull_protocol::ContainerStats>,
    system_usec: (u64, u64),
) -> serde_json::Value {
    let cpus = c.config.vcpus.max(1);
    let cpu = |s: Option<&hull_protocol::ContainerStats>, system: u64| {
        serde_json::json!({
            "cpu_usage": {
                "total_usage": s.map_or(0, |s| s.cpu_usage_usec * 1000),
                "usage_in_kernelmode": s.map_or(0, |s| s.cpu_system_usec * 1000),
                "usage_in_usermode": s.map_or(0, |s| s.cpu_user_usec * 1000),
            },
            "system_cpu_usage": system * 1000,
            "online_cpus": cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        })
    };
    let time = hull_container::record::format_time(hull_container::record::now_nanos());
    serde_json::json!({
        "read": time,
        "preread": "0001-01-01T00:00:00Z",
        "id": c.config.id,
        "name": format!("/{}", c.config.name),
        "pids_stats": {"current": now.pids},
        "cpu_stats": cpu(Some(now), system_usec.1),
        "precpu_stats": cpu(pre, system_usec.0),
        "memory_stats": {"usage": now.memory_bytes, "limit": now.memory_limit_bytes, "stats": {}},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": now.io_read_bytes},
            {"major": 0, "minor": 0, "op": "write", "value": now.io_write_bytes},
        ]},
        "networks": {},
    })
}

/// Wall-clock microseconds times the VM's CPUs: Docker's "system" usage,
/// against which the container's share is computed.
fn system_usec(c: &Container, start: std::time::Instant) -> u64 {
    start.elapsed().as_micros() as u64 * u64::from(c.config.vcpus.max(1))
}

pub async fn stats(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let c = app.container(id)?;
    let stream = query.get("stream").is_none_or(|_| query.flag("stream"));
    let (tx, response) = streaming("application/json");
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        let mut previous: Option<(hull_protocol::ContainerStats, u64)> = None;
        loop {
            let Some(now) = sample(&c).await else {
                if previous.is_none() {
                    // Not running: Docker answers an empty sample.
                    let line = serde_json::json!({"id": c.config.id, "name": format!("/{}", c.config.name)});
                    let _ = tx.send(Bytes::from(format!("{line}\n"))).await;
                }
                return;
            };
            let system = system_usec(&c, start);
            if previous.is_none() && !stream {
                // One-shot needs two samples for a CPU figure.
                previous = Some((now, system));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let (pre, pre_system) = match &previous {
                Some((p, s)) => (Some(p), *s),
                None => (None, 0),
            };
            let value = docker_stats(&c, &now, pre, (pre_system, system));
            if tx.send(Bytes::from(format!("{value}\n"))).await.is_err() || !stream {
                return;
            }
            previous = Some((now, system));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(response)
}

pub async fn resize(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let c = app.container(id)?;
    let (rows, cols) = size(query)?;
    if !c.state().is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.config.id
        )));
    }
    lifecycle::ask(&c, &ControlRequest::Resize { rows, cols }).await?;
    Ok(empty(StatusCode::OK))
}

/// `h` and `w` of a resize.
pub fn size(query: &Query) -> ApiResult<(u16, u16)> {
    let rows: u16 = query.number("h")?.unwrap_or(0);
    let cols: u16 = query.number("w")?.unwrap_or(0);
    if rows == 0 || cols == 0 {
        return Err(ApiError::bad_request("resize needs h and w above 0"));
    }
    Ok((rows, cols))
}
