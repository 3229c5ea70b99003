//! A Docker-style token server for the Bearer auth tests: the realm a
//! `docker-registry` configured with `auth: token` sends clients to.
//!
//! Model: the distribution project's token authentication spec
//! (`docs/spec/auth/token.md`). A client asks `GET /token?service=…&
//! scope=repository:NAME:ACTIONS`, anonymously or with Basic credentials;
//! the answer is a JWT signed RS256 with a key whose self-signed
//! certificate is the registry's `rootcertbundle`; the certificate rides
//! in the token's `x5c` header, which is how distribution 2.8 finds the
//! key to verify it with. Keys and certificates are made with the
//! `openssl` CLI, and every token is signed by it as well.
//!
//! Policy: the configured user gets every action asked for; anyone
//! (anonymous) gets `pull` on repositories under `public/` and nothing
//! else, as Docker Hub hands anonymous clients tokens without access to
//! private repositories; wrong credentials get 401. Every request is
//! recorded, so tests can check the registry really sent clients here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// The `service` the registry names in its challenge (the token's `aud`).
pub const SERVICE: &str = "hull-test-registry";
/// The token issuer the registry trusts (`iss`).
pub const ISSUER: &str = "hull-test-token-issuer";

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The Basic user name, if the client sent credentials.
    pub user: Option<String>,
    /// The `scope` parameters, as sent.
    pub scopes: Vec<String>,
    /// The HTTP status the server answered with.
    pub status: u16,
}

/// A signing key and its self-signed certificate, in PEM files.
#[derive(Clone)]
pub struct SigningKey {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// The certificate, DER, standard base64 (an `x5c` entry).
    cert_b64: String,
}

impl SigningKey {
    /// A fresh RSA key and certificate under `dir`, named `name`.
    pub fn generate(dir: &Path, name: &str) -> SigningKey {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        let der = openssl(&["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"]);
        SigningKey {
            key,
            cert,
            cert_b64: base64::engine::general_purpose::STANDARD.encode(der),
        }
    }

    /// A compact JWS (RS256) of `claims`, with this key's certificate.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [self.cert_b64],
        });
        let signing_input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(&serde_json::to_vec(claims).unwrap())
        );
        let signature = openssl_stdin(
            &["dgst", "-sha256", "-sign", self.key.to_str().unwrap()],
            signing_input.as_bytes(),
        );
        format!("{signing_input}.{}", b64(&signature))
    }
}

/// A running token server on 127.0.0.1.
pub struct TokenServer {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The key and certificate the registry must trust.
    pub trusted: SigningKey,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    forge: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// A server for `user`/`password` that signs with the key it
    /// publishes as [`TokenServer::trusted`].
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("hull-token")
            .tempdir()
            .expect("temp dir");
        let trusted = SigningKey::generate(dir.path(), "trusted");
        let forged = SigningKey::generate(dir.path(), "forged");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let forge = Arc::new(AtomicBool::new(false));
        let policy = Policy {
            user: user.to_string(),
            password: password.to_string(),
            trusted: trusted.clone(),
            forged,
            forge: forge.clone(),
        };
        let thread = {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || serve(listener, &policy, &requests, &stop))
        };
        TokenServer {
            addr,
            trusted,
            requests,
            stop,
            forge,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The realm URL for the registry's config.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// From now on, sign with another key than the published one, as a
    /// forger would: a registry that verifies tokens refuses them all.
    pub fn forge(&self, on: bool) {
        self.forge.store(on, Ordering::SeqCst);
    }

    /// What the server has answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Policy {
    user: String,
    password: String,
    trusted: SigningKey,
    forged: SigningKey,
    forge: Arc<AtomicBool>,
}

fn serve(
    listener: TcpListener,
    policy: &Policy,
    requests: &Mutex<Vec<TokenRequest>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                answer(stream, policy, requests);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads one request, records it and answers it (recorded first: the
/// client may act on the answer, and the test look, before this returns).
fn answer(stream: TcpStream, policy: &Policy, requests: &Mutex<Vec<TokenRequest>>) -> Option<()> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let target = request_line.split_whitespace().nth(1)?.to_string();
    let mut authorization = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(v.trim().to_string()),
                "content-length" => content_length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    if content_length > 0 {
        let mut body = vec![0u8; content_length.min(1 << 16)];
        reader.read_exact(&mut body).ok()?;
    }

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string))
        .collect();
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str());

    let basic = authorization.as_deref().and_then(parse_basic);
    let user = basic.as_ref().map(|(u, _)| u.clone());
    let (status, body) = if path != "/token" || service.is_some_and(|s| s != SERVICE) {
        (404, r#"{"details":"no such service"}"#.to_string())
    } else {
        match &basic {
            Some((u, p)) if (u, p) != (&policy.user, &policy.password) => (
                401,
                r#"{"details":"wrong user name or password"}"#.to_string(),
            ),
            _ => {
                let access = grant(&scopes, basic.is_some());
                let signer = if policy.forge.load(Ordering::SeqCst) {
                    &policy.forged
                } else {
                    &policy.trusted
                };
                let token = signer.sign(&claims(user.as_deref(), &access));
                let body = serde_json::json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": 300,
                });
                (200, body.to_string())
            }
        }
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    requests.lock().unwrap().push(TokenRequest {
        user,
        scopes,
        status,
    });
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
    Some(())
}

/// The `access` claim for `scopes`: everything for the user, `pull` of
/// `public/…` for anyone.
fn grant(scopes: &[String], authenticated: bool) -> Vec<serde_json::Value> {
    let mut access = Vec::new();
    for scope in scopes {
        // repository:NAME:ACTIONS; NAME may hold a port-less host path.
        let mut parts = scope.splitn(2, ':');
        let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let actions: Vec<&str> = actions
            .split(',')
            .filter(|a| authenticated || (*a == "pull" && name.starts_with("public/")))
            .collect();
        if !actions.is_empty() {
            access.push(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions,
            }));
        }
    }
    access
}

fn claims(user: Option<&str>, access: &[serde_json::Value]) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "iss": ISSUER,
        "sub": user.unwrap_or(""),
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("hull-{now}-{}", std::process::id()),
        "access": access,
    })
}

fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn openssl(args: &[&str]) -> Vec<u8> {
    openssl_stdin(args, b"")
}

fn openssl_stdin(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is needed by this test");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_granted_by_policy() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let g = grant(&s(&["repository:hull/private:pull,push"]), true);
        assert_eq!(g[0]["actions"], serde_json::json!(["pull", "push"]));
        assert!(grant(&s(&["repository:hull/private:pull"]), false).is_empty());
        let g = grant(&s(&["repository:public/busybox:pull,push"]), false);
        assert_eq!(g[0]["actions"], serde_json::json!(["pull"]));
        assert_eq!(
            percent_decode("repository%3Aa%2Fb%3Apull"),
            "repository:a/b:pull"
        );
        assert_eq!(percent_decode("50%"), "50%");
    }
}
