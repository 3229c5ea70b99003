//! The virtio-net device: frames between the guest's queues and the tap,
//! on the shared `DeviceState` for queues, features and activation.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;

use super::packet::{parse_tx, RxChain};
use super::{tap, MAX_FRAME, QUEUE_SIZE};
use crate::devices::virtio::{
    device_type, read_config_bytes, DeviceError, DeviceState, Served, VirtioDevice,
    VIRTIO_F_VERSION_1,
};
use crate::event_loop::{EventOps, Subscriber};
use crate::logger::guest_event;
use crate::rate_limiter::RateLimiter;

const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const RXQ: usize = 0;
const TXQ: usize = 1;

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetMetrics {
    /// Frames sent to the tap.
    pub tx_frames: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Frames dropped (bad chains, small buffers, full tap).
    pub dropped: u64,
}

/// The network device.
pub struct Net<T: Read + Write + AsRawFd + Send = File> {
    pub(super) state: DeviceState,
    pub(super) tap: T,
    pub(super) mac: Option<[u8; 6]>,
    /// A frame read from the tap and not yet delivered.
    pending: Option<Vec<u8>>,
    tap_watched: bool,
    /// Counters.
    pub metrics: NetMetrics,
    /// Frames and bytes a second to the guest.
    rx_limiter: RateLimiter,
    /// Frames and bytes a second from the guest.
    tx_limiter: RateLimiter,
}

impl Net<File> {
    /// A device on the existing tap `tap_name`.
    pub fn new(
        mem: Arc<GuestMemoryMmap>,
        tap_name: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<Self, DeviceError> {
        let tap = tap::open_tap(tap_name).map_err(DeviceError::Tap)?;
        Self::with_tap(mem, tap, mac)
    }
}

impl<T: Read + Write + AsRawFd + Send> Net<T> {
    /// A device on any frame-oriented, non-blocking fd.
    pub fn with_tap(
        mem: Arc<GuestMemoryMmap>,
        tap: T,
        mac: Option<[u8; 6]>,
    ) -> Result<Self, DeviceError> {
        let features = VIRTIO_F_VERSION_1 | if mac.is_some() { VIRTIO_NET_F_MAC } else { 0 };
        Ok(Self {
            state: DeviceState::new("virtio-net", mem, features, &[QUEUE_SIZE; 2], 2)?,
            tap,
            mac,
            pending: None,
            tap_watched: false,
            metrics: NetMetrics::default(),
            rx_limiter: RateLimiter::unlimited(),
            tx_limiter: RateLimiter::unlimited(),
        })
    }

    /// Limits the frames and bytes a second to (`rx`) and from (`tx`)
    /// the guest (before the device joins the event loop).
    pub fn set_rate_limiters(&mut self, rx: RateLimiter, tx: RateLimiter) {
        self.rx_limiter = rx;
        self.tx_limiter = tx;
    }

    /// How many frames had to wait for a rate limiter, (rx, tx).
    pub fn throttled(&self) -> (u64, u64) {
        (self.rx_limiter.throttled, self.tx_limiter.throttled)
    }

    fn process_tx(&mut self) {
        let Self {
            state,
            tap,
            metrics,
            tx_limiter,
            ..
        } = self;
        if tx_limiter.is_blocked() {
            return;
        }
        state.serve_queue(TXQ, usize::from(QUEUE_SIZE), |chain, _| {
            match parse_tx(chain) {
                Ok(frame) if !tx_limiter.consume(frame.len() as u64) => return Served::Again,
                Ok(frame) => match tap.write(&frame) {
                    Ok(_) => metrics.tx_frames += 1,
                    Err(e) => {
                        // A full or downed tap drops frames, as a wire would.
                        metrics.dropped += 1;
                        guest_event(format_args!("virtio-net: tap write: {e}"));
                    }
                },
                Err(e) => {
                    metrics.dropped += 1;
                    guest_event(format_args!("virtio-net: bad TX chain: {e}"));
                }
            }
            Served::Next(0)
        });
    }

    /// The frame waiting for the guest, reading one from the tap if none.
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        if let Some(frame) = self.pending.take() {
            return Some(frame);
        }
        let mut buf = vec![0u8; MAX_FRAME];
        loop {
            return match self.tap.read(&mut buf) {
                Ok(n) if n > 0 => {
                    buf.truncate(n);
                    Some(buf)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(_) | Err(_) => None,
            };
        }
    }

    /// Moves frames from the tap to the guest while both have some.
    /// Returns whether the tap should stay watched (guest buffers left).
    fn process_rx(&mut self) -> bool {
        let mut used = false;
        let mut want_tap = true;
        while let Some(frame) = self.next_frame() {
            if !self.rx_limiter.consume(frame.len() as u64) {
                // Over the limit: keep the frame and leave the tap alone
                // until the limiter's timer fires.
                self.pending = Some(frame);
                want_tap = false;
                break;
            }
            let Some(chain) = self.state.pop(RXQ) else {
                // No guest buffers: keep the frame and stop watching the
                // tap until the guest adds some.
                self.pending = Some(frame);
                want_tap = false;
                break;
            };
            let head = chain.head_index();
            let len = match RxChain::parse(chain).and_then(|rx| rx.write(self.state.mem(), &frame))
            {
                Ok(n) => {
                    self.metrics.rx_frames += 1;
                    n
                }
                Err(e) => {
                    self.metrics.dropped += 1;
                    guest_event(format_args!("virtio-net: bad RX chain: {e}"));
                    0
                }
            };
            if self.state.add_used(RXQ, head, len).is_err() {
                self.state.undo_pop(RXQ);
                break;
            }
            used = true;
        }
        if used {
            self.state.notify_used(RXQ);
        }
        want_tap
    }

    fn set_tap_watch(&mut self, on: bool, ops: &mut EventOps<'_>) {
        if on == self.tap_watched {
            return;
        }
        let fd = self.tap.as_raw_fd();
        let r = if on {
            ops.add(fd, EventSet::IN)
        } else {
            ops.remove(fd)
        };
        match r {
            Ok(()) => self.tap_watched = on,
            Err(e) => crate::logger::warn(format_args!("virtio-net: epoll update failed: {e}")),
        }
    }
}

impl<T: Read + Write + AsRawFd + Send> VirtioDevice for Net<T> {
    fn device_type(&self) -> u32 {
        device_type::NET
    }
    fn state(&self) -> &DeviceState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut DeviceState {
        &mut self.state
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut cfg = [0u8; 8];
        if let Some(mac) = self.mac {
            cfg[..6].copy_from_slice(&mac);
        }
        read_config_bytes(&cfg, offset, data);
    }
    fn on_activate(&mut self) {
        // Let the event loop start watching the tap.
        self.state.kick(RXQ);
    }
    fn on_reset(&mut self) {
        self.pending = None;
    }
}

impl<T: Read + Write + AsRawFd + Send> Subscriber for Net<T> {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        self.state.register_queue_events(ops);
        for fd in [self.rx_limiter.timer_fd(), self.tx_limiter.timer_fd()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = ops.add(fd, EventSet::IN) {
                crate::logger::warn(format_args!("virtio-net: cannot watch a rate timer: {e}"));
            }
        }
    }

    fn process(&mut self, fd: RawFd, _events: EventSet, ops: &mut EventOps<'_>) {
        if self.tx_limiter.timer_fd() == Some(fd) {
            self.tx_limiter.on_timer();
            if self.state.is_activated() {
                self.process_tx();
            }
            return;
        }
        if self.rx_limiter.timer_fd() == Some(fd) {
            self.rx_limiter.on_timer();
        }
        if self.state.take_queue_event(fd) == Some(TXQ) {
            if self.state.is_activated() {
                self.process_tx();
            }
            return;
        }
        // The RX queue's eventfd (guest buffers) or the tap (frames).
        if !self.state.is_activated() {
            self.set_tap_watch(false, ops);
            return;
        }
        let keep = self.process_rx();
        self.set_tap_watch(keep, ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::{desc as d, guest_memory};
    use crate::devices::virtio::ActivateError;
    use crate::event_loop::with_test_ops;
    use std::os::unix::net::UnixDatagram;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    /// A datagram socket pair stands in for the tap: one frame per message.
    struct Dgram(UnixDatagram);
    impl Read for Dgram {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.recv(b)
        }
    }
    impl Write for Dgram {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.send(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl AsRawFd for Dgram {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_raw_fd()
        }
    }

    #[test]
    fn frames_cross_in_both_directions() {
        let mem = guest_memory();
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut net = Net::with_tap(mem.clone(), Dgram(a), Some([2, 0, 0, 0, 0, 1])).unwrap();
        let txq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        mem.write_slice(b"............hello-wire", GuestAddress(0x10_0000))
            .unwrap();
        txq.build_desc_chain(&[d(0x10_0000, 22, 0)]).unwrap();
        let rxq = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
        rxq.build_desc_chain(&[d(0x20_0000, 100, 2)]).unwrap();
        net.state.queues_mut()[TXQ] = txq.create_queue().unwrap();
        net.state.queues_mut()[RXQ] = rxq.create_queue().unwrap();
        net.activate().unwrap();
        net.process_tx();
        let mut buf = [0u8; 64];
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello-wire");
        b.send(b"from-wire").unwrap();
        assert!(net.process_rx(), "tap drained: keep watching it");
        let mut got = [0u8; 21];
        mem.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(&got[12..], b"from-wire");
        assert_eq!(rxq.used().ring().ref_at(0).unwrap().load().len(), 21);
        assert_eq!((net.metrics.tx_frames, net.metrics.rx_frames), (1, 1));
        // A second frame with no guest buffer left waits, and the tap is
        // no longer watched until the guest adds buffers.
        b.send(b"second").unwrap();
        assert!(!net.process_rx());
        assert!(net.pending.is_some());
        let mut mac = [0u8; 6];
        net.read_config(0, &mut mac);
        assert_eq!(mac, [2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn activation_needs_both_queues_and_reset_drops_the_pending_frame() {
        let mem = guest_memory();
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut net = Net::with_tap(mem.clone(), Dgram(a), None).unwrap();
        assert_eq!(net.state.avail_features(), VIRTIO_F_VERSION_1);
        let rxq = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
        net.state.queues_mut()[RXQ] = rxq.create_queue().unwrap();
        assert_eq!(net.activate(), Err(ActivateError::NotReady(TXQ)));
        let txq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        net.state.queues_mut()[TXQ] = txq.create_queue().unwrap();
        net.activate().unwrap();
        // Activation kicks RX so the event loop starts watching the tap.
        let rx_fd = net.state.queue_events()[RXQ].as_raw_fd();
        assert_eq!(net.state.take_queue_event(rx_fd), Some(RXQ));
        // A frame with no guest buffer waits; reset forgets it.
        b.send(b"frame").unwrap();
        with_test_ops(|ops| net.process(rx_fd, EventSet::IN, ops));
        assert!(net.pending.is_some() && !net.tap_watched);
        net.reset();
        assert!(net.pending.is_none() && !net.state.is_activated());
        // Events after reset do not move frames and unwatch the tap.
        b.send(b"late").unwrap();
        let tap_fd = net.tap.as_raw_fd();
        with_test_ops(|ops| net.process(tap_fd, EventSet::IN, ops));
        assert_eq!(net.metrics.rx_frames, 0);
    }

    #[test]
    fn hostile_chains_are_dropped_not_fatal() {
        let mem = guest_memory();
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut net = Net::with_tap(mem.clone(), Dgram(a), None).unwrap();
        let txq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        // Writable TX descriptor, one outside memory, one header-only.
        txq.add_desc_chains(
            &[
                d(0x10_0000, 64, 2),
                d(0xff_fff0, 64, 0),
                d(0x10_0000, 12, 0),
            ],
            0,
        )
        .unwrap();
        let rxq = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
        // An RX buffer too small for the frame, and a read-only one.
        rxq.add_desc_chains(&[d(0x20_0000, 14, 2), d(0x21_0000, 100, 0)], 0)
            .unwrap();
        net.state.queues_mut()[TXQ] = txq.create_queue().unwrap();
        net.state.queues_mut()[RXQ] = rxq.create_queue().unwrap();
        net.activate().unwrap();
        net.process_tx();
        assert_eq!(txq.used().idx().load(), 3);
        b.send(b"a-long-frame").unwrap();
        b.send(b"another-one").unwrap();
        // Both frames dropped on bad buffers; the tap is drained.
        assert!(net.process_rx());
        assert_eq!(rxq.used().idx().load(), 2);
        assert_eq!((net.metrics.dropped, net.metrics.rx_frames), (5, 0));
    }

    fn wait_readable(fd: RawFd) {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid pollfd for at most 3 s.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 3000) }, 1, "timer fired");
    }

    #[test]
    fn frame_limits_hold_frames_both_ways_until_their_timers() {
        use crate::devices::virtio::test_utils::add_chains;
        use crate::rate_limiter::{RateLimit, RateLimiter};
        let per_sec = |ops| {
            RateLimiter::new(RateLimit {
                bytes: None,
                ops: Some(ops),
            })
            .unwrap()
        };
        let mem = guest_memory();
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let mut net = Net::with_tap(mem.clone(), Dgram(a), None).unwrap();
        // Two frames a second to the guest, four from it.
        net.set_rate_limiters(per_sec(2), per_sec(4));
        let txq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        mem.write_slice(b"............frame", GuestAddress(0x10_0000))
            .unwrap();
        let tx: &[_] = &[d(0x10_0000, 17, 0)];
        add_chains(&txq, &[tx; 6]);
        let rxq = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
        let rx: &[_] = &[d(0x20_0000, 100, 2)];
        add_chains(&rxq, &[rx; 6]);
        net.state.queues_mut()[TXQ] = txq.create_queue().unwrap();
        net.state.queues_mut()[RXQ] = rxq.create_queue().unwrap();
        net.activate().unwrap();
        let mut buf = [0u8; 64];
        let mut sent = || std::iter::from_fn(|| b.recv(&mut buf).ok()).count();

        net.process_tx();
        assert_eq!(sent(), 4);
        assert_eq!(txq.used().idx().load(), 4);
        let tx_timer = net.tx_limiter.timer_fd().unwrap();
        wait_readable(tx_timer);
        with_test_ops(|ops| net.process(tx_timer, EventSet::IN, ops));
        assert_eq!(sent(), 1, "one more frame after a quarter second");

        for _ in 0..3 {
            b.send(b"from-wire").unwrap();
        }
        assert!(!net.process_rx(), "limited: stop watching the tap");
        assert_eq!(rxq.used().idx().load(), 2);
        assert!(net.pending.is_some());
        let rx_timer = net.rx_limiter.timer_fd().unwrap();
        wait_readable(rx_timer);
        with_test_ops(|ops| net.process(rx_timer, EventSet::IN, ops));
        assert_eq!(rxq.used().idx().load(), 3, "the held frame after the wait");
        // TX waited again for its sixth frame.
        assert_eq!(net.throttled(), (1, 2));
    }
}
