//! `/volumes`: the library's volume store in Docker's shapes. Prune is
//! 501.

use std::collections::BTreeMap;
use std::sync::Arc;

use hull_container::record::format_time;
use hull_container::volume::{users_of, Volume, Volumes};
use hyper::StatusCode;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::http::{empty, json, ok_json, read_json, Query, Request};
use crate::state::App;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

fn describe(v: &Volume) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": format_time(v.created),
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": null,
        "Scope": "local",
    })
}

pub fn list(app: &Arc<App>) -> ApiResult {
    let all = Volumes::new(&app.root).list()?;
    let rows: Vec<_> = all.iter().map(describe).collect();
    ok_json(&serde_json::json!({"Volumes": rows, "Warnings": null}))
}

pub async fn create(app: &Arc<App>, req: Request) -> ApiResult {
    let body: CreateBody = read_json(req).await?;
    if !matches!(body.driver.as_str(), "" | "local") {
        return Err(ApiError::bad_request(format!(
            "volume driver {:?} is not supported by hull (local only)",
            body.driver
        )));
    }
    if body.driver_opts.is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::bad_request(
            "volume DriverOpts are not supported by hull",
        ));
    }
    let name = (!body.name.is_empty()).then_some(body.name.as_str());
    let volume = Volumes::new(&app.root).create(name, body.labels.unwrap_or_default())?;
    Ok(json(StatusCode::CREATED, &describe(&volume)))
}

pub fn inspect(app: &Arc<App>, name: &str) -> ApiResult {
    let v = Volumes::new(&app.root).get(name)?;
    ok_json(&describe(&v))
}

pub fn remove(app: &Arc<App>, name: &str, query: &Query) -> ApiResult {
    let users = users_of(&app.containers())?;
    let using = users.get(name).cloned().unwrap_or_default();
    Volumes::new(&app.root).remove(name, &using, query.flag("force"))?;
    Ok(empty(StatusCode::NO_CONTENT))
}
