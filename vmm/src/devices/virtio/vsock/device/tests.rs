//! The vsock device against a fake backend: queues, throttling, reset.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;

use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::virtio::test_utils::{add_chains, desc as d, guest_memory};
use crate::devices::virtio::vsock::backend::RxPacket;
use crate::devices::virtio::vsock::packet::{Header, HDR_LEN, OP_RW, TYPE_STREAM};
use crate::devices::virtio::ActivateError;
use crate::event_loop::with_test_ops;

const W: u16 = 2;
const RX_BUFS: u64 = 0x20_0000;
const TX_PKTS: u64 = 0x30_0000;

/// Echoes every packet back with the ports swapped; its backlog is "full"
/// at `limit` packets and "drained" below half of it.
struct Echo {
    sent: Vec<TxPacket>,
    rx: VecDeque<RxPacket>,
    limit: usize,
    rooms: Vec<usize>,
    notified: Vec<RawFd>,
    inited: bool,
    resets: usize,
}

impl Echo {
    fn new(limit: usize) -> Self {
        Self {
            sent: Vec::new(),
            rx: VecDeque::new(),
            limit,
            rooms: Vec::new(),
            notified: Vec::new(),
            inited: false,
            resets: 0,
        }
    }
}

impl VsockBackend for Echo {
    fn init(&mut self, _ops: &mut EventOps<'_>) {
        self.inited = true;
    }
    fn notify(&mut self, fd: RawFd, _events: EventSet, _ops: &mut EventOps<'_>) {
        self.notified.push(fd);
    }
    fn send_pkt(&mut self, pkt: TxPacket, _ops: &mut EventOps<'_>) {
        let mut hdr = pkt.hdr;
        (hdr.src_port, hdr.dst_port) = (pkt.hdr.dst_port, pkt.hdr.src_port);
        self.rx.push_back(RxPacket {
            hdr,
            data: pkt.data.clone(),
        });
        self.sent.push(pkt);
    }
    fn has_pending_rx(&self) -> bool {
        !self.rx.is_empty()
    }
    fn recv_pkt(&mut self, room: usize, _ops: &mut EventOps<'_>) -> Option<RxPacket> {
        self.rooms.push(room);
        self.rx.pop_front()
    }
    fn rx_backlog_full(&self) -> bool {
        self.rx.len() >= self.limit
    }
    fn rx_backlog_drained(&self) -> bool {
        self.rx.len() < self.limit / 2
    }
    fn reset(&mut self) {
        self.resets += 1;
        self.rx.clear();
    }
}

fn rw(src_port: u32, data: &[u8]) -> Header {
    Header {
        src_cid: 3,
        dst_cid: 2,
        src_port,
        dst_port: 1024,
        len: data.len() as u32,
        type_: TYPE_STREAM,
        op: OP_RW,
        ..Default::default()
    }
}

/// Writes packet `i` (header and payload) to guest memory; returns its
/// descriptor.
fn tx_packet(mem: &GuestMemoryMmap, i: u64, data: &[u8]) -> RawDescriptor {
    let addr = TX_PKTS + i * 0x1000;
    mem.write_obj(rw(100 + i as u32, data), GuestAddress(addr))
        .unwrap();
    mem.write_slice(data, GuestAddress(addr + HDR_LEN as u64))
        .unwrap();
    d(addr, (HDR_LEN + data.len()) as u32, 0)
}

struct Rig<'m> {
    dev: Vsock<Echo>,
    mem: &'m GuestMemoryMmap,
    rxq: MockSplitQueue<'m, GuestMemoryMmap>,
    txq: MockSplitQueue<'m, GuestMemoryMmap>,
}

/// An activated device on an `Echo` with empty RX and TX queues.
fn rig(mem: &Arc<GuestMemoryMmap>, limit: usize) -> Rig<'_> {
    let rxq = MockSplitQueue::create(&**mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(&**mem, GuestAddress(0x2_0000), 16);
    let mut dev = Vsock::with_backend(mem.clone(), 3, Echo::new(limit)).unwrap();
    dev.state.queues_mut()[RXQ] = rxq.create_queue().unwrap();
    dev.state.queues_mut()[TXQ] = txq.create_queue().unwrap();
    dev.activate().unwrap();
    Rig { dev, mem, rxq, txq }
}

fn kick(dev: &mut Vsock<Echo>, q: usize) {
    let fd = dev.state.queue_events()[q].as_raw_fd();
    dev.state.kick(q);
    with_test_ops(|ops| dev.process(fd, EventSet::IN, ops));
}

fn rx_bufs(r: &Rig, n: u64, len: u32) {
    let bufs: Vec<RawDescriptor> = (0..n).map(|i| d(RX_BUFS + i * 0x1000, len, W)).collect();
    let chains: Vec<&[RawDescriptor]> = bufs.chunks(1).collect();
    add_chains(&r.rxq, &chains);
}

fn rx_header(r: &Rig, i: usize) -> Header {
    let id = r.rxq.used().ring().ref_at(i).unwrap().load().id();
    r.mem
        .read_obj(GuestAddress(RX_BUFS + u64::from(id) * 0x1000))
        .unwrap()
}

#[test]
fn packets_reach_the_backend_and_come_back() {
    let mem = guest_memory();
    let mut r = rig(&mem, 64);
    rx_bufs(&r, 4, 0x1000);
    let a = tx_packet(r.mem, 0, b"ping");
    let b = tx_packet(r.mem, 1, b"");
    // A device-writable TX chain is malformed: dropped, counted, returned.
    add_chains(&r.txq, &[&[a], &[d(TX_PKTS, HDR_LEN as u32, W)], &[b]]);
    kick(&mut r.dev, TXQ);
    assert_eq!(r.dev.backend().sent.len(), 2);
    assert_eq!(r.dev.metrics.bad_tx, 1);
    assert_eq!(r.txq.used().idx().load(), 3);
    // The replies went out in the same turn, each header's len set.
    assert_eq!(r.rxq.used().idx().load(), 2);
    let h = rx_header(&r, 0);
    assert_eq!(({ h.dst_port }, { h.len }), (100, 4));
    let mut data = [0u8; 4];
    r.mem
        .read_slice(&mut data, GuestAddress(RX_BUFS + HDR_LEN as u64))
        .unwrap();
    assert_eq!(&data, b"ping");
    assert_eq!(
        r.rxq.used().ring().ref_at(0).unwrap().load().len(),
        HDR_LEN as u32 + 4
    );
    assert_eq!(
        ({ rx_header(&r, 1).dst_port }, { rx_header(&r, 1).len }),
        (101, 0)
    );
    assert_ne!(r.dev.state.interrupt().status(), 0);
}

#[test]
fn rx_buffers_bound_the_payload_and_bad_ones_come_back_empty() {
    let mem = guest_memory();
    let mut r = rig(&mem, 64);
    r.dev.backend.rx.push_back(RxPacket {
        hdr: rw(7, &[]),
        data: vec![0xab; 100],
    });
    // A read-only buffer, one too small for a header, one with room for
    // 10 payload bytes.
    add_chains(
        &r.rxq,
        &[
            &[d(RX_BUFS, 0x1000, 0)],
            &[d(RX_BUFS + 0x1000, HDR_LEN as u32 - 1, W)],
            &[d(RX_BUFS + 0x2000, HDR_LEN as u32 + 10, W)],
        ],
    );
    kick(&mut r.dev, RXQ);
    assert_eq!(r.dev.metrics.bad_rx, 2);
    assert_eq!(r.rxq.used().idx().load(), 3);
    let used: Vec<u32> = (0..3)
        .map(|i| r.rxq.used().ring().ref_at(i).unwrap().load().len())
        .collect();
    assert_eq!(used, [0, 0, HDR_LEN as u32 + 10]);
    assert_eq!(r.dev.backend().rooms, [10]);
    assert_eq!({ rx_header(&r, 2).len }, 10);
}

#[test]
fn a_backlogged_backend_throttles_tx_until_drained() {
    let mem = guest_memory();
    let mut r = rig(&mem, 4);
    let pkts: Vec<RawDescriptor> = (0..8).map(|i| tx_packet(r.mem, i, b"x")).collect();
    let chains: Vec<&[RawDescriptor]> = pkts.chunks(1).collect();
    add_chains(&r.txq, &chains);
    // No RX buffers: the fourth reply fills the backlog and TX stops.
    kick(&mut r.dev, TXQ);
    assert_eq!(r.dev.backend().sent.len(), 4);
    assert_eq!(r.txq.used().idx().load(), 4);
    assert!(r.dev.tx_throttled);
    kick(&mut r.dev, TXQ);
    assert_eq!(r.dev.backend().sent.len(), 4);
    // Buffers drain the backlog, and TX resumes in the same turn.
    rx_bufs(&r, 4, 0x1000);
    kick(&mut r.dev, RXQ);
    assert_eq!(r.rxq.used().idx().load(), 4);
    assert_eq!(r.dev.backend().sent.len(), 8);
    assert_eq!(r.txq.used().idx().load(), 8);
    assert!(r.dev.tx_throttled, "the new replies fill the backlog again");
}

#[test]
fn activation_reset_and_backend_fds() {
    let mem = guest_memory();
    let mut dev = Vsock::with_backend(mem.clone(), 7, Echo::new(4)).unwrap();
    assert_eq!(dev.activate(), Err(ActivateError::NotReady(RXQ)));
    let rxq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
    dev.state.queues_mut()[RXQ] = rxq.create_queue().unwrap();
    assert_eq!(dev.activate(), Err(ActivateError::NotReady(TXQ)));
    // TX kicks before activation are consumed without serving the queue.
    let txq = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
    add_chains(&txq, &[&[tx_packet(&mem, 0, b"early")]]);
    dev.state.queues_mut()[TXQ] = txq.create_queue().unwrap();
    kick(&mut dev, TXQ);
    assert!(dev.backend().sent.is_empty());
    // The event queue is optional.
    dev.activate().unwrap();
    with_test_ops(|ops| {
        dev.init(ops);
        dev.process(-5, EventSet::IN, ops);
    });
    assert!(dev.backend().inited);
    assert_eq!(dev.backend().notified, [-5]);
    dev.tx_throttled = true;
    dev.reset();
    assert_eq!(dev.backend().resets, 1);
    assert!(!dev.tx_throttled && !dev.state.is_activated());
    let mut cid = [0u8; 8];
    dev.read_config(0, &mut cid);
    assert_eq!((u64::from_le_bytes(cid), dev.cid()), (7, 7));
    assert_eq!(dev.device_type(), device_type::VSOCK);
}
