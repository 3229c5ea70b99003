//! The devices of a snapshot: the legacy pair and every virtio device in
//! its MMIO slot, each saved through the `persist` module of its own
//! folder. The registry is what the builder hands the snapshot code: the
//! same device objects the buses and the event loop use.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::devices::legacy::persist::{I8042State, SerialState};
use crate::devices::legacy::{SerialConsole, I8042};
use crate::devices::lock;
use crate::devices::virtio::block::backing::AttachError;
use crate::devices::virtio::block::persist::BlockState;
use crate::devices::virtio::block::{Backing, Block};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::net::persist::NetState;
use crate::devices::virtio::net::{Net, NetBacking};
use crate::devices::virtio::persist::{MmioState, VirtioState};
use crate::devices::virtio::vsock::persist::VsockState;
use crate::devices::virtio::vsock::{Vsock, VsockBackend};
use crate::devices::virtio::VirtioDevice;

/// A virtio device's own part of the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum VirtioKind {
    /// virtio-blk.
    Block(BlockState),
    /// virtio-net.
    Net(NetState),
    /// virtio-vsock.
    Vsock(VsockState),
}

impl VirtioKind {
    /// The kind's name, in messages.
    pub fn name(&self) -> &'static str {
        match self {
            VirtioKind::Block(_) => "block",
            VirtioKind::Net(_) => "net",
            VirtioKind::Vsock(_) => "vsock",
        }
    }
}

/// One virtio device in its slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioDeviceState {
    /// The MMIO slot (window 0xd0000000 + 4 KiB × slot, IRQ 5 + slot).
    pub slot: u32,
    /// The device's own state.
    pub kind: VirtioKind,
    /// The transport registers.
    pub transport: MmioState,
    /// The shared device state.
    pub virtio: VirtioState,
}

/// Every device of the VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesState {
    /// The COM1 console.
    pub serial: SerialState,
    /// The i8042.
    pub i8042: I8042State,
    /// The virtio devices, in slot order.
    pub virtio: Vec<VirtioDeviceState>,
}

/// A device that can say what it is in a snapshot.
pub trait SaveKind {
    /// Its own part of the state.
    fn save_kind(&self) -> VirtioKind;
}

impl SaveKind for Block<Backing> {
    fn save_kind(&self) -> VirtioKind {
        VirtioKind::Block(self.save_block())
    }
}

impl SaveKind for Net<NetBacking> {
    fn save_kind(&self) -> VirtioKind {
        VirtioKind::Net(self.save_net())
    }
}

impl<B: VsockBackend> SaveKind for Vsock<B> {
    fn save_kind(&self) -> VirtioKind {
        VirtioKind::Vsock(self.save_vsock())
    }
}

/// A transport whose whole device can be saved.
pub trait SaveVirtio: Send {
    /// The device's kind, transport registers and shared state.
    fn save(&self) -> (VirtioKind, MmioState, VirtioState);
}

impl<D: VirtioDevice + SaveKind> SaveVirtio for MmioTransport<D> {
    fn save(&self) -> (VirtioKind, MmioState, VirtioState) {
        let regs = self.save_regs();
        let dev = lock(self.device());
        (dev.save_kind(), regs, dev.state().save())
    }
}

/// The devices a snapshot saves.
pub struct DeviceRegistry {
    serial: Arc<Mutex<SerialConsole>>,
    i8042: Arc<Mutex<I8042>>,
    virtio: Vec<(u32, Arc<Mutex<dyn SaveVirtio>>)>,
    /// The block devices again, typed: the control API gives their
    /// placeholders files.
    blocks: Vec<Arc<Mutex<MmioTransport<Block<Backing>>>>>,
}

/// Why a disk could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachDiskError {
    #[error("no block device has id {0:?}")]
    NoSuchId(String),
    #[error("cannot open {0}")]
    Open(String, #[source] std::io::Error),
    #[error("block device {0:?}")]
    Attach(String, #[source] AttachError),
}

impl DeviceRegistry {
    /// A registry of the legacy devices.
    pub fn new(serial: Arc<Mutex<SerialConsole>>, i8042: Arc<Mutex<I8042>>) -> Self {
        Self {
            serial,
            i8042,
            virtio: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// Adds a block device's transport, for [`attach_disk`](Self::attach_disk).
    pub fn add_block(&mut self, transport: Arc<Mutex<MmioTransport<Block<Backing>>>>) {
        self.blocks.push(transport);
    }

    /// Gives the placeholder block device `id` the file at `path` (opened
    /// read-only if the device is) and tells the guest its new capacity.
    pub fn attach_disk(&self, id: &str, path: &std::path::Path) -> Result<(), AttachDiskError> {
        attach_disk(&self.blocks, id, path)
    }

    /// Adds the transport in `slot`.
    pub fn add_virtio(&mut self, slot: u32, transport: Arc<Mutex<dyn SaveVirtio>>) {
        self.virtio.push((slot, transport));
    }

    /// Saves every device (the vCPUs must be paused: nothing else touches
    /// devices but the event loop thread, which is the caller).
    pub fn save(&self) -> DevicesState {
        let mut virtio: Vec<VirtioDeviceState> = self
            .virtio
            .iter()
            .map(|(slot, t)| {
                let (kind, transport, virtio) = lock(t).save();
                VirtioDeviceState {
                    slot: *slot,
                    kind,
                    transport,
                    virtio,
                }
            })
            .collect();
        virtio.sort_by_key(|d| d.slot);
        DevicesState {
            serial: lock(&self.serial).save(),
            i8042: lock(&self.i8042).save(),
            virtio,
        }
    }
}

fn attach_disk(
    blocks: &[Arc<Mutex<MmioTransport<Block<Backing>>>>],
    id: &str,
    path: &std::path::Path,
) -> Result<(), AttachDiskError> {
    for transport in blocks {
        let mut transport = lock(transport);
        let dev = transport.device().clone();
        let mut dev = lock(&dev);
        if dev.id() != id.as_bytes() {
            continue;
        }
        let (p, write) = (path.to_path_buf(), !dev.read_only());
        // On the host-fs thread: the event loop opens nothing.
        let file = crate::hostfs::run(move || {
            std::fs::OpenOptions::new().read(true).write(write).open(&p)
        })
        .map_err(|e| AttachDiskError::Open(path.display().to_string(), e))?;
        dev.attach(file)
            .map_err(|e| AttachDiskError::Attach(id.to_string(), e))?;
        drop(dev);
        transport.config_changed();
        return Ok(());
    }
    Err(AttachDiskError::NoSuchId(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::guest_memory;

    fn placeholder(id: &[u8], read_only: bool) -> Arc<Mutex<MmioTransport<Block<Backing>>>> {
        let dev = Block::with_backing(guest_memory(), Backing::Placeholder, read_only, id).unwrap();
        Arc::new(Mutex::new(MmioTransport::new(Arc::new(Mutex::new(dev)))))
    }

    #[test]
    fn a_placeholder_named_by_its_id_takes_a_file_and_announces_it_once() {
        let blocks = vec![
            placeholder(b"hull-rootfs", true),
            placeholder(b"hull-scratch", false),
        ];
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("scratch.img");
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();

        attach_disk(&blocks, "hull-scratch", &disk).unwrap();
        let scratch = lock(&blocks[1]);
        assert_eq!(lock(scratch.device()).capacity(), 2048);
        assert_eq!(
            scratch.save_regs().config_generation,
            1,
            "the guest is told"
        );
        drop(scratch);
        assert_eq!(
            lock(lock(&blocks[0]).device()).capacity(),
            0,
            "the other slot waits"
        );

        let again = attach_disk(&blocks, "hull-scratch", &disk).unwrap_err();
        assert!(
            matches!(
                again,
                AttachDiskError::Attach(_, AttachError::NotPlaceholder)
            ),
            "{again}"
        );
        let unknown = attach_disk(&blocks, "hull-other", &disk).unwrap_err();
        assert_eq!(unknown.to_string(), "no block device has id \"hull-other\"");
        let missing = attach_disk(&blocks, "hull-rootfs", &dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, AttachDiskError::Open(..)), "{missing}");
        assert_eq!(
            lock(lock(&blocks[0]).device()).capacity(),
            0,
            "a failed attach changes nothing"
        );
    }
}
