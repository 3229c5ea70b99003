//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2): the register
//! window a driver programs. Queue notifications normally bypass it through
//! ioeventfds; writes that still arrive here are forwarded to the same
//! eventfds.

use std::sync::{Arc, Mutex};

use virtio_queue::QueueT;

use super::VirtioDevice;
use crate::devices::{lock, BusDevice};
use crate::logger::guest_event;

const MMIO_MAGIC: u32 = 0x7472_6976; // "virt"
const MMIO_VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4c4c_5548; // "HULL"

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    /// Guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// Guest has a driver.
    pub const DRIVER: u32 = 2;
    /// Driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation done.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error and needs a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up.
    pub const FAILED: u32 = 0x80;
}

/// The transport for one device.
pub struct MmioTransport<D> {
    pub(super) dev: Arc<Mutex<D>>,
    pub(super) status: u32,
    pub(super) features_sel: u32,
    pub(super) driver_features_sel: u32,
    pub(super) driver_features: u64,
    pub(super) queue_sel: u32,
    pub(super) config_generation: u32,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// A transport in reset state for `dev`.
    pub fn new(dev: Arc<Mutex<D>>) -> Self {
        Self {
            dev,
            status: 0,
            features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
        }
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    fn queues_configurable(&self) -> bool {
        self.status & status::FEATURES_OK != 0 && self.status & status::DRIVER_OK == 0
    }

    fn with_queue<R>(
        &self,
        dev: &mut D,
        f: impl FnOnce(&mut virtio_queue::Queue) -> R,
    ) -> Option<R> {
        dev.state_mut()
            .queues_mut()
            .get_mut(self.queue_sel as usize)
            .map(f)
    }

    fn read_reg(&self, dev: &mut D, offset: u64) -> u32 {
        match offset {
            0x000 => MMIO_MAGIC,
            0x004 => MMIO_VERSION,
            0x008 => dev.device_type(),
            0x00c => VENDOR_ID,
            0x010 => match self.features_sel {
                0 => dev.state().avail_features() as u32,
                1 => (dev.state().avail_features() >> 32) as u32,
                _ => 0,
            },
            0x034 => self
                .with_queue(dev, |q| u32::from(q.max_size()))
                .unwrap_or(0),
            0x044 => self.with_queue(dev, |q| u32::from(q.ready())).unwrap_or(0),
            0x060 => dev.state().interrupt().status(),
            0x070 => self.status,
            0x0fc => self.config_generation,
            _ => {
                guest_event(format_args!("virtio-mmio: read of register {offset:#x}"));
                0
            }
        }
    }

    fn set_status(&mut self, dev: &mut D, v: u32) {
        if v == 0 {
            dev.reset();
            *self = Self::new(self.dev.clone());
            return;
        }
        // Bits can only be added, one step at a time.
        if v & self.status != self.status {
            guest_event(format_args!(
                "virtio-mmio: status {v:#x} clears bits of {:#x}",
                self.status
            ));
            return;
        }
        let new = v & !self.status;
        if new & status::FEATURES_OK != 0 {
            if let Err(e) = dev.state_mut().ack_features(self.driver_features) {
                guest_event(format_args!(
                    "virtio-mmio: driver features {:#x} refused: {e}",
                    self.driver_features
                ));
                // FEATURES_OK stays clear: the driver sees the refusal.
                self.status = v & !status::FEATURES_OK;
                return;
            }
        }
        if new & status::DRIVER_OK != 0 {
            if self.status & status::FEATURES_OK == 0 {
                guest_event(format_args!("virtio-mmio: DRIVER_OK before FEATURES_OK"));
                return;
            }
            if let Err(e) = dev.activate() {
                guest_event(format_args!("virtio-mmio: activation failed: {e}"));
                self.status = v | status::DEVICE_NEEDS_RESET;
                dev.state().interrupt().signal_config();
                return;
            }
        }
        self.status = v;
    }

    fn write_reg(&mut self, dev: &mut D, offset: u64, v: u32) {
        match offset {
            0x014 => self.features_sel = v,
            0x020 => {
                if self.status & status::FEATURES_OK == 0 {
                    match self.driver_features_sel {
                        0 => {
                            self.driver_features =
                                (self.driver_features & !0xffff_ffff) | u64::from(v)
                        }
                        1 => {
                            self.driver_features =
                                (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                        }
                        _ => {}
                    }
                }
            }
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x050 => {
                // Only without ioeventfd; forward to the queue's eventfd.
                dev.state().kick(v as usize);
            }
            0x064 => dev.state().interrupt().ack(v),
            0x070 => self.set_status(dev, v),
            0x038 | 0x044 | 0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 => {
                if !self.queues_configurable() {
                    guest_event(format_args!(
                        "virtio-mmio: queue register {offset:#x} written in status {:#x}",
                        self.status
                    ));
                    return;
                }
                let done = self.with_queue(dev, |q| match offset {
                    0x038 => q.set_size(v as u16),
                    0x044 => q.set_ready(v == 1),
                    0x080 => q.set_desc_table_address(Some(v), None),
                    0x084 => q.set_desc_table_address(None, Some(v)),
                    0x090 => q.set_avail_ring_address(Some(v), None),
                    0x094 => q.set_avail_ring_address(None, Some(v)),
                    0x0a0 => q.set_used_ring_address(Some(v), None),
                    _ => q.set_used_ring_address(None, Some(v)),
                });
                if done.is_none() {
                    guest_event(format_args!("virtio-mmio: no queue {}", self.queue_sel));
                }
            }
            _ => guest_event(format_args!("virtio-mmio: write to register {offset:#x}")),
        }
    }
}

impl<D: VirtioDevice> BusDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let dev_arc = self.dev.clone();
        let mut dev = lock(&dev_arc);
        if offset >= 0x100 {
            dev.read_config(offset - 0x100, data);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            guest_event(format_args!(
                "virtio-mmio: {}-byte read at {offset:#x}",
                data.len()
            ));
            data.fill(0);
            return;
        }
        let v = self.read_reg(&mut dev, offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let dev_arc = self.dev.clone();
        let mut dev = lock(&dev_arc);
        if offset >= 0x100 {
            dev.write_config(offset - 0x100, data);
            self.config_generation = self.config_generation.wrapping_add(1);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            guest_event(format_args!(
                "virtio-mmio: {}-byte write at {offset:#x}",
                data.len()
            ));
            return;
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        self.write_reg(&mut dev, offset, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::{guest_memory, DummyDevice};
    use crate::devices::virtio::VIRTIO_F_VERSION_1;

    fn r(t: &mut MmioTransport<DummyDevice>, off: u64) -> u32 {
        let mut d = [0u8; 4];
        t.read(off, &mut d);
        u32::from_le_bytes(d)
    }

    fn w(t: &mut MmioTransport<DummyDevice>, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn setup() -> (MmioTransport<DummyDevice>, Arc<Mutex<DummyDevice>>) {
        let dev = Arc::new(Mutex::new(DummyDevice::new(guest_memory(), 2)));
        (MmioTransport::new(dev.clone()), dev)
    }

    fn negotiate(t: &mut MmioTransport<DummyDevice>) {
        w(t, 0x70, status::ACKNOWLEDGE);
        w(t, 0x70, status::ACKNOWLEDGE | status::DRIVER);
        w(t, 0x24, 1);
        w(t, 0x20, 1); // VERSION_1
        w(
            t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
    }

    fn setup_queue(t: &mut MmioTransport<DummyDevice>, sel: u32, base: u32) {
        w(t, 0x30, sel);
        w(t, 0x38, 16);
        w(t, 0x80, base);
        w(t, 0x90, base + 0x100);
        w(t, 0xa0, base + 0x200);
        w(t, 0x44, 1);
    }

    #[test]
    fn identification_registers() {
        let (mut t, _) = setup();
        assert_eq!(r(&mut t, 0), MMIO_MAGIC);
        assert_eq!(r(&mut t, 4), 2);
        assert_eq!(r(&mut t, 8), 42);
        w(&mut t, 0x14, 1);
        assert_eq!(r(&mut t, 0x10), 1); // VERSION_1 in the high word
                                        // Unaligned and odd-sized accesses read zero and change nothing.
        let mut d = [0xaau8; 2];
        t.read(0, &mut d);
        assert_eq!(d, [0, 0]);
        t.write(0x70, &[1, 0]);
        assert_eq!(t.status(), 0);
    }

    #[test]
    fn full_negotiation_activates() {
        let (mut t, dev) = setup();
        negotiate(&mut t);
        assert_eq!(r(&mut t, 0x70) & status::FEATURES_OK, status::FEATURES_OK);
        setup_queue(&mut t, 0, 0x1000);
        setup_queue(&mut t, 1, 0x2000);
        w(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert!(dev.lock().unwrap().state.is_activated());
        assert_eq!(
            dev.lock().unwrap().state.acked_features(),
            VIRTIO_F_VERSION_1
        );
        // Reset.
        w(&mut t, 0x70, 0);
        assert!(!dev.lock().unwrap().state.is_activated());
        assert_eq!(dev.lock().unwrap().resets, 1);
        assert_eq!(t.status(), 0);
    }

    #[test]
    fn features_not_offered_are_refused() {
        let (mut t, dev) = setup();
        w(&mut t, 0x70, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, 0x24, 0);
        w(&mut t, 0x20, 1 << 7); // not offered
        w(&mut t, 0x24, 1);
        w(&mut t, 0x20, 1);
        w(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(t.status() & status::FEATURES_OK, 0);
        assert!(!dev.lock().unwrap().state.is_activated());
    }

    #[test]
    fn bad_queue_addresses_need_reset_instead_of_activation() {
        let (mut t, dev) = setup();
        negotiate(&mut t);
        setup_queue(&mut t, 0, 0xfff0_0000); // outside guest memory
        w(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert!(!dev.lock().unwrap().state.is_activated());
        assert_ne!(t.status() & status::DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn queue_registers_are_locked_outside_negotiation_and_bad_selectors_ignored() {
        let (mut t, dev) = setup();
        w(&mut t, 0x30, 0);
        w(&mut t, 0x38, 8); // before FEATURES_OK: ignored
        assert_eq!(dev.lock().unwrap().state.queues()[0].size(), 16);
        negotiate(&mut t);
        w(&mut t, 0x30, 99);
        w(&mut t, 0x38, 8);
        assert_eq!(r(&mut t, 0x34), 0);
        // Going backwards in status is refused.
        w(&mut t, 0x70, status::ACKNOWLEDGE);
        assert_ne!(t.status() & status::FEATURES_OK, 0);
        // Notify through the register reaches the queue's eventfd.
        w(&mut t, 0x50, 1);
        assert_eq!(
            dev.lock().unwrap().state.queue_events()[1].read().unwrap(),
            1
        );
        w(&mut t, 0x50, 7); // no such queue: ignored
    }
}
