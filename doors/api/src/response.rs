//! The answers' types and how a plain one is made: below both the
//! request helpers (`http.rs`) and the errors (`error.rs`), which answer
//! with them.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Response = hyper::Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    hyper::Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(full(body))
        .expect("a static response")
}

pub fn empty(status: StatusCode) -> Response {
    hyper::Response::builder()
        .status(status)
        .body(full(Bytes::new()))
        .expect("a static response")
}
