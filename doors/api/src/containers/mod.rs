//! `/containers/...`: one module per group of endpoints.

pub mod attach;
pub mod create;
pub mod inspect;
pub mod lifecycle;
pub mod list;
pub mod logs;
pub mod usage;
pub mod wait;

use hull_container::Container;

/// The container's main command line, as Docker's `Command` shows it.
pub fn command_line(c: &Container) -> String {
    c.config
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default()
        .join(" ")
}

/// Nanoseconds since the epoch as whole seconds.
pub fn unix_secs(nanos: u64) -> u64 {
    nanos / 1_000_000_000
}
