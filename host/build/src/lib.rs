//! hull's image builder: a Dockerfile and a build context to an image in
//! hull-image's store. COPY and ADD layers are made on the host; every
//! RUN step runs as a hull container, in a microVM of its own, on the
//! previous step's image (through the [`run::Runner`] seam).
//!
//! The builder is a library so that `hull build` (the CLI) and the Engine
//! API's `POST /build` are thin doors onto it: they fill a
//! [`BuildOptions`] and call [`build`].
//!
//! Modules, one job each: [`dockerfile`] parses, [`context`] and
//! [`dockerignore`] read the build context, [`layer`] makes COPY/ADD
//! layers, [`cache`] keeps step results, [`state`] is a stage's image so
//! far, [`executor`] runs the stages, [`run`] is the RUN seam and [`vm`]
//! its runner in a microVM,
//! [`progress`] prints Docker's plain progress.

pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod executor;
pub mod layer;
pub mod progress;
pub mod run;
pub mod state;
pub mod vm;

pub use executor::{build, BuildOptions, Built, Error, StepError};
pub use run::{RunError, RunRequest, Runner, Unwired};

/// An error and its causes on one line, `a: b: c`, as the doors print
/// them.
pub fn error_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}
