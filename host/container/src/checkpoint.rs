//! Checkpoints of running containers (runc's `checkpoint` and `restore`):
//! the container's whole VM saved to a directory with its disks, and a new
//! container restored from it, its processes carrying on where they were.
//!
//! A checkpoint directory holds `checkpoint.json` ([`CheckpointInfo`]),
//! the VM's `state` and `memory` (see `hull_sandbox::checkpoint`) and
//! copies of the container's two disks, made while the VM was stopped.
//! A restore copies the disks again (a checkpoint can be restored more
//! than once; each restore takes host entropy and the clock, so no two
//! are twins) and boots the VM from the checkpoint's state.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use hull_sandbox::hypervisor::SnapshotMethod;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::lifecycle;
use crate::record::Container;
use crate::supervisor::control::{ControlReply, ControlRequest};

/// The checkpoint's description, in its directory.
pub const INFO_FILE: &str = "checkpoint.json";
/// This layout; a checkpoint of another one is refused.
const FORMAT: u32 = 1;
/// The most a checkpoint's description may be.
const MAX_INFO_BYTES: u64 = 64 << 10;

/// What a restore needs to know of the checkpointed container's VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointInfo {
    pub format: u32,
    /// The hull that saved it: a VM saved by another agent or kernel
    /// would not come back the same.
    pub hull_version: String,
    pub method: SnapshotMethod,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The container's id inside the VM, which its agent keeps.
    pub guest_id: String,
    /// The main process's pid in the guest.
    pub pid: u32,
    /// Whether the main process reads a stdin the host feeds.
    pub open_stdin: bool,
}

/// Where a restored container came from; kept in its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub checkpoint: PathBuf,
    pub info: CheckpointInfo,
}

impl CheckpointInfo {
    pub fn new(config: &crate::record::ContainerConfig, method: SnapshotMethod, pid: u32) -> Self {
        Self {
            format: FORMAT,
            hull_version: env!("CARGO_PKG_VERSION").to_string(),
            method,
            kernel: config.kernel.clone(),
            initramfs: config.initramfs.clone(),
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            guest_id: config.agent_id().to_string(),
            pid,
            open_stdin: config.open_stdin,
        }
    }

    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let encoded = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        crate::private::write_atomic(&dir.join(INFO_FILE), &encoded)
    }

    /// Reads and checks the checkpoint in `dir`.
    pub fn read(dir: &Path) -> Result<Self, Error> {
        use std::io::Read;
        let bad = |reason: String| Error::Checkpoint {
            dir: dir.to_path_buf(),
            reason,
        };
        let path = dir.join(INFO_FILE);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => bad(format!("no {INFO_FILE}: not a hull checkpoint")),
            _ => bad(format!("{INFO_FILE}: {e}")),
        })?;
        let mut text = Vec::new();
        file.take(MAX_INFO_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| bad(format!("{INFO_FILE}: {e}")))?;
        if text.len() as u64 > MAX_INFO_BYTES {
            return Err(bad(format!("{INFO_FILE} is over {MAX_INFO_BYTES} bytes")));
        }
        let info: Self =
            serde_json::from_slice(&text).map_err(|e| bad(format!("{INFO_FILE}: {e}")))?;
        if info.format != FORMAT {
            return Err(bad(format!(
                "format {} (this hull reads {FORMAT})",
                info.format
            )));
        }
        if info.hull_version != env!("CARGO_PKG_VERSION") {
            return Err(bad(format!(
                "saved by hull {}, this is {}",
                info.hull_version,
                env!("CARGO_PKG_VERSION")
            )));
        }
        for name in [
            hull_sandbox::hypervisor::SNAPSHOT_STATE,
            hull_sandbox::hypervisor::SNAPSHOT_MEMORY,
            hull_sandbox::CHECKPOINT_ROOTFS,
            hull_sandbox::CHECKPOINT_SCRATCH,
        ] {
            if !dir.join(name).is_file() {
                return Err(bad(format!("{name} is missing")));
            }
        }
        Ok(info)
    }

    /// Whether the VM it saved can come back on these guest assets.
    pub fn check_assets(&self, dir: &Path, kernel: &Path, initramfs: &Path) -> Result<(), Error> {
        if self.kernel != kernel || self.initramfs != initramfs {
            return Err(Error::Checkpoint {
                dir: dir.to_path_buf(),
                reason: format!(
                    "saved with the guest kernel {} and initramfs {}, this container would boot {} and {}",
                    self.kernel.display(),
                    self.initramfs.display(),
                    kernel.display(),
                    initramfs.display()
                ),
            });
        }
        Ok(())
    }
}

/// Saves the running `container` into `image_path` (runc's
/// `checkpoint`). Unless `leave_running`, the container is stopped
/// afterwards, as runc's is, and its supervisor gone when this returns.
pub async fn checkpoint(
    container: &Container,
    image_path: &Path,
    leave_running: bool,
) -> Result<(), Error> {
    let supervisor = container.live_supervisor();
    let request = ControlRequest::Checkpoint {
        image_path: image_path.to_path_buf(),
        leave_running,
    };
    match lifecycle::ask(container, &request).await? {
        ControlReply::Ok => {}
        other => return Err(Error::UnexpectedReply(format!("{other:?}"))),
    }
    if !leave_running {
        lifecycle::await_supervisor_exit(container, supervisor, CHECKPOINT_EXIT_PATIENCE).await;
    }
    Ok(())
}

/// How long a supervisor may take to end after its VM was saved.
const CHECKPOINT_EXIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Copies `from` to `to` (created, owner-only), leaving holes as holes:
/// a writable layer is a mostly empty sparse file of many GiB.
pub fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    let source = File::open(from)?;
    let len = source.metadata()?.len();
    let _ = std::fs::remove_file(to);
    let target = crate::private::create_file(to)?;
    target.set_len(len)?;
    let (src, dst) = (source.as_raw_fd(), target.as_raw_fd());
    let mut offset: i64 = 0;
    while (offset as u64) < len {
        // SAFETY: lseek on a descriptor this function owns.
        let data = unsafe { libc::lseek(src, offset, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut from_off, mut to_off) = (data, data);
        let mut left = (hole - data) as usize;
        while left > 0 {
            // SAFETY: copy_file_range between two descriptors owned here,
            // with offsets it advances itself.
            let n = unsafe { libc::copy_file_range(src, &mut from_off, dst, &mut to_off, left, 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while it was copied", from.display()),
                ));
            }
            left -= n as usize;
        }
        offset = hole;
    }
    target.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn a_sparse_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        let mut file = File::create(&from).unwrap();
        file.set_len(64 << 20).unwrap();
        file.seek(SeekFrom::Start(1 << 20)).unwrap();
        file.write_all(b"middle").unwrap();
        file.seek(SeekFrom::Start((64 << 20) - 3)).unwrap();
        file.write_all(b"end").unwrap();
        drop(file);
        copy_sparse(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&to).unwrap().blocks();
        assert!(
            blocks * 512 < 1 << 20,
            "the copy is sparse: {blocks} blocks"
        );
    }

    #[test]
    fn a_directory_without_a_description_is_not_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let e = CheckpointInfo::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("no checkpoint.json: not a hull checkpoint"),
            "{e}"
        );
    }

    #[test]
    fn a_checkpoint_of_another_format_or_hull_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut info = CheckpointInfo {
            format: 9,
            hull_version: env!("CARGO_PKG_VERSION").into(),
            method: SnapshotMethod::QemuMigration,
            kernel: "/k".into(),
            initramfs: "/i".into(),
            vcpus: 1,
            memory_mib: 256,
            guest_id: "g".into(),
            pid: 1,
            open_stdin: false,
        };
        info.write(dir.path()).unwrap();
        let e = CheckpointInfo::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format 9"), "{e}");
        info.format = FORMAT;
        info.hull_version = "0.0.0-other".into();
        info.write(dir.path()).unwrap();
        let e = CheckpointInfo::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("saved by hull 0.0.0-other"), "{e}");
        info.hull_version = env!("CARGO_PKG_VERSION").into();
        info.write(dir.path()).unwrap();
        let e = CheckpointInfo::read(dir.path()).unwrap_err().to_string();
        assert!(e.ends_with("state is missing"), "{e}");
    }
}
