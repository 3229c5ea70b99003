//! The muxer on real unix sockets, alone and behind the vsock device.

use std::os::unix::net::{UnixListener, UnixStream};

use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::virtio::test_utils::{desc as d, guest_memory};
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::VirtioDevice;
use crate::event_loop::{with_test_ops, Subscriber};

const W: u16 = 2;
const RXQ: usize = 0;
const TXQ: usize = 1;

fn hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: 3,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: 65536,
        ..Default::default()
    }
}

fn pkt(h: Header, data: &[u8]) -> TxPacket {
    TxPacket {
        hdr: h,
        data: data.to_vec(),
    }
}

fn rx_header(mem: &GuestMemoryMmap, q: &MockSplitQueue<GuestMemoryMmap>, i: u16) -> Header {
    let id = q.used().ring().ref_at(i as usize).unwrap().load().id();
    let addr = 0x20_0000 + u64::from(id as u16) * 0x1000;
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn kick_tx(dev: &mut Vsock) {
    let fd = dev.state().queue_events()[TXQ].as_raw_fd();
    dev.state().kick(TXQ);
    with_test_ops(|ops| dev.process(fd, EventSet::IN, ops));
}

/// Ops of the control packets waiting, oldest first (drains them).
fn drain_ops(m: &mut VsockMuxer) -> Vec<(u16, u32)> {
    std::iter::from_fn(|| m.rxq.pop())
        .map(|c| (c.op, c.peer_port))
        .collect()
}

#[test]
fn guest_connect_data_and_hostile_packets() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let agent = UnixListener::bind(format!("{}_1024", uds.display())).unwrap();
    let mem = guest_memory();
    let mut dev = Vsock::new(mem.clone(), 3, &uds).unwrap();
    assert!(uds.exists());

    let rxq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
    let bufs: Vec<RawDescriptor> = (0..8)
        .map(|i| d(0x20_0000 + i * 0x1000, 0x1000, W))
        .collect();
    rxq.add_desc_chains(&bufs, 0).unwrap();
    let txq = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
    // 1: REQUEST to port 1024. 2: a write-only (malformed) TX chain.
    // 3: data for a connection that does not exist. 4: RW with data.
    mem.write_obj(hdr(OP_REQUEST, 77, 1024), GuestAddress(0x30_0000))
        .unwrap();
    mem.write_obj(hdr(OP_RW, 99, 1024), GuestAddress(0x31_0000))
        .unwrap();
    let mut rw = hdr(OP_RW, 77, 1024);
    rw.len = 5;
    mem.write_obj(rw, GuestAddress(0x32_0000)).unwrap();
    mem.write_slice(b"hello", GuestAddress(0x32_0000 + HDR_LEN as u64))
        .unwrap();
    txq.add_desc_chains(
        &[
            d(0x30_0000, HDR_LEN as u32, 0),
            d(0x33_0000, HDR_LEN as u32, W),
            d(0x31_0000, HDR_LEN as u32, 0),
            d(0x32_0000, HDR_LEN as u32 + 5, 0),
        ],
        0,
    )
    .unwrap();
    dev.state_mut().queues_mut()[RXQ] = rxq.create_queue().unwrap();
    dev.state_mut().queues_mut()[TXQ] = txq.create_queue().unwrap();
    dev.activate().unwrap();

    kick_tx(&mut dev);
    assert_eq!(dev.metrics.bad_tx, 1);
    let (mut s, _) = agent.accept().unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    // RX: RESPONSE to port 77, then RST for the stray packet.
    assert_eq!(rxq.used().idx().load(), 2);
    let r0 = rx_header(&mem, &rxq, 0);
    assert_eq!(
        ({ r0.op }, { r0.dst_port }, { r0.src_port }),
        (OP_RESPONSE, 77, 1024)
    );
    let r1 = rx_header(&mem, &rxq, 1);
    assert_eq!(({ r1.op }, { r1.dst_port }), (OP_RST, 99));

    // Host data flows back once the socket is readable.
    s.write_all(b"pong").unwrap();
    let fd = dev.backend().conns[&(1024, 77)].stream.as_raw_fd();
    with_test_ops(|ops| dev.process(fd, EventSet::IN, ops));
    assert_eq!(rxq.used().idx().load(), 3);
    let r2 = rx_header(&mem, &rxq, 2);
    assert_eq!(({ r2.op }, { r2.len }), (OP_RW, 4));
    assert_eq!(dev.backend().connections(), 1);
    assert_eq!(dev.backend().metrics.rst_sent, 1);
}

#[test]
fn a_guest_that_never_receives_is_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let mem = guest_memory();
    let mut dev = Vsock::new(mem.clone(), 3, &dir.path().join("t.sock")).unwrap();
    // Stray RW packets each earn an RST; there are no RX buffers.
    mem.write_obj(hdr(OP_RW, 5, 6), GuestAddress(0x30_0000))
        .unwrap();
    let rxq = MockSplitQueue::create(&*mem, GuestAddress(0x9_0000), 16);
    dev.state_mut().queues_mut()[RXQ] = rxq.create_queue().unwrap();
    let mut last_round = (0, 0);
    for round in 0..8 {
        let txq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000 + round * 0x1_0000), 256);
        let chains: Vec<RawDescriptor> =
            (0..256).map(|_| d(0x30_0000, HDR_LEN as u32, 0)).collect();
        txq.add_desc_chains(&chains, 0).unwrap();
        dev.state_mut().queues_mut()[TXQ] = txq.create_queue().unwrap();
        if round == 0 {
            dev.activate().unwrap();
        }
        let before = txq.used().idx().load();
        kick_tx(&mut dev);
        last_round = (before, txq.used().idx().load());
    }
    let m = dev.backend();
    assert_eq!(m.rxq.len(), super::super::muxer_rxq::MAX_PENDING_CONTROL);
    assert!(m.rx_backlog_full());
    assert_eq!(
        last_round.0, last_round.1,
        "a throttled TX queue is left alone"
    );
}

#[test]
fn host_connect_line_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("h.sock");
    let mut m = VsockMuxer::new(3, &uds).unwrap();
    let mut good = UnixStream::connect(&uds).unwrap();
    good.write_all(b"CONNECT 5000\n").unwrap();
    let mut bad = UnixStream::connect(&uds).unwrap();
    bad.write_all(b"HELLO\n").unwrap();
    with_test_ops(|ops| {
        m.notify(m.host.as_raw_fd(), EventSet::IN, ops);
        let fds = m.host.pending_fds();
        assert_eq!(fds.len(), 2);
        for fd in fds {
            m.notify(fd, EventSet::IN, ops);
        }
    });
    assert_eq!(m.host.pending_len(), 0);
    assert_eq!(m.conns.len(), 1);
    let c = m.rxq.front().unwrap();
    assert_eq!((c.op, c.peer_port), (OP_REQUEST, 5000));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(bad), &mut line).unwrap();
    assert!(line.starts_with("ERR"), "{line}");
}

/// A muxer with one guest-initiated connection (1024, 77) to `agent`.
fn connected(dir: &Path, name: &str) -> (VsockMuxer, UnixStream) {
    let uds = dir.join(name);
    let agent = UnixListener::bind(format!("{}_1024", uds.display())).unwrap();
    let mut m = VsockMuxer::new(3, &uds).unwrap();
    with_test_ops(|ops| m.send_pkt(pkt(hdr(OP_REQUEST, 77, 1024), b""), ops));
    assert_eq!(drain_ops(&mut m), [(OP_RESPONSE, 77)]);
    let (s, _) = agent.accept().unwrap();
    (m, s)
}

#[test]
fn packets_for_the_wrong_state_reset_the_connection_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    // A RESPONSE for a connection the guest opened itself.
    let (mut m, _s) = connected(dir.path(), "a.sock");
    with_test_ops(|ops| m.send_pkt(pkt(hdr(OP_RESPONSE, 77, 1024), b""), ops));
    assert_eq!(drain_ops(&mut m), [(OP_RST, 77)]);
    assert!(m.conns.is_empty() && m.by_fd.is_empty());
    // A second REQUEST, or an unknown op, on an open connection.
    for (op, name) in [(OP_REQUEST, "b.sock"), (99, "c.sock")] {
        let (mut m, _s) = connected(dir.path(), name);
        with_test_ops(|ops| m.send_pkt(pkt(hdr(op, 77, 1024), b""), ops));
        assert_eq!(drain_ops(&mut m), [(OP_RST, 77)]);
        assert!(m.conns.is_empty());
    }
    // SHUTDOWN of both directions.
    let (mut m, _s) = connected(dir.path(), "d.sock");
    let mut h = hdr(OP_SHUTDOWN, 77, 1024);
    h.flags = BOTH_WAYS;
    with_test_ops(|ops| m.send_pkt(pkt(h, b""), ops));
    assert_eq!(drain_ops(&mut m), [(OP_RST, 77)]);
    assert!(m.conns.is_empty());
}

#[test]
fn shutdown_credit_and_stray_packets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, mut s) = connected(dir.path(), "e.sock");
    with_test_ops(|ops| {
        m.send_pkt(pkt(hdr(OP_CREDIT_REQUEST, 77, 1024), b""), ops);
        m.send_pkt(pkt(hdr(OP_CREDIT_UPDATE, 77, 1024), b""), ops);
        let mut rw = hdr(OP_RW, 77, 1024);
        rw.len = 3;
        m.send_pkt(pkt(rw, b"bye"), ops);
        let mut h = hdr(OP_SHUTDOWN, 77, 1024);
        h.flags = SHUTDOWN_SEND;
        m.send_pkt(pkt(h, b""), ops);
        // Data after the guest's SHUTDOWN(SEND) is ignored.
        m.send_pkt(pkt(rw, b"bye"), ops);
    });
    assert_eq!(drain_ops(&mut m), [(OP_CREDIT_UPDATE, 77)]);
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"bye");
    // Stray and foreign packets: no connection, at most an RST.
    let mut wrong_cid = hdr(OP_RW, 77, 1024);
    wrong_cid.src_cid = 9;
    let mut to_guest = hdr(OP_RW, 5, 6);
    to_guest.dst_cid = 3;
    let mut dgram = hdr(OP_RW, 5, 6);
    dgram.type_ = 2;
    let mut dgram_rst = dgram;
    dgram_rst.op = OP_RST;
    with_test_ops(|ops| {
        for h in [wrong_cid, to_guest, dgram, dgram_rst, hdr(OP_RST, 8, 9)] {
            m.send_pkt(pkt(h, b""), ops);
        }
        // Events for fds and keys that are gone are ignored.
        m.notify(-7, EventSet::IN, ops);
        m.conn_event((1, 2), EventSet::OUT, ops);
    });
    assert_eq!(drain_ops(&mut m), [(OP_RST, 5), (OP_RST, 5)]);
    assert_eq!(m.conns.len(), 1);
    m.reset();
    assert!(m.conns.is_empty() && !m.has_pending_rx());
}

#[test]
fn host_initiated_connections_wait_for_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("h.sock");
    let mut m = VsockMuxer::new(3, &uds).unwrap();
    let mut host = UnixStream::connect(&uds).unwrap();
    host.write_all(b"CONNECT 52\nearly").unwrap();
    with_test_ops(|ops| {
        m.notify(m.host.as_raw_fd(), EventSet::IN, ops);
        for fd in m.host.pending_fds() {
            m.notify(fd, EventSet::IN, ops);
        }
    });
    let local = FIRST_LOCAL_PORT;
    with_test_ops(|ops| {
        let req = m.recv_pkt(4096, ops).unwrap();
        assert_eq!(
            ({ req.hdr.op }, { req.hdr.src_port }, { req.hdr.dst_port }),
            (OP_REQUEST, local, 52)
        );
        // Data before the guest accepted is dropped, not delivered.
        m.send_pkt(pkt(hdr(OP_RW, 52, local), b"x"), ops);
        m.send_pkt(pkt(hdr(OP_RESPONSE, 52, local), b""), ops);
        // The early bytes go to the guest within its credit.
        let rx = m.recv_pkt(4096, ops).unwrap();
        assert_eq!(({ rx.hdr.op }, &rx.data[..]), (OP_RW, &b"early"[..]));
    });
    let mut line = [0u8; 14];
    host.read_exact(&mut line).unwrap();
    assert_eq!(&line, format!("OK {local}\n").as_bytes());
    assert_eq!(m.metrics.connections, 1);
    assert_eq!(m.metrics.rst_sent, 0);
}
