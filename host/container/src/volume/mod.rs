//! Host data in containers, as a front door asks for it: `-v`, `--mount`
//! and `--tmpfs` parsed with Docker's rules ([`request`]), and named and
//! anonymous volumes under `HULL_ROOT/volumes` ([`store`]). The planner
//! turns them into shares (`crate::mounts`).

mod request;
mod store;

pub use request::{
    parse_mount_flag, parse_tmpfs_flag, parse_volume_flag, valid_volume_name, MountRequest,
};
pub use store::{remove_anonymous, users_of, Volume, Volumes};
