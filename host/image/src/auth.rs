//! Registry credentials: what `hull login` stores and `hull pull` uses.
//!
//! Model: docker's `config.json` `auths` map (registry host ->
//! base64("user:password")), kept in `<root>/auth.json` with mode 0600 and
//! written by temp file + rename, so a crash never leaves half a file and
//! the secret is never readable by others, not even for a moment.
//!
//! `hull login` checks the credentials before storing them, as `docker
//! login` does: `GET /v2/` with Basic auth; if the registry answers with a
//! Bearer challenge, a token is requested from its realm with the same
//! credentials.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

const AUTH_FILE: &str = "auth.json";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read or write the credentials file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the credentials file {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the credentials for {registry} in {path} are not base64 of user:password")]
    BadEntry { registry: String, path: PathBuf },
    #[error("login to {registry} failed: wrong user name or password")]
    Unauthorized { registry: String },
    #[error("cannot reach registry {registry}")]
    Unreachable {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry {registry} answered HTTP {status} to {url}")]
    Unexpected {
        registry: String,
        status: u16,
        url: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    auth: String,
}

/// The credentials file of one hull root.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
}

impl AuthFile {
    pub fn new(root: &Path) -> AuthFile {
        AuthFile {
            path: root.join(AUTH_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored credentials for `registry` (a host[:port]), if any.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        let file = self.read()?;
        let Some(entry) = file.auths.get(registry) else {
            return Ok(None);
        };
        let bad = || Error::BadEntry {
            registry: registry.to_string(),
            path: self.path.clone(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }

    /// Stores (or replaces) the credentials for `registry`.
    pub fn set(&self, registry: &str, creds: &Credentials) -> Result<(), Error> {
        let mut file = self.read()?;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        file.auths.insert(registry.to_string(), Entry { auth });
        self.write(&file)
    }

    /// Forgets the credentials for `registry`; whether there were any.
    pub fn remove(&self, registry: &str) -> Result<bool, Error> {
        let mut file = self.read()?;
        let had = file.auths.remove(registry).is_some();
        if had {
            self.write(&file)?;
        }
        Ok(had)
    }

    fn io(&self) -> impl FnOnce(io::Error) -> Error + '_ {
        |source| Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn read(&self) -> Result<AuthJson, Error> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AuthJson::default()),
            Err(e) => Err(self.io()(e)),
        }
    }

    fn write(&self, file: &AuthJson) -> Result<(), Error> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(self.io())?;
        let bytes = serde_json::to_vec_pretty(file).map_err(|source| Error::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        // NamedTempFile is created 0600; set it anyway in case of a umask
        // or platform that differs.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(self.io())?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(self.io())?;
        tmp.write_all(&bytes).map_err(self.io())?;
        tmp.as_file().sync_all().map_err(self.io())?;
        tmp.persist(&self.path).map_err(|e| self.io()(e.error))?;
        Ok(())
    }
}

/// Checks `creds` against `registry` the way `docker login` does.
pub async fn verify(registry: &str, creds: &Credentials, plain_http: bool) -> Result<(), Error> {
    let scheme = if plain_http { "http" } else { "https" };
    let host = api_host(registry);
    let url = format!("{scheme}://{host}/v2/");
    let unreachable = |source| Error::Unreachable {
        registry: registry.to_string(),
        source,
    };
    super::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(unreachable)?;
    let resp = client
        .get(&url)
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    if status != 401 {
        return Err(Error::Unexpected {
            registry: registry.to_string(),
            status,
            url,
        });
    }
    let challenge = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Some(params) = bearer_params(&challenge) else {
        // A Basic challenge to our Basic credentials: they are wrong.
        return Err(Error::Unauthorized {
            registry: registry.to_string(),
        });
    };
    let Some(realm) = params.get("realm") else {
        return Err(Error::Unauthorized {
            registry: registry.to_string(),
        });
    };
    let mut query = vec![("account", creds.username.clone())];
    if let Some(service) = params.get("service") {
        query.push(("service", service.clone()));
    }
    let token = client
        .get(realm)
        .query(&query)
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(unreachable)?;
    match token.status().as_u16() {
        200 => Ok(()),
        401 | 403 => Err(Error::Unauthorized {
            registry: registry.to_string(),
        }),
        status => Err(Error::Unexpected {
            registry: registry.to_string(),
            status,
            url: realm.clone(),
        }),
    }
}

/// The host that serves the registry API for a reference's registry.
pub(crate) fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" => "index.docker.io",
        other => other,
    }
}

/// The `key="value"` parameters of a `Bearer …` challenge.
pub(crate) fn bearer_params(challenge: &str) -> Option<BTreeMap<String, String>> {
    let rest = challenge
        .strip_prefix("Bearer ")
        .or_else(|| challenge.strip_prefix("bearer "))?;
    let mut out = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.insert(key.trim().to_ascii_lowercase(), value.to_string());
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn stores_credentials_0600_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = AuthFile::new(dir.path());
        assert_eq!(file.get("127.0.0.1:5000").unwrap(), None);
        file.set("127.0.0.1:5000", &creds("hull", "pa:ss")).unwrap();
        file.set("ghcr.io", &creds("x", "y")).unwrap();
        assert_eq!(
            file.get("127.0.0.1:5000").unwrap(),
            Some(creds("hull", "pa:ss"))
        );
        let mode = fs::metadata(file.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Docker's format: base64 of user:password.
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(file.path()).unwrap()).unwrap();
        assert_eq!(json["auths"]["ghcr.io"]["auth"], "eDp5");
        assert!(file.remove("ghcr.io").unwrap());
        assert!(!file.remove("ghcr.io").unwrap());
        assert_eq!(file.get("ghcr.io").unwrap(), None);
        assert!(format!("{:?}", creds("u", "secret")).contains("redacted"));
        // Only auth.json is left: no temp files.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn corrupt_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = AuthFile::new(dir.path());
        fs::write(file.path(), b"{not json").unwrap();
        let err = file.get("x").unwrap_err();
        assert!(err.to_string().contains("auth.json is corrupt"), "{err}");
        fs::write(file.path(), br#"{"auths":{"x":{"auth":"!!"}}}"#).unwrap();
        let err = file.get("x").unwrap_err();
        assert!(matches!(err, Error::BadEntry { .. }), "{err}");
    }

    #[test]
    fn parses_bearer_challenges() {
        let p = bearer_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        assert!(bearer_params(r#"Basic realm="hull""#).is_none());
    }
}
