//! What confines a container process beyond its namespaces: capabilities
//! and seccomp.

pub mod capabilities;
pub mod seccomp;
mod syscalls;
