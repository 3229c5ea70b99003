//! `hull pull`: fetching an image from a registry that speaks the OCI
//! distribution API, into the store.
//!
//! Model: containerd's `remotes` + `images.Handlers` fetch path, over the
//! `oci-client` crate for the HTTP side (token and Basic auth, ranges).
//! The steps, each checked before the next:
//! 0. for a registry that answers `401` with a `Bearer` challenge, a pull
//!    token from its token server (the realm), asked for with the Basic
//!    credentials `hull login` stored, or anonymously;
//! 1. the manifest (OCI or Docker v2 schema 2) by tag or digest; an image
//!    index / manifest list picks linux/amd64; digests of what we asked
//!    by digest are checked, and every manifest's digest is computed here;
//! 2. the config blob (bounded, digest-checked) and its platform;
//! 3. the layers not yet in the store, a few at a time, each into
//!    `ingest/` verified while it streams ([`fetch`]);
//! 4. under the store lock: every layer not unpacked yet (see
//!    [`super::layers`]) applied onto the layers below it with its diff id
//!    checked, the disk built, then blobs moved into `blobs/` and the
//!    image recorded, as `load` does.
//!
//! On a failure that retrying cannot fix (a digest mismatch, a truncated
//! blob, a missing image) the downloads this pull finished are removed,
//! so the store is as it was; on a broken connection they stay, and the
//! next pull resumes from them.

mod fetch;

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_client::RegistryOperation;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use super::archive::{
    check_index_media_type, check_manifest, is_linux_amd64, MT_DOCKER_LIST, MT_DOCKER_MANIFEST,
    MT_OCI_INDEX, MT_OCI_MANIFEST,
};
use super::auth::{self, AuthFile};
use super::build::LayerSource;
use super::progress::PullProgress;
use super::reference::{is_domain, Reference};
use super::{digest, Image, ImageStore, MAX_JSON_SIZE};

/// Layers downloaded at the same time (Docker's default is 3).
const PARALLEL_DOWNLOADS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const ACCEPT: &[&str] = &[
    MT_OCI_MANIFEST,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    MT_DOCKER_LIST,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{reference}: not found in registry {registry}")]
    NotFound { reference: String, registry: String },
    #[error("registry {registry} denied access to {reference} (run `hull login {registry}` if it needs credentials)")]
    Unauthorized { reference: String, registry: String },
    #[error("the token server of registry {registry} refused the stored credentials (run `hull login {registry}` again)")]
    TokenRefused { registry: String },
    #[error("cannot reach the token server of registry {registry}")]
    TokenServerUnreachable {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot reach registry {registry}")]
    Unreachable {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("blob {digest} is truncated: the registry sent {got} of {expected} bytes")]
    Truncated {
        digest: String,
        got: u64,
        expected: u64,
    },
    #[error("the registry sent more than the {expected} bytes of blob {digest}")]
    Oversized { digest: String, expected: u64 },
    #[error(
        "download of blob {digest} broke off at {got} of {expected} bytes (pull again to resume)"
    )]
    Interrupted {
        digest: String,
        got: u64,
        expected: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {reference} is larger than {limit} bytes")]
    ManifestTooLarge { reference: String, limit: u64 },
    #[error(transparent)]
    Store(#[from] super::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
}

impl Error {
    /// Whether pulling again may succeed without anything changing at
    /// the registry (then downloads are kept for the next attempt).
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Interrupted { .. }
                | Error::Unreachable { .. }
                | Error::TokenServerUnreachable { .. }
        )
    }
}

/// How to pull.
pub struct PullOptions {
    /// Speak plain HTTP to the registry (for registries on loopback).
    pub plain_http: bool,
    pub progress: PullProgress,
}

/// What a pull did.
#[derive(Debug)]
pub struct Pulled {
    pub image: Image,
    /// The digest of the image manifest (the platform's, for an index).
    pub manifest_digest: String,
    /// Whether the store had this exact image already.
    pub up_to_date: bool,
}

/// Where an image lives: registry host and repository path in it.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Remote {
    fn new(r: &Reference) -> Remote {
        let (registry, repository) = match r.repo.split_once('/') {
            Some((first, rest)) if is_domain(first) => (first.to_string(), rest.to_string()),
            _ if r.repo.contains('/') => ("docker.io".to_string(), r.repo.clone()),
            _ => ("docker.io".to_string(), format!("library/{}", r.repo)),
        };
        Remote {
            registry,
            repository,
            tag: r.tag.clone(),
            digest: r.digest.clone(),
        }
    }

    /// The reference oci-client uses for requests about this repository.
    fn oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (Some(t), None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".into(),
            ),
        }
    }

    fn at_digest(&self, digest: &str) -> Remote {
        Remote {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    fn display(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s = format!("{s}:{t}");
        }
        if let Some(d) = &self.digest {
            s = format!("{s}@{d}");
        }
        s
    }
}

/// Makes ring rustls's crypto provider (we build reqwest without
/// aws-lc, which needs a C toolchain and doubles the TLS code).
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Pulls `reference` into `store`.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    mut opts: PullOptions,
) -> Result<Pulled, Error> {
    let parsed = Reference::parse(reference)?;
    let remote = Remote::new(&parsed);
    let auth = match AuthFile::new(store.root()).get(&remote.registry)? {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    };
    install_crypto_provider();
    let client = Client::new(ClientConfig {
        protocol: if opts.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..Default::default()
    });

    // 0. Credentials: a registry that answers with a Bearer challenge
    // sends us to its token server (with the stored Basic credentials,
    // or anonymously) for a pull token, which oci-client keeps for the
    // requests below. Asked for here, before anything else, so that a
    // token server that is down or refuses the credentials is named;
    // later requests would swallow that and go on anonymously.
    client
        .auth(&remote.oci(), &auth, RegistryOperation::Pull)
        .await
        .map_err(|e| map_auth_error(e, &remote, &auth))?;

    // 1. The manifest, through an index if need be.
    let (manifest_digest, manifest_bytes) = {
        let (digest, bytes) = fetch_manifest(&client, &remote, &auth).await?;
        if is_index(&bytes) {
            let chosen = choose_platform(&digest, &bytes)?;
            let at = remote.at_digest(&chosen);
            fetch_manifest(&client, &at, &auth).await?
        } else {
            (digest, bytes)
        }
    };
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|source| super::Error::InvalidJson {
            what: "image manifest",
            digest: manifest_digest.clone(),
            source,
        })?;
    check_manifest(&manifest, &manifest_digest)?;

    // 2. The config.
    let config_desc = manifest.config();
    let config_digest = config_desc.digest().to_string();
    let config_bytes = fetch_config(&client, &remote, &config_digest, config_desc.size()).await?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|source| super::Error::InvalidJson {
            what: "image config",
            digest: config_digest.clone(),
            source,
        })?;
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    if os != "linux" || arch != "amd64" {
        return Err(super::Error::WrongPlatform {
            image: remote.display(),
            platform: format!("{os}/{arch}"),
        }
        .into());
    }
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != manifest.layers().len() {
        return Err(super::Error::LayerCountMismatch {
            digest: manifest_digest,
            layers: manifest.layers().len(),
            diff_ids: diff_ids.len(),
        }
        .into());
    }
    let names: Vec<String> = parsed.tagged_name().into_iter().collect();
    if store.has_exact(&config_digest, &manifest_digest)? {
        let image = store.commit_pulled(&PulledImage {
            names: &names,
            manifest_digest: &manifest_digest,
            manifest: &manifest_bytes,
            config_digest: &config_digest,
            config: &config_bytes,
            layers: Vec::new(),
        })?;
        return Ok(Pulled {
            image,
            manifest_digest,
            up_to_date: true,
        });
    }

    // 3. The layers this store lacks (prune keeps off `ingest/` meanwhile).
    let _guard = store.ingest_guard()?;
    let ingest = store.root().join("ingest");
    let mut wanted = Vec::new();
    let mut bars = Vec::new();
    let mut to_download = 0u64;
    for desc in manifest.layers() {
        let digest = desc.digest().to_string();
        let bar = opts.progress.layer(&digest, desc.size());
        if store.has_blob(&digest)? {
            bar.finish("Already exists");
        } else if !wanted.iter().any(|(d, _)| d == &digest) {
            to_download += desc.size();
            wanted.push((digest, desc.size()));
        }
        bars.push(bar);
    }
    opts.progress.start_total(to_download);
    let bars_by_digest: Vec<_> = manifest
        .layers()
        .iter()
        .map(|d| d.digest().to_string())
        .zip(bars)
        .collect();
    let results: Vec<Result<(std::path::PathBuf, bool), Error>> =
        futures_util::stream::iter(wanted.iter().map(|(digest, size)| {
            let bar = &bars_by_digest
                .iter()
                .find(|(d, _)| d == digest)
                .expect("every wanted layer has a bar")
                .1;
            let client = &client;
            let remote = &remote;
            let ingest = &ingest;
            let store = &store;
            async move {
                let stored = store.blob_path(digest)?;
                fetch::fetch(&fetch::BlobRequest {
                    client,
                    remote,
                    ingest,
                    stored: &stored,
                    digest,
                    size: *size,
                    bar,
                })
                .await
            }
        }))
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .collect()
        .await;
    let mut fresh = Vec::new();
    let mut first_err = None;
    for r in results {
        match r {
            Ok((path, true)) => fresh.push(path),
            Ok((_, false)) => {}
            Err(e) if first_err.is_none() => first_err = Some(e),
            Err(_) => {}
        }
    }
    let forget_fresh = |fresh: &[std::path::PathBuf]| {
        for p in fresh {
            let _ = std::fs::remove_file(p);
        }
    };
    if let Some(e) = first_err {
        if !e.is_transient() {
            forget_fresh(&fresh);
        }
        return Err(e);
    }

    // 4. Unpack, build the disk, commit.
    opts.progress.stage("Unpacking");
    let layers = manifest
        .layers()
        .iter()
        .zip(&diff_ids)
        .map(|(d, diff_id)| (d.digest().to_string(), diff_id.clone()))
        .collect();
    let committed = store.commit_pulled(&PulledImage {
        names: &names,
        manifest_digest: &manifest_digest,
        manifest: &manifest_bytes,
        config_digest: &config_digest,
        config: &config_bytes,
        layers,
    });
    match committed {
        Ok(image) => {
            opts.progress.finish();
            Ok(Pulled {
                image,
                manifest_digest,
                up_to_date: false,
            })
        }
        Err(e) => {
            forget_fresh(&fresh);
            Err(e.into())
        }
    }
}

/// A verified image, ready to be recorded.
pub(super) struct PulledImage<'a> {
    pub(super) names: &'a [String],
    pub(super) manifest_digest: &'a str,
    pub(super) manifest: &'a [u8],
    pub(super) config_digest: &'a str,
    pub(super) config: &'a [u8],
    /// (layer digest, diff id), in order; empty when the store has the
    /// image already and only names change.
    pub(super) layers: Vec<(String, String)>,
}

impl ImageStore {
    /// Whether image `id` is recorded with exactly this manifest.
    fn has_exact(&self, id: &str, manifest_digest: &str) -> Result<bool, super::Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        Ok(index
            .images
            .get(id)
            .is_some_and(|r| r.manifest_digest == manifest_digest))
    }

    fn has_blob(&self, digest: &str) -> Result<bool, super::Error> {
        Ok(self.blob_path(digest)?.exists())
    }

    /// Under the lock: applies the layers (from `blobs/` or `ingest/`),
    /// checking diff ids, builds the disk, moves the downloads into
    /// `blobs/`, writes manifest and config and records the image.
    fn commit_pulled(&self, img: &PulledImage<'_>) -> Result<Image, super::Error> {
        let _lock = self.lock()?;
        let ingest = self.root().join("ingest");
        let mut sources = Vec::new();
        let mut to_move = Vec::new();
        for (digest, diff_id) in &img.layers {
            let blob = self.blob_path(digest)?;
            let staged = fetch::done_path(&ingest, digest)?;
            let (path, fresh) = if blob.exists() {
                // A concurrent pull committed it first: our copy is spare.
                let _ = std::fs::remove_file(&staged);
                (blob, false)
            } else {
                if !staged.exists() {
                    return Err(super::Error::MissingBlob {
                        digest: digest.clone(),
                    });
                }
                to_move.push((staged.clone(), blob));
                (staged, true)
            };
            sources.push(LayerSource {
                digest: digest.clone(),
                path,
                diff_id: diff_id.clone(),
                fresh,
            });
        }
        let disk = self.disk_path(img.config_digest)?;
        let built = if !img.layers.is_empty() && !disk.exists() {
            self.build_disk(img.config_digest, &sources, &disk)?;
            true
        } else {
            // The disk exists (same config, other manifest): still check
            // the new layers' diff ids before they become part of it.
            for (src, _) in &to_move {
                let s = sources
                    .iter()
                    .find(|s| &s.path == src)
                    .expect("moved layers are sources");
                super::build::check_diff_id(
                    s,
                    super::build::stream_limit(self.limits.max_layer_size),
                )?;
            }
            false
        };
        let mut created = Vec::new();
        let result = (|| {
            for (from, to) in &to_move {
                if !to.exists() {
                    std::fs::rename(from, to).map_err(super::Error::io(to))?;
                    created.push(to.clone());
                }
            }
            for (digest, bytes) in [
                (img.config_digest, img.config),
                (img.manifest_digest, img.manifest),
            ] {
                let dest = self.blob_path(digest)?;
                if !dest.exists() {
                    self.write_atomic(&dest, bytes)?;
                    created.push(dest);
                }
            }
            let mut index = self.read_index()?;
            index.record(img.config_digest, img.manifest_digest, img.names);
            self.write_index(&index)?;
            self.gc(&index)
        })();
        if let Err(e) = result {
            for p in &created {
                let _ = std::fs::remove_file(p);
            }
            if built {
                let _ = std::fs::remove_file(&disk);
                // And the layers unpacked for it that no image uses.
                if let Ok(index) = self.read_index() {
                    let _ = self.gc(&index);
                }
            }
            return Err(e);
        }
        let name = img.names.first().cloned().unwrap_or_default();
        self.image(img.config_digest, &name)
    }
}

/// Fetches the manifest (or index) `remote` names; returns its digest,
/// computed here, and its bytes. A pinned digest must match.
async fn fetch_manifest(
    client: &Client,
    remote: &Remote,
    auth: &RegistryAuth,
) -> Result<(String, Vec<u8>), Error> {
    let (bytes, _) = client
        .pull_manifest_raw(&remote.oci(), auth, ACCEPT)
        .await
        .map_err(|e| map_oci_error(e, remote, None))?;
    if bytes.len() as u64 > MAX_JSON_SIZE {
        return Err(Error::ManifestTooLarge {
            reference: remote.display(),
            limit: MAX_JSON_SIZE,
        });
    }
    let actual = format!("sha256:{}", digest::sha256_hex(&bytes));
    if let Some(want) = &remote.digest {
        if want != &actual {
            return Err(super::Error::DigestMismatch {
                digest: want.clone(),
                actual: actual.trim_start_matches("sha256:").to_string(),
            }
            .into());
        }
    }
    Ok((actual, bytes.to_vec()))
}

/// Fetches a config blob of at most [`MAX_JSON_SIZE`] bytes and checks it.
async fn fetch_config(
    client: &Client,
    remote: &Remote,
    digest: &str,
    size: u64,
) -> Result<Vec<u8>, Error> {
    let hex = digest::parse(digest)?;
    if size > MAX_JSON_SIZE {
        return Err(super::Error::TooLarge {
            what: "image config",
            digest: digest.to_string(),
            limit: MAX_JSON_SIZE,
        }
        .into());
    }
    let sized = client
        .pull_blob_stream(&remote.oci(), digest)
        .await
        .map_err(|e| map_oci_error(e, remote, Some(digest)))?;
    let mut out = Vec::new();
    let mut stream = sized.stream;
    loop {
        match stream.try_next().await {
            Ok(Some(chunk)) => {
                if (out.len() + chunk.len()) as u64 > size {
                    return Err(Error::Oversized {
                        digest: digest.to_string(),
                        expected: size,
                    });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if fetch::is_digest_error(&e) => break, // checked below
            Err(source) => {
                return Err(Error::Interrupted {
                    digest: digest.to_string(),
                    got: out.len() as u64,
                    expected: size,
                    source,
                })
            }
        }
    }
    if (out.len() as u64) < size {
        return Err(Error::Truncated {
            digest: digest.to_string(),
            got: out.len() as u64,
            expected: size,
        });
    }
    let actual = digest::sha256_hex(&out);
    if actual != hex {
        return Err(super::Error::DigestMismatch {
            digest: digest.to_string(),
            actual,
        }
        .into());
    }
    Ok(out)
}

/// Whether manifest bytes are an image index / manifest list.
fn is_index(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(p) => match p.media_type.as_deref() {
            Some(MT_OCI_INDEX | MT_DOCKER_LIST) => true,
            Some(_) => false,
            None => p.manifests.is_some(),
        },
        Err(_) => false,
    }
}

/// The digest of the linux/amd64 manifest of an index.
fn choose_platform(index_digest: &str, bytes: &[u8]) -> Result<String, Error> {
    let index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|source| super::Error::InvalidJson {
            what: "image index",
            digest: index_digest.to_string(),
            source,
        })?;
    check_index_media_type(&index, index_digest)?;
    index
        .manifests()
        .iter()
        .find(|d| d.platform().as_ref().is_some_and(is_linux_amd64))
        .map(|d| d.digest().to_string())
        .ok_or_else(|| {
            super::Error::NoMatchingPlatform {
                digest: index_digest.to_string(),
            }
            .into()
        })
}

/// What went wrong while getting a token (see step 0 of [`pull`]).
fn map_auth_error(e: OciDistributionError, remote: &Remote, auth: &RegistryAuth) -> Error {
    let registry = remote.registry.clone();
    match e {
        // The `GET /v2/` that asks for the challenge, or the realm.
        OciDistributionError::RequestError(source) => {
            let at_registry = source.url().is_none_or(|u| u.path() == "/v2/");
            if at_registry {
                Error::Unreachable { registry, source }
            } else {
                Error::TokenServerUnreachable { registry, source }
            }
        }
        OciDistributionError::AuthenticationFailure(_) => match auth {
            RegistryAuth::Anonymous => Error::Unauthorized {
                reference: remote.display(),
                registry,
            },
            _ => Error::TokenRefused { registry },
        },
        other => map_oci_error(other, remote, None),
    }
}

/// One line for what the registry said, naming the image (or blob).
pub(crate) fn map_oci_error(e: OciDistributionError, remote: &Remote, blob: Option<&str>) -> Error {
    let reference = match blob {
        Some(d) => format!("blob {d} of {}", remote.display()),
        None => remote.display(),
    };
    let registry = remote.registry.clone();
    let not_found = || Error::NotFound {
        reference: reference.clone(),
        registry: registry.clone(),
    };
    let unauthorized = || Error::Unauthorized {
        reference: reference.clone(),
        registry: registry.clone(),
    };
    match e {
        OciDistributionError::RequestError(source) => Error::Unreachable { registry, source },
        OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let first = envelope.errors.first();
            match first.map(|e| &e.code) {
                Some(
                    OciErrorCode::NameUnknown
                    | OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound,
                ) => not_found(),
                Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => unauthorized(),
                _ => Error::Registry {
                    registry,
                    message: one_line(
                        &first
                            .map(|e| format!("{:?}: {}", e.code, e.message))
                            .unwrap_or_else(|| "an error without details".into()),
                    ),
                },
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => not_found(),
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => unauthorized(),
        OciDistributionError::ServerError { code, message, .. } => Error::Registry {
            registry,
            message: one_line(&format!("HTTP {code} for {reference}: {message}")),
        },
        other => Error::Registry {
            registry,
            message: one_line(&format!("{reference}: {other}")),
        },
    }
}

/// Collapses whitespace (a registry's message may span lines) and bounds
/// the length.
fn one_line(s: &str) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 200 {
        let mut end = 200;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(s: &str) -> Remote {
        Remote::new(&Reference::parse(s).unwrap())
    }

    #[test]
    fn references_map_to_registries() {
        let r = remote("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        let r = remote("foo/bar:1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "foo/bar")
        );
        let r = remote("127.0.0.1:5000/hull/busybox:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "hull/busybox");
        assert_eq!(r.oci().to_string(), "127.0.0.1:5000/hull/busybox:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = remote(&format!("localhost/x@{d}"));
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.oci().digest(), Some(d.as_str()));
    }

    #[test]
    fn indexes_are_told_from_manifests() {
        assert!(is_index(
            br#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
        ));
        assert!(is_index(br#"{"schemaVersion":2,"manifests":[]}"#));
        assert!(!is_index(
            br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
        ));
        assert!(!is_index(br#"{"schemaVersion":2,"layers":[]}"#));
    }

    #[test]
    fn picks_amd64_or_says_which_index() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [
                {"mediaType": MT_OCI_MANIFEST, "digest": d('a'), "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": MT_OCI_MANIFEST, "digest": d('b'), "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        assert_eq!(choose_platform("sha256:i", &bytes).unwrap(), d('b'));
        let mut arm_only = index.clone();
        arm_only["manifests"].as_array_mut().unwrap().pop();
        let bytes = serde_json::to_vec(&arm_only).unwrap();
        let err = choose_platform("sha256:i", &bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image index sha256:i has no linux/amd64 image"
        );
    }

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert!(one_line(&"x".repeat(500)).chars().count() <= 201);
    }
}
