//! The one seam between the builder and RUN: a [`Runner`] runs a
//! command as a hull container (its own microVM) on the image built so
//! far and hands back the container's writable-layer changes as a layer
//! blob. The builder knows nothing else of containers; wiring RUN to
//! `hull_container` is an implementation of this trait.
//!
//! Until the container export exists, [`Unwired`] refuses every RUN with
//! one line, before anything is built: a Dockerfile with RUN never
//! "succeeds" without having run it.

use std::future::Future;
use std::io::Write;
use std::path::Path;

use hull_image::{Image, NewLayer};

/// One RUN step.
#[derive(Debug)]
pub struct RunRequest<'a> {
    /// The state before the step, stored as an (untagged) image.
    pub image: &'a Image,
    /// What to run: the shell form already wrapped in the stage's SHELL.
    pub argv: Vec<String>,
    /// The stage's `Env` and the build args in scope (`K=V`).
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    /// Where the changes' layer blob goes (named by its digest).
    pub layer_dir: &'a Path,
}

/// Why a RUN step failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("RUN is not available in this build of hull: it needs the export of a container's changes as a layer, which is not wired in yet")]
    Unavailable,
    #[error("did not complete successfully: exit code: {0}")]
    Exit(i32),
    #[error("an empty command")]
    EmptyCommand,
    #[error("the build container failed: {0}")]
    Failed(String),
    #[error("the build container failed")]
    Container(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Runs RUN steps.
pub trait Runner {
    /// Whether RUN can work at all; checked before a build with RUN
    /// steps starts.
    fn check(&self) -> Result<(), RunError>;

    /// Runs one step, streaming its output to `out`; the layer of its
    /// changes, or `None` when it changed nothing.
    fn run(
        &self,
        req: RunRequest<'_>,
        out: &mut (dyn Write + Send),
    ) -> impl Future<Output = Result<Option<NewLayer>, RunError>>;
}

/// The runner until RUN is wired: refuses.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unwired;

impl Runner for Unwired {
    fn check(&self) -> Result<(), RunError> {
        Err(RunError::Unavailable)
    }

    async fn run(
        &self,
        _req: RunRequest<'_>,
        _out: &mut (dyn Write + Send),
    ) -> Result<Option<NewLayer>, RunError> {
        Err(RunError::Unavailable)
    }
}
