//! The errors a front door gets from the container library, each with the
//! kind of failure it is, so that every door maps it the same way (ttrpc
//! codes in the shim, HTTP statuses in an API server, exit codes in the
//! CLI) from one place (containerd rust-extensions' `shim/src/error.rs`).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::oci::limits::LimitError;
use crate::oci::OciError;
use crate::record::LookupError;
use crate::spec::SpecError;

/// What kind of failure an [`Error`] is, as RPC status codes name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller named something that does not exist.
    NotFound,
    /// The caller asked to create something that exists.
    AlreadyExists,
    /// The request itself is wrong: fix it, do not retry it.
    InvalidArgument,
    /// The request is fine but the container is not in a state for it.
    FailedPrecondition,
    /// Something of hull's or of the host failed.
    Internal,
}

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("container with id {0} already exists")]
    IdInUse(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running: stop it first")]
    StillRunning(String),
    #[error("container {name}: its supervisor did not answer")]
    NoAnswer {
        name: String,
        #[source]
        source: io::Error,
    },
    /// The supervisor refused the request; `code` is the exit status it
    /// suggests (as `hull run` reports it).
    #[error("{message}")]
    Refused { message: String, code: i32 },
    #[error("unexpected supervisor reply {0}")]
    UnexpectedReply(String),
    #[error("invalid {flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{0}")]
    Unsupported(&'static str),
    /// An OCI hook of the bundle failed (see `hooks`).
    #[error("{kind} hook {index} ({path}): {reason}")]
    Hook {
        kind: &'static str,
        index: usize,
        path: String,
        reason: String,
    },
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error("volume {name} is in use by container {container}")]
    VolumeInUse { name: String, container: String },
    /// A bind mount, volume or tmpfs that cannot be given to the container.
    #[error("mount {destination}: {reason}")]
    Mount { destination: String, reason: String },
    #[error("--network {mode}: the network is {name}'s; publish ports and give aliases there")]
    JoinWithOwnNetwork { mode: String, name: String },
    #[error("--network {mode}")]
    JoinTarget {
        mode: String,
        #[source]
        source: LookupError,
    },
    #[error("--network {mode}: {name} is not running")]
    JoinTargetStopped { mode: String, name: String },
    #[error("the pod's sandbox {0} is not a hull container here")]
    NoSandbox(String),
    #[error("the pod's sandbox {0} is not running")]
    SandboxStopped(String),
    #[error("bundle {}: {reason}", dir.display())]
    Bundle { dir: PathBuf, reason: String },
    #[error("checkpoint {}: {reason}", dir.display())]
    Checkpoint { dir: PathBuf, reason: String },
    #[error("exec: {0:?}: no such file or directory")]
    NoSuchFile(String),
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotInPath(String),
    #[error("read seccomp profile {path}")]
    SeccompFile {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("seccomp profile {path}")]
    SeccompProfile {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the container's supervisor failed to start: {0}")]
    SupervisorFailed(String),
    #[error("the container's supervisor did not start within {0:?}")]
    SupervisorTimeout(std::time::Duration),
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error(transparent)]
    Process(#[from] SpecError),
    #[error(transparent)]
    Spec(#[from] OciError),
    #[error(transparent)]
    Image(#[from] hull_image::Error),
    #[error(transparent)]
    Assets(#[from] hull_sandbox::assets::AssetError),
    #[error(transparent)]
    Hypervisor(#[from] hull_sandbox::hypervisor::HypervisorError),
    #[error(transparent)]
    Network(#[from] hull_net::NetworkError),
    #[error(transparent)]
    Sandbox(#[from] hull_sandbox::SandboxError),
    #[error("container {0} has exited and its VM is gone: only a running container, or one created to keep its VM for an export, can be committed")]
    NoVmToExport(String),
    #[error("the changes of container {name} were refused")]
    BadLayer {
        name: String,
        #[source]
        source: Box<hull_image::commit::CommitError>,
    },
    #[error(transparent)]
    Commit(Box<hull_image::commit::CommitError>),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind::*;
        match self {
            Self::Lookup(LookupError::NotFound(_) | LookupError::NoSuchId(_))
            | Self::NoSandbox(_)
            | Self::NoSuchVolume(_) => NotFound,
            Self::Lookup(LookupError::NameInUse { .. }) | Self::IdInUse(_) => AlreadyExists,
            Self::Lookup(LookupError::Ambiguous(_) | LookupError::InvalidName(_))
            | Self::Invalid { .. }
            | Self::Unsupported(_)
            | Self::Mount { .. }
            | Self::JoinWithOwnNetwork { .. }
            | Self::JoinTarget { .. }
            | Self::Bundle { .. }
            | Self::Checkpoint { .. }
            | Self::NoSuchFile(_)
            | Self::NotInPath(_)
            | Self::SeccompFile { .. }
            | Self::SeccompProfile { .. }
            | Self::Limits(_)
            | Self::Process(_)
            | Self::Spec(_) => InvalidArgument,
            Self::NotRunning(_)
            | Self::StillRunning(_)
            | Self::JoinTargetStopped { .. }
            | Self::SandboxStopped(_)
            | Self::VolumeInUse { .. }
            | Self::NoVmToExport(_)
            | Self::Refused { .. } => FailedPrecondition,
            Self::Commit(e) => commit_kind(e),
            Self::Image(hull_image::Error::NotFound(_))
            | Self::Network(hull_net::NetworkError::NotFound(_)) => NotFound,
            Self::Image(hull_image::Error::InvalidReference { .. }) => InvalidArgument,
            _ => Internal,
        }
    }
}

/// The kind of a failed commit: a bad flag or name, a missing image, or
/// hull's own failure.
fn commit_kind(e: &hull_image::commit::CommitError) -> ErrorKind {
    use hull_image::commit::CommitError as C;
    match e {
        C::BadChange(_) | C::Store(hull_image::Error::InvalidReference { .. }) => {
            ErrorKind::InvalidArgument
        }
        C::Store(hull_image::Error::NotFound(_)) => ErrorKind::NotFound,
        _ => ErrorKind::Internal,
    }
}

/// Wraps an I/O error with what was being done.
pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
