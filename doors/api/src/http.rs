//! What every handler shares: the body type, JSON answers, bounded
//! request bodies and the query string.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::StatusCode;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};

pub type Request = hyper::Request<Incoming>;
pub use crate::response::{empty, full, json, Response};

/// Largest JSON request body read.
pub const MAX_JSON_BODY: usize = 1 << 20;
/// How long a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks a streamed answer may have queued before its producer waits.
const STREAM_QUEUE: usize = 16;

pub fn ok_json(value: &impl serde::Serialize) -> ApiResult {
    Ok(json(StatusCode::OK, value))
}

/// A body fed by a channel: the answer streams while its producer runs;
/// the producer sees a closed channel once the client is gone.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed answer with `content_type`, and the sender that feeds it.
pub fn streaming(content_type: &str) -> (mpsc::Sender<Bytes>, Response) {
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let response = hyper::Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", content_type)
        .body(ChannelBody(rx).boxed())
        .expect("a static response");
    (tx, response)
}

/// The request body as JSON of type `T`: at most [`MAX_JSON_BODY`] bytes,
/// within [`BODY_TIMEOUT`]; an empty body is `T::default()`.
pub async fn read_json<T: DeserializeOwned + Default>(req: Request) -> ApiResult<T> {
    let limited = Limited::new(req.into_body(), MAX_JSON_BODY);
    let collected = tokio::time::timeout(BODY_TIMEOUT, limited.collect())
        .await
        .map_err(|_| ApiError::new(StatusCode::REQUEST_TIMEOUT, "request body too slow"))?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {MAX_JSON_BODY} bytes"),
                )
            } else {
                ApiError::bad_request(format!("read the request body: {e}"))
            }
        })?;
    let bytes = collected.to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// The query string's parameters (the last of a repeated one wins).
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Docker's booleans: `1`, `true`, `True` (anything else but `0`,
    /// `false` and empty is true, as Go's `BoolValue`).
    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "false" | "no"
            ),
        }
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid {key} {v:?}")))
            })
            .transpose()
    }
}

/// Docker's `filters` parameter, in both its shapes:
/// `{"label": {"a=b": true}}` and the older `{"label": ["a=b"]}`.
pub fn filters(query: &Query) -> ApiResult<Vec<(String, String)>> {
    let Some(raw) = query.get("filters").filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filters: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(ApiError::bad_request("invalid filters: not an object"));
    };
    let mut out = Vec::new();
    for (key, values) in map {
        match values {
            serde_json::Value::Object(set) => {
                for (v, on) in set {
                    if on.as_bool().unwrap_or(true) {
                        out.push((key.clone(), v));
                    }
                }
            }
            serde_json::Value::Array(list) => {
                for v in list {
                    if let Some(s) = v.as_str() {
                        out.push((key.clone(), s.to_string()));
                    }
                }
            }
            _ => return Err(ApiError::bad_request(format!("invalid filter {key:?}"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_of_filters_are_read() {
        let q = Query::parse(Some(
            "filters=%7B%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%2C%22name%22%3A%5B%22web%22%5D%7D",
        ));
        let mut f = filters(&q).unwrap();
        f.sort();
        assert_eq!(
            f,
            vec![
                ("label".to_string(), "a=b".to_string()),
                ("name".to_string(), "web".to_string())
            ]
        );
        assert!(filters(&Query::parse(Some("filters=nope"))).is_err());
    }

    #[test]
    fn flags_read_as_docker_reads_them() {
        let q = Query::parse(Some("a=1&b=True&c=0&d=false&e="));
        assert!(q.flag("a") && q.flag("b"));
        assert!(!q.flag("c") && !q.flag("d") && !q.flag("e") && !q.flag("zz"));
    }
}
