//! Shared fixtures for device tests: a dummy device and guest memory.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{DeviceError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};

/// A device that only records what the transport does to it.
pub struct DummyDevice {
    pub queues: Vec<Queue>,
    pub evts: Vec<EventFd>,
    pub interrupt: Arc<Interrupt>,
    pub acked: u64,
    pub activated: bool,
}

impl DummyDevice {
    pub fn new(nq: usize) -> Self {
        Self {
            queues: (0..nq).map(|_| Queue::new(16).unwrap()).collect(),
            evts: (0..nq)
                .map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap())
                .collect(),
            interrupt: Interrupt::new().unwrap(),
            acked: 0,
            activated: false,
        }
    }
}

impl VirtioDevice for DummyDevice {
    fn device_type(&self) -> u32 {
        42
    }
    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn set_acked_features(&mut self, f: u64) {
        self.acked = f;
    }
    fn queues_mut(&mut self) -> &mut [Queue] {
        &mut self.queues
    }
    fn queue_events(&self) -> &[EventFd] {
        &self.evts
    }
    fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn activate(&mut self) -> Result<(), DeviceError> {
        self.activated = true;
        Ok(())
    }
    fn is_activated(&self) -> bool {
        self.activated
    }
    fn reset(&mut self) {
        self.activated = false;
        for q in &mut self.queues {
            q.reset();
        }
    }
}
