//! The connection multiplexer, after Firecracker's
//! `devices/virtio/vsock/unix/muxer.rs`: a `VsockBackend` that routes
//! guest packets to host unix streams by (host port, guest port), answers
//! with control packets, and turns host data into RW packets within the
//! guest's credit. Host sockets are watched in the VMM's own event loop
//! (no nested epoll), their interest following what each connection needs.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use vmm_sys_util::epoll::EventSet;

use super::connection::{Connection, State};
use super::listener::{connect_on_host_fs, HostListener};
use super::muxer_rxq::{Control, ControlQueue};
use crate::devices::virtio::vsock::backend::{RxPacket, VsockBackend};
use crate::devices::virtio::vsock::packet::*;
use crate::devices::virtio::vsock::CONN_BUF_ALLOC;
use crate::devices::virtio::vsock::{HOST_CID, MAX_CONNECTIONS, MAX_PKT_PAYLOAD};
use crate::devices::virtio::DeviceError;
use crate::event_loop::EventOps;
use crate::logger::guest_event;

/// First port handed to host-initiated connections.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// Shutdown flags of a connection closed in both directions.
const BOTH_WAYS: u32 = SHUTDOWN_RCV | SHUTDOWN_SEND;

/// Connection key: (host port, guest port).
type Key = (u32, u32);

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MuxerMetrics {
    /// Resets sent to the guest.
    pub rst_sent: u64,
    /// Connections made (both directions).
    pub connections: u64,
}

/// The multiplexer for guest `cid`.
pub struct VsockMuxer {
    cid: u64,
    host: HostListener,
    conns: HashMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    rxq: ControlQueue,
    next_port: u32,
    /// Counters.
    pub metrics: MuxerMetrics,
}

impl VsockMuxer {
    /// A muxer for guest `cid`, listening on `uds`.
    pub fn new(cid: u64, uds: &Path) -> Result<Self, DeviceError> {
        Ok(Self {
            cid,
            host: HostListener::bind(uds)?,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            rxq: ControlQueue::default(),
            next_port: FIRST_LOCAL_PORT,
            metrics: MuxerMetrics::default(),
        })
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn header(&self, c: &Control) -> Header {
        let (buf_alloc, fwd_cnt) = match self.conns.get(&(c.local_port, c.peer_port)) {
            Some(conn) => (CONN_BUF_ALLOC, conn.fwd_cnt),
            None => (0, 0),
        };
        Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: c.local_port,
            dst_port: c.peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op: c.op,
            flags: c.flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    fn push_control(&mut self, local_port: u32, peer_port: u32, op: u16, flags: u32) {
        if op == OP_RST {
            self.metrics.rst_sent += 1;
        }
        // Bounded: at most a few control packets per connection or TX
        // chain, and the device stops TX while the queue is full.
        self.rxq.push(Control {
            local_port,
            peer_port,
            op,
            flags,
        });
    }

    /// Resets connection `key` towards the guest and closes it.
    fn reset_conn(&mut self, key: Key, ops: &mut EventOps<'_>) {
        self.push_control(key.0, key.1, OP_RST, 0);
        self.remove_conn(key, ops);
    }

    fn remove_conn(&mut self, key: Key, ops: &mut EventOps<'_>) {
        if let Some(c) = self.conns.remove(&key) {
            let fd = c.stream.as_raw_fd();
            if c.interest.is_some() {
                let _ = ops.remove(fd);
            }
            self.by_fd.remove(&fd);
        }
    }

    fn insert_conn(&mut self, c: Connection) {
        let key = (c.local_port, c.peer_port);
        self.by_fd.insert(c.stream.as_raw_fd(), key);
        self.conns.insert(key, c);
        self.metrics.connections += 1;
    }

    fn update_interest(&mut self, key: Key, ops: &mut EventOps<'_>) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let want = c.wanted_events();
        let fd = c.stream.as_raw_fd();
        let res = match (c.interest, want) {
            (None, 0) => Ok(()),
            (Some(_), 0) => ops.remove(fd),
            (None, w) => ops.add(fd, EventSet::from_bits_truncate(w)),
            (Some(old), w) if old != w => ops.modify(fd, EventSet::from_bits_truncate(w)),
            _ => Ok(()),
        };
        match res {
            Ok(()) => c.interest = if want == 0 { None } else { Some(want) },
            Err(e) => crate::logger::warn(format_args!("vsock: epoll update failed: {e}")),
        }
    }

    fn alloc_port(&mut self) -> u32 {
        loop {
            let p = self.next_port;
            self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.keys().any(|(l, _)| *l == p) {
                return p;
            }
        }
    }

    /// A packet for a connection we do not have.
    fn stray_packet(&mut self, h: &Header, ops: &mut EventOps<'_>) {
        let (local, peer) = (h.dst_port, h.src_port);
        match h.op {
            OP_REQUEST => self.guest_connect(local, peer, h.buf_alloc, h.fwd_cnt, ops),
            OP_RST => {}
            _ => self.push_control(local, peer, OP_RST, 0),
        }
    }

    fn guest_connect(
        &mut self,
        local: u32,
        peer: u32,
        buf_alloc: u32,
        fwd_cnt: u32,
        ops: &mut EventOps<'_>,
    ) {
        if self.conns.len() + self.host.pending_len() >= MAX_CONNECTIONS {
            self.push_control(local, peer, OP_RST, 0);
            return;
        }
        let conn = connect_on_host_fs(self.host.port_path(local))
            .and_then(|s| Connection::new(s, local, peer, State::Established));
        match conn {
            Ok(mut c) => {
                c.update_peer_credit(buf_alloc, fwd_cnt);
                self.insert_conn(c);
                self.push_control(local, peer, OP_RESPONSE, 0);
                self.update_interest((local, peer), ops);
            }
            Err(_) => self.push_control(local, peer, OP_RST, 0),
        }
    }

    /// Reads host data for connection `key`: a packet to send (op, flags,
    /// payload), or None when the socket has nothing after all.
    fn read_host(
        &mut self,
        key: Key,
        room: usize,
        ops: &mut EventOps<'_>,
    ) -> Option<(u16, u32, Vec<u8>)> {
        let c = self.conns.get_mut(&key)?;
        let max = room.min(c.peer_credit() as usize).min(MAX_PKT_PAYLOAD);
        if !c.to_guest.is_empty() {
            let n = max.min(c.to_guest.len());
            let data: Vec<u8> = c.to_guest.drain(..n).collect();
            c.tx_cnt = c.tx_cnt.wrapping_add(n as u32);
            return Some((OP_RW, 0, data));
        }
        let mut buf = vec![0u8; max];
        loop {
            return match c.stream.read(&mut buf) {
                Ok(0) => {
                    c.rx_ready = false;
                    c.state = State::Closing;
                    self.update_interest(key, ops);
                    Some((OP_SHUTDOWN, BOTH_WAYS, Vec::new()))
                }
                Ok(n) => {
                    buf.truncate(n);
                    c.tx_cnt = c.tx_cnt.wrapping_add(n as u32);
                    Some((OP_RW, 0, buf))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.rx_ready = false;
                    self.update_interest(key, ops);
                    None
                }
                Err(_) => Some((OP_RST, 0, Vec::new())),
            };
        }
    }

    /// Picks a connection with data for the guest and credit to send it.
    fn ready_conn(&self) -> Option<Key> {
        self.conns
            .iter()
            .find(|(_, c)| c.state == State::Established && c.rx_ready && c.peer_credit() > 0)
            .map(|(k, _)| *k)
    }

    /// A host process finished its CONNECT handshake on `fd`.
    fn host_connect(&mut self, fd: RawFd, ops: &mut EventOps<'_>) {
        let Some(hc) = self.host.readable(fd, ops) else {
            return;
        };
        let local = self.alloc_port();
        let Ok(mut c) = Connection::new(hc.stream, local, hc.port, State::Connecting) else {
            return;
        };
        c.to_guest = hc.early;
        self.insert_conn(c);
        self.push_control(local, hc.port, OP_REQUEST, 0);
    }

    fn conn_event(&mut self, key: Key, events: EventSet, ops: &mut EventOps<'_>) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let mut credit_update = false;
        if events.intersects(EventSet::OUT) {
            if let Err(e) = c.flush_to_host() {
                guest_event(format_args!(
                    "vsock: host socket of {}:{}: {e}",
                    key.0, key.1
                ));
                self.reset_conn(key, ops);
                return;
            }
            credit_update = c.needs_credit_update();
        }
        if events
            .intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR | EventSet::READ_HANG_UP)
        {
            c.rx_ready = true;
        }
        if credit_update {
            self.push_control(key.0, key.1, OP_CREDIT_UPDATE, 0);
        }
        self.update_interest(key, ops);
    }
}

impl VsockBackend for VsockMuxer {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        self.host.register(ops);
    }

    fn notify(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps<'_>) {
        if self.host.is_listener(fd) {
            self.host.accept(self.conns.len(), MAX_CONNECTIONS, ops);
        } else if self.host.is_pending(fd) {
            self.host_connect(fd, ops);
        } else if let Some(key) = self.by_fd.get(&fd).copied() {
            self.conn_event(key, events, ops);
        } else {
            // A closed connection's late event.
            let _ = ops.remove(fd);
        }
    }

    fn send_pkt(&mut self, pkt: TxPacket, ops: &mut EventOps<'_>) {
        let h = pkt.hdr;
        let (src_cid, dst_cid, op, flags) = (h.src_cid, h.dst_cid, h.op, h.flags);
        let key = (h.dst_port, h.src_port);
        let (local, peer) = key;
        if src_cid != self.cid {
            guest_event(format_args!(
                "vsock: packet from CID {src_cid} (ours is {})",
                self.cid
            ));
            return;
        }
        if dst_cid != HOST_CID || h.type_ != TYPE_STREAM {
            if op != OP_RST {
                self.push_control(local, peer, OP_RST, 0);
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            self.stray_packet(&h, ops);
            return;
        };
        c.update_peer_credit(h.buf_alloc, h.fwd_cnt);
        match op {
            OP_RST => self.remove_conn(key, ops),
            OP_RESPONSE => {
                if c.state != State::Connecting {
                    self.reset_conn(key, ops);
                    return;
                }
                c.state = State::Established;
                let ok = format!("OK {local}\n");
                // A fresh unix socket has room for a short line; failing
                // that, the host end is gone.
                if c.stream.write_all(ok.as_bytes()).is_err() {
                    self.reset_conn(key, ops);
                    return;
                }
                if !c.to_guest.is_empty() {
                    c.rx_ready = true;
                }
                self.update_interest(key, ops);
            }
            OP_RW => {
                if c.state != State::Established || c.peer_shut_send {
                    return;
                }
                match c.send_to_host(&pkt.data) {
                    Ok(()) => {
                        if c.needs_credit_update() {
                            self.push_control(local, peer, OP_CREDIT_UPDATE, 0);
                        }
                        self.update_interest(key, ops);
                    }
                    Err(e) => {
                        guest_event(format_args!("vsock: connection {local}:{peer}: {e}"));
                        self.reset_conn(key, ops);
                    }
                }
            }
            OP_CREDIT_UPDATE => {}
            OP_CREDIT_REQUEST => self.push_control(local, peer, OP_CREDIT_UPDATE, 0),
            OP_SHUTDOWN if flags & BOTH_WAYS == BOTH_WAYS => self.reset_conn(key, ops),
            OP_SHUTDOWN => {
                if flags & SHUTDOWN_SEND != 0 {
                    c.peer_shut_send = true;
                    let _ = c.flush_to_host();
                }
            }
            // A second REQUEST for an open connection, or an unknown op.
            _ => self.reset_conn(key, ops),
        }
    }

    fn has_pending_rx(&self) -> bool {
        !self.rxq.is_empty() || self.ready_conn().is_some()
    }

    fn recv_pkt(&mut self, room: usize, ops: &mut EventOps<'_>) -> Option<RxPacket> {
        if let Some(c) = self.rxq.pop() {
            let hdr = self.header(&c);
            if c.op == OP_CREDIT_UPDATE || c.op == OP_RESPONSE {
                if let Some(conn) = self.conns.get_mut(&(c.local_port, c.peer_port)) {
                    conn.fwd_cnt_sent = conn.fwd_cnt;
                }
            }
            return Some(RxPacket {
                hdr,
                data: Vec::new(),
            });
        }
        let key = self.ready_conn()?;
        let (op, flags, data) = self.read_host(key, room, ops)?;
        let hdr = self.header(&Control {
            local_port: key.0,
            peer_port: key.1,
            op,
            flags,
        });
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.fwd_cnt_sent = conn.fwd_cnt;
        }
        if op == OP_RST {
            self.remove_conn(key, ops);
        }
        Some(RxPacket { hdr, data })
    }

    fn rx_backlog_full(&self) -> bool {
        self.rxq.is_full()
    }

    fn rx_backlog_drained(&self) -> bool {
        self.rxq.is_drained()
    }

    fn reset(&mut self) {
        // Connections die with the driver; the fds close as they drop
        // (closing an fd removes it from epoll). Handshakes in progress
        // stay: they are the host's, not the driver's.
        self.conns.clear();
        self.by_fd.clear();
        self.rxq.clear();
    }
}

#[cfg(test)]
mod tests;
