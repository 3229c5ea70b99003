//! The shim's errors and the one place they become ttrpc status codes:
//! the library's errors by their [`ErrorKind`], the shim's own by variant.

use containerd_shim_protos::ttrpc::{self, Code};
use hull_container::ErrorKind;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("exec {exec} of task {task} not found")]
    ExecNotFound { task: String, exec: String },
    #[error("task {0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The request does not fit the process's state (e.g. it has exited).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0} is not supported by hull")]
    Unsupported(&'static str),
    /// What hull's library reported, with its causes on one line.
    #[error("{what}: {}", hull_container::supervisor::one_line(source))]
    Library {
        what: &'static str,
        #[source]
        source: hull_container::Error,
    },
    /// The shim's own work on the host (mounts, FIFOs), causes on one line.
    #[error("{what}: {source:#}")]
    Host {
        what: &'static str,
        #[source]
        source: anyhow::Error,
    },
}

impl Error {
    pub fn library(what: &'static str) -> impl FnOnce(hull_container::Error) -> Self {
        move |source| Error::Library { what, source }
    }

    pub fn host<E: Into<anyhow::Error>>(what: &'static str) -> impl FnOnce(E) -> Self {
        move |source| Error::Host {
            what,
            source: source.into(),
        }
    }

    fn code(&self) -> Code {
        match self {
            Error::TaskNotFound(_) | Error::ExecNotFound { .. } => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::Unsupported(_) => Code::UNIMPLEMENTED,
            Error::Library { source, .. } => match source.kind() {
                ErrorKind::NotFound => Code::NOT_FOUND,
                ErrorKind::AlreadyExists => Code::ALREADY_EXISTS,
                ErrorKind::InvalidArgument => Code::INVALID_ARGUMENT,
                ErrorKind::FailedPrecondition => Code::FAILED_PRECONDITION,
                ErrorKind::Internal => Code::INTERNAL,
            },
            Error::Host { .. } => Code::INTERNAL,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use hull_container::record::LookupError;

    fn status(e: Error) -> Code {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => s.code(),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn library_errors_keep_their_kind_over_ttrpc() {
        let lib = |e: hull_container::Error| Error::library("create")(e);
        assert_eq!(
            status(lib(LookupError::NoSuchId("x".into()).into())),
            Code::NOT_FOUND
        );
        assert_eq!(
            status(lib(hull_container::Error::IdInUse("x".into()))),
            Code::ALREADY_EXISTS
        );
        assert_eq!(
            status(lib(hull_container::Error::NotInPath("nope".into()))),
            Code::INVALID_ARGUMENT
        );
        assert_eq!(
            status(lib(hull_container::Error::SandboxStopped("pod".into()))),
            Code::FAILED_PRECONDITION
        );
        assert_eq!(
            status(lib(hull_container::Error::Refused {
                message: "not running".into(),
                code: 1
            })),
            Code::FAILED_PRECONDITION
        );
        assert_eq!(
            status(lib(hull_container::Error::SupervisorFailed("boom".into()))),
            Code::INTERNAL
        );
    }

    #[test]
    fn messages_carry_the_cause_on_one_line() {
        let e = Error::library("create the task")(hull_container::Error::JoinTarget {
            mode: "container:a".into(),
            source: LookupError::NotFound("a".into()),
        });
        assert_eq!(
            e.to_string(),
            "create the task: --network container:a: no such container: a"
        );
    }
}
