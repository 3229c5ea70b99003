//! The warm pool: clones of a template restored ahead of their
//! containers, so that `hull run` takes one that is ready instead of
//! restoring one. A pool server ([`server`], run by `hull pool start`)
//! keeps up to `size` ready clones per [`PoolSpec`]; each is a pooled
//! supervisor (`supervisor::pooled`), the same supervisor every container
//! has, that restored its VM, stopped its vCPUs and waits to be given a
//! container. The library's launcher asks the server for one over
//! `pool.sock` ([`client`]) and spawns a supervisor of its own when the
//! pool has none; a clone is used once and never returned.

pub mod client;
pub mod server;

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::record::ContainerConfig;

/// The pool server's socket in the run directory.
pub const SOCKET: &str = "pool.sock";
/// The pooled clones' directories in the run directory.
pub const DIR: &str = "pool";
/// The hidden subcommands of the pool server and of a pooled supervisor.
pub const SERVE_COMMAND: &str = "__pool";
pub const POOLED_COMMAND: &str = "__pooled";
/// The descriptor on which a pooled supervisor talks to its server.
pub const POOLED_FD: i32 = 3;

pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET)
}

/// What a pooled clone is made for: a container whose VM has this shape,
/// these assets and this set of templates takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PoolSpec {
    pub root: PathBuf,
    pub hypervisor: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub templates: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Whether the VM has a network card (its tap moves onto the
    /// container's network when it is taken).
    pub nic: bool,
}

impl PoolSpec {
    /// The pool a new container of `config` may take a clone from: none
    /// for a cold boot or a container that joins another's VM.
    pub fn of(root: &Path, config: &ContainerConfig) -> Option<Self> {
        if config.shares_vm_with.is_some() {
            return None;
        }
        let shape = config.template_shape();
        Some(Self {
            root: root.to_path_buf(),
            hypervisor: config.hypervisor.clone(),
            kernel: config.kernel.clone(),
            initramfs: config.initramfs.clone(),
            templates: config.templates.clone()?,
            vcpus: shape.vcpus,
            memory_mib: shape.memory_mib,
            nic: shape.nic,
        })
    }

    /// A short name for listings: a digest of the spec.
    pub fn key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut hasher);
        format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
    }
}

/// What `pool.sock` is asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum PoolRequest {
    /// Give a ready clone of `spec` the container `container` (its id);
    /// `wait_attach` as the supervisor's mode.
    Take {
        spec: PoolSpec,
        container: String,
        wait_attach: bool,
        /// The caller's phase log (`HULL_TIMINGS`), for benchmarks.
        #[serde(default)]
        timings: Option<PathBuf>,
    },
    /// Keep clones of `spec` ready from now on.
    Warm {
        spec: PoolSpec,
    },
    Status,
    /// Remove every ready clone and end the server.
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum PoolReply {
    /// The pooled supervisor's pid: it now supervises the container.
    Taken {
        pid: u32,
    },
    /// No clone is ready (the pool fills up for next time).
    Empty,
    Status(PoolStatus),
    Done,
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PoolStatus {
    pub pid: u32,
    /// The network namespace that holds the ready clones' taps.
    pub namespace: String,
    /// Ready clones kept per spec.
    pub size: usize,
    /// The host memory the ready clones may hold together.
    pub max_memory_bytes: u64,
    /// What they hold now (their processes' private memory).
    pub memory_bytes: u64,
    pub pools: Vec<PoolEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolEntry {
    pub key: String,
    pub spec: PoolSpec,
    pub ready: usize,
    pub filling: usize,
    /// Clones handed out since the server started.
    pub taken: u64,
    /// Why the last clone could not be made, while the pool backs off.
    pub error: Option<String>,
}

/// Between the server and a pooled supervisor, on [`POOLED_FD`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum SlotMessage {
    /// Server → pooled: what to restore, and the slot's name.
    Prepare { spec: PoolSpec, slot: String },
    /// Pooled → server: restored and stopped.
    Ready { vm_pid: u32 },
    /// Server → pooled: supervise this container.
    Assign {
        container: String,
        wait_attach: bool,
        #[serde(default)]
        timings: Option<PathBuf>,
    },
    /// Pooled → server: it does.
    Taken,
}

/// A message bigger than this is not one of ours.
const MAX_LINE: u64 = 64 << 10;

/// Writes `message` as one JSON line.
pub fn send<T: Serialize>(writer: &mut impl Write, message: &T) -> io::Result<()> {
    writer.write_all(&encode(message)?)?;
    writer.flush()
}

/// Reads one JSON line; `None` at the end of the stream.
pub fn receive<T: DeserializeOwned>(reader: &mut impl BufRead) -> io::Result<Option<T>> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)?;
    decode(&line)
}

/// `message` as a JSON line.
fn encode<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// A line read (at most [`MAX_LINE`] bytes) as a message; `None` for an
/// empty read (the end of the stream).
fn decode<T: DeserializeOwned>(line: &[u8]) -> io::Result<Option<T>> {
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "pool message too long or cut off",
        ));
    }
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PoolSpec {
        PoolSpec {
            root: "/var/lib/hull".into(),
            hypervisor: "auto".into(),
            kernel: "/k".into(),
            initramfs: "/i".into(),
            templates: "/var/lib/hull/templates".into(),
            vcpus: 1,
            memory_mib: 256,
            nic: true,
        }
    }

    #[test]
    fn messages_go_and_come_as_json_lines() {
        let mut wire = Vec::new();
        let take = PoolRequest::Take {
            spec: spec(),
            container: "0123456789ab".into(),
            wait_attach: true,
            timings: None,
        };
        send(&mut wire, &take).unwrap();
        send(&mut wire, &PoolRequest::Status).unwrap();
        let mut reader = io::BufReader::new(&wire[..]);
        match receive::<PoolRequest>(&mut reader).unwrap() {
            Some(PoolRequest::Take {
                spec: s,
                container,
                wait_attach,
                ..
            }) => {
                assert_eq!(s, spec());
                assert_eq!(container, "0123456789ab");
                assert!(wait_attach);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            receive::<PoolRequest>(&mut reader).unwrap(),
            Some(PoolRequest::Status)
        ));
        assert!(receive::<PoolRequest>(&mut reader).unwrap().is_none());
    }

    #[test]
    fn a_message_without_its_end_or_too_long_is_refused() {
        let mut reader = io::BufReader::new(&b"{\"request\":\"status\"}"[..]);
        assert!(receive::<PoolRequest>(&mut reader).is_err());
        let long = vec![b'x'; (MAX_LINE + 10) as usize];
        let mut reader = io::BufReader::new(&long[..]);
        assert!(receive::<PoolRequest>(&mut reader).is_err());
    }

    #[test]
    fn specs_differing_in_anything_have_different_keys() {
        let mut other = spec();
        other.nic = false;
        assert_ne!(spec().key(), other.key());
        assert_eq!(spec().key(), spec().key());
    }
}
