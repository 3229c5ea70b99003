//! Snapshot and restore of a microVM, after Firecracker's `persist.rs` and
//! `snapshot` crate. A snapshot is a directory of two files:
//!
//! * `state`: the versioned, checksummed envelope of `format` around the
//!   JSON of `MicrovmState`: every vCPU (`vcpu`), the VM's irqchip, PIT
//!   and clock (`vm`), every device (`devices`, each device's part in its
//!   own folder's `persist.rs`) and the layout of guest memory;
//! * `memory`: guest RAM, laid out to be mapped as it is (`memory`).
//!
//! `snapshot` writes them from a paused VM (the control API's `snapshot
//! DIR`); `crate::restore` builds a VM from them (`--restore DIR`), each
//! clone mapping the memory file privately. A snapshot is host input: nothing
//! in it is believed before the envelope checks out, and every part is
//! checked again as it is set (by KVM, virtio-queue or the device).

pub mod crc64;
pub mod devices;
pub mod format;
pub mod memory;
pub mod snapshot;
pub mod vcpu;
pub mod vm;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::arch::x86_64::layout::{IRQ_MAX, VIRTIO_IRQ_BASE};
use crate::arch::x86_64::mptable::MAX_CPUS;
use devices::{DevicesState, VirtioKind};
use format::FormatError;
use memory::MemoryState;
use vcpu::VcpuState;
use vm::VmState;

/// The state file's name in a snapshot directory.
pub const STATE_FILE: &str = "state";
/// The memory file's name in a snapshot directory.
pub const MEMORY_FILE: &str = "memory";

/// Everything a snapshot holds but guest RAM.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicrovmState {
    /// Guest memory: size, regions, the memory file's id.
    pub memory: MemoryState,
    /// Interrupt controllers, PIT, clock.
    pub vm: VmState,
    /// Every vCPU, in index order.
    pub vcpus: Vec<VcpuState>,
    /// Every device.
    pub devices: DevicesState,
}

/// Why a snapshot's state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The state file was refused.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The state describes a VM hull-vmm cannot build.
    #[error("snapshot state is not valid: {0}")]
    Invalid(String),
}

impl MicrovmState {
    /// Checks what the restore path relies on before it builds anything:
    /// vCPU count, memory layout, device slots and kinds.
    pub fn check(&self) -> Result<(), LoadError> {
        let bad = |what: String| Err(LoadError::Invalid(what));
        let n = self.vcpus.len();
        if n == 0 || n > usize::from(MAX_CPUS) {
            return bad(format!("{n} vCPUs"));
        }
        if let Err(e) = self.memory.check_layout() {
            return bad(e.to_string());
        }
        let slots = (IRQ_MAX - VIRTIO_IRQ_BASE + 1) as usize;
        let virtio = &self.devices.virtio;
        if virtio.len() > slots {
            return bad(format!("{} virtio devices", virtio.len()));
        }
        // Slots 0, 1, 2, … in order; blocks first, then nets, then at most
        // one vsock (the order hull-vmm attaches them in).
        let mut rank = 0;
        for (i, d) in virtio.iter().enumerate() {
            if d.slot != i as u32 {
                return bad(format!("virtio slot {} out of order", d.slot));
            }
            let r = match d.kind {
                VirtioKind::Block(_) => 0,
                VirtioKind::Net(_) => 1,
                VirtioKind::Vsock(_) => 2,
            };
            if r < rank {
                return bad(format!(
                    "{} device in slot {} out of order",
                    d.kind.name(),
                    d.slot
                ));
            }
            rank = if r == 2 { 3 } else { r };
        }
        Ok(())
    }
}

/// Reads, checks and decodes the state file of the snapshot in `dir`.
pub fn load_state(dir: &Path) -> Result<MicrovmState, LoadError> {
    let bytes = format::read_file(&dir.join(STATE_FILE))?;
    let state: MicrovmState = format::decode(&bytes)?;
    state.check()?;
    Ok(state)
}

/// Fuzzing harness: `data` as a whole state file and, sealed, as a state
/// payload (so the fuzzer gets past the checksum); true if either decodes
/// and passes the check. Never panics.
#[doc(hidden)]
pub fn fuzz_state(data: &[u8]) -> bool {
    let whole = format::decode::<MicrovmState>(data).map(|s| s.check().is_ok());
    let sealed = format::decode::<MicrovmState>(&format::seal(data)).map(|s| s.check().is_ok());
    whole.unwrap_or(false) | sealed.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::persist::{MmioState, VirtioState};
    use crate::devices::virtio::vsock::persist::VsockState;
    use devices::VirtioDeviceState;

    fn vsock(slot: u32) -> VirtioDeviceState {
        VirtioDeviceState {
            slot,
            kind: VirtioKind::Vsock(VsockState { cid: 3 }),
            transport: MmioState::default(),
            virtio: VirtioState {
                avail_features: 0,
                acked_features: 0,
                activated: false,
                interrupt_status: 0,
                queues: vec![],
            },
        }
    }

    fn net(slot: u32) -> VirtioDeviceState {
        VirtioDeviceState {
            kind: VirtioKind::Net(crate::devices::virtio::net::persist::NetState {
                mac: None,
                placeholder: true,
            }),
            ..vsock(slot)
        }
    }

    #[test]
    fn the_state_check_refuses_what_the_restore_path_cannot_build() {
        let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm is needed by the state tests");
        let vmfd = kvm.create_vm().unwrap();
        vmfd.create_irq_chip().unwrap();
        vmfd.create_pit2(Default::default()).unwrap();
        let fd = vmfd.create_vcpu(0).unwrap();
        let xsave2 = kvm.check_extension_int(kvm_ioctls::Cap::Xsave2).max(0) as usize;
        let serial = crate::devices::legacy::SerialConsole::new(
            crate::devices::legacy::EventFdTrigger(
                vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            ),
            Box::new(std::io::sink()),
        );
        let i8042 = crate::devices::legacy::I8042::new(crate::devices::legacy::EventFdTrigger(
            vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        ));
        let regions = crate::arch::x86_64::arch_memory_regions(64 << 20);
        let mut s = MicrovmState {
            memory: MemoryState {
                mib: 64,
                regions: vec![memory::RegionState {
                    guest_addr: 0,
                    size: regions[0].1 as u64,
                    file_offset: 4096,
                }],
                snapshot_id: [0; 16],
            },
            vm: vm::save_vm(&vmfd).unwrap(),
            vcpus: vec![vcpu::save_vcpu(&fd, &[], xsave2).unwrap()],
            devices: DevicesState {
                serial: serial.save(),
                i8042: i8042.save(),
                virtio: vec![],
            },
        };
        s.check().unwrap();
        // Through the state file and back.
        let file = format::encode(&s).unwrap();
        let back: MicrovmState = format::decode(&file).unwrap();
        back.check().unwrap();
        // Every truncation of a real payload, and the fuzz harness on it.
        let payload = format::open(&file).unwrap();
        assert!(fuzz_state(payload));
        for n in (0..payload.len()).step_by(97) {
            assert!(!fuzz_state(&payload[..n]));
        }
        let good = s.clone();
        s.vcpus.clear();
        assert!(s.check().unwrap_err().to_string().contains("0 vCPUs"));
        s = good.clone();
        s.memory.mib += 1;
        assert!(s.check().is_err());
        s = good.clone();
        s.devices.virtio = vec![net(0), vsock(1)];
        s.check().unwrap();
        s.devices.virtio = vec![vsock(0), net(1)];
        assert!(s.check().unwrap_err().to_string().contains("out of order"));
        s.devices.virtio = vec![vsock(0), vsock(1)];
        assert!(s.check().is_err());
        s.devices.virtio = vec![net(1)];
        assert!(s.check().unwrap_err().to_string().contains("slot 1"));
    }
}
