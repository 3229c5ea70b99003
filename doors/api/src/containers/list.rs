//! `GET /containers/json`: the containers, running ones only unless
//! `all`, with Docker's filters (`label`, `name`, `status`, `ancestor`,
//! `id`); compose finds its containers by label.

use std::sync::Arc;

use hull_container::{Container, ContainerState, Status};

use super::{command_line, unix_secs};
use crate::error::{ApiError, ApiResult};
use crate::http::{filters, ok_json, Query};
use crate::state::App;

const FILTERS: [&str; 5] = ["label", "name", "status", "ancestor", "id"];

pub fn list(app: &Arc<App>, query: &Query) -> ApiResult {
    let filters = filters(query)?;
    if let Some((key, _)) = filters.iter().find(|(k, _)| !FILTERS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "invalid filter '{key}' (hull filters by {})",
            FILTERS.join(", ")
        )));
    }
    let all = query.flag("all") || filters.iter().any(|(k, _)| k == "status");
    let limit: Option<usize> = query
        .number("limit")?
        .filter(|n: &i64| *n > 0)
        .map(|n| n as usize);
    let mut rows = Vec::new();
    for c in app.containers().list().into_iter().rev() {
        let state = c.settle();
        if !all && state.status() != Status::Running {
            continue;
        }
        if !matches(&c, &state, &filters) {
            continue;
        }
        rows.push(summary(&c, &state));
        if limit.is_some_and(|n| rows.len() >= n) {
            break;
        }
    }
    ok_json(&rows)
}

/// Whether `c` passes every kind of filter given (values of one kind
/// are alternatives, as Docker's).
pub fn matches(c: &Container, state: &ContainerState, filters: &[(String, String)]) -> bool {
    FILTERS.iter().all(|kind| {
        let mut values = filters.iter().filter(|(k, _)| k == kind).map(|(_, v)| v);
        let mut any = false;
        let mut hit = false;
        for v in values.by_ref() {
            any = true;
            hit |= one(c, state, kind, v);
        }
        // Labels must all hold; other kinds are alternatives.
        if *kind == "label" {
            return filters
                .iter()
                .filter(|(k, _)| k == "label")
                .all(|(_, v)| one(c, state, kind, v));
        }
        !any || hit
    })
}

fn one(c: &Container, state: &ContainerState, kind: &str, value: &str) -> bool {
    let cfg = &c.config;
    match kind {
        "label" => match value.split_once('=') {
            Some((k, v)) => cfg.labels.get(k).is_some_and(|have| have == v),
            None => cfg.labels.contains_key(value),
        },
        "name" => cfg.name.contains(value.trim_start_matches('/')),
        "status" => state.status_name() == value,
        "id" => cfg.id.starts_with(value),
        "ancestor" => {
            let hex = cfg.image_id.trim_start_matches("sha256:");
            let value_hex = value.trim_start_matches("sha256:");
            cfg.image == value
                || cfg.image.strip_suffix(":latest") == Some(value)
                || (value_hex.len() >= 4 && hex.starts_with(value_hex))
        }
        _ => false,
    }
}

/// One row of the list, in Docker's shape.
pub fn summary(c: &Container, state: &ContainerState) -> serde_json::Value {
    let cfg = &c.config;
    let now = hull_container::record::now_nanos();
    let network = cfg.network.clone().unwrap_or_else(|| "none".into());
    serde_json::json!({
        "Id": cfg.id,
        "Names": [format!("/{}", cfg.name)],
        "Image": cfg.image,
        "ImageID": cfg.image_id,
        "Command": command_line(c),
        "Created": unix_secs(cfg.created),
        "Ports": super::inspect::port_list(c),
        "Labels": cfg.labels,
        "State": state.status_name(),
        "Status": status_line(state, now),
        "HostConfig": {"NetworkMode": network},
        "NetworkSettings": {"Networks": super::inspect::networks(c, state)},
        "Mounts": [],
    })
}

/// "Up 3 minutes", "Exited (0) 2 seconds ago", "Created".
fn status_line(state: &ContainerState, now: u64) -> String {
    let ago = |t: Option<u64>| human(now.saturating_sub(t.unwrap_or(now)));
    match state.status() {
        Status::Created => "Created".into(),
        Status::Running if state.paused => format!("Up {} (Paused)", ago(state.started_at)),
        Status::Running => format!("Up {}", ago(state.started_at)),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            state.exit_code.unwrap_or(0),
            ago(state.finished_at)
        ),
    }
}

fn human(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", secs / 60),
        3600..=7199 => "About an hour".into(),
        _ => format!("{} hours", secs / 3600),
    }
}
