//! Container processes: creating them in their namespaces and reaping them.

mod child;
pub mod reaper;
pub mod spawn;

pub use reaper::Reaper;
pub use spawn::{spawn, ChildStdio, Launch, NewContainer, Place, SpawnError};
