//! Container processes: creating them in their namespaces and reaping them.

pub mod attrs;
mod child;
pub mod hooks;
pub mod mount_op;
pub mod reaper;
pub mod spawn;
pub mod userns;

pub use attrs::{DeviceNode, ProcessAttrs, SchedAttr};
pub use hooks::{ContainerHooks, HookOutcome, HookSpec, PreparedHook};
pub use mount_op::MountOp;
pub use reaper::Reaper;
pub use spawn::{spawn, ChildStdio, Credentials, Launch, NewContainer, Place, SpawnError};
pub use userns::UserNamespace;
