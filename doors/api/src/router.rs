//! Routes a request to its resource's module: the API version prefix
//! (`/v1.41/...`) is optional, and anything not routed answers 501
//! naming the method and path, never a wrong success.

use std::sync::Arc;

use hyper::Method;

use crate::error::{ApiError, ApiResult};
use crate::http::{Query, Request, Response};
use crate::state::App;
use crate::system::API_VERSION;
use crate::{containers, exec, images, networks, system, volumes};

pub async fn route(app: Arc<App>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let answer = match strip_version(&path) {
        Ok(rest) => dispatch(app, req, &method, rest).await,
        Err(e) => Err(e),
    };
    let mut response = answer.unwrap_or_else(|e| {
        if e.status.is_server_error() {
            tracing::warn!(%method, %path, status = %e.status, "{}", e.message);
        }
        e.into_response()
    });
    let headers = response.headers_mut();
    headers.insert("Api-Version", API_VERSION.parse().expect("a valid header"));
    headers.insert("Server", "hull-api".parse().expect("a valid header"));
    headers.insert("Ostype", "linux".parse().expect("a valid header"));
    headers.insert(
        "Docker-Experimental",
        "false".parse().expect("a valid header"),
    );
    response
}

/// The path without its `/vX.Y` prefix; a version newer than ours is an
/// error, as Docker's.
fn strip_version(path: &str) -> ApiResult<&str> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(path);
    };
    let (version, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    };
    let Some(asked) = parse(version) else {
        return Ok(path);
    };
    let ours = parse(API_VERSION).expect("our version parses");
    if asked > ours {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    Ok(if tail.is_empty() { "/" } else { tail })
}

async fn dispatch(app: Arc<App>, req: Request, method: &Method, path: &str) -> ApiResult {
    let query = Query::parse(req.uri().query());
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = method.as_str();
    match (m, parts.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => Ok(system::ping(m == "HEAD")),
        ("GET", ["version"]) => system::version(),
        ("GET", ["info"]) => system::info(&app).await,

        ("GET", ["containers", "json"]) => containers::list::list(&app, &query),
        ("POST", ["containers", "create"]) => containers::create::create(&app, &query, req).await,
        ("GET", ["containers", id, "json"]) => containers::inspect::inspect(&app, id),
        ("POST", ["containers", id, "start"]) => containers::lifecycle::start(&app, id).await,
        ("POST", ["containers", id, "stop"]) => containers::lifecycle::stop(&app, id, &query).await,
        ("POST", ["containers", id, "restart"]) => {
            containers::lifecycle::restart(&app, id, &query).await
        }
        ("POST", ["containers", id, "kill"]) => containers::lifecycle::kill(&app, id, &query).await,
        ("POST", ["containers", id, "pause"]) => containers::lifecycle::pause(&app, id, true).await,
        ("POST", ["containers", id, "unpause"]) => {
            containers::lifecycle::pause(&app, id, false).await
        }
        ("POST", ["containers", id, "wait"]) => containers::wait::wait(&app, id, &query),
        ("DELETE", ["containers", id]) => containers::lifecycle::remove(&app, id, &query).await,
        ("POST", ["containers", id, "attach"]) => {
            containers::attach::attach(&app, id, &query, req).await
        }
        ("GET", ["containers", id, "logs"]) => containers::logs::logs(&app, id, &query),
        ("GET", ["containers", id, "top"]) => containers::usage::top(&app, id).await,
        ("GET", ["containers", id, "stats"]) => containers::usage::stats(&app, id, &query).await,
        ("POST", ["containers", id, "resize"]) => containers::usage::resize(&app, id, &query).await,
        ("POST", ["containers", id, "exec"]) => exec::create(&app, id, req).await,
        ("POST", ["exec", id, "start"]) => exec::start(&app, id, req).await,
        ("POST", ["exec", id, "resize"]) => exec::resize(&app, id, &query).await,
        ("GET", ["exec", id, "json"]) => exec::inspect(&app, id),

        ("GET", ["images", "json"]) => images::list(&app, &query),
        ("POST", ["images", "create"]) => images::create(&app, &query),
        ("GET", ["images", rest @ .., "json"]) if !rest.is_empty() => {
            images::inspect(&app, &rest.join("/"))
        }
        ("DELETE", ["images", rest @ ..]) if !rest.is_empty() => {
            images::remove(&app, &rest.join("/"), &query)
        }

        ("GET", ["networks"]) => networks::list(&app, &query),
        ("POST", ["networks", "create"]) => networks::create(&app, req).await,
        ("GET", ["networks", id]) => networks::inspect(&app, id),
        ("DELETE", ["networks", id]) => networks::remove(&app, id),

        ("GET", ["volumes"]) => volumes::list(&app),
        ("POST", ["volumes", "create"]) => volumes::create(&app, req).await,
        ("GET", ["volumes", name]) => volumes::inspect(&app, name),
        ("DELETE", ["volumes", name]) => volumes::remove(&app, name, &query),

        // hull has no plugins; `docker inspect NAME` asks here last.
        ("GET", ["plugins", name, "json"]) => {
            Err(ApiError::not_found(format!("plugin {name:?} not found")))
        }

        _ => Err(ApiError::not_implemented(&format!("{m} {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_prefix_is_optional_and_bounded() {
        assert_eq!(
            strip_version("/v1.41/containers/json").unwrap(),
            "/containers/json"
        );
        assert_eq!(strip_version("/v1.24/_ping").unwrap(), "/_ping");
        assert_eq!(
            strip_version("/containers/json").unwrap(),
            "/containers/json"
        );
        assert_eq!(strip_version("/volumes").unwrap(), "/volumes");
        let e = strip_version("/v1.99/info").unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("too new"), "{}", e.message);
    }
}
