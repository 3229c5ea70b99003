//! `state`: runc's JSON view of a container.

use anyhow::Result;
use serde_json::json;

use super::args::RuncArgs;
use super::find;
use hull_container::plan::BundleInfo;
use hull_container::record::{format_time, Container, Status};

/// runc's status words.
pub fn status(container: &Container) -> &'static str {
    let state = container.recorded_state();
    let alive = container.live_supervisor().is_some();
    match state.status() {
        Status::Created if alive || state.supervisor.is_none() => "created",
        Status::Running if alive && state.paused => "paused",
        Status::Running if alive => "running",
        _ => "stopped",
    }
}

pub fn state(args: &RuncArgs, id: &str) -> Result<i32> {
    let container = find(args, id)?;
    let state = oci_state(&container);
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(0)
}

/// The pid callers know the container by: the supervisor's while it lives
/// and the container has not stopped, else 0 (runc's zero for stopped).
pub fn pid(container: &Container) -> u32 {
    match (status(container), container.live_supervisor()) {
        ("stopped", _) | (_, None) => 0,
        (_, Some(p)) => p.pid as u32,
    }
}

/// runc's `containerState` of a container, as `state` and `list --format
/// json` print it (`owner` empty, as runc's `state` leaves it).
pub fn oci_state(container: &Container) -> serde_json::Value {
    let status = status(container);
    let pid = pid(container);
    let info = BundleInfo::read(container);
    let spec = &container.config.spec;
    let mut state = json!({
        "ociVersion": spec.version(),
        "id": container.config.name,
        "pid": pid,
        "status": status,
        "bundle": info.as_ref().map(|i| i.bundle.display().to_string()).unwrap_or_default(),
        "rootfs": info.as_ref().map(|i| i.rootfs.display().to_string()).unwrap_or_default(),
        "created": format_time(container.config.created),
        "owner": "",
    });
    // runc leaves out empty annotations.
    let annotations = hull_container::bundle::user_annotations(spec);
    if !annotations.is_empty() {
        state["annotations"] = json!(annotations);
    }
    state
}
