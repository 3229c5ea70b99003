//! Saving and restoring what every virtio device shares — features, queue
//! configuration and positions, interrupt status, activation — and the
//! registers of its MMIO transport (Firecracker's `devices/virtio/persist.rs`).
//! A device's own part (config space, backing) is in its folder's
//! `persist.rs`. Everything restored is checked as if a driver had written
//! it: a snapshot is input, not trusted state.

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueState, QueueT};

use super::mmio::{status, MmioTransport};
use super::{ActivateError, DeviceState, FeatureError, VirtioDevice};
use super::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use crate::devices::lock;

/// Why a saved device state cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The device offers other features than the saved one did.
    #[error("the device offers features {found:#x}, the snapshot's offered {saved:#x}")]
    Features {
        /// Offered now.
        found: u64,
        /// Offered when saved.
        saved: u64,
    },
    /// The saved driver features are not acceptable.
    #[error("saved driver features refused")]
    AckedFeatures(#[source] FeatureError),
    /// The saved state has another number of queues.
    #[error("the snapshot has {saved} queues, the device {found}")]
    QueueCount {
        /// The device's.
        found: usize,
        /// The snapshot's.
        saved: usize,
    },
    /// A saved queue has another maximum size.
    #[error("queue {0} has another maximum size in the snapshot")]
    QueueMaxSize(usize),
    /// A saved queue is not a valid queue.
    #[error("queue {0} in the snapshot is not valid")]
    Queue(usize, #[source] virtio_queue::Error),
    /// A device saved as running cannot run with its saved queues.
    #[error("the saved device cannot be activated")]
    Activate(#[source] ActivateError),
    /// The transport status disagrees with the device's activation.
    #[error("transport status {0:#x} disagrees with the device's activation")]
    Status(u32),
    /// A device-specific part is not valid.
    #[error("{0}")]
    Device(String),
}

/// One virtqueue as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSnapshot {
    /// Largest size the device offers.
    pub max_size: u16,
    /// Size the driver chose.
    pub size: u16,
    /// Whether the driver made it ready.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available ring address.
    pub avail_ring: u64,
    /// Used ring address.
    pub used_ring: u64,
    /// Next available index the device reads.
    pub next_avail: u16,
    /// Next used index the device writes.
    pub next_used: u16,
    /// Whether VIRTIO_F_RING_EVENT_IDX is in use.
    pub event_idx: bool,
}

impl From<QueueState> for QueueSnapshot {
    fn from(q: QueueState) -> Self {
        Self {
            max_size: q.max_size,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx: q.event_idx_enabled,
        }
    }
}

impl From<&QueueSnapshot> for QueueState {
    fn from(q: &QueueSnapshot) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

/// The shared device state as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioState {
    /// Features the device offered.
    pub avail_features: u64,
    /// Features the driver accepted.
    pub acked_features: u64,
    /// Whether the device was running.
    pub activated: bool,
    /// The interrupt status register.
    pub interrupt_status: u32,
    /// Every queue.
    pub queues: Vec<QueueSnapshot>,
}

/// The MMIO transport's registers as saved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmioState {
    /// Device status.
    pub status: u32,
    /// DeviceFeaturesSel.
    pub features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// DriverFeatures as written so far.
    pub driver_features: u64,
    /// QueueSel.
    pub queue_sel: u32,
    /// ConfigGeneration.
    pub config_generation: u32,
}

impl DeviceState {
    /// The state to save.
    pub fn save(&self) -> VirtioState {
        VirtioState {
            avail_features: self.avail_features(),
            acked_features: self.acked_features,
            activated: self.activated,
            interrupt_status: self.interrupt().status(),
            queues: self.queues.iter().map(|q| q.state().into()).collect(),
        }
    }

    /// Takes back a saved state. The device must offer what it offered
    /// when saved; queues are rebuilt through virtio-queue's checks, and a
    /// device saved running is activated again (its rings must lie in
    /// guest memory).
    pub fn restore(&mut self, s: &VirtioState) -> Result<(), RestoreError> {
        if s.avail_features != self.avail_features() {
            return Err(RestoreError::Features {
                found: self.avail_features(),
                saved: s.avail_features,
            });
        }
        if s.acked_features != 0 {
            self.ack_features(s.acked_features)
                .map_err(RestoreError::AckedFeatures)?;
        }
        if s.queues.len() != self.queues.len() {
            return Err(RestoreError::QueueCount {
                found: self.queues.len(),
                saved: s.queues.len(),
            });
        }
        let mut queues = Vec::with_capacity(s.queues.len());
        for (i, (saved, now)) in s.queues.iter().zip(&self.queues).enumerate() {
            if saved.max_size != now.max_size() {
                return Err(RestoreError::QueueMaxSize(i));
            }
            queues.push(
                Queue::try_from(QueueState::from(saved)).map_err(|e| RestoreError::Queue(i, e))?,
            );
        }
        self.queues = queues;
        if s.activated {
            self.activate().map_err(RestoreError::Activate)?;
        }
        let bits = s.interrupt_status & (VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
        self.interrupt()
            .status
            .store(bits, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// The device behind the transport.
    pub fn device(&self) -> &std::sync::Arc<std::sync::Mutex<D>> {
        &self.dev
    }

    /// The registers to save.
    pub fn save_regs(&self) -> MmioState {
        MmioState {
            status: self.status,
            features_sel: self.features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            config_generation: self.config_generation,
        }
    }

    /// Takes back saved registers, after the device's own state: a device
    /// runs exactly when its driver had set DRIVER_OK (and the device had
    /// not asked for a reset).
    pub fn restore_regs(&mut self, s: &MmioState) -> Result<(), RestoreError> {
        let running = s.status & status::DRIVER_OK != 0
            && s.status & status::FEATURES_OK != 0
            && s.status & status::DEVICE_NEEDS_RESET == 0;
        if running != lock(&self.dev).state().is_activated() {
            return Err(RestoreError::Status(s.status));
        }
        self.status = s.status;
        self.features_sel = s.features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.config_generation = s.config_generation;
        Ok(())
    }

    /// Tells the driver the configuration space changed (a placeholder
    /// disk got its backing): a new generation and a config interrupt,
    /// if a driver is running the device.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & status::DRIVER_OK != 0 {
            lock(&self.dev).state().interrupt().signal_config();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::{guest_memory, DummyDevice};
    use crate::devices::BusDevice;
    use std::sync::{Arc, Mutex};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    fn w(t: &mut MmioTransport<DummyDevice>, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    /// A transport whose driver negotiated, set up two queues and started.
    fn running() -> (MmioTransport<DummyDevice>, Arc<Mutex<DummyDevice>>) {
        let dev = Arc::new(Mutex::new(DummyDevice::new(guest_memory(), 2)));
        let mut t = MmioTransport::new(dev.clone());
        w(&mut t, 0x70, 1);
        w(&mut t, 0x70, 3);
        w(&mut t, 0x24, 1);
        w(&mut t, 0x20, 1);
        w(&mut t, 0x70, 11);
        for (sel, base) in [(0u32, 0x1000u32), (1, 0x2000)] {
            w(&mut t, 0x30, sel);
            w(&mut t, 0x38, 16);
            w(&mut t, 0x80, base);
            w(&mut t, 0x90, base + 0x100);
            w(&mut t, 0xa0, base + 0x200);
            w(&mut t, 0x44, 1);
        }
        w(&mut t, 0x70, 15);
        assert!(lock(&dev).state().is_activated());
        (t, dev)
    }

    #[test]
    fn a_running_device_comes_back_running_with_its_queue_positions() {
        let (t, dev) = running();
        {
            let mut d = lock(&dev);
            let mem = d.state().mem().clone();
            let vq = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
            vq.add_desc_chains(&[crate::devices::virtio::test_utils::desc(0x8000, 8, 0)], 0)
                .unwrap();
            let chain = d.state_mut().pop(0).unwrap();
            d.state_mut().add_used(0, chain.head_index(), 0).unwrap();
            d.state().interrupt().signal_used_queue();
        }
        let regs = t.save_regs();
        let saved = lock(&dev).state().save();
        assert_eq!(saved.queues[0].next_avail, 1);
        assert_eq!(saved.queues[0].next_used, 1);

        let fresh = Arc::new(Mutex::new(DummyDevice::new(guest_memory(), 2)));
        lock(&fresh).state_mut().restore(&saved).unwrap();
        let mut t2 = MmioTransport::new(fresh.clone());
        t2.restore_regs(&regs).unwrap();
        assert_eq!(t2.save_regs(), regs);
        assert_eq!(lock(&fresh).state().save(), saved);
        assert!(lock(&fresh).state().is_activated());
        assert_eq!(lock(&fresh).state().interrupt().status(), 1);
    }

    #[test]
    fn hostile_saved_states_are_errors() {
        let (t, dev) = running();
        let saved = lock(&dev).state().save();
        let regs = t.save_regs();
        let restore = |s: &VirtioState| {
            let d = DummyDevice::new(guest_memory(), 2);
            let mut d = d;
            d.state_mut().restore(s).map(|_| d)
        };
        let mut s = saved.clone();
        s.avail_features |= 1 << 40;
        assert!(matches!(restore(&s), Err(RestoreError::Features { .. })));
        let mut s = saved.clone();
        s.acked_features = 1;
        assert!(matches!(restore(&s), Err(RestoreError::AckedFeatures(_))));
        let mut s = saved.clone();
        s.queues.pop();
        assert!(matches!(restore(&s), Err(RestoreError::QueueCount { .. })));
        let mut s = saved.clone();
        s.queues[1].max_size = 4;
        assert!(matches!(restore(&s), Err(RestoreError::QueueMaxSize(1))));
        let mut s = saved.clone();
        s.queues[0].size = 3;
        assert!(matches!(restore(&s), Err(RestoreError::Queue(0, _))));
        let mut s = saved.clone();
        s.queues[0].used_ring = 0xffff_ff00_0000;
        assert!(matches!(restore(&s), Err(RestoreError::Activate(_))));
        // Running device, stopped transport (and the reverse).
        let d = Arc::new(Mutex::new(restore(&saved).unwrap()));
        let mut t2 = MmioTransport::new(d.clone());
        let stopped = MmioState {
            status: 3,
            ..regs.clone()
        };
        assert!(matches!(
            t2.restore_regs(&stopped),
            Err(RestoreError::Status(3))
        ));
        let mut s = saved.clone();
        s.activated = false;
        let d = Arc::new(Mutex::new(restore(&s).unwrap()));
        let mut t3 = MmioTransport::new(d);
        assert!(t3.restore_regs(&regs).is_err());
        assert!(t3.restore_regs(&stopped).is_ok());
    }

    #[test]
    fn a_config_change_bumps_the_generation_and_interrupts_a_running_driver() {
        let (mut t, dev) = running();
        let generation = t.save_regs().config_generation;
        t.config_changed();
        assert_eq!(t.save_regs().config_generation, generation.wrapping_add(1));
        assert_eq!(lock(&dev).state().interrupt().status() & 2, 2);
        let idle = Arc::new(Mutex::new(DummyDevice::new(guest_memory(), 2)));
        let mut t = MmioTransport::new(idle.clone());
        t.config_changed();
        assert_eq!(lock(&idle).state().interrupt().status(), 0);
    }
}
