//! Container processes: creating them in their namespaces and reaping them.

mod child;
pub mod mount_op;
pub mod reaper;
pub mod spawn;
pub mod userns;

pub use mount_op::MountOp;
pub use reaper::Reaper;
pub use spawn::{spawn, ChildStdio, Credentials, Launch, NewContainer, Place, SpawnError};
pub use userns::UserNamespace;
