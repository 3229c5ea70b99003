//! Virtio devices over the MMIO transport, with queues from
//! `virtio-queue` (no hand-written virtqueue) and guest memory from
//! `vm-memory`. One folder per device, each parsing requests apart from
//! executing them (rust-vmm `vm-virtio`, Firecracker `devices/virtio`).

pub mod block;
pub mod chain;
#[doc(hidden)]
pub mod fuzzing;
pub mod mmio;
pub mod net;
pub mod vsock;

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::event_loop::{EventOps, Subscriber};

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
    /// Activation found a queue the driver set up wrongly.
    #[error("queue {0} is not valid")]
    BadQueue(usize),
}

/// A device's interrupt line: the virtio-mmio interrupt status register
/// plus the irqfd that raises the guest IRQ.
pub struct Interrupt {
    status: AtomicU32,
    evt: EventFd,
}

impl Interrupt {
    /// A new line with its own irqfd.
    pub fn new() -> Result<Arc<Self>, DeviceError> {
        let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
        Ok(Arc::new(Self {
            status: AtomicU32::new(0),
            evt,
        }))
    }

    /// Signals that used buffers are available.
    pub fn signal_used_queue(&self) {
        self.raise(VIRTIO_MMIO_INT_VRING);
    }

    /// Signals a configuration change.
    pub fn signal_config(&self) {
        self.raise(VIRTIO_MMIO_INT_CONFIG);
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        // A full eventfd counter already means "interrupt pending".
        let _ = self.evt.write(1);
    }

    /// The interrupt status register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// InterruptACK: clears `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// The irqfd.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

/// What the MMIO transport needs from a device.
pub trait VirtioDevice: Send {
    /// Virtio device type id.
    fn device_type(&self) -> u32;
    /// Features the device offers.
    fn avail_features(&self) -> u64;
    /// Records the features the driver accepted (a subset of the offer).
    fn set_acked_features(&mut self, features: u64);
    /// The device's queues (configured by the transport).
    fn queues_mut(&mut self) -> &mut [Queue];
    /// One notification eventfd per queue (registered as ioeventfds).
    fn queue_events(&self) -> &[EventFd];
    /// The interrupt line.
    fn interrupt(&self) -> &Arc<Interrupt>;
    /// Reads the device configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration space (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts the device once the driver set DRIVER_OK.
    fn activate(&mut self) -> Result<(), DeviceError>;
    /// Whether the device is running.
    fn is_activated(&self) -> bool;
    /// Stops the device and forgets queue state (driver wrote status 0).
    fn reset(&mut self);
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
    fn interrupt_status_and_ack() {
        let i = Interrupt::new().unwrap();
        i.signal_used_queue();
        i.signal_config();
        assert_eq!(i.status(), 3);
        i.ack(1);
        assert_eq!(i.status(), 2);
        assert_eq!(i.eventfd().read().unwrap(), 2);
    }

    #[test]
    fn config_reads_are_bounded() {
        let mut d = [9u8; 4];
        read_config_bytes(&[1, 2, 3], 1, &mut d);
        assert_eq!(d, [2, 3, 0, 0]);
        read_config_bytes(&[1, 2, 3], u64::MAX, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
