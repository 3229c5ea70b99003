//! Container processes: creating them in their namespaces and reaping them.

pub mod reaper;
pub mod spawn;

pub use reaper::Reaper;
pub use spawn::{spawn, Launch, SpawnError};
