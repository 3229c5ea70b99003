//! The vsock device: queues, the host listener, and the multiplexer that
//! routes packets between guest ports and host unix sockets.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::connection::{Connection, State};
use super::packet::*;
use super::{CONN_BUF_ALLOC, HOST_CID, MAX_CONNECTIONS, MAX_PKT_PAYLOAD, QUEUE_SIZE};
use crate::devices::virtio::{
    device_type, read_config_bytes, DeviceError, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1,
};
use crate::event_loop::{EventOps, Subscriber};
use crate::logger::guest_event;

const RXQ: usize = 0;
const TXQ: usize = 1;
const EVQ: usize = 2;
/// Longest `CONNECT <port>\n` line accepted from the host.
const MAX_CONNECT_LINE: usize = 32;
/// Most control packets waiting for RX buffers before TX stops.
const MAX_PENDING_CONTROL: usize = 1024;
/// First port handed to host-initiated connections.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// Connection key: (host port, guest port).
type Key = (u32, u32);

/// A control packet waiting for an RX buffer.
#[derive(Clone, Copy, Debug)]
struct Control {
    local_port: u32,
    peer_port: u32,
    op: u16,
    flags: u32,
}

/// A host connection that has not yet sent its CONNECT line.
struct Pending {
    stream: UnixStream,
    line: Vec<u8>,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VsockMetrics {
    /// TX chains that were not valid packets.
    pub bad_tx: u64,
    /// RX chains that could not take a packet.
    pub bad_rx: u64,
    /// Resets sent to the guest.
    pub rst_sent: u64,
    /// Connections made (both directions).
    pub connections: u64,
}

/// The vsock device.
pub struct Vsock {
    mem: Arc<GuestMemoryMmap>,
    cid: u64,
    uds: PathBuf,
    listener: UnixListener,
    queues: Vec<Queue>,
    evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    activated: bool,
    conns: HashMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    pending: HashMap<RawFd, Pending>,
    control: VecDeque<Control>,
    next_port: u32,
    tx_throttled: bool,
    /// Counters.
    pub metrics: VsockMetrics,
}

impl Vsock {
    /// A device for guest `cid`, listening on `uds` (a stale socket file
    /// there is replaced).
    pub fn new(mem: Arc<GuestMemoryMmap>, cid: u64, uds: &Path) -> Result<Self, DeviceError> {
        if let Ok(meta) = std::fs::symlink_metadata(uds) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                let _ = std::fs::remove_file(uds);
            }
        }
        let listener = UnixListener::bind(uds).map_err(DeviceError::Socket)?;
        listener
            .set_nonblocking(true)
            .map_err(DeviceError::Socket)?;
        let mut queues = Vec::new();
        let mut evts = Vec::new();
        for _ in 0..3 {
            queues.push(Queue::new(QUEUE_SIZE).map_err(DeviceError::Queue)?);
            evts.push(EventFd::new(libc::EFD_NONBLOCK).map_err(DeviceError::EventFd)?);
        }
        Ok(Self {
            mem,
            cid,
            uds: uds.to_path_buf(),
            listener,
            queues,
            evts,
            interrupt: Interrupt::new()?,
            activated: false,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            pending: HashMap::new(),
            control: VecDeque::new(),
            next_port: FIRST_LOCAL_PORT,
            tx_throttled: false,
            metrics: VsockMetrics::default(),
        })
    }

    /// The guest CID.
    pub fn cid(&self) -> u64 {
        self.cid
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
        // Bounded: at most a few control packets per connection or TX chain.
        self.control.push_back(Control {
            local_port,
            peer_port,
            op,
            flags,
        });
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

    fn handle_tx_packet(&mut self, pkt: TxPacket, ops: &mut EventOps<'_>) {
        let h = pkt.hdr;
        let (src_cid, dst_cid, local, peer, op, flags) =
            (h.src_cid, h.dst_cid, h.dst_port, h.src_port, h.op, h.flags);
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
        let key = (local, peer);
        if let Some(c) = self.conns.get_mut(&key) {
            c.update_peer_credit(h.buf_alloc, h.fwd_cnt);
        }
        match (op, self.conns.contains_key(&key)) {
            (OP_REQUEST, false) => self.guest_connect(local, peer, h.buf_alloc, h.fwd_cnt, ops),
            (OP_RST, _) => self.remove_conn(key, ops),
            (_, false) => self.push_control(local, peer, OP_RST, 0),
            (OP_REQUEST, true) => {
                self.push_control(local, peer, OP_RST, 0);
                self.remove_conn(key, ops);
            }
            (OP_RESPONSE, true) => {
                let c = self.conns.get_mut(&key).expect("checked");
                if c.state != State::Connecting {
                    self.push_control(local, peer, OP_RST, 0);
                    self.remove_conn(key, ops);
                    return;
                }
                c.state = State::Established;
                let ok = format!("OK {local}\n");
                // A fresh unix socket has room for a short line; failing
                // that, the host end is gone.
                if c.stream.write_all(ok.as_bytes()).is_err() {
                    self.push_control(local, peer, OP_RST, 0);
                    self.remove_conn(key, ops);
                    return;
                }
                if !c.to_guest.is_empty() {
                    c.rx_ready = true;
                }
                self.update_interest(key, ops);
            }
            (OP_RW, true) => {
                let c = self.conns.get_mut(&key).expect("checked");
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
                        self.push_control(local, peer, OP_RST, 0);
                        self.remove_conn(key, ops);
                    }
                }
            }
            (OP_CREDIT_UPDATE, true) => {}
            (OP_CREDIT_REQUEST, true) => self.push_control(local, peer, OP_CREDIT_UPDATE, 0),
            (OP_SHUTDOWN, true) => {
                if flags & (SHUTDOWN_RCV | SHUTDOWN_SEND) == (SHUTDOWN_RCV | SHUTDOWN_SEND) {
                    self.push_control(local, peer, OP_RST, 0);
                    self.remove_conn(key, ops);
                } else if flags & SHUTDOWN_SEND != 0 {
                    let c = self.conns.get_mut(&key).expect("checked");
                    c.peer_shut_send = true;
                    let _ = c.flush_to_host();
                }
            }
            _ => {
                self.push_control(local, peer, OP_RST, 0);
                self.remove_conn(key, ops);
            }
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
        if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS {
            self.push_control(local, peer, OP_RST, 0);
            return;
        }
        let path = PathBuf::from(format!("{}_{local}", self.uds.display()));
        let conn = connect_nonblocking(&path)
            .and_then(|s| Connection::new(s, local, peer, State::Established));
        match conn {
            Ok(mut c) => {
                c.update_peer_credit(buf_alloc, fwd_cnt);
                self.by_fd.insert(c.stream.as_raw_fd(), (local, peer));
                self.conns.insert((local, peer), c);
                self.metrics.connections += 1;
                self.push_control(local, peer, OP_RESPONSE, 0);
                self.update_interest((local, peer), ops);
            }
            Err(_) => self.push_control(local, peer, OP_RST, 0),
        }
    }

    /// Serves the TX queue.
    fn process_tx(&mut self, ops: &mut EventOps<'_>) {
        let mem = self.mem.clone();
        let mut used = false;
        let mut budget = usize::from(QUEUE_SIZE);
        loop {
            if budget == 0 {
                // Let other devices run; resume through our own eventfd.
                let _ = self.evts[TXQ].write(1);
                break;
            }
            budget -= 1;
            // Replies wait for RX buffers; a guest that sends without
            // receiving is throttled instead of growing the backlog.
            if self.control.len() >= MAX_PENDING_CONTROL {
                self.tx_throttled = true;
                break;
            }
            let Some(chain) = self.queues[TXQ].pop_descriptor_chain(&*mem) else {
                break;
            };
            let head = chain.head_index();
            match TxPacket::parse(chain) {
                Ok(pkt) => self.handle_tx_packet(pkt, ops),
                Err(e) => {
                    self.metrics.bad_tx += 1;
                    guest_event(format_args!("vsock: bad TX packet: {e}"));
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

    /// Picks a connection with data for the guest and credit to send it.
    fn ready_conn(&self) -> Option<Key> {
        self.conns
            .iter()
            .find(|(_, c)| c.state == State::Established && c.rx_ready && c.peer_credit() > 0)
            .map(|(k, _)| *k)
    }

    /// Fills RX buffers with control packets and host data.
    fn process_rx(&mut self, ops: &mut EventOps<'_>) {
        if !self.activated {
            return;
        }
        let mem = self.mem.clone();
        let mut used = false;
        loop {
            let ctrl = self.control.front().copied();
            let conn = if ctrl.is_none() {
                self.ready_conn()
            } else {
                None
            };
            if ctrl.is_none() && conn.is_none() {
                break;
            }
            let Some(chain) = self.queues[RXQ].pop_descriptor_chain(&*mem) else {
                break;
            };
            let head = chain.head_index();
            let rx = match RxBuffer::parse(chain) {
                Ok(rx) => rx,
                Err(e) => {
                    self.metrics.bad_rx += 1;
                    guest_event(format_args!("vsock: bad RX buffer: {e}"));
                    if self.queues[RXQ].add_used(&*mem, head, 0).is_err() {
                        break;
                    }
                    used = true;
                    continue;
                }
            };
            let len = if let Some(c) = ctrl {
                self.control.pop_front();
                let hdr = self.header(&c);
                if c.op == OP_CREDIT_UPDATE || c.op == OP_RESPONSE {
                    if let Some(conn) = self.conns.get_mut(&(c.local_port, c.peer_port)) {
                        conn.fwd_cnt_sent = conn.fwd_cnt;
                    }
                }
                rx.write(&*mem, hdr, &[])
            } else {
                let key = conn.expect("checked");
                match self.read_host(key, rx.payload_room(), ops) {
                    Some((op, flags, data)) => {
                        let c = Control {
                            local_port: key.0,
                            peer_port: key.1,
                            op,
                            flags,
                        };
                        let hdr = self.header(&c);
                        if let Some(conn) = self.conns.get_mut(&key) {
                            conn.fwd_cnt_sent = conn.fwd_cnt;
                        }
                        if op == OP_RST {
                            self.remove_conn(key, ops);
                        }
                        rx.write(&*mem, hdr, &data)
                    }
                    None => {
                        // Nothing to read after all: give the buffer back.
                        self.queues[RXQ].go_to_previous_position();
                        continue;
                    }
                }
            };
            if self.queues[RXQ].add_used(&*mem, head, len).is_err() {
                break;
            }
            used = true;
        }
        if used {
            self.interrupt.signal_used_queue();
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
                    Some((OP_SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND, Vec::new()))
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

    fn accept_host(&mut self, ops: &mut EventOps<'_>) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS
                        || s.set_nonblocking(true).is_err()
                    {
                        continue;
                    }
                    let fd = s.as_raw_fd();
                    if ops.add(fd, EventSet::IN).is_ok() {
                        self.pending.insert(
                            fd,
                            Pending {
                                stream: s,
                                line: Vec::new(),
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn pending_readable(&mut self, fd: RawFd, ops: &mut EventOps<'_>) {
        let Some(p) = self.pending.get_mut(&fd) else {
            return;
        };
        let mut buf = [0u8; MAX_CONNECT_LINE];
        let n = match p.stream.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = ops.remove(fd);
                self.pending.remove(&fd);
                return;
            }
            Ok(n) => n,
        };
        p.line.extend_from_slice(&buf[..n]);
        let Some(nl) = p.line.iter().position(|b| *b == b'\n') else {
            if p.line.len() >= MAX_CONNECT_LINE {
                let _ = ops.remove(fd);
                self.pending.remove(&fd);
            }
            return;
        };
        let _ = ops.remove(fd);
        let mut p = self.pending.remove(&fd).expect("present");
        let rest = p.line.split_off(nl + 1);
        let port = std::str::from_utf8(&p.line)
            .ok()
            .and_then(|l| l.trim_end().strip_prefix("CONNECT "))
            .and_then(|v| v.trim().parse::<u32>().ok());
        let Some(peer) = port else {
            let _ = p.stream.write_all(b"ERR bad CONNECT line\n");
            return;
        };
        let local = self.alloc_port();
        let Ok(mut c) = Connection::new(p.stream, local, peer, State::Connecting) else {
            return;
        };
        c.to_guest = rest;
        self.by_fd.insert(c.stream.as_raw_fd(), (local, peer));
        self.conns.insert((local, peer), c);
        self.metrics.connections += 1;
        self.push_control(local, peer, OP_REQUEST, 0);
    }

    fn conn_event(&mut self, key: Key, events: EventSet, ops: &mut EventOps<'_>) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if events.intersects(EventSet::OUT) {
            if let Err(e) = c.flush_to_host() {
                guest_event(format_args!(
                    "vsock: host socket of {}:{}: {e}",
                    key.0, key.1
                ));
                self.push_control(key.0, key.1, OP_RST, 0);
                self.remove_conn(key, ops);
                return;
            }
            if c.needs_credit_update() {
                self.push_control(key.0, key.1, OP_CREDIT_UPDATE, 0);
            }
        }
        let c = self.conns.get_mut(&key).expect("present");
        if events
            .intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR | EventSet::READ_HANG_UP)
        {
            c.rx_ready = true;
        }
        self.update_interest(key, ops);
    }
}

/// Connects to a unix socket without blocking: a listener whose backlog
/// is full refuses at once (EAGAIN) instead of stalling the event loop,
/// which also serves SIGTERM.
fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let stream = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes that
    // lives across the call; `stream` owns an open socket.
    let r = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            len as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }
    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
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
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }
    fn activate(&mut self) -> Result<(), DeviceError> {
        for i in [RXQ, TXQ] {
            if !self.queues[i].ready() {
                return Err(DeviceError::BadQueue(i));
            }
        }
        self.activated = true;
        // Host connections that arrived before the driver was ready.
        let _ = self.evts[RXQ].write(1);
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
        // Connections die with the driver; the fds close as they drop
        // (closing an fd removes it from epoll).
        self.conns.clear();
        self.by_fd.clear();
        self.control.clear();
        self.tx_throttled = false;
    }
}

impl Subscriber for Vsock {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        for e in &self.evts {
            if let Err(err) = ops.add(e.as_raw_fd(), EventSet::IN) {
                crate::logger::warn(format_args!("vsock: cannot watch a queue: {err}"));
            }
        }
        if let Err(err) = ops.add(self.listener.as_raw_fd(), EventSet::IN) {
            crate::logger::warn(format_args!("vsock: cannot watch the listener: {err}"));
        }
    }

    fn process(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps<'_>) {
        if fd == self.evts[RXQ].as_raw_fd() {
            let _ = self.evts[RXQ].read();
        } else if fd == self.evts[TXQ].as_raw_fd() {
            let _ = self.evts[TXQ].read();
            if self.activated {
                self.process_tx(ops);
            }
        } else if fd == self.evts[EVQ].as_raw_fd() {
            let _ = self.evts[EVQ].read();
        } else if fd == self.listener.as_raw_fd() {
            self.accept_host(ops);
        } else if self.pending.contains_key(&fd) {
            self.pending_readable(fd, ops);
        } else if let Some(key) = self.by_fd.get(&fd).copied() {
            self.conn_event(key, events, ops);
        } else {
            // A closed connection's late event.
            let _ = ops.remove(fd);
        }
        self.process_rx(ops);
        if self.tx_throttled && self.control.len() < MAX_PENDING_CONTROL / 2 && self.activated {
            self.tx_throttled = false;
            self.process_tx(ops);
            self.process_rx(ops);
        }
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::with_test_ops;
    use std::os::unix::net::UnixListener;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const W: u16 = 2;

    fn d(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

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

    fn rx_header(mem: &GuestMemoryMmap, q: &MockSplitQueue<GuestMemoryMmap>, i: u16) -> Header {
        let id = q.used().ring().ref_at(i as usize).unwrap().load().id();
        let addr = 0x20_0000 + u64::from(id as u16) * 0x1000;
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    #[test]
    fn guest_connect_data_and_hostile_packets() {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let agent = UnixListener::bind(format!("{}_1024", uds.display())).unwrap();
        let mem =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap());
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
        dev.queues[RXQ] = rxq.create_queue().unwrap();
        dev.queues[TXQ] = txq.create_queue().unwrap();
        dev.activated = true;

        with_test_ops(|ops| {
            dev.process_tx(ops);
            dev.process_rx(ops);
        });
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
        with_test_ops(|ops| {
            dev.conn_event((1024, 77), EventSet::IN, ops);
            dev.process_rx(ops);
        });
        assert_eq!(rxq.used().idx().load(), 3);
        let r2 = rx_header(&mem, &rxq, 2);
        assert_eq!(({ r2.op }, { r2.len }), (OP_RW, 4));
        assert_eq!(dev.conns.len(), 1);
    }

    #[test]
    fn a_listener_that_never_accepts_cannot_stall_us() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.sock");
        let l = UnixListener::bind(&p).unwrap();
        // SAFETY: shrinks the backlog of a listening socket we own.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 1) }, 0);
        let mut kept = Vec::new();
        let refused = (0..64).find_map(|_| match connect_nonblocking(&p) {
            Ok(s) => {
                kept.push(s);
                None
            }
            Err(e) => Some(e),
        });
        assert_eq!(refused.map(|e| e.kind()), Some(io::ErrorKind::WouldBlock));
        assert!(connect_nonblocking(&dir.path().join("none")).is_err());
    }

    #[test]
    fn a_guest_that_never_receives_is_throttled() {
        let dir = tempfile::tempdir().unwrap();
        let mem =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap());
        let mut dev = Vsock::new(mem.clone(), 3, &dir.path().join("t.sock")).unwrap();
        // Stray RW packets each earn an RST; there are no RX buffers.
        mem.write_obj(hdr(OP_RW, 5, 6), GuestAddress(0x30_0000))
            .unwrap();
        dev.activated = true;
        for round in 0..8 {
            let txq = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000 + round * 0x1_0000), 256);
            let chains: Vec<RawDescriptor> =
                (0..256).map(|_| d(0x30_0000, HDR_LEN as u32, 0)).collect();
            txq.add_desc_chains(&chains, 0).unwrap();
            dev.queues[TXQ] = txq.create_queue().unwrap();
            with_test_ops(|ops| dev.process_tx(ops));
        }
        assert!(
            dev.control.len() <= MAX_PENDING_CONTROL,
            "{}",
            dev.control.len()
        );
        assert!(dev.tx_throttled);
    }

    #[test]
    fn host_connect_line_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("h.sock");
        let mem =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap());
        let mut dev = Vsock::new(mem, 3, &uds).unwrap();
        let mut good = UnixStream::connect(&uds).unwrap();
        good.write_all(b"CONNECT 5000\n").unwrap();
        let mut bad = UnixStream::connect(&uds).unwrap();
        bad.write_all(b"HELLO\n").unwrap();
        with_test_ops(|ops| {
            dev.accept_host(ops);
            let fds: Vec<RawFd> = dev.pending.keys().copied().collect();
            assert_eq!(fds.len(), 2);
            for fd in fds {
                dev.pending_readable(fd, ops);
            }
        });
        assert!(dev.pending.is_empty());
        assert_eq!(dev.conns.len(), 1);
        let c = dev.control.front().unwrap();
        assert_eq!((c.op, c.peer_port), (OP_REQUEST, 5000));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(bad), &mut line).unwrap();
        assert!(line.starts_with("ERR"), "{line}");
    }
}
