//! A container's share server: the host files and directories of its bind
//! mounts and volumes, served to its VM over one byte stream in 9P2000.L
//! (the guest kernel mounts it with `trans=fd`). The guest is hostile:
//! the server never follows a symlink, never lets `..` leave its root,
//! bounds every table and buffer, and runs jailed ([`run`]): its own mount
//! namespace whose root holds only the shared paths.
//!
//! - [`wire`]: reading and writing 9P messages;
//! - [`server`]: the protocol engine over a tree of `O_PATH` fds;
//! - [`sys`]: the `*at` system calls it makes;
//! - [`jail`]: the namespace, root and capabilities it serves from.

mod jail;
mod server;
mod sys;
mod wire;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use jail::Jailed;
pub use server::Server;
pub use sys::readable_within;

/// What one share server serves: `sources[n]` is entry `n` (decimal) of
/// the root directory of the 9P tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareSpec {
    pub sources: Vec<ShareSource>,
    #[serde(default)]
    pub id_map: IdMap,
}

/// A host directory or regular file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareSource {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A user-namespaced container's maps (OCI `linux.uidMappings`: container
/// id `container..container+len` is guest id `guest..guest+len`). Host
/// files carry the container's ids; the guest sees its own. Empty: the
/// same ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container: u32,
    pub guest: u32,
    pub len: u32,
}

/// What the guest sees for a host id no range maps (the kernel's
/// overflow id).
pub const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// The guest's id for the id `host` stored on the host.
    pub fn to_guest(ranges: &[IdRange], host: u32) -> u32 {
        if ranges.is_empty() {
            return host;
        }
        ranges
            .iter()
            .find(|r| host >= r.container && host - r.container < r.len)
            .map_or(OVERFLOW_ID, |r| r.guest + (host - r.container))
    }

    /// The id to store on the host for the guest's id `guest`; `None`
    /// when no range maps it.
    pub fn to_host(ranges: &[IdRange], guest: u32) -> Option<u32> {
        if ranges.is_empty() {
            return Some(guest);
        }
        ranges
            .iter()
            .find(|r| guest >= r.guest && guest - r.guest < r.len)
            .map(|r| r.container + (guest - r.guest))
    }
}

#[derive(Debug, Error)]
pub enum ShareError {
    #[error("share source {path}: {reason}")]
    Source { path: PathBuf, reason: String },
    #[error("set up the share jail: {what}")]
    Jail {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("accept the VM's connection")]
    Accept(#[source] std::io::Error),
    #[error("the stream to the VM")]
    Stream(#[source] std::io::Error),
    #[error("the guest broke the 9P framing: {0}")]
    Framing(String),
}

/// Enters the jail, built on `scratch` (an empty directory of the
/// caller's). For a freshly started, single-threaded process (`hull
/// __share`): the jail unshares the mount namespace.
pub fn enter_jail(spec: &ShareSpec, scratch: &Path) -> Result<Jailed, ShareError> {
    jail::enter(spec, scratch)
}

/// Serves one connection accepted from `listener`, from inside the jail,
/// until it ends.
pub fn serve(spec: &ShareSpec, jailed: Jailed, listener: UnixListener) -> Result<(), ShareError> {
    let (stream, _) = listener.accept().map_err(ShareError::Accept)?;
    drop(listener);
    let mut server = Server::new(jailed.root, jailed.read_only, spec.id_map.clone());
    server.serve(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways_and_unmapped_ones_overflow() {
        let ranges = [IdRange {
            container: 0,
            guest: 100000,
            len: 65536,
        }];
        assert_eq!(IdMap::to_guest(&ranges, 1000), 101000);
        assert_eq!(IdMap::to_guest(&ranges, 70000), OVERFLOW_ID);
        assert_eq!(IdMap::to_host(&ranges, 100005), Some(5));
        assert_eq!(IdMap::to_host(&ranges, 5), None);
        assert_eq!(IdMap::to_guest(&[], 7), 7);
        assert_eq!(IdMap::to_host(&[], 7), Some(7));
    }
}
