//! The shim's errors and the one place they become ttrpc status codes.

use containerd_shim_protos::ttrpc::{self, Code};
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
    #[error("{what}: {source:#}")]
    Runtime {
        what: String,
        #[source]
        source: anyhow::Error,
    },
}

impl Error {
    pub fn runtime(what: impl Into<String>) -> impl FnOnce(anyhow::Error) -> Self {
        let what = what.into();
        move |source| Error::Runtime { what, source }
    }

    fn code(&self) -> Code {
        match self {
            Error::TaskNotFound(_) | Error::ExecNotFound { .. } => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::Unsupported(_) => Code::UNIMPLEMENTED,
            Error::Runtime { .. } => Code::INTERNAL,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
