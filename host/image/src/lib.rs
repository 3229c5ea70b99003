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
//! ingest/build-<hex>      a built layer waiting for its image's commit (see [`writer`])
//! lock                   flock(2): exclusive for writers, shared for readers
//! auth.json              registry credentials (0600), see [`auth`]
//! ```

mod archive;
pub mod auth;
mod blobs;
mod build;
pub mod commit;
mod copy_out;
mod digest;
mod disk;
mod export;
#[doc(hidden)]
pub mod fuzzing;
mod history;
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
mod tag;
mod tar_bounds;
mod tls;
pub mod unpack;
mod writer;

#[cfg(test)]
mod test_utils;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use archive::Error as ArchiveError;
pub use digest::HashingWriter;
pub use disk::build_erofs;
pub use disk::FsType;
pub use history::HistoryEntry;
pub use maintain::{IngestGuard, Inspect, InspectDisk, InspectLayer, PruneReport};
pub use reference::Reference;
pub use store::ImageStore;
pub use writer::{NewImage, NewLayer, StoredLayer};

/// Largest JSON document (index, manifest, config) we read from an archive
/// or from the store.
pub const MAX_JSON_SIZE: u64 = 4 << 20;

pub use tar_bounds::{Error as BoundsError, Scope as BoundsScope, MAX_EXTENSION_SIZE};

/// Bounds on untrusted layer content, checked on the tar stream as it is
/// read (see [`tar_bounds`]): an entry that crosses one is refused by
/// name, before anything of it is written, and the image with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest sum of file sizes in one layer (a gzip bomb cannot fill
    /// the disk).
    pub max_layer_size: u64,
    /// Most entries (headers other than PAX and GNU extensions) in one
    /// layer.
    pub max_layer_entries: u64,
    /// Largest sum of file sizes over all layers of an image.
    pub max_image_size: u64,
    /// Most entries over all layers of an image.
    pub max_image_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_size: DEFAULT_MAX_LAYER_SIZE,
            max_layer_entries: DEFAULT_MAX_LAYER_ENTRIES,
            max_image_size: DEFAULT_MAX_IMAGE_SIZE,
            max_image_entries: DEFAULT_MAX_IMAGE_ENTRIES,
        }
    }
}

impl Limits {
    /// The defaults, each overridable by its environment variable
    /// ([`LIMIT_VARS`]), e.g. for tests or a host that must hold larger
    /// images.
    pub fn from_env() -> Result<Limits, Error> {
        let mut limits = Limits::default();
        for (var, field) in [
            (LIMIT_VARS[0], &mut limits.max_layer_size),
            (LIMIT_VARS[1], &mut limits.max_layer_entries),
            (LIMIT_VARS[2], &mut limits.max_image_size),
            (LIMIT_VARS[3], &mut limits.max_image_entries),
        ] {
            if let Some(value) = std::env::var_os(var) {
                let value = value.to_string_lossy().into_owned();
                *field = value.parse().map_err(|_| Error::BadLimit { var, value })?;
            }
        }
        Ok(limits)
    }

    /// What a layer may hold when the layers below it in its image hold
    /// `used`.
    pub(crate) fn budget(&self, used: tar_bounds::Totals) -> tar_bounds::Budget {
        tar_bounds::Budget {
            layer_entries: self.max_layer_entries,
            layer_bytes: self.max_layer_size,
            image: tar_bounds::ImageBudget {
                max_entries: self.max_image_entries,
                max_bytes: self.max_image_size,
                used,
            },
        }
    }
}

/// The environment variables that override [`Limits`], in field order.
pub const LIMIT_VARS: [&str; 4] = [
    "HULL_MAX_LAYER_SIZE",
    "HULL_MAX_LAYER_ENTRIES",
    "HULL_MAX_IMAGE_SIZE",
    "HULL_MAX_IMAGE_ENTRIES",
];

/// 16 GiB: larger than any sane layer, smaller than a full disk.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 16 << 30;
/// 64 GiB: the largest public images (CUDA and ML toolchains) unpack to
/// 20-30 GiB; every byte is stored twice (the unpacked tree and the disk).
pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 64 << 30;
/// One million: a Debian or Alpine base holds 10-20 thousand entries, a
/// heavy `node_modules` layer a few hundred thousand. Each costs an inode
/// per tree that holds it and, while its layer is applied, a path in
/// memory.
pub const DEFAULT_MAX_LAYER_ENTRIES: u64 = 1_000_000;
/// Two million: a new layer's tree clones every entry below it, so the
/// image's entries bound the work of each layer on top.
pub const DEFAULT_MAX_IMAGE_ENTRIES: u64 = 2_000_000;
/// Layers in one image: Docker's bound (127) as well, since overlay
/// stacks deeper than that fail to mount; each layer is a tree clone.
pub const MAX_LAYERS: usize = 127;

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
    #[error("layer {digest} is refused")]
    Refused {
        digest: String,
        #[source]
        source: tar_bounds::Error,
    },
    #[error("image {digest} has {count} layers, more than the bound of {MAX_LAYERS}")]
    TooManyLayers { digest: String, count: usize },
    #[error("{var}={value:?} is not a number")]
    BadLimit { var: &'static str, value: String },
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
