//! `/images/...`: list, inspect, pull (`create`, progress as JSON lines)
//! and remove, on hull's image store. Tag, push, load, save, history and
//! prune are not here yet (501).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hull_image::registry::{self, PullOptions};
use hull_image::{progress::PullProgress, Limits};

use crate::error::{ApiError, ApiResult};
use crate::http::{ok_json, streaming, Query};
use crate::state::App;

/// The image config's creation time, as Unix seconds.
fn created_secs(config: &serde_json::Value) -> u64 {
    config
        .get("created")
        .and_then(|c| c.as_str())
        .and_then(hull_container::logs::parse_rfc3339)
        .and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn repo_tags(name: &str) -> Vec<String> {
    if name.is_empty() {
        vec!["<none>:<none>".into()]
    } else {
        vec![name.to_string()]
    }
}

pub fn list(app: &Arc<App>, query: &Query) -> ApiResult {
    let filters = crate::http::filters(query)?;
    if !filters.is_empty() {
        return Err(ApiError::not_implemented("image list filters"));
    }
    let store = app.store()?;
    let mut rows = Vec::new();
    for image in store.list()? {
        let created = store
            .inspect(&image.id)
            .map(|i| created_secs(&i.config))
            .unwrap_or(0);
        rows.push(serde_json::json!({
            "Id": image.id,
            "ParentId": "",
            "RepoTags": repo_tags(&image.name),
            "RepoDigests": [],
            "Created": created,
            "Size": image.size,
            "VirtualSize": image.size,
            "SharedSize": -1,
            "Labels": image.config.labels,
            "Containers": -1,
        }));
    }
    ok_json(&rows)
}

pub fn inspect(app: &Arc<App>, name: &str) -> ApiResult {
    let store = app.store()?;
    let i = store.inspect(name).map_err(not_found(name))?;
    let config = &i.config;
    let diff_ids: Vec<&str> = i.layers.iter().map(|l| l.diff_id.as_str()).collect();
    ok_json(&serde_json::json!({
        "Id": i.id,
        "RepoTags": i.repo_tags,
        "RepoDigests": [],
        "Parent": "",
        "Comment": "",
        "Created": config.get("created").cloned().unwrap_or(serde_json::Value::Null),
        "Container": "",
        "DockerVersion": "",
        "Author": config.get("author").cloned().unwrap_or_default(),
        "Config": config.get("config").cloned().unwrap_or_else(|| serde_json::json!({})),
        "Architecture": config.get("architecture").cloned().unwrap_or_default(),
        "Os": config.get("os").cloned().unwrap_or_default(),
        "Size": i.size,
        "VirtualSize": i.size,
        "GraphDriver": {"Name": "hull-erofs-overlay", "Data": null},
        "RootFS": {"Type": "layers", "Layers": diff_ids},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }))
}

/// Docker's words for a missing image.
fn not_found(name: &str) -> impl FnOnce(hull_image::Error) -> ApiError + '_ {
    move |e| match e {
        hull_image::Error::NotFound(_) => ApiError::not_found(format!("No such image: {name}")),
        other => other.into(),
    }
}

pub fn remove(app: &Arc<App>, name: &str, query: &Query) -> ApiResult {
    let store = app.store()?;
    let image = store.resolve(name).map_err(not_found(name))?;
    let in_use: BTreeMap<String, String> = app
        .containers()
        .list()
        .into_iter()
        .map(|c| (c.config.image_id, c.config.name))
        .collect();
    store
        .remove_unless_used(name, &in_use, query.flag("force"))
        .map_err(|e| match e {
            hull_image::Error::InUse { .. } => {
                ApiError::conflict(hull_container::supervisor::one_line(&e))
            }
            other => not_found(name)(other),
        })?;
    let mut answer = vec![serde_json::json!({"Untagged": name})];
    if store.resolve(&image.id).is_err() {
        answer.push(serde_json::json!({"Deleted": image.id}));
    }
    ok_json(&answer)
}

/// `POST /images/create?fromImage=&tag=`: a pull, its progress as JSON
/// lines; a failure after the headers is an `error` line, as Docker's.
/// `fromSrc` (import) is not implemented.
pub fn create(app: &Arc<App>, query: &Query) -> ApiResult {
    if query.get("fromSrc").is_some() {
        return Err(ApiError::not_implemented("image import (fromSrc)"));
    }
    let from = query
        .get("fromImage")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
    let reference = match query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    };
    let parsed = hull_image::Reference::parse(&reference).map_err(ApiError::from)?;
    let plain_http = registry_of(&parsed.repo).is_some_and(is_loopback);
    let store = app
        .store()?
        .with_limits(Limits::from_env().map_err(ApiError::from)?);
    let (tx, response) = streaming("application/json");
    // The library's pull is not `Send` as the compiler sees it: it runs
    // on a thread of its own with a runtime of its own.
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let message = format!("pull: {e}");
                let _ = tx.blocking_send(line(
                    serde_json::json!({"errorDetail": {"message": message}, "error": message}),
                ));
                return;
            }
        };
        runtime.block_on(pull_reporting(
            store,
            reference,
            parsed.repo,
            plain_http,
            tx,
        ));
    });
    Ok(response)
}

/// Pulls `reference`, telling `tx` how it goes.
async fn pull_reporting(
    store: hull_image::ImageStore,
    reference: String,
    repo: String,
    plain_http: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    {
        let tag = reference
            .rsplit([':', '@'])
            .next()
            .unwrap_or("latest")
            .to_string();
        let _ = tx
            .send(line(serde_json::json!({
                "status": format!("Pulling from {repo}"),
                "id": tag,
            })))
            .await;
        let options = PullOptions {
            plain_http,
            progress: PullProgress::hidden(),
        };
        let out = match registry::pull(&store, &reference, options).await {
            Ok(pulled) => {
                let status = if pulled.up_to_date {
                    format!("Status: Image is up to date for {reference}")
                } else {
                    format!("Status: Downloaded newer image for {reference}")
                };
                vec![
                    serde_json::json!({"status": format!("Digest: {}", pulled.manifest_digest)}),
                    serde_json::json!({"status": status}),
                ]
            }
            Err(e) => {
                let message = hull_container::supervisor::one_line(&e);
                vec![serde_json::json!({"errorDetail": {"message": message}, "error": message})]
            }
        };
        for v in out {
            let _ = tx.send(line(v)).await;
        }
    }
}

fn line(v: serde_json::Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

/// The registry part of a repository (`localhost:5000/app`), if any.
fn registry_of(repo: &str) -> Option<&str> {
    let (first, _) = repo.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost").then_some(first)
}

/// Docker talks plain HTTP to registries on loopback (its default
/// insecure range is 127.0.0.0/8), TLS to all others.
fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map_or(registry, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                registry
            }
        })
        .trim_start_matches('[')
        .trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry-1.docker.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
