//! Virtio devices over the MMIO transport, with queues from
//! `virtio-queue` (no hand-written virtqueue) and guest memory from
//! `vm-memory`. One folder per device, each parsing requests apart from
//! executing them (rust-vmm `vm-virtio`, Firecracker `devices/virtio`).

pub mod block;
pub mod chain;
pub mod device_state;
#[doc(hidden)]
pub mod fuzzing;
pub mod mmio;
pub mod net;
pub mod persist;
pub mod vsock;

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use vmm_sys_util::epoll::EventSet;

use crate::event_loop::{EventOps, Subscriber};

pub use device_state::{
    ActivateError, Chain, DeviceState, FeatureError, Interrupt, QueueError, Served,
};

/// Feature bit: the device complies with virtio 1.x.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Interrupt status bit: a used buffer was added.
pub const VIRTIO_MMIO_INT_VRING: u32 = 1;
/// Interrupt status bit: the configuration changed.
pub const VIRTIO_MMIO_INT_CONFIG: u32 = 2;

/// Device type ids (virtio 1.2, 5).
pub mod device_type {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
    /// Socket device.
    pub const VSOCK: u32 = 19;
}

/// Errors of device setup (host side, not guest-caused).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// An eventfd could not be created.
    #[error("cannot create an eventfd")]
    EventFd(#[source] io::Error),
    /// A queue could not be created.
    #[error("cannot create a virtqueue")]
    Queue(#[source] virtio_queue::Error),
    /// The backing file is unusable.
    #[error("backing file")]
    Backing(#[source] io::Error),
    /// The tap device could not be opened.
    #[error("tap device")]
    Tap(#[source] io::Error),
    /// The vsock unix socket could not be set up.
    #[error("unix socket")]
    Socket(#[source] io::Error),
    /// The device id is too long.
    #[error("device id is longer than 20 bytes")]
    IdTooLong,
}

/// What the MMIO transport needs from a device: its type, its config
/// space and its shared `DeviceState`. Negotiation, activation and reset
/// go through the state; a device adds its own steps in `on_activate` and
/// `on_reset` (and implements those, not `activate`/`reset`).
pub trait VirtioDevice: Send {
    /// Virtio device type id.
    fn device_type(&self) -> u32;
    /// The shared state.
    fn state(&self) -> &DeviceState;
    /// The shared state, mutably.
    fn state_mut(&mut self) -> &mut DeviceState;
    /// Reads the device configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration space (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Device-specific start, after the shared state activated.
    fn on_activate(&mut self) {}
    /// Device-specific cleanup, after the shared state was reset.
    fn on_reset(&mut self) {}

    /// Starts the device once the driver set DRIVER_OK.
    fn activate(&mut self) -> Result<(), ActivateError> {
        self.state_mut().activate()?;
        self.on_activate();
        Ok(())
    }

    /// Stops the device and forgets queue state (driver wrote status 0).
    fn reset(&mut self) {
        self.state_mut().reset();
        self.on_reset();
    }
}

/// Reads `data.len()` bytes of a config space held in `bytes`; anything
/// past its end reads as zero.
pub fn read_config_bytes(bytes: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(off) = usize::try_from(offset) else {
        return;
    };
    if off < bytes.len() {
        let n = data.len().min(bytes.len() - off);
        data[..n].copy_from_slice(&bytes[off..off + n]);
    }
}

/// Connects a device in `Arc<Mutex<_>>` (shared with its MMIO transport on
/// the vCPU threads) to the event loop.
pub struct VirtioSubscriber<D> {
    dev: Arc<Mutex<D>>,
}

impl<D> VirtioSubscriber<D> {
    /// Wraps `dev`.
    pub fn new(dev: Arc<Mutex<D>>) -> Self {
        Self { dev }
    }
}

impl<D: Subscriber> Subscriber for VirtioSubscriber<D> {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        crate::devices::lock(&self.dev).init(ops);
    }
    fn process(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps<'_>) {
        crate::devices::lock(&self.dev).process(fd, events, ops);
    }
}

#[cfg(test)]
pub(crate) mod test_utils;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_are_bounded() {
        let mut d = [9u8; 4];
        read_config_bytes(&[1, 2, 3], 1, &mut d);
        assert_eq!(d, [2, 3, 0, 0]);
        read_config_bytes(&[1, 2, 3], u64::MAX, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
