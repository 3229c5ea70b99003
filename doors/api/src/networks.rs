//! `/networks`: hull's networks (a bridge in a namespace of hull's each)
//! in Docker's shapes. A network's id is derived from its name, which is
//! what hull keys networks by. Connect, disconnect and prune are 501.

use std::sync::Arc;

use hull_net::{NetworkDef, DEFAULT_NETWORK};
use hyper::StatusCode;
use serde::Deserialize;
use sha2::Digest;

use crate::error::{ApiError, ApiResult};
use crate::http::{empty, json, ok_json, read_json, Query, Request};
use crate::state::App;

/// A stable 64-hex id for the network named `name`.
pub fn network_id(name: &str) -> String {
    hex::encode(sha2::Sha256::digest(
        format!("hull-network:{name}").as_bytes(),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    internal: bool,
    enable_i_pv6: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: String,
}

/// The network named or id'd `reference`.
fn find(app: &App, reference: &str) -> ApiResult<NetworkDef> {
    let networks = app.networks();
    // The default network exists from the start, as Docker's does.
    let _ = networks.get(DEFAULT_NETWORK);
    if let Ok(def) = networks.get(reference) {
        return Ok(def);
    }
    let mut by_id = networks
        .list()
        .into_iter()
        .filter(|d| reference.len() >= 3 && network_id(&d.name).starts_with(reference));
    match (by_id.next(), by_id.next()) {
        (Some(def), None) => Ok(def),
        _ => Err(ApiError::not_found(format!(
            "network {reference} not found"
        ))),
    }
}

fn describe(app: &App, def: &NetworkDef) -> serde_json::Value {
    let containers = app.containers();
    let mut members = serde_json::Map::new();
    for id in app.networks().members(&def.name) {
        if let Ok(c) = containers.find(&id) {
            members.insert(
                c.config.id.clone(),
                serde_json::json!({
                    "Name": c.config.name,
                    "IPv4Address": c.state().ip_address.map(|ip| format!("{ip}/{}", prefix_len(&def.subnet))).unwrap_or_default(),
                    "MacAddress": "",
                    "IPv6Address": "",
                }),
            );
        }
    }
    serde_json::json!({
        "Name": def.name,
        "Id": network_id(&def.name),
        "Created": hull_container::record::format_time(def.created),
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": [{"Subnet": def.subnet, "Gateway": def.gateway}]},
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "Containers": members,
        "Options": {},
        "Labels": {},
    })
}

fn prefix_len(subnet: &str) -> &str {
    subnet.rsplit_once('/').map_or("32", |(_, len)| len)
}

pub fn list(app: &Arc<App>, query: &Query) -> ApiResult {
    let filters = crate::http::filters(query)?;
    let networks = app.networks();
    let _ = networks.get(DEFAULT_NETWORK);
    let rows: Vec<_> = networks
        .list()
        .iter()
        .filter(|d| {
            filters.iter().all(|(k, v)| match k.as_str() {
                "name" => d.name.contains(v.as_str()),
                "id" => network_id(&d.name).starts_with(v.as_str()),
                "driver" => v == "bridge",
                "type" => v == "custom" || (v == "builtin" && d.name == DEFAULT_NETWORK),
                "scope" => v == "local",
                // Labels: hull's networks have none.
                _ => false,
            })
        })
        .map(|d| describe(app, d))
        .collect();
    ok_json(&rows)
}

pub async fn create(app: &Arc<App>, req: Request) -> ApiResult {
    let body: CreateBody = read_json(req).await?;
    if body.name.is_empty() {
        return Err(ApiError::bad_request("network name is required"));
    }
    if !matches!(body.driver.as_str(), "" | "bridge") {
        return Err(ApiError::bad_request(format!(
            "network driver {:?} is not supported by hull (bridge only)",
            body.driver
        )));
    }
    if body.internal || body.enable_i_pv6 {
        return Err(ApiError::bad_request(
            "internal and IPv6 networks are not supported by hull",
        ));
    }
    let configs = body.ipam.and_then(|i| i.config).unwrap_or_default();
    if configs.len() > 1 {
        return Err(ApiError::bad_request("hull networks have one subnet"));
    }
    let subnet = configs
        .first()
        .map(|c| c.subnet.clone())
        .filter(|s| !s.is_empty());
    let app2 = app.clone();
    let def =
        tokio::task::spawn_blocking(move || app2.networks().create(&body.name, subnet.as_deref()))
            .await
            .map_err(|e| ApiError::internal(format!("network create: {e}")))??;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({"Id": network_id(&def.name), "Warning": ""}),
    ))
}

pub fn inspect(app: &Arc<App>, reference: &str) -> ApiResult {
    let def = find(app, reference)?;
    ok_json(&describe(app, &def))
}

pub fn remove(app: &Arc<App>, reference: &str) -> ApiResult {
    let def = find(app, reference)?;
    if def.name == DEFAULT_NETWORK {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{DEFAULT_NETWORK} is a pre-defined network and cannot be removed"),
        ));
    }
    app.networks().remove(&def.name)?;
    Ok(empty(StatusCode::NO_CONTENT))
}
