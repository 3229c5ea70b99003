//! Writing a snapshot of a paused VM: guest memory to `memory`, every other
//! state to `state`, each first to a temporary name and then renamed. The
//! rename keeps a snapshot directory whole at all times, and makes it safe
//! to snapshot into the directory a VM was restored from (clones keep the
//! old memory file mapped; the new one is a new file).

use std::io::Write;
use std::path::{Path, PathBuf};

use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use super::devices::DevicesState;
use super::format::{self, FormatError};
use super::memory::{new_snapshot_id, write_memory_file, MemoryError};
use super::vcpu::VcpuState;
use super::vm::{save_vm, VmStateError};
use super::{MicrovmState, MEMORY_FILE, STATE_FILE};
use crate::hostfs;

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The directory could not be made.
    #[error("cannot create snapshot directory {0}")]
    Dir(PathBuf, #[source] std::io::Error),
    /// The VM state could not be read.
    #[error("cannot save the VM state")]
    Vm(#[source] VmStateError),
    /// Memory could not be written.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The state could not be encoded.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A file could not be written or renamed.
    #[error("cannot write {0}")]
    Write(PathBuf, #[source] std::io::Error),
}

fn tmp(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp"))
}

/// Writes the snapshot of a VM whose vCPUs are paused (their states in
/// `vcpus`) and whose devices were saved as `devices`, into `dir`.
pub fn write_snapshot(
    dir: &Path,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    memory_mib: u64,
    vcpus: Vec<VcpuState>,
    devices: DevicesState,
) -> Result<(), SnapshotError> {
    // Paths are the host-fs thread's (the event loop opens nothing).
    let d = dir.to_path_buf();
    hostfs::run(move || std::fs::create_dir_all(&d))
        .map_err(|e| SnapshotError::Dir(dir.into(), e))?;
    let vm_state = save_vm(vm).map_err(SnapshotError::Vm)?;
    let mem_tmp = tmp(dir, MEMORY_FILE);
    let memory = write_memory_file(mem, memory_mib, &mem_tmp, new_snapshot_id())?;
    let state = MicrovmState {
        memory,
        vm: vm_state,
        vcpus,
        devices,
    };
    let bytes = format::encode(&state)?;
    let state_tmp = tmp(dir, STATE_FILE);
    let write = |p: &Path| -> std::io::Result<()> {
        let mut f = hostfs::create_file(p)?;
        f.write_all(&bytes)?;
        f.sync_data()
    };
    write(&state_tmp).map_err(|e| SnapshotError::Write(state_tmp.clone(), e))?;
    for (from, to) in [(mem_tmp, MEMORY_FILE), (state_tmp, STATE_FILE)] {
        let to = dir.join(to);
        let target = to.clone();
        hostfs::run(move || std::fs::rename(&from, &target))
            .map_err(|e| SnapshotError::Write(to, e))?;
    }
    Ok(())
}
