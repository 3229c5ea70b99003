//! hull's containers, the library every front door calls: records on disk
//! ([`record`]), the OCI spec a container runs with ([`oci`], [`spec`],
//! [`bundle`]), the supervisor that owns a container's VM ([`supervisor`])
//! and its logs ([`logs`]).

pub mod bundle;
pub mod changes;
pub mod checkpoint;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hooks;
pub mod lifecycle;
pub mod logs;
mod mounts;
pub mod oci;
pub mod plan;
pub mod pool;
pub use hull_sandbox::private;
pub mod record;
pub mod spec;
pub mod supervisor;
pub mod units;
pub mod volume;

pub use error::{Error, ErrorKind};
pub use plan::{Paths, RunPlan, RunRequest};
pub use record::{Container, ContainerConfig, ContainerState, Containers, Status};
