//! `hull push`: an image of the store to a registry that speaks the OCI
//! distribution API, blob by blob, then its manifest.
//!
//! Model: docker's push (`distribution/push_v2.go`): the layers, then the
//! config, each skipped when the registry has it, mounted from another
//! repository of the same registry that the image came from, or uploaded
//! ([`upload`]); then the manifest under its tag, with its exact bytes so
//! the registry reports the digest the store shows. Credentials are what
//! `hull login` stored: Basic, or a Bearer token for `push,pull` on the
//! target (and `pull` on the mount source) asked for with them
//! ([`Session`], the same bounded requests a pull makes).
//!
//! A failure leaves no manifest in the registry (blobs it took may stay,
//! as with docker) and the store as it was: a push only reads it.

mod local;
mod upload;

use self::local::LocalImage;
use self::upload::Target;
use super::remote::Remote;
use super::session::Session;
use super::Error;
use crate::auth::AuthFile;
use crate::reference::{is_domain, repo_of, Reference};
use crate::ImageStore;

/// Overrides [`DEFAULT_CHUNK_SIZE`], in bytes.
pub const CHUNK_SIZE_VAR: &str = "HULL_PUSH_CHUNK_SIZE";
/// Blobs up to this size are uploaded in one request, larger ones in
/// chunks of it (each held in memory while it is sent).
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

/// What became of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    Pushed,
    /// The registry had it in the repository already.
    Exists,
    /// Mounted from another repository of the registry.
    Mounted {
        from: String,
    },
}

/// What a push reports as it goes.
#[derive(Debug)]
pub enum PushEvent<'a> {
    /// The repository the push goes to, `registry/path`.
    Repository(&'a str),
    Blob {
        digest: &'a str,
        outcome: &'a BlobOutcome,
    },
}

/// How to push.
pub struct PushOptions<'a> {
    /// Speak plain HTTP to the registry (for registries on loopback).
    pub plain_http: bool,
    /// See [`DEFAULT_CHUNK_SIZE`].
    pub chunk_size: u64,
    pub progress: &'a mut (dyn FnMut(PushEvent<'_>) + Send),
}

impl PushOptions<'_> {
    /// [`DEFAULT_CHUNK_SIZE`] unless [`CHUNK_SIZE_VAR`] holds a positive
    /// number of bytes.
    pub fn chunk_size_from_env() -> u64 {
        std::env::var(CHUNK_SIZE_VAR)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_CHUNK_SIZE)
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `registry/repository:tag` pushed to.
    pub reference: String,
    pub tag: String,
    /// The manifest digest, as the registry reports it.
    pub digest: String,
    /// The manifest's size in bytes.
    pub size: u64,
}

/// Pushes the store's image `source` to `target` (a `REGISTRY/REPO[:TAG]`
/// reference), or to `source` itself when that names a registry.
pub async fn push(
    store: &ImageStore,
    source: &str,
    target: Option<&str>,
    opts: PushOptions<'_>,
) -> Result<Pushed, Error> {
    let remote = remote_of(target.unwrap_or(source))?;
    let image = store.push_source(source).map_err(|e| match e {
        crate::Error::NotFound(_) | crate::Error::InvalidReference { .. } => Error::Store(e),
        other => Error::Local {
            image: source.to_string(),
            source: other,
        },
    })?;
    let mount_from = mount_source(&image, &remote);
    let creds = AuthFile::new(store.root())
        .get(&remote.registry)?
        .map(|c| (c.username, c.password));
    let mut scopes = vec![format!("repository:{}:pull,push", remote.repository)];
    if let Some(from) = &mount_from {
        scopes.push(format!("repository:{from}:pull"));
    }
    crate::tls::install_crypto_provider();
    let session = Session::open(&remote, creds, opts.plain_http, scopes).await?;
    let target = Target {
        session: &session,
        repository: remote.repository.clone(),
        chunk_size: opts.chunk_size.max(1),
    };
    (opts.progress)(PushEvent::Repository(&target.display()));
    for blob in &image.blobs {
        let outcome = target.blob(blob, mount_from.as_deref()).await?;
        (opts.progress)(PushEvent::Blob {
            digest: &blob.digest,
            outcome: &outcome,
        });
    }
    let tag = remote.tag.clone().unwrap_or_else(|| "latest".to_string());
    let digest = target
        .manifest(
            &tag,
            &image.manifest_bytes,
            &image.media_type,
            &image.manifest_digest,
        )
        .await?;
    Ok(Pushed {
        reference: format!("{}:{tag}", target.display()),
        tag,
        digest,
        size: image.manifest_bytes.len() as u64,
    })
}

/// Where `reference` lives; it must name a registry and a tag, not a
/// digest.
fn remote_of(reference: &str) -> Result<Remote, Error> {
    let parsed = Reference::parse(reference)?;
    if parsed.digest.is_some() {
        return Err(Error::PushToDigest {
            reference: reference.to_string(),
        });
    }
    // On the reference as written: `docker.io/library/x` normalizes to `x`.
    let names_registry = reference
        .split_once('/')
        .is_some_and(|(first, _)| is_domain(first));
    if !names_registry {
        return Err(Error::NoRegistry {
            reference: reference.to_string(),
        });
    }
    Ok(Remote::new(&parsed))
}

/// Another repository of the target's registry that the image is named
/// by (it was pulled from or pushed to there): its blobs can be mounted
/// from it instead of uploaded.
fn mount_source(image: &LocalImage, target: &Remote) -> Option<String> {
    image.names.iter().find_map(|name| {
        let r = Reference::parse(repo_of(name)).ok()?;
        let remote = Remote::new(&r);
        (remote.registry == target.registry && remote.repository != target.repository)
            .then_some(remote.repository)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_named(names: &[&str]) -> LocalImage {
        LocalImage {
            names: names.iter().map(|n| n.to_string()).collect(),
            manifest_digest: String::new(),
            manifest_bytes: Vec::new(),
            media_type: String::new(),
            blobs: Vec::new(),
        }
    }

    #[test]
    fn a_push_names_a_registry_and_a_tag() {
        let r = remote_of("127.0.0.1:5000/x/busybox:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "x/busybox", Some("1"))
        );
        let err = remote_of("busybox").unwrap_err();
        assert!(matches!(err, Error::NoRegistry { .. }), "{err}");
        let err = remote_of("x/busybox:1").unwrap_err();
        assert!(matches!(err, Error::NoRegistry { .. }), "{err}");
        let d = format!("sha256:{}", "a".repeat(64));
        let err = remote_of(&format!("localhost:5000/x@{d}")).unwrap_err();
        assert!(matches!(err, Error::PushToDigest { .. }), "{err}");
    }

    #[test]
    fn blobs_mount_from_another_repository_of_the_same_registry() {
        let target = remote_of("127.0.0.1:5000/copy/busybox:1").unwrap();
        let img = image_named(&["busybox:latest", "127.0.0.1:5000/hull/busybox:1"]);
        assert_eq!(mount_source(&img, &target).as_deref(), Some("hull/busybox"));
        let img = image_named(&[
            "127.0.0.1:5001/hull/busybox:1",
            "127.0.0.1:5000/copy/busybox:0",
        ]);
        assert_eq!(mount_source(&img, &target), None);
    }
}
