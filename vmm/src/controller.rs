//! The running VM as the control API drives it: pause and resume every
//! vCPU, give a placeholder disk its file, and write a snapshot of a
//! paused VM. It lives on the event loop
//! thread, so while it saves, no device moves.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use crate::api::VmControl;
use crate::persist::devices::{AttachDiskError, DeviceRegistry};
use crate::persist::snapshot::{write_snapshot, SnapshotError};
use crate::vstate::vcpu_control::{ControlError, VcpuControl};

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A vCPU did not pause or save.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The snapshot could not be written.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A disk could not be attached.
    #[error(transparent)]
    AttachDisk(#[from] AttachDiskError),
}

/// One vCPU thread and its control.
pub struct VcpuHandle {
    /// Where the thread parks.
    pub control: Arc<VcpuControl>,
    /// The thread, to kick it.
    pub thread: JoinHandle<()>,
}

/// The VM's vCPUs, memory and devices, for its control API.
pub struct VmController {
    vm: Arc<VmFd>,
    mem: Arc<GuestMemoryMmap>,
    memory_mib: u64,
    vcpus: Vec<VcpuHandle>,
    devices: DeviceRegistry,
    paused: bool,
}

impl VmController {
    /// A controller of a running VM.
    pub fn new(
        vm: Arc<VmFd>,
        mem: Arc<GuestMemoryMmap>,
        memory_mib: u64,
        vcpus: Vec<VcpuHandle>,
        devices: DeviceRegistry,
    ) -> Self {
        Self {
            vm,
            mem,
            memory_mib,
            vcpus,
            devices,
            paused: false,
        }
    }

    fn write(&self, dir: &Path) -> Result<(), ControllerError> {
        let mut states = Vec::with_capacity(self.vcpus.len());
        for (i, v) in self.vcpus.iter().enumerate() {
            states.push(v.control.save(i as u8)?);
        }
        write_snapshot(
            dir,
            &self.vm,
            &self.mem,
            self.memory_mib,
            states,
            self.devices.save(),
        )?;
        Ok(())
    }
}

impl VmControl for VmController {
    type Error = ControllerError;

    fn pause(&mut self) -> Result<(), ControllerError> {
        if self.paused {
            return Ok(());
        }
        for (i, v) in self.vcpus.iter().enumerate() {
            if let Err(e) = v.control.pause(i as u8, &v.thread) {
                // All or nothing: the ones already parked run again.
                self.vcpus.iter().for_each(|v| v.control.resume());
                return Err(e.into());
            }
        }
        self.paused = true;
        Ok(())
    }

    fn resume(&mut self) {
        self.vcpus.iter().for_each(|v| v.control.resume());
        self.paused = false;
    }

    fn is_paused(&self) -> bool {
        self.paused
    }

    fn attach_disk(&mut self, id: &str, path: &Path) -> Result<(), ControllerError> {
        Ok(self.devices.attach_disk(id, path)?)
    }

    fn snapshot(&mut self, dir: &Path) -> Result<(), ControllerError> {
        let was_paused = self.paused;
        self.pause()?;
        let r = self.write(dir);
        if !was_paused {
            self.resume();
        }
        r
    }
}
