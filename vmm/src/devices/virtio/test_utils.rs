//! Shared fixtures for device tests: guest memory, descriptors, and a
//! dummy device that only records what the transport does to it.

use std::sync::Arc;

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{DeviceState, VirtioDevice, VIRTIO_F_VERSION_1};

/// 16 MiB of guest memory at address 0.
pub fn guest_memory() -> Arc<GuestMemoryMmap> {
    Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap())
}

/// A split-ring descriptor (flags: 1 NEXT, 2 WRITE).
pub fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

/// Makes `chains` available on `vq`, linking the descriptors of each
/// chain with NEXT (the table is filled from index 0).
pub fn add_chains(vq: &MockSplitQueue<'_, GuestMemoryMmap>, chains: &[&[RawDescriptor]]) {
    let mut all: Vec<RawDescriptor> = Vec::new();
    for chain in chains {
        for (i, d) in chain.iter().enumerate() {
            let d = SplitDescriptor::from(*d);
            let (flags, next) = if i + 1 == chain.len() {
                (d.flags() & !1, 0)
            } else {
                (d.flags() | 1, all.len() as u16 + 1)
            };
            all.push(RawDescriptor::from(SplitDescriptor::new(
                d.addr().0,
                d.len(),
                flags,
                next,
            )));
        }
    }
    vq.add_desc_chains(&all, 0).unwrap();
}

/// A device that only records what the transport does to it.
pub struct DummyDevice {
    pub state: DeviceState,
    pub resets: usize,
}

impl DummyDevice {
    /// `nq` queues of size 16, none of them required.
    pub fn new(mem: Arc<GuestMemoryMmap>, nq: usize) -> Self {
        Self {
            state: DeviceState::new("dummy", mem, VIRTIO_F_VERSION_1, &vec![16; nq], 0).unwrap(),
            resets: 0,
        }
    }
}

impl VirtioDevice for DummyDevice {
    fn device_type(&self) -> u32 {
        42
    }
    fn state(&self) -> &DeviceState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut DeviceState {
        &mut self.state
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn on_reset(&mut self) {
        self.resets += 1;
    }
}
