//! The state every virtio device shares, after rust-vmm `virtio-device`'s
//! `VirtioConfig` and Firecracker's `DeviceState` + `IrqTrigger`: the
//! offered and accepted feature words, the queues and their notification
//! eventfds, the interrupt line, guest memory and the activated flag. It
//! owns the steps the transport drives (feature negotiation, activation
//! checks, reset) and the queue plumbing the devices' request loops use
//! (budgeted pops, used buffers, notifications), so block, net and vsock
//! keep only what is theirs.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::{DeviceError, VIRTIO_F_VERSION_1, VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use crate::event_loop::EventOps;
use crate::logger::guest_event;

/// A descriptor chain popped from one of the device's queues.
pub type Chain = DescriptorChain<Arc<GuestMemoryMmap>>;

/// A device's interrupt line: the virtio-mmio interrupt status register
/// plus the irqfd that raises the guest IRQ.
pub struct Interrupt {
    pub(super) status: AtomicU32,
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

/// Why the driver's feature selection is refused (FEATURES_OK stays clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    /// The driver accepted bits the device did not offer.
    #[error("bits {0:#x} were not offered")]
    NotOffered(u64),
    /// A virtio 1.x device needs VIRTIO_F_VERSION_1.
    #[error("VERSION_1 was not accepted")]
    NoVersion1,
}

/// Why a driver's DRIVER_OK cannot start the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ActivateError {
    /// A ready queue has a bad size or rings outside guest memory.
    #[error("queue {0} is not valid")]
    InvalidQueue(usize),
    /// A queue the device cannot run without was not made ready.
    #[error("queue {0} is not ready")]
    NotReady(usize),
}

/// Why a used buffer could not be returned.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The device has no such queue.
    #[error("no queue {0}")]
    NoQueue(usize),
    /// The used ring could not be written.
    #[error("cannot return a used buffer")]
    AddUsed(#[source] virtio_queue::Error),
}

/// What a device did with a chain `DeviceState::serve_queue` handed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Return the chain with this used length; take the next one.
    Next(u32),
    /// Return the chain with this used length and end the pass (the
    /// device can take no more for now).
    Last(u32),
    /// Put the chain back untouched and end the pass (a rate limit: the
    /// device serves it when its timer fires).
    Again,
}

/// The shared part of a virtio device.
pub struct DeviceState {
    name: &'static str,
    mem: Arc<GuestMemoryMmap>,
    avail_features: u64,
    pub(super) acked_features: u64,
    pub(super) queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    required_queues: usize,
    pub(super) activated: bool,
}

impl DeviceState {
    /// State for a device called `name` (in log lines) offering
    /// `avail_features`, with one queue of each size in `queue_sizes`; the
    /// first `required_queues` of them must be ready for activation.
    pub fn new(
        name: &'static str,
        mem: Arc<GuestMemoryMmap>,
        avail_features: u64,
        queue_sizes: &[u16],
        required_queues: usize,
    ) -> Result<Self, DeviceError> {
        let mut queues = Vec::with_capacity(queue_sizes.len());
        let mut queue_evts = Vec::with_capacity(queue_sizes.len());
        for size in queue_sizes {
            queues.push(Queue::new(*size).map_err(DeviceError::Queue)?);
            queue_evts.push(EventFd::new(libc::EFD_NONBLOCK).map_err(DeviceError::EventFd)?);
        }
        Ok(Self {
            name,
            mem,
            avail_features,
            acked_features: 0,
            queues,
            queue_evts,
            interrupt: Interrupt::new()?,
            required_queues,
            activated: false,
        })
    }

    /// Guest memory.
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Features the device offers.
    pub fn avail_features(&self) -> u64 {
        self.avail_features
    }

    /// Features the driver accepted (0 before negotiation).
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Checks and records the driver's features: a subset of the offer
    /// that includes VERSION_1.
    pub fn ack_features(&mut self, driver: u64) -> Result<(), FeatureError> {
        let extra = driver & !self.avail_features;
        if extra != 0 {
            return Err(FeatureError::NotOffered(extra));
        }
        if driver & VIRTIO_F_VERSION_1 == 0 {
            return Err(FeatureError::NoVersion1);
        }
        self.acked_features = driver;
        Ok(())
    }

    /// The queues.
    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    /// The queues, for the transport to configure.
    pub fn queues_mut(&mut self) -> &mut [Queue] {
        &mut self.queues
    }

    /// One notification eventfd per queue (registered as ioeventfds).
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// The interrupt line.
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// Whether the device is running.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// Starts the device once the driver set DRIVER_OK: every ready queue
    /// must lie in guest memory, and the required ones must be ready.
    pub fn activate(&mut self) -> Result<(), ActivateError> {
        if let Some(i) = self
            .queues
            .iter()
            .position(|q| q.ready() && !q.is_valid(&*self.mem))
        {
            return Err(ActivateError::InvalidQueue(i));
        }
        if let Some(i) = self
            .queues
            .iter()
            .take(self.required_queues)
            .position(|q| !q.ready())
        {
            return Err(ActivateError::NotReady(i));
        }
        self.activated = true;
        Ok(())
    }

    /// Stops the device (the driver wrote status 0): queues back to their
    /// reset state, features forgotten, interrupt status cleared.
    pub fn reset(&mut self) {
        self.activated = false;
        self.acked_features = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt.ack(u32::MAX);
    }

    /// Watches every queue eventfd in the event loop.
    pub fn register_queue_events(&self, ops: &mut EventOps<'_>) {
        for e in &self.queue_evts {
            if let Err(err) = ops.add(e.as_raw_fd(), EventSet::IN) {
                crate::logger::warn(format_args!("{}: cannot watch a queue: {err}", self.name));
            }
        }
    }

    /// If `fd` is one of the queue eventfds: clears it and returns the
    /// queue's index.
    pub fn take_queue_event(&self, fd: RawFd) -> Option<usize> {
        let (i, e) = self
            .queue_evts
            .iter()
            .enumerate()
            .find(|(_, e)| e.as_raw_fd() == fd)?;
        let _ = e.read();
        Some(i)
    }

    /// Makes the event loop serve queue `q` again (as a guest kick would).
    pub fn kick(&self, q: usize) {
        if let Some(e) = self.queue_evts.get(q) {
            let _ = e.write(1);
        }
    }

    /// The next available chain of queue `q`, if any.
    pub fn pop(&mut self, q: usize) -> Option<Chain> {
        self.queues
            .get_mut(q)?
            .pop_descriptor_chain(self.mem.clone())
    }

    /// The next available chain of queue `q` while `budget` lasts. With
    /// the budget spent the chain stays in the queue and the queue is
    /// kicked, so the event loop comes back after other work (other
    /// devices, SIGTERM).
    pub fn pop_within(&mut self, q: usize, budget: &mut usize) -> Option<Chain> {
        let chain = self.pop(q)?;
        if *budget == 0 {
            self.undo_pop(q);
            self.kick(q);
            return None;
        }
        *budget -= 1;
        Some(chain)
    }

    /// Puts the last popped chain of queue `q` back.
    pub fn undo_pop(&mut self, q: usize) {
        if let Some(queue) = self.queues.get_mut(q) {
            queue.go_to_previous_position();
        }
    }

    /// Returns chain `head` of queue `q` to the driver with `len` bytes
    /// written.
    pub fn add_used(&mut self, q: usize, head: u16, len: u32) -> Result<(), QueueError> {
        self.queues
            .get_mut(q)
            .ok_or(QueueError::NoQueue(q))?
            .add_used(&*self.mem, head, len)
            .map_err(QueueError::AddUsed)
    }

    /// Interrupts the guest for used buffers on queue `q`, unless the
    /// driver suppressed it.
    pub fn notify_used(&mut self, q: usize) {
        let needed = self
            .queues
            .get_mut(q)
            .map(|queue| queue.needs_notification(&*self.mem));
        if !matches!(needed, Some(Ok(false))) {
            self.interrupt.signal_used_queue();
        }
    }

    /// Serves queue `q`: hands each available chain (at most `budget`,
    /// see `pop_within`) with guest memory to `serve`, returns it with the
    /// used length `serve` gives, and interrupts the guest once at the
    /// end. Returns how many chains were handed out.
    pub fn serve_queue(
        &mut self,
        q: usize,
        mut budget: usize,
        mut serve: impl FnMut(Chain, &GuestMemoryMmap) -> Served,
    ) -> usize {
        let mem = self.mem.clone();
        let mut count = 0;
        let mut used = false;
        while let Some(chain) = self.pop_within(q, &mut budget) {
            count += 1;
            let head = chain.head_index();
            let (len, last) = match serve(chain, &mem) {
                Served::Next(len) => (len, false),
                Served::Last(len) => (len, true),
                Served::Again => {
                    self.undo_pop(q);
                    count -= 1;
                    break;
                }
            };
            if let Err(e) = self.add_used(q, head, len) {
                guest_event(format_args!("{}: {e}", self.name));
                break;
            }
            used = true;
            if last {
                break;
            }
        }
        if used {
            self.notify_used(q);
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::{desc, guest_memory};
    use crate::event_loop::with_test_ops;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    const F_WRITE: u16 = 2;

    fn state(required: usize) -> DeviceState {
        DeviceState::new(
            "test",
            guest_memory(),
            VIRTIO_F_VERSION_1 | 1 << 5,
            &[16, 16, 16],
            required,
        )
        .unwrap()
    }

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
    fn feature_negotiation() {
        let mut s = state(0);
        assert_eq!(
            s.ack_features(VIRTIO_F_VERSION_1 | 1 << 7),
            Err(FeatureError::NotOffered(1 << 7))
        );
        assert_eq!(s.ack_features(1 << 5), Err(FeatureError::NoVersion1));
        assert_eq!(s.acked_features(), 0);
        s.ack_features(VIRTIO_F_VERSION_1 | 1 << 5).unwrap();
        assert_eq!(s.acked_features(), VIRTIO_F_VERSION_1 | 1 << 5);
        assert_eq!(s.avail_features(), VIRTIO_F_VERSION_1 | 1 << 5);
    }

    #[test]
    fn activation_refuses_bad_queue_configuration() {
        let mut s = state(2);
        // Required queues not ready.
        assert_eq!(s.activate(), Err(ActivateError::NotReady(0)));
        let mem = s.mem.clone();
        let q0 = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        s.queues_mut()[0] = q0.create_queue().unwrap();
        assert_eq!(s.activate(), Err(ActivateError::NotReady(1)));
        // A ready queue with rings outside guest memory.
        s.queues_mut()[2].set_size(16);
        s.queues_mut()[2].set_desc_table_address(Some(0xfff0_0000), Some(0));
        s.queues_mut()[2].set_ready(true);
        assert_eq!(s.activate(), Err(ActivateError::InvalidQueue(2)));
        assert!(!s.is_activated());
        s.queues_mut()[2].reset();
        let q1 = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
        s.queues_mut()[1] = q1.create_queue().unwrap();
        s.activate().unwrap();
        assert!(s.is_activated());
    }

    #[test]
    fn reset_clears_state() {
        let mut s = state(1);
        let mem = s.mem.clone();
        let q0 = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        s.queues_mut()[0] = q0.create_queue().unwrap();
        s.ack_features(VIRTIO_F_VERSION_1).unwrap();
        s.activate().unwrap();
        s.interrupt().signal_used_queue();
        s.reset();
        assert!(!s.is_activated());
        assert_eq!(s.acked_features(), 0);
        assert_eq!(s.interrupt().status(), 0);
        assert!(s.queues().iter().all(|q| !q.ready()));
        // Queues are usable again only after a new configuration.
        assert!(s.pop(0).is_none());
        assert_eq!(s.activate(), Err(ActivateError::NotReady(0)));
    }

    #[test]
    fn budget_puts_the_chain_back_and_kicks() {
        let mut s = state(1);
        let mem = s.mem.clone();
        let vq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        let chains: Vec<_> = (0..3)
            .map(|i| desc(0x10_0000 + i * 0x100, 0x100, F_WRITE))
            .collect();
        vq.add_desc_chains(&chains, 0).unwrap();
        s.queues_mut()[0] = vq.create_queue().unwrap();
        let served = s.serve_queue(0, 2, |_, _| Served::Next(7));
        assert_eq!(served, 2);
        assert_eq!(vq.used().idx().load(), 2);
        assert_eq!(vq.used().ring().ref_at(1).unwrap().load().len(), 7);
        assert_ne!(s.interrupt().status(), 0);
        // The third chain is still there and the queue was kicked.
        let fd = s.queue_events()[0].as_raw_fd();
        assert_eq!(s.take_queue_event(fd), Some(0));
        assert_eq!(s.serve_queue(0, 2, |_, _| Served::Last(0)), 1);
        assert_eq!(s.take_queue_event(-1), None);
        // Missing queues are errors, not panics.
        assert!(s.pop(9).is_none());
        assert!(matches!(s.add_used(9, 0, 0), Err(QueueError::NoQueue(9))));
        s.notify_used(9);
        s.undo_pop(9);
        s.kick(9);
        with_test_ops(|ops| s.register_queue_events(ops));
    }
}
