//! The local image store: imports OCI image archives (and `docker save`
//! tarballs), keeps their blobs content-addressed, resolves references, and
//! builds one read-only rootfs disk per image for the guest to mount.
//!
//! Models: the OCI image-layout spec for the blob store, containerd's
//! content store (verify every blob against its descriptor before it is
//! visible, commit by rename) and umoci/containerd's layer applier for
//! whiteouts and path scoping. Everything read from an archive is
//! untrusted; see [`unpack`] for how layer paths are confined.
//!
//! Layout under the store root:
//! ```text
//! blobs/sha256/<hex>     verified manifests, configs and layers
//! images.json            image id -> manifest digest and names (atomic rename)
//! layers/<chain>/        one unpacked layer stack per chain id, shared by
//!                        the images built on it, see [`layers`]
//! disks/<hex>.erofs      flattened rootfs per image id (config digest)
//! ingest/<hex>.partial   a registry download in progress (flock'd by its writer)
//! ingest/<hex>           a verified download, waiting for its image's commit
//! tmp/                   staging for imports and disk builds; emptied under the lock
//! lock                   flock(2): exclusive for writers, shared for readers
//! auth.json              registry credentials (0600), see [`auth`]
//! ```

mod archive;
pub mod auth;
mod blobs;
mod build;
mod copy_out;
mod digest;
mod disk;
mod export;
mod index;
mod layer;
mod layers;
mod maintain;
mod media;
pub mod progress;
mod reference;
pub mod registry;
mod source;
mod store;
mod tls;
pub mod unpack;

#[cfg(test)]
mod test_utils;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use archive::Error as ArchiveError;
pub use disk::build_erofs;
pub use disk::FsType;
pub use maintain::{IngestGuard, Inspect, InspectDisk, InspectLayer, PruneReport};
pub use reference::Reference;
pub use store::ImageStore;

/// Largest JSON document (index, manifest, config) we read from an archive
/// or from the store.
pub const MAX_JSON_SIZE: u64 = 4 << 20;

/// Bounds on untrusted layer content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest uncompressed size of one layer; an entry that would take the
    /// layer past it is refused by name (a gzip bomb cannot fill the disk).
    pub max_layer_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_size: DEFAULT_MAX_LAYER_SIZE,
        }
    }
}

/// 16 GiB: larger than any sane layer, smaller than a full disk.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 16 << 30;

/// One tagged (or untagged) image in the store.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Image {
    /// Normalized `repo:tag`, e.g. `hull-demo/busybox:latest`; empty for an
    /// image that has no name (reachable by id only).
    pub name: String,
    /// The config digest, `sha256:<hex>`.
    pub id: String,
    /// The manifest digest, `sha256:<hex>`.
    pub manifest_digest: String,
    pub config: ImageConfig,
    /// Sum of the layer blobs' sizes (as stored, compressed).
    pub size: u64,
}

impl Image {
    /// The id's hex without `sha256:`, 64 characters.
    pub fn id_hex(&self) -> &str {
        self.id.strip_prefix("sha256:").unwrap_or(&self.id)
    }

    /// The first 12 hex characters of the id, as `docker images` shows.
    pub fn short_id(&self) -> &str {
        let hex = self.id_hex();
        &hex[..hex.len().min(12)]
    }
}

/// The parts of an image's OCI config that running a container needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    /// `"80/tcp"`-style keys of the config's `ExposedPorts`, sorted.
    pub exposed_ports: Vec<String>,
    pub stop_signal: Option<String>,
}

/// A built rootfs disk image: the guest mounts `path` read-only as `fs_type`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RootfsDisk {
    pub path: PathBuf,
    pub fs_type: FsType,
}

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image not found: {0}")]
    NotFound(String),
    #[error("image reference {reference} is ambiguous: it matches {count} images")]
    Ambiguous { reference: String, count: usize },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        reference: String,
        reason: &'static str,
    },
    #[error("corrupt archive {archive}")]
    CorruptArchive {
        archive: PathBuf,
        #[source]
        source: archive::Error,
    },
    #[error("cannot read archive {archive}")]
    ReadArchive {
        archive: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("archive {archive} names no image")]
    NoImages { archive: PathBuf },
    #[error("blob {digest} is missing")]
    MissingBlob { digest: String },
    #[error("blob {digest} does not match its digest (got sha256:{actual})")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} {digest} is larger than {limit} bytes")]
    TooLarge {
        what: &'static str,
        digest: String,
        limit: u64,
    },
    #[error("invalid digest {0:?} (only sha256:<64 hex> is supported)")]
    InvalidDigest(String),
    #[error("unsupported media type {media_type} for {what} {digest}")]
    UnsupportedMediaType {
        what: &'static str,
        media_type: String,
        digest: String,
    },
    #[error("invalid {what} {digest}")]
    InvalidJson {
        what: &'static str,
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image index {digest} has no linux/amd64 image")]
    NoMatchingPlatform { digest: String },
    #[error("image {digest} has {layers} layers but {diff_ids} diff ids in its config")]
    LayerCountMismatch {
        digest: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("layer {digest} diff id mismatch: config says {expected}, content is sha256:{actual}")]
    DiffIdMismatch {
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("cannot read layer {digest}")]
    ReadLayer {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot unpack layer {digest}")]
    Unpack {
        digest: String,
        #[source]
        source: unpack::Error,
    },
    #[error("{tool} not found; install {package}")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    #[error("HULL_DISK_FS={0:?} is not a disk kind (erofs or ext4)")]
    BadDiskFs(String),
    #[error("{tool} failed on {dir}: {stderr}")]
    ToolFailed {
        tool: &'static str,
        dir: PathBuf,
        stderr: String,
    },
    #[error("the store index {path} is corrupt")]
    CorruptIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("image {image} is used by container {container} (use -f to remove it anyway)")]
    InUse { image: String, container: String },
    #[error("image {image} is for {platform}, not linux/amd64")]
    WrongPlatform { image: String, platform: String },
    #[error("image store I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] naming `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
