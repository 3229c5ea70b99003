//! Containers as records on disk, so that every `hull` command, in any
//! process, sees the same truth.
//!
//! ```text
//! <run dir>/<id12>/config.json   what the container is (written once)
//!                  state.json    where it is in its life (replaced atomically)
//!                  lock          flock'd by whoever rewrites state.json
//!                  supervisor.sock, supervisor.log
//!                  container.log[.N]   its output, JSON lines
//!                  vm/           the running VM's sockets and logs
//! <run dir>/names/<name>         the id, created exclusively: names are unique
//! <root>/sandboxes/<id12>/       the writable layer (kept until `rm`)
//! ```
//!
//! A record is born complete: it is assembled in `.new-<id12>` and renamed
//! into place. `state.json` is only trusted as far as its supervisor is
//! alive: a container whose supervisor is gone reads as exited with an
//! error.

mod container;
mod names;

#[cfg(test)]
pub(crate) use container::config as test_config;
pub use container::{
    format_time, Container, ContainerConfig, ContainerState, Containers, LookupError, Share, Status,
};
pub use hull_sandbox::process::{now_nanos, ProcessRef};
pub use names::{random_name, validate as validate_name};
