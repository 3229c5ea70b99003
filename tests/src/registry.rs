//! A real OCI registry for the pull tests: Debian's `docker-registry`
//! (distribution 2.8) on 127.0.0.1, on a free port, storing under a temp
//! dir, optionally behind `htpasswd` Basic auth or Bearer tokens from a
//! [`TokenServer`]; images are pushed to it with `skopeo copy`. The registry is killed and reaped on drop.
//!
//! Also: an editable OCI image layout (from an OCI archive) to make
//! indexes and configs for other platforms.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::token_server::{self, TokenServer};

const REGISTRY_BIN: &str = "docker-registry";

/// How the registry authenticates clients.
enum Auth<'a> {
    Anonymous,
    Htpasswd,
    Token(&'a TokenServer),
}

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    dir: tempfile::TempDir,
    creds: Option<(String, String)>,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Registry::spawn(None, Auth::Anonymous)
    }

    /// A registry that demands Basic auth (`htpasswd`, bcrypt) for `user`.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::spawn(
            Some((user.to_string(), password.to_string())),
            Auth::Htpasswd,
        )
    }

    /// A registry that demands Bearer tokens issued by `tokens` (`auth:
    /// token`, verifying them against its certificate); `user` and
    /// `password` are what pushes log in to the token server with.
    pub fn start_with_tokens(tokens: &TokenServer, user: &str, password: &str) -> Registry {
        Registry::spawn(
            Some((user.to_string(), password.to_string())),
            Auth::Token(tokens),
        )
    }

    fn spawn(creds: Option<(String, String)>, auth: Auth<'_>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("hull-registry")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        if let (Some((user, password)), Auth::Htpasswd) = (&creds, &auth) {
            let htpasswd = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) is needed by this test");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(&htpasswd, &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: hull-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if let Auth::Token(tokens) = &auth {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                tokens.realm(),
                token_server::SERVICE,
                token_server::ISSUER,
                tokens.trusted.cert.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian's docker-registry package) is needed by this test");
        let mut reg = Registry {
            child,
            addr,
            dir,
            creds,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            if http_status(&self.addr, "/v2/").is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `ADDR/REPO` for a repository in this registry.
    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.addr)
    }

    /// `skopeo copy` of `source` (e.g. `oci-archive:/x.tar`) to `repo`
    /// (e.g. `hull/busybox:1`) in this registry, with extra skopeo flags.
    pub fn push(&self, source: &str, repo: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.args(extra)
            .arg(source)
            .arg(format!("docker://{}", self.image(repo)));
        let out = cmd.output().expect("skopeo is needed by this test");
        assert!(
            out.status.success(),
            "skopeo copy {source} -> {repo}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pushes the first image of `layout` to `repo:tag` byte for byte
    /// through the distribution API (with curl), where `skopeo` would
    /// recompress layers (it always gzips uncompressed ones). Anonymous
    /// registries only.
    pub fn push_raw(&self, layout: &Layout, repo: &str, tag: &str) {
        let desc = layout.first_manifest();
        let manifest_digest = desc["digest"].as_str().unwrap();
        let manifest = layout.json_blob(manifest_digest);
        let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
        for l in manifest["layers"].as_array().unwrap() {
            digests.push(l["digest"].as_str().unwrap().to_string());
        }
        for digest in digests {
            let out = curl(&[
                "-s",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                &format!("http://{}/v2/{repo}/blobs/uploads/", self.addr),
            ]);
            let location = out
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("location")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no upload location in {out}"));
            let sep = if location.contains('?') { '&' } else { '?' };
            let path = layout.blob_path(&digest);
            curl(&[
                "-s",
                "-f",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", path.display()),
                &format!("{location}{sep}digest={digest}"),
            ]);
        }
        curl(&[
            "-s",
            "-f",
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {}", desc["mediaType"].as_str().unwrap()),
            "--data-binary",
            &format!("@{}", layout.blob_path(manifest_digest).display()),
            &format!("http://{}/v2/{repo}/manifests/{tag}", self.addr),
        ]);
    }

    /// Where the registry keeps the bytes of blob `digest` (for tests that
    /// damage them).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The manifest of `repo:tag` as the registry serves it (anonymous).
    pub fn manifest(&self, repo_tag: &str) -> serde_json::Value {
        let (repo, tag) = repo_tag.rsplit_once(':').unwrap();
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw", "--tls-verify=false"]);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--creds={u}:{p}"));
        }
        let out = cmd
            .arg(format!("docker://{}/{repo}:{tag}", self.addr))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Layer digests of `repo:tag`'s manifest.
    pub fn layers(&self, repo_tag: &str) -> Vec<String> {
        self.manifest(repo_tag)["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(args)
        .output()
        .expect("curl is needed by this test");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The HTTP status of `GET path` on `addr`, if it answers.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// An OCI image layout on disk, unpacked from an OCI archive, that tests
/// can add blobs and index entries to before pushing it with skopeo.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// Unpacks `archive` (an oci-archive tar) into `dir`.
    pub fn from_archive(archive: &Path, dir: &Path) -> Layout {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn index(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).unwrap()).unwrap()
    }

    pub fn set_index(&self, index: &serde_json::Value) {
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(index).unwrap(),
        )
        .unwrap();
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.join("blobs/sha256").join(hex)
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_path(digest)).unwrap()
    }

    pub fn json_blob(&self, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&self.blob(digest)).unwrap()
    }

    /// Stores `bytes` as a blob; returns (digest, size).
    pub fn add_blob(&self, bytes: &[u8]) -> (String, usize) {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    }

    /// The first image manifest descriptor of index.json.
    pub fn first_manifest(&self) -> serde_json::Value {
        self.index()["manifests"][0].clone()
    }
}
