//! What the vsock device needs from its host side, after Firecracker's
//! `VsockChannel` + `VsockEpollListener` (together its `VsockBackend`):
//! the device parses TX chains and fills RX buffers, the backend decides
//! what packets mean and where streams go. The unix-socket muxer
//! (`unix::VsockMuxer`) is the real one; tests use a fake.

use std::os::fd::RawFd;

use vmm_sys_util::epoll::EventSet;

use super::packet::{Header, TxPacket};
use crate::event_loop::EventOps;

/// A packet for the guest: a header (its `len` is set by the device when
/// it writes the packet) and its payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxPacket {
    /// Header.
    pub hdr: Header,
    /// Payload.
    pub data: Vec<u8>,
}

/// The host side of a vsock device.
pub trait VsockBackend: Send {
    /// Registers the backend's own fds (a listener) with the event loop.
    fn init(&mut self, ops: &mut EventOps<'_>);
    /// Handles readiness `events` on `fd`, one of the fds the backend
    /// registered (or a late event of one it has closed).
    fn notify(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps<'_>);
    /// Takes a packet the guest sent.
    fn send_pkt(&mut self, pkt: TxPacket, ops: &mut EventOps<'_>);
    /// Whether the backend may have a packet for the guest.
    fn has_pending_rx(&self) -> bool;
    /// The next packet for the guest, with at most `room` payload bytes;
    /// None when there was nothing to send after all.
    fn recv_pkt(&mut self, room: usize, ops: &mut EventOps<'_>) -> Option<RxPacket>;
    /// Whether so many packets wait for RX buffers that the device should
    /// stop taking TX packets (each may add a reply).
    fn rx_backlog_full(&self) -> bool;
    /// Whether the backlog has drained enough for throttled TX to resume.
    fn rx_backlog_drained(&self) -> bool;
    /// Drops every connection: the driver reset the device.
    fn reset(&mut self);
}
