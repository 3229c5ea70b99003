//! `hull pull`: fetching an image from a registry that speaks the OCI
//! distribution API, into the store.
//!
//! Model: containerd's `remotes` + `images.Handlers` fetch path, over the
//! `oci-client` crate for blobs (Basic or Bearer auth, ranges); the pull
//! token and the manifests are read by [`session`], each bounded in size
//! while it is read and in time. A registry is untrusted: nothing it sends
//! is held beyond its bound, and no request waits on it forever.
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
mod push;
mod remote;
mod session;
mod source;

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use self::remote::Remote;
use self::session::Session;
use self::source::RegistrySource;
use super::auth::{self, AuthFile};
use super::progress::PullProgress;
use super::reference::Reference;
use super::source::{documents, Documents, ImageSource, Imported};
use super::{tls, Image, ImageStore};

pub use self::push::{push, BlobOutcome, PushEvent, PushOptions, Pushed, CHUNK_SIZE_VAR};
pub use self::session::DEADLINE_VAR;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The stall timeout: the longest wait for the next bytes of any reply.
/// A blob download has no overall deadline (a large layer on a slow link
/// rightly takes long), only this; the replies read whole have both (see
/// [`session`]).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

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
    #[error("{what} of {reference} from registry {registry} is larger than {limit} bytes")]
    TooLarge {
        what: &'static str,
        reference: String,
        registry: String,
        limit: u64,
    },
    #[error("registry {registry} did not send {what} of {reference} within {secs} s")]
    Deadline {
        what: &'static str,
        reference: String,
        registry: String,
        secs: u64,
    },
    #[error("{reference} names no registry: give the remote name too (`hull push {reference} REGISTRY/REPO[:TAG]`)")]
    NoRegistry { reference: String },
    #[error("cannot push to {reference}: a push names a tag, not a digest")]
    PushToDigest { reference: String },
    #[error(
        "registry {registry} refused {what} (run `hull login {registry}` if it needs credentials)"
    )]
    PushDenied { what: String, registry: String },
    #[error("registry {registry} did not finish {what} within {secs} s")]
    UploadDeadline {
        what: String,
        registry: String,
        secs: u64,
    },
    #[error("image {image} cannot be pushed from the store")]
    Local {
        image: String,
        #[source]
        source: super::Error,
    },
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
                | Error::Deadline { .. }
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

/// Pulls `reference` into `store`.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    mut opts: PullOptions,
) -> Result<Pulled, Error> {
    let parsed = Reference::parse(reference)?;
    let remote = Remote::new(&parsed);
    let auth = stored_auth(store, &remote)?;
    let (client, session) = connect(&remote, &auth, opts.plain_http).await?;
    let mut src = RegistrySource {
        client,
        session,
        remote,
        store,
        progress: &mut opts.progress,
        bars: Vec::new(),
        fresh: Vec::new(),
    };
    // 1 and 2. The manifest, through an index if need be, and the config.
    let docs = documents(&mut src).await?;
    let names: Vec<String> = parsed.tagged_name().into_iter().collect();
    if store.has_exact(&docs.config_digest, &docs.manifest_digest)? {
        return up_to_date(store, names, docs);
    }
    // 3. The layers this store lacks (prune keeps off `ingest/` meanwhile).
    let _guard = store.ingest_guard()?;
    let layers = match src.layers(&docs).await {
        Ok(layers) => layers,
        Err(e) => {
            if !e.is_transient() {
                src.forget_fresh();
            }
            return Err(e);
        }
    };
    // 4. Unpack, build the disk, commit.
    src.progress.stage("Unpacking");
    let manifest_digest = docs.manifest_digest.clone();
    let imported = Imported {
        names,
        docs,
        layers,
    };
    match store.commit_pulled(&imported) {
        Ok(image) => {
            src.progress.finish();
            Ok(Pulled {
                image,
                manifest_digest,
                up_to_date: false,
            })
        }
        Err(e) => {
            src.forget_fresh();
            Err(e.into())
        }
    }
}

/// The credentials `hull login` stored for the registry, if any.
fn stored_auth(store: &ImageStore, remote: &Remote) -> Result<RegistryAuth, Error> {
    Ok(match AuthFile::new(store.root()).get(&remote.registry)? {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    })
}

/// Step 0, a client with its credentials: a registry that answers with a
/// Bearer challenge sends us to its token server (with the stored Basic
/// credentials, or anonymously) for a pull token, which oci-client is
/// handed for the requests that follow (see [`session`]). Asked for here,
/// before anything else, so that a token server that is down or refuses
/// the credentials is named; later requests would swallow that and go on
/// anonymously.
async fn connect(
    remote: &Remote,
    auth: &RegistryAuth,
    plain_http: bool,
) -> Result<(Client, Session), Error> {
    tls::install_crypto_provider();
    let client = Client::new(ClientConfig {
        protocol: if plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..Default::default()
    });
    let session = Session::connect(remote, auth, plain_http, &client).await?;
    Ok((client, session))
}

/// The store has this exact image: only its names may change.
fn up_to_date(store: &ImageStore, names: Vec<String>, docs: Documents) -> Result<Pulled, Error> {
    let manifest_digest = docs.manifest_digest.clone();
    let imported = Imported {
        names,
        docs,
        layers: Vec::new(),
    };
    Ok(Pulled {
        image: store.commit_pulled(&imported)?,
        manifest_digest,
        up_to_date: true,
    })
}
