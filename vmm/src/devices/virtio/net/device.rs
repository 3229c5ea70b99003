//! The virtio-net device: frames between the guest's queues and the tap.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::packet::{parse_tx, RxChain};
use super::{tap, MAX_FRAME, QUEUE_SIZE};
use crate::devices::virtio::{
    device_type, read_config_bytes, DeviceError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::event_loop::{EventOps, Subscriber};
use crate::logger::guest_event;

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
    mem: Arc<GuestMemoryMmap>,
    tap: T,
    mac: Option<[u8; 6]>,
    queues: Vec<Queue>,
    evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    activated: bool,
    /// A frame read from the tap and not yet delivered.
    pending: Option<Vec<u8>>,
    tap_watched: bool,
    /// Counters.
    pub metrics: NetMetrics,
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
        let mut queues = Vec::new();
        let mut evts = Vec::new();
        for _ in 0..2 {
            queues.push(Queue::new(QUEUE_SIZE).map_err(DeviceError::Queue)?);
            evts.push(EventFd::new(libc::EFD_NONBLOCK).map_err(DeviceError::EventFd)?);
        }
        Ok(Self {
            mem,
            tap,
            mac,
            queues,
            evts,
            interrupt: Interrupt::new()?,
            activated: false,
            pending: None,
            tap_watched: false,
            metrics: NetMetrics::default(),
        })
    }

    fn process_tx(&mut self) {
        let mem = self.mem.clone();
        let mut used = false;
        let mut budget = usize::from(QUEUE_SIZE);
        while let Some(chain) = self.queues[TXQ].pop_descriptor_chain(&*mem) {
            if budget == 0 {
                // Let other devices run; resume through our own eventfd.
                self.queues[TXQ].go_to_previous_position();
                let _ = self.evts[TXQ].write(1);
                break;
            }
            budget -= 1;
            let head = chain.head_index();
            match parse_tx(chain) {
                Ok(frame) => match self.tap.write(&frame) {
                    Ok(_) => self.metrics.tx_frames += 1,
                    Err(e) => {
                        // A full or downed tap drops frames, as a wire would.
                        self.metrics.dropped += 1;
                        guest_event(format_args!("virtio-net: tap write: {e}"));
                    }
                },
                Err(e) => {
                    self.metrics.dropped += 1;
                    guest_event(format_args!("virtio-net: bad TX chain: {e}"));
                }
            }
            if self.queues[TXQ].add_used(&*mem, head, 0).is_err() {
                break;
            }
            used = true;
        }
        if used {
            self.interrupt.signal_used_queue();
        }
    }

    /// Moves frames from the tap to the guest while both have some.
    /// Returns whether the tap should stay watched (guest buffers left).
    fn process_rx(&mut self) -> bool {
        let mem = self.mem.clone();
        let mut used = false;
        let mut want_tap = true;
        loop {
            if self.pending.is_none() {
                let mut buf = vec![0u8; MAX_FRAME];
                match self.tap.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        buf.truncate(n);
                        self.pending = Some(buf);
                    }
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let Some(chain) = self.queues[RXQ].pop_descriptor_chain(&*mem) else {
                // No guest buffers: stop watching the tap until the guest
                // adds some.
                want_tap = false;
                break;
            };
            let head = chain.head_index();
            let frame = self.pending.take().expect("set above");
            let len = match RxChain::parse(chain).and_then(|rx| rx.write(&*mem, &frame)) {
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
            if self.queues[RXQ].add_used(&*mem, head, len).is_err() {
                self.queues[RXQ].go_to_previous_position();
                break;
            }
            used = true;
        }
        if used {
            self.interrupt.signal_used_queue();
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
    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | if self.mac.is_some() {
                VIRTIO_NET_F_MAC
            } else {
                0
            }
    }
    fn set_acked_features(&mut self, _features: u64) {}
    fn queues_mut(&mut self) -> &mut [Queue] {
        &mut self.queues
    }
    fn queue_events(&self) -> &[EventFd] {
        &self.evts
    }
    fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut cfg = [0u8; 8];
        if let Some(mac) = self.mac {
            cfg[..6].copy_from_slice(&mac);
        }
        read_config_bytes(&cfg, offset, data);
    }
    fn activate(&mut self) -> Result<(), DeviceError> {
        for i in [RXQ, TXQ] {
            if !self.queues[i].ready() {
                return Err(DeviceError::BadQueue(i));
            }
        }
        self.activated = true;
        // Let the event loop start watching the tap.
        let _ = self.evts[RXQ].write(1);
        Ok(())
    }
    fn is_activated(&self) -> bool {
        self.activated
    }
    fn reset(&mut self) {
        self.activated = false;
        self.pending = None;
        for q in &mut self.queues {
            q.reset();
        }
    }
}

impl<T: Read + Write + AsRawFd + Send> Subscriber for Net<T> {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        for e in &self.evts {
            if let Err(err) = ops.add(e.as_raw_fd(), EventSet::IN) {
                crate::logger::warn(format_args!("virtio-net: cannot watch a queue: {err}"));
            }
        }
    }

    fn process(&mut self, fd: RawFd, _events: EventSet, ops: &mut EventOps<'_>) {
        if fd == self.evts[TXQ].as_raw_fd() {
            let _ = self.evts[TXQ].read();
            if self.activated {
                self.process_tx();
            }
            return;
        }
        if fd == self.evts[RXQ].as_raw_fd() {
            let _ = self.evts[RXQ].read();
        }
        if !self.activated {
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
    use std::os::unix::net::UnixDatagram;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
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

    fn d(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    #[test]
    fn frames_cross_in_both_directions() {
        let mem =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap());
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut net = Net::with_tap(mem.clone(), Dgram(a), Some([2, 0, 0, 0, 0, 1])).unwrap();
        let txq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        mem.write_slice(b"............hello-wire", GuestAddress(0x10_0000))
            .unwrap();
        txq.build_desc_chain(&[d(0x10_0000, 22, 0)]).unwrap();
        let rxq = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
        rxq.build_desc_chain(&[d(0x20_0000, 100, 2)]).unwrap();
        net.queues[TXQ] = txq.create_queue().unwrap();
        net.queues[RXQ] = rxq.create_queue().unwrap();
        net.activated = true;
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
}
