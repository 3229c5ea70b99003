//! The write side of the distribution API, one blob or manifest at a
//! time: `HEAD` a blob and skip it when the registry has it; else a
//! cross-repository mount when another repository there holds it; else an
//! upload, monolithic (`POST`, then one `PUT ?digest=` with the bytes) up
//! to the chunk size, chunked above it (`PATCH` with `Content-Range` per
//! chunk, then an empty `PUT ?digest=`), following each `Location` the
//! registry answers with (relative or absolute). The manifest goes last,
//! so a failure leaves no manifest behind.
//!
//! Every request has a deadline: the session's (60 s) plus the time its
//! body takes at [`MIN_RATE`], so a registry that stops reading cannot
//! hold a push. Our credentials go only to the registry's own host: a
//! `Location` elsewhere (a storage redirect) is sent none.
//!
//! Model: the OCI distribution spec's "push" section and containerd's
//! `remotes/docker/pusher.go` (HEAD, mount, POST/PUT, Location handling).

use std::os::unix::fs::FileExt;
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::local::LocalBlob;
use super::BlobOutcome;
use crate::registry::remote::one_line;
use crate::registry::session::{read_bounded_prefix, Session, MAX_ERROR_SIZE};
use crate::registry::Error;

/// The slowest upload rate a request's deadline allows for its body.
pub(super) const MIN_RATE: u64 = 128 << 10;

/// One repository of one registry, pushed to.
pub(super) struct Target<'a> {
    pub(super) session: &'a Session,
    /// The repository path in the registry, e.g. `hull/busybox`.
    pub(super) repository: String,
    /// Blobs up to this size go in one request; larger ones in chunks of
    /// it.
    pub(super) chunk_size: u64,
}

/// How an upload starts.
enum Start {
    Mounted,
    Upload(Url),
}

impl Target<'_> {
    /// Makes sure the registry has `blob` in this repository.
    pub(super) async fn blob(
        &self,
        blob: &LocalBlob,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome, Error> {
        self.session.refresh().await?;
        if self.exists(&blob.digest).await? {
            return Ok(BlobOutcome::Exists);
        }
        let location = match self.start(&blob.digest, mount_from).await? {
            Start::Mounted => {
                return Ok(BlobOutcome::Mounted {
                    from: mount_from.unwrap_or_default().to_string(),
                })
            }
            Start::Upload(url) => url,
        };
        if blob.size <= self.chunk_size {
            self.monolithic(location, blob).await?;
        } else {
            self.chunked(location, blob).await?;
        }
        Ok(BlobOutcome::Pushed)
    }

    /// `HEAD /v2/<name>/blobs/<digest>`.
    async fn exists(&self, digest: &str) -> Result<bool, Error> {
        let what = || format!("the check for blob {digest} in {}", self.display());
        let url = self.url(&format!("blobs/{digest}"))?;
        let reply = self.send(Method::HEAD, url, 0, &what(), |r| r).await?;
        match reply.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.failure(what(), reply).await),
        }
    }

    /// `POST /v2/<name>/blobs/uploads/`, asking to mount the blob from
    /// `mount_from` if given: `201` mounted it, `202` opened an upload
    /// (a registry that cannot mount opens one instead).
    async fn start(&self, digest: &str, mount_from: Option<&str>) -> Result<Start, Error> {
        let what = || format!("an upload of blob {digest} to {}", self.display());
        let mut url = self.url("blobs/uploads/")?;
        if let Some(from) = mount_from {
            url.query_pairs_mut()
                .append_pair("mount", digest)
                .append_pair("from", from);
        }
        let reply = self
            .send(Method::POST, url.clone(), 0, &what(), |r| {
                r.body(Vec::new())
            })
            .await?;
        match reply.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(Start::Mounted),
            StatusCode::ACCEPTED => Ok(Start::Upload(self.location(&url, reply.headers())?)),
            _ => Err(self.failure(what(), reply).await),
        }
    }

    /// The whole blob in the `PUT` that closes the upload.
    async fn monolithic(&self, location: Url, blob: &LocalBlob) -> Result<(), Error> {
        let what = format!("the upload of blob {} to {}", blob.digest, self.display());
        let bytes = read_at(blob, 0, blob.size)?;
        let url = with_digest(location, &blob.digest);
        let reply = self
            .send(Method::PUT, url, blob.size, &what, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .body(bytes)
            })
            .await?;
        match reply.status() {
            StatusCode::CREATED => Ok(()),
            _ => Err(self.failure(what, reply).await),
        }
    }

    /// One `PATCH` per chunk, each to the `Location` the last answer
    /// gave, then the `PUT` that closes the upload.
    async fn chunked(&self, mut location: Url, blob: &LocalBlob) -> Result<(), Error> {
        let what = format!("the upload of blob {} to {}", blob.digest, self.display());
        let mut offset = 0;
        while offset < blob.size {
            // A long upload may outlive its token.
            self.session.refresh().await?;
            let len = self.chunk_size.min(blob.size - offset);
            let bytes = read_at(blob, offset, len)?;
            let range = content_range(offset, len);
            let reply = self
                .send(Method::PATCH, location.clone(), len, &what, |r| {
                    r.header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", range)
                        .body(bytes)
                })
                .await?;
            if reply.status() != StatusCode::ACCEPTED {
                return Err(self.failure(what, reply).await);
            }
            location = self.location(&location, reply.headers())?;
            tracing::debug!(digest = %blob.digest, offset, len, "pushed a chunk");
            offset += len;
        }
        let reply = self
            .send(
                Method::PUT,
                with_digest(location, &blob.digest),
                0,
                &what,
                |r| r.body(Vec::new()),
            )
            .await?;
        match reply.status() {
            StatusCode::CREATED => Ok(()),
            _ => Err(self.failure(what, reply).await),
        }
    }

    /// `PUT /v2/<name>/manifests/<tag>` with the manifest's exact bytes;
    /// the digest the registry reports (ours if it reports none).
    pub(super) async fn manifest(
        &self,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &str,
    ) -> Result<String, Error> {
        let what = format!("the manifest {}:{tag}", self.display());
        let url = self.url(&format!("manifests/{tag}"))?;
        let body = bytes.to_vec();
        let reply = self
            .send(Method::PUT, url, bytes.len() as u64, &what, |r| {
                r.header(CONTENT_TYPE, media_type).body(body)
            })
            .await?;
        if reply.status() != StatusCode::CREATED {
            return Err(self.failure(what, reply).await);
        }
        Ok(reply
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(digest)
            .to_string())
    }

    /// Sends one request within its deadline, with our credentials if it
    /// goes to the registry itself.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body_len: u64,
        what: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let s = self.session;
        let mut req = s.http.request(method, url.clone());
        if self.is_registry(&url) {
            if let Some(value) = s.authorization().await {
                req = req.header(AUTHORIZATION, value);
            }
        }
        let req = build(req);
        let deadline = s.deadline + Duration::from_secs(body_len / MIN_RATE);
        match tokio::time::timeout(deadline, req.send()).await {
            Ok(reply) => reply.map_err(|source| s.unreachable(source)),
            Err(_) => Err(Error::UploadDeadline {
                what: what.to_string(),
                registry: s.remote.registry.clone(),
                secs: deadline.as_secs(),
            }),
        }
    }

    /// What a refusal means, in one line: `401`/`403` name what was
    /// refused; anything else carries the registry's error code.
    async fn failure(&self, what: String, reply: Response) -> Error {
        let registry = self.session.remote.registry.clone();
        let status = reply.status().as_u16();
        if matches!(status, 401 | 403) {
            return Error::PushDenied { what, registry };
        }
        let body = tokio::time::timeout(
            self.session.deadline,
            read_bounded_prefix(reply, MAX_ERROR_SIZE),
        )
        .await
        .unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = &v["errors"][0];
                let code = e["code"].as_str()?;
                Some(format!("{code}: {}", e["message"].as_str().unwrap_or("")))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Error::Registry {
            registry,
            message: one_line(&format!("HTTP {status} for {what}: {detail}")),
        }
    }

    /// Where the upload goes next: the reply's `Location`, resolved
    /// against the URL the request went to.
    fn location(&self, base: &Url, headers: &HeaderMap) -> Result<Url, Error> {
        resolve_location(base, headers).ok_or_else(|| Error::Registry {
            registry: self.session.remote.registry.clone(),
            message: format!(
                "the registry answered an upload to {} without a usable Location",
                self.display()
            ),
        })
    }

    fn url(&self, rest: &str) -> Result<Url, Error> {
        let s = self.session;
        let raw = format!("{}://{}/v2/{}/{rest}", s.scheme, s.host(), self.repository);
        Url::parse(&raw).map_err(|e| Error::Registry {
            registry: s.remote.registry.clone(),
            message: one_line(&format!("{raw} is not a URL: {e}")),
        })
    }

    fn is_registry(&self, url: &Url) -> bool {
        let s = self.session;
        let origin = format!("{}://{}/", s.scheme, s.host());
        Url::parse(&origin).is_ok_and(|o| o.origin() == url.origin())
    }

    /// `registry/repository`, for messages.
    pub(super) fn display(&self) -> String {
        format!("{}/{}", self.session.remote.registry, self.repository)
    }
}

/// The `Location` header resolved against `base` (it may be absolute or
/// relative to the registry).
fn resolve_location(base: &Url, headers: &HeaderMap) -> Option<Url> {
    let value = headers.get(LOCATION)?.to_str().ok()?;
    base.join(value.trim()).ok()
}

/// `url` with `digest=<digest>` added to its query (which may already
/// hold the registry's upload state).
fn with_digest(mut url: Url, digest: &str) -> Url {
    url.query_pairs_mut().append_pair("digest", digest);
    url
}

/// `Content-Range` of `len` bytes from `offset`: inclusive ends, no unit
/// (the distribution spec's form).
fn content_range(offset: u64, len: u64) -> String {
    format!("{offset}-{}", offset + len - 1)
}

/// `len` bytes of `blob` from `offset`.
fn read_at(blob: &LocalBlob, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    blob.file
        .read_exact_at(&mut buf, offset)
        .map_err(|source| crate::Error::ReadLayer {
            digest: blob.digest.clone(),
            source,
        })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use crate::registry::session::Session;

    /// One request as the fake registry saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        range: Option<String>,
        authorization: Option<String>,
        body: Vec<u8>,
    }

    /// A fake registry on 127.0.0.1: `answer` gives status and headers
    /// for each request (keep-alive HTTP/1.1, bodies by Content-Length).
    fn fake(
        answer: impl Fn(&Seen, &str) -> (u16, Vec<(&'static str, String)>) + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, me, answer) = (seen.clone(), addr.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (log, me, answer) = (log.clone(), me.clone(), answer.clone());
                std::thread::spawn(move || {
                    let mut w = stream.try_clone().unwrap();
                    let mut r = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or("").to_string();
                        let target = parts.next().unwrap_or("").to_string();
                        let (mut len, mut range, mut authorization) = (0usize, None, None);
                        loop {
                            let mut h = String::new();
                            r.read_line(&mut h).unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (k, v) = h.split_once(':').unwrap();
                            let v = v.trim().to_string();
                            match k.to_ascii_lowercase().as_str() {
                                "content-length" => len = v.parse().unwrap(),
                                "content-range" => range = Some(v),
                                "authorization" => authorization = Some(v),
                                _ => {}
                            }
                        }
                        let mut body = vec![0u8; len];
                        r.read_exact(&mut body).unwrap();
                        let req = Seen {
                            method,
                            target,
                            range,
                            authorization,
                            body,
                        };
                        let (status, headers) = answer(&req, &me);
                        log.lock().unwrap().push(req);
                        let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n");
                        for (k, v) in headers {
                            out.push_str(&format!("{k}: {v}\r\n"));
                        }
                        out.push_str("\r\n");
                        if w.write_all(out.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn blob(bytes: &[u8]) -> (tempfile::NamedTempFile, LocalBlob) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let file = std::fs::File::open(f.path()).unwrap();
        let digest = format!("sha256:{}", crate::digest::sha256_hex(bytes));
        let size = bytes.len() as u64;
        (f, LocalBlob { digest, size, file })
    }

    fn target(session: &Session, chunk_size: u64) -> Target<'_> {
        Target {
            session,
            repository: "t/img".into(),
            chunk_size,
        }
    }

    #[tokio::test]
    async fn chunks_follow_relative_and_absolute_locations() {
        let (addr, seen) = fake(|req, me| {
            let loc = |v: String| vec![("Location", v)];
            match (req.method.as_str(), req.target.as_str()) {
                ("HEAD", _) => (404, vec![]),
                // The mount is refused: an ordinary upload opens instead.
                ("POST", t) if t.contains("mount=") => {
                    (202, loc("/v2/t/img/blobs/uploads/u1".into()))
                }
                ("PATCH", "/v2/t/img/blobs/uploads/u1") => {
                    (202, loc(format!("http://{me}/v2/t/img/blobs/uploads/u2")))
                }
                ("PATCH", "/v2/t/img/blobs/uploads/u2") => {
                    (202, loc("/v2/t/img/blobs/uploads/u3?_state=abc".into()))
                }
                ("PATCH", t) if t.starts_with("/v2/t/img/blobs/uploads/u3") => {
                    (202, loc("u4".into()))
                }
                ("PUT", t) if t.starts_with("/v2/t/img/blobs/uploads/u4?digest=") => (201, vec![]),
                _ => (400, vec![]),
            }
        });
        let session = Session::for_tests(&addr, "t/img", Some(("u", "p")));
        let (_f, b) = blob(b"0123456789");
        let out = target(&session, 4).blob(&b, Some("src/img")).await.unwrap();
        assert_eq!(out, BlobOutcome::Pushed);
        let seen = seen.lock().unwrap().clone();
        let calls: Vec<(&str, Option<&str>)> = seen
            .iter()
            .map(|s| (s.method.as_str(), s.range.as_deref()))
            .collect();
        assert_eq!(
            calls,
            [
                ("HEAD", None),
                ("POST", None),
                ("PATCH", Some("0-3")),
                ("PATCH", Some("4-7")),
                ("PATCH", Some("8-9")),
                ("PUT", None)
            ]
        );
        let sent: Vec<u8> = seen.iter().flat_map(|s| s.body.clone()).collect();
        assert_eq!(sent, b"0123456789");
        assert!(seen[1].target.contains("from=src%2Fimg"), "{:?}", seen[1]);
        assert!(seen[4].target.contains("_state=abc"), "{:?}", seen[4]);
        let digest = b.digest.replace(':', "%3A");
        assert!(
            seen[5].target.ends_with(&format!("digest={digest}")),
            "{:?}",
            seen[5]
        );
        assert!(seen
            .iter()
            .all(|s| s.authorization.as_deref() == Some("Basic dTpw")));
    }

    #[tokio::test]
    async fn present_blobs_are_skipped_mounts_taken_small_blobs_put_whole() {
        let (addr, seen) = fake(|req, _| match (req.method.as_str(), req.target.as_str()) {
            ("HEAD", t) if t.ends_with("present") => (200, vec![]),
            ("HEAD", _) => (404, vec![]),
            ("POST", t) if t.contains("mount=") => (201, vec![]),
            ("POST", _) => (
                202,
                vec![("Location", "/v2/t/img/blobs/uploads/x?s=1".into())],
            ),
            ("PUT", t) if t.starts_with("/v2/t/img/blobs/uploads/x?s=1&digest=") => (201, vec![]),
            _ => (400, vec![]),
        });
        let session = Session::for_tests(&addr, "t/img", None);
        let t = target(&session, 1 << 20);
        let (_f, mut b) = blob(b"abc");
        b.digest.push_str("present");
        assert_eq!(t.blob(&b, None).await.unwrap(), BlobOutcome::Exists);
        let (_f, b) = blob(b"abc");
        assert_eq!(
            t.blob(&b, Some("src/img")).await.unwrap(),
            BlobOutcome::Mounted {
                from: "src/img".into()
            }
        );
        assert_eq!(t.blob(&b, None).await.unwrap(), BlobOutcome::Pushed);
        let seen = seen.lock().unwrap().clone();
        let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
        assert_eq!(methods, ["HEAD", "HEAD", "POST", "HEAD", "POST", "PUT"]);
        assert_eq!(seen[5].body, b"abc");
        assert!(seen.iter().all(|s| s.authorization.is_none()));
    }

    #[tokio::test]
    async fn refusals_name_what_was_refused_in_one_line() {
        let (addr, _) = fake(|req, me| match req.method.as_str() {
            "HEAD" => (404, vec![]),
            // An upload elsewhere (a storage redirect) gets no credentials.
            "POST" => (
                202,
                vec![(
                    "Location",
                    format!("http://localhost:{}/up", me.rsplit(':').next().unwrap()),
                )],
            ),
            _ if req.authorization.is_some() => (400, vec![]),
            _ => (403, vec![]),
        });
        let session = Session::for_tests(&addr, "t/img", Some(("u", "p")));
        let (_f, b) = blob(b"abc");
        let err = target(&session, 1 << 20).blob(&b, None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "registry {addr} refused the upload of blob {} to {addr}/t/img \
                 (run `hull login {addr}` if it needs credentials)",
                b.digest
            )
        );
        let (addr, _) = fake(|_, _| (401, vec![]));
        let session = Session::for_tests(&addr, "t/img", None);
        let err = target(&session, 1 << 20).blob(&b, None).await.unwrap_err();
        assert!(matches!(err, Error::PushDenied { .. }), "{err}");
        assert!(
            err.to_string().contains("refused the check for blob"),
            "{err}"
        );
    }

    fn headers(location: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(LOCATION, location.parse().unwrap());
        h
    }

    #[test]
    fn locations_resolve_relative_and_absolute() {
        let base = Url::parse("http://127.0.0.1:5000/v2/x/blobs/uploads/").unwrap();
        let rel = resolve_location(&base, &headers("/v2/x/blobs/uploads/abc?_state=s%3D")).unwrap();
        assert_eq!(
            rel.as_str(),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/abc?_state=s%3D"
        );
        let abs = resolve_location(&base, &headers("https://storage.example/up/1")).unwrap();
        assert_eq!(abs.as_str(), "https://storage.example/up/1");
        assert!(resolve_location(&base, &HeaderMap::new()).is_none());
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            with_digest(rel, &d).as_str(),
            format!(
                "http://127.0.0.1:5000/v2/x/blobs/uploads/abc?_state=s%3D&digest=sha256%3A{}",
                "a".repeat(64)
            )
        );
    }

    #[test]
    fn content_ranges_are_inclusive() {
        assert_eq!(content_range(0, 1), "0-0");
        assert_eq!(content_range(1024, 1024), "1024-2047");
    }
}
