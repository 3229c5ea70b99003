//! The registry replies a pull reads whole — the pull token and the
//! manifests (and indexes) — asked for here rather than through
//! `oci-client`, which reads them whole, unbounded and without an overall
//! deadline: each reply is read chunk by chunk and refused as soon as it
//! passes its bound, and each request, its reply included, has an overall
//! deadline. Blobs stay with `oci-client`: they stream to disk, checked
//! against their descriptor's size, under a stall timeout (a large layer
//! may rightly take long; a stalled one may not).
//!
//! The token: a registry that answers `GET /v2/` with a `Bearer` challenge
//! sends us to its token server (the realm) for a pull token, asked for
//! with the Basic credentials `hull login` stored, or anonymously
//! (distribution's token spec). `oci-client` is handed the token for its
//! blob requests; it cannot renew one itself without reading the token
//! server's reply unbounded, so [`Session::renew`] asks for a new one
//! here before a download starts once the old one nears its end.
//!
//! Model: containerd's `remotes/docker` resolver, which reads manifests
//! through a `LimitReader` (`maxManifestSize`, 4 MiB) and token replies
//! through its `auth` package with a context deadline.

use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::remote::{one_line, Remote};
use super::Error;
use crate::auth::{api_host, bearer_params};
use crate::MAX_JSON_SIZE;

/// Largest token server reply: a JWT with its certificate chain is a few
/// KiB.
pub(crate) const MAX_TOKEN_SIZE: u64 = 1 << 20;
/// The most of an error reply we read, for its message.
pub(super) const MAX_ERROR_SIZE: u64 = 64 << 10;
/// How long one request may take, its reply included, unless
/// [`DEADLINE_VAR`] says otherwise: a 4 MiB manifest at 100 KB/s.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
/// Overrides [`DEFAULT_DEADLINE`], in seconds.
pub const DEADLINE_VAR: &str = "HULL_REGISTRY_DEADLINE";
/// A token's lifetime when the token server does not say (the spec's).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// How we prove who we are to one registry.
enum Authz {
    Anonymous,
    Basic { user: String, password: String },
    Bearer(Token),
}

struct Token {
    token: String,
    /// The challenge's realm and service, to renew it.
    realm: String,
    service: Option<String>,
    obtained: Instant,
    lifetime: Duration,
}

/// A token server's reply (distribution's token spec).
#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Our side of the conversation with one registry about one repository.
pub(super) struct Session {
    pub(super) http: reqwest::Client,
    pub(super) scheme: &'static str,
    pub(super) remote: Remote,
    creds: Option<(String, String)>,
    /// What a token is asked for: `repository:NAME:ACTIONS` each.
    scopes: Vec<String>,
    pub(super) deadline: Duration,
    authz: Mutex<Authz>,
}

impl Session {
    /// Step 0 of a pull: asks the registry how to authenticate, gets a
    /// pull token if it wants one, and hands `client` what it needs.
    pub(super) async fn connect(
        remote: &Remote,
        auth: &RegistryAuth,
        plain_http: bool,
        client: &Client,
    ) -> Result<Session, Error> {
        let creds = match auth {
            RegistryAuth::Basic(u, p) => Some((u.clone(), p.clone())),
            _ => None,
        };
        let scopes = vec![format!("repository:{}:pull", remote.repository)];
        let session = Session::open(remote, creds, plain_http, scopes).await?;
        let for_client = match &*session.authz.lock().await {
            Authz::Bearer(t) => Some(RegistryAuth::Bearer(t.token.clone())),
            Authz::Basic { user, password } => {
                Some(RegistryAuth::Basic(user.clone(), password.clone()))
            }
            // Nothing to hand over: `oci-client` then asks without
            // credentials and never looks for a token of its own.
            Authz::Anonymous => None,
        };
        if let Some(auth) = for_client {
            session.hand_to(client, &auth).await?;
        }
        Ok(session)
    }

    /// Asks the registry how to authenticate and gets a token for
    /// `scopes` if it wants one (what a push uses directly).
    pub(super) async fn open(
        remote: &Remote,
        creds: Option<(String, String)>,
        plain_http: bool,
        scopes: Vec<String>,
    ) -> Result<Session, Error> {
        let unreachable = |source| Error::Unreachable {
            registry: remote.registry.clone(),
            source,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(super::CONNECT_TIMEOUT)
            .read_timeout(super::READ_TIMEOUT)
            .build()
            .map_err(unreachable)?;
        let session = Session {
            http,
            scheme: if plain_http { "http" } else { "https" },
            remote: remote.clone(),
            creds,
            scopes,
            deadline: deadline_from_env(),
            authz: Mutex::new(Authz::Anonymous),
        };
        let authz = session.challenge().await?;
        *session.authz.lock().await = authz;
        Ok(session)
    }

    /// `GET /v2/` and what its challenge asks for.
    async fn challenge(&self) -> Result<Authz, Error> {
        let url = format!("{}://{}/v2/", self.scheme, self.host());
        let what = "the API version check";
        let reply = self
            .within(what, async {
                self.http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|source| self.unreachable(source))
            })
            .await?;
        let challenge = reply
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let params = match bearer_params(&challenge) {
            Some(p) if reply.status().as_u16() == 401 => p,
            _ => {
                return Ok(match &self.creds {
                    Some((user, password)) => Authz::Basic {
                        user: user.clone(),
                        password: password.clone(),
                    },
                    None => Authz::Anonymous,
                })
            }
        };
        let Some(realm) = params.get("realm") else {
            return Err(Error::Registry {
                registry: self.remote.registry.clone(),
                message: one_line(&format!("a Bearer challenge without a realm: {challenge}")),
            });
        };
        let token = self
            .token(realm.clone(), params.get("service").cloned())
            .await?;
        Ok(Authz::Bearer(token))
    }

    /// Asks the token server for a pull token, reading at most
    /// [`MAX_TOKEN_SIZE`] of its reply, within the deadline.
    async fn token(&self, realm: String, service: Option<String>) -> Result<Token, Error> {
        let what = "the token reply";
        let mut query: Vec<(&str, String)> =
            self.scopes.iter().map(|s| ("scope", s.clone())).collect();
        if let Some(s) = &service {
            query.push(("service", s.clone()));
        }
        let registry = self.remote.registry.clone();
        let body = self
            .within(what, async {
                let mut req = self.http.get(&realm).query(&query);
                if let Some((user, password)) = &self.creds {
                    req = req.basic_auth(user, Some(password));
                }
                let reply = req
                    .send()
                    .await
                    .map_err(|source| Error::TokenServerUnreachable {
                        registry: registry.clone(),
                        source,
                    })?;
                if reply.status().as_u16() != 200 {
                    return Err(match self.creds {
                        Some(_) => Error::TokenRefused {
                            registry: registry.clone(),
                        },
                        None => Error::Unauthorized {
                            reference: self.remote.display(),
                            registry: registry.clone(),
                        },
                    });
                }
                read_bounded(reply, MAX_TOKEN_SIZE)
                    .await
                    .map_err(|e| self.read_error(e, what, MAX_TOKEN_SIZE, true))
            })
            .await?;
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| Error::Registry {
            registry: registry.clone(),
            message: one_line(&format!("the token server sent an invalid reply: {e}")),
        })?;
        let token = reply
            .token
            .filter(|t| !t.is_empty())
            .or(reply.access_token)
            .ok_or_else(|| Error::Registry {
                registry: registry.clone(),
                message: "the token server sent a reply without a token".into(),
            })?;
        Ok(Token {
            token,
            realm,
            service,
            obtained: Instant::now(),
            lifetime: reply
                .expires_in
                .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs),
        })
    }

    /// Gives `client` the credentials for its blob requests; for a
    /// Bearer token that is the token itself, so it never asks the token
    /// server on its own. (With Basic credentials it checks `/v2/` once
    /// more; a registry that answers that check with a Bearer challenge
    /// it did not give us is read by `oci-client`, within the deadline.)
    async fn hand_to(&self, client: &Client, auth: &RegistryAuth) -> Result<(), Error> {
        self.within("the API version check", async {
            client
                .auth(&self.remote.oci(), auth, RegistryOperation::Pull)
                .await
                .map(|_| ())
                .map_err(|e| super::remote::map_oci_error(e, &self.remote, None))
        })
        .await
    }

    /// Renews the pull token once it nears its end (before a download
    /// starts: a started download keeps going on the old one).
    pub(super) async fn renew(&self, client: &Client) -> Result<(), Error> {
        if let Some(token) = self.refresh().await? {
            self.hand_to(client, &RegistryAuth::Bearer(token)).await?;
        }
        Ok(())
    }

    /// Asks for a new token once the one we hold nears its end; the new
    /// token, if one was asked for.
    pub(super) async fn refresh(&self) -> Result<Option<String>, Error> {
        let mut authz = self.authz.lock().await;
        let Authz::Bearer(old) = &*authz else {
            return Ok(None);
        };
        let margin = (old.lifetime / 2).min(Duration::from_secs(30));
        if old.obtained.elapsed() + margin < old.lifetime {
            return Ok(None);
        }
        let token = self.token(old.realm.clone(), old.service.clone()).await?;
        let value = token.token.clone();
        *authz = Authz::Bearer(token);
        Ok(Some(value))
    }

    /// The manifest (or index) `remote` names, at most [`MAX_JSON_SIZE`]
    /// bytes, within the deadline.
    pub(super) async fn manifest(
        &self,
        remote: &Remote,
        accept: &[&str],
    ) -> Result<Vec<u8>, Error> {
        let what = "the manifest";
        let reference = match (&remote.digest, &remote.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let url = format!(
            "{}://{}/v2/{}/manifests/{reference}",
            self.scheme,
            self.host(),
            remote.repository
        );
        let authz = self.authorization().await;
        self.within_for(remote, what, async {
            let mut req = self
                .http
                .get(&url)
                .header(reqwest::header::ACCEPT, accept.join(", "));
            if let Some(value) = authz {
                req = req.header(reqwest::header::AUTHORIZATION, value);
            }
            let reply = req
                .send()
                .await
                .map_err(|source| self.unreachable(source))?;
            let status = reply.status().as_u16();
            if status != 200 {
                return Err(self.refusal(remote, status, reply).await);
            }
            read_bounded(reply, MAX_JSON_SIZE)
                .await
                .map_err(|e| self.read_error_for(remote, e, what, MAX_JSON_SIZE))
        })
        .await
    }

    /// What a non-200 answer to a manifest request means.
    async fn refusal(&self, remote: &Remote, status: u16, reply: reqwest::Response) -> Error {
        let registry = self.remote.registry.clone();
        let reference = remote.display();
        match status {
            404 => {
                return Error::NotFound {
                    reference,
                    registry,
                }
            }
            401 | 403 => {
                return Error::Unauthorized {
                    reference,
                    registry,
                }
            }
            _ => {}
        }
        let body = read_bounded_prefix(reply, MAX_ERROR_SIZE).await;
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string));
        match code.as_deref() {
            Some("NAME_UNKNOWN" | "MANIFEST_UNKNOWN" | "NOT_FOUND") => Error::NotFound {
                reference,
                registry,
            },
            Some("UNAUTHORIZED" | "DENIED") => Error::Unauthorized {
                reference,
                registry,
            },
            _ => Error::Registry {
                registry,
                message: one_line(&format!(
                    "HTTP {status} for {reference}: {}",
                    String::from_utf8_lossy(&body)
                )),
            },
        }
    }

    /// The `Authorization` header value for our own requests.
    pub(super) async fn authorization(&self) -> Option<String> {
        use base64::Engine as _;
        match &*self.authz.lock().await {
            Authz::Anonymous => None,
            Authz::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            Authz::Bearer(t) => Some(format!("Bearer {}", t.token)),
        }
    }

    pub(super) fn host(&self) -> &str {
        api_host(&self.remote.registry)
    }

    pub(super) fn unreachable(&self, source: reqwest::Error) -> Error {
        Error::Unreachable {
            registry: self.remote.registry.clone(),
            source,
        }
    }

    /// Runs one request about this session's image within the deadline.
    pub(super) async fn within<T>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.within_for(&self.remote, what, fut).await
    }

    async fn within_for<T>(
        &self,
        remote: &Remote,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.deadline, fut).await {
            Ok(result) => result,
            Err(_) => Err(Error::Deadline {
                what,
                reference: remote.display(),
                registry: self.remote.registry.clone(),
                secs: self.deadline.as_secs(),
            }),
        }
    }

    fn read_error(&self, e: ReadError, what: &'static str, limit: u64, token: bool) -> Error {
        match e {
            ReadError::TooLarge => Error::TooLarge {
                what,
                reference: self.remote.display(),
                registry: self.remote.registry.clone(),
                limit,
            },
            ReadError::Http(source) if token => Error::TokenServerUnreachable {
                registry: self.remote.registry.clone(),
                source,
            },
            ReadError::Http(source) => self.unreachable(source),
        }
    }

    fn read_error_for(
        &self,
        remote: &Remote,
        e: ReadError,
        what: &'static str,
        limit: u64,
    ) -> Error {
        match e {
            ReadError::TooLarge => Error::TooLarge {
                what,
                reference: remote.display(),
                registry: self.remote.registry.clone(),
                limit,
            },
            other => self.read_error(other, what, limit, false),
        }
    }
}

#[cfg(test)]
impl Session {
    /// A session with `addr` over plain HTTP about `repository`, with
    /// Basic credentials if given, as a push's tests need it.
    pub(super) fn for_tests(addr: &str, repository: &str, basic: Option<(&str, &str)>) -> Session {
        crate::tls::install_crypto_provider();
        let remote =
            Remote::new(&crate::Reference::parse(&format!("{addr}/{repository}")).unwrap());
        let authz = match basic {
            Some((user, password)) => Authz::Basic {
                user: user.into(),
                password: password.into(),
            },
            None => Authz::Anonymous,
        };
        Session {
            http: reqwest::Client::new(),
            scheme: "http",
            remote,
            creds: None,
            scopes: Vec::new(),
            deadline: Duration::from_secs(30),
            authz: Mutex::new(authz),
        }
    }
}

/// The deadline of each request: [`DEFAULT_DEADLINE`] unless
/// [`DEADLINE_VAR`] holds a number of seconds.
fn deadline_from_env() -> Duration {
    std::env::var(DEADLINE_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(DEFAULT_DEADLINE, Duration::from_secs)
}

/// Why a reply could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// It passed its bound.
    TooLarge,
    Http(reqwest::Error),
}

/// Reads a reply's body, refusing it once it passes `limit` bytes (one
/// chunk past it at most is ever held).
pub(super) async fn read_bounded(
    mut reply: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, ReadError> {
    if reply.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = reply.chunk().await.map_err(ReadError::Http)? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The first `limit` bytes of a reply's body (or what came before an
/// error), for a message.
pub(super) async fn read_bounded_prefix(mut reply: reqwest::Response, limit: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = reply.chunk().await {
        let room = usize::try_from(limit).unwrap_or(usize::MAX) - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() as u64 >= limit {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-connection-at-a-time HTTP server on 127.0.0.1 that answers
    /// every request with `head` and then `body` chunks, `pause` apart,
    /// `chunks` times (or forever).
    fn serve(head: &'static str, chunk: Vec<u8>, chunks: Option<usize>, pause: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let chunk = chunk.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    if s.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let mut sent = 0;
                    while chunks.is_none_or(|n| sent < n) {
                        if s.write_all(&chunk).is_err() {
                            return;
                        }
                        sent += 1;
                        std::thread::sleep(pause);
                    }
                });
            }
        });
        addr
    }

    async fn get(addr: &str) -> reqwest::Response {
        crate::tls::install_crypto_provider();
        reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_endless_reply_is_cut_one_chunk_past_its_bound() {
        let addr = serve(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            vec![b'{'; 64 << 10],
            None,
            Duration::ZERO,
        );
        let started = Instant::now();
        let err = read_bounded(get(&addr).await, 1 << 20).await.unwrap_err();
        assert!(matches!(err, ReadError::TooLarge), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_bound_is_refused_unread() {
        let addr = serve(
            "HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n",
            vec![b'x'; 10],
            Some(1),
            Duration::ZERO,
        );
        let err = read_bounded(get(&addr).await, MAX_TOKEN_SIZE)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooLarge), "{err:?}");
    }

    #[tokio::test]
    async fn replies_within_the_bound_are_read_whole() {
        let addr = serve(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            b"0123456789".to_vec(),
            Some(3),
            Duration::from_millis(5),
        );
        let body = read_bounded(get(&addr).await, 30).await.unwrap();
        assert_eq!(body, b"012345678901234567890123456789");
        let addr = serve(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            b"0123456789".to_vec(),
            Some(3),
            Duration::ZERO,
        );
        assert!(read_bounded(get(&addr).await, 29).await.is_err());
    }

    fn session(addr: &str, deadline: Duration) -> Session {
        crate::tls::install_crypto_provider();
        let remote =
            Remote::new(&crate::Reference::parse(&format!("{addr}/hull/endless:latest")).unwrap());
        Session {
            http: reqwest::Client::new(),
            scheme: "http",
            remote,
            creds: None,
            scopes: vec!["repository:hull/endless:pull".into()],
            deadline,
            authz: Mutex::new(Authz::Anonymous),
        }
    }

    #[tokio::test]
    async fn a_slow_endless_manifest_is_refused_at_the_deadline() {
        let addr = serve(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
            b"{\"a\":1,".to_vec(),
            None,
            Duration::from_millis(50),
        );
        let s = session(&addr, Duration::from_secs(2));
        let started = Instant::now();
        let err = s.manifest(&s.remote.clone(), &["x"]).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("registry {addr} did not send the manifest of {addr}/hull/endless:latest within 2 s")
        );
    }

    #[tokio::test]
    async fn a_fast_endless_manifest_is_refused_at_its_bound() {
        let addr = serve(
            "HTTP/1.1 200 OK\r\n\r\n",
            vec![b' '; 256 << 10],
            None,
            Duration::ZERO,
        );
        let s = session(&addr, Duration::from_secs(30));
        let err = s.manifest(&s.remote.clone(), &["x"]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the manifest of {addr}/hull/endless:latest from registry {addr} is larger than {MAX_JSON_SIZE} bytes"
            )
        );
    }

    #[tokio::test]
    async fn an_endless_token_reply_is_refused_at_its_bound() {
        let addr = serve(
            "HTTP/1.1 200 OK\r\n\r\n",
            vec![b' '; 64 << 10],
            None,
            Duration::ZERO,
        );
        let s = session(&addr, Duration::from_secs(30));
        let err = s
            .token(format!("http://{addr}/token"), None)
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("the token reply of")
                && err
                    .to_string()
                    .ends_with(&format!("is larger than {MAX_TOKEN_SIZE} bytes")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn tokens_are_read_with_their_lifetime() {
        let addr = serve(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            br#"{"token":"abc","expires_in":300}"#.to_vec(),
            Some(1),
            Duration::ZERO,
        );
        let s = session(&addr, Duration::from_secs(30));
        let t = s
            .token(format!("http://{addr}/token"), Some("svc".into()))
            .await
            .ok()
            .unwrap();
        assert_eq!(
            (t.token.as_str(), t.lifetime),
            ("abc", Duration::from_secs(300))
        );
    }

    #[tokio::test]
    async fn a_token_near_its_end_is_renewed_before_a_download() {
        let addr = serve(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            br#"{"access_token":"new","expires_in":300}"#.to_vec(),
            Some(1),
            Duration::ZERO,
        );
        let client = Client::new(oci_client::client::ClientConfig::default());
        let s = session(&addr, Duration::from_secs(30));
        let token = |t: &str, age: u64| Token {
            token: t.to_string(),
            realm: format!("http://{addr}/token"),
            service: None,
            obtained: Instant::now() - Duration::from_secs(age),
            lifetime: Duration::from_secs(60),
        };
        // Fresh: kept, the token server is not asked.
        *s.authz.lock().await = Authz::Bearer(token("fresh", 10));
        s.renew(&client).await.unwrap();
        assert_eq!(s.authorization().await.as_deref(), Some("Bearer fresh"));
        // Within 30 s of its end: renewed.
        *s.authz.lock().await = Authz::Bearer(token("old", 40));
        s.renew(&client).await.unwrap();
        assert_eq!(s.authorization().await.as_deref(), Some("Bearer new"));
    }

    #[tokio::test]
    async fn error_replies_are_named_in_one_line() {
        let addr = serve(
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n",
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}"#.to_vec(),
            Some(1),
            Duration::ZERO,
        );
        let s = session(&addr, Duration::from_secs(30));
        let err = s.manifest(&s.remote.clone(), &["x"]).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        let addr = serve(
            "HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\n",
            b"broken\nbadly".to_vec(),
            None,
            Duration::from_millis(1),
        );
        let s = session(&addr, Duration::from_secs(30));
        let err = s.manifest(&s.remote.clone(), &["x"]).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("registry {addr}: HTTP 500 for")),
            "{msg}"
        );
        assert!(!msg.contains('\n') && msg.len() < 400, "{msg}");
    }
}
