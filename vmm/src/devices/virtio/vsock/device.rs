//! The virtio-vsock device: RX, TX and event queues on the shared
//! `DeviceState`, moving packets between them and a `VsockBackend` (the
//! unix-socket muxer of `unix`, or a fake in tests). `packet` parses TX
//! chains and checks RX buffers; what a packet means is the backend's.

use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;

use super::backend::VsockBackend;
use super::packet::{RxBuffer, TxPacket};
use super::unix::VsockMuxer;
use super::QUEUE_SIZE;
use crate::devices::virtio::{
    device_type, read_config_bytes, DeviceError, DeviceState, Served, VirtioDevice,
    VIRTIO_F_VERSION_1,
};
use crate::event_loop::{EventOps, Subscriber};
use crate::logger::guest_event;

const RXQ: usize = 0;
const TXQ: usize = 1;

/// Counters of what the guest put in the queues.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VsockMetrics {
    /// TX chains that were not valid packets.
    pub bad_tx: u64,
    /// RX chains that could not take a packet.
    pub bad_rx: u64,
}

/// The vsock device.
pub struct Vsock<B: VsockBackend = VsockMuxer> {
    pub(super) state: DeviceState,
    cid: u64,
    backend: B,
    tx_throttled: bool,
    /// Counters.
    pub metrics: VsockMetrics,
}

impl Vsock<VsockMuxer> {
    /// A device for guest `cid` whose host side listens on `uds` (a stale
    /// socket file there is replaced).
    pub fn new(mem: Arc<GuestMemoryMmap>, cid: u64, uds: &Path) -> Result<Self, DeviceError> {
        let muxer = VsockMuxer::new(cid, uds)?;
        Self::with_backend(mem, cid, muxer)
    }
}

impl<B: VsockBackend> Vsock<B> {
    /// A device for guest `cid` on any backend.
    pub fn with_backend(
        mem: Arc<GuestMemoryMmap>,
        cid: u64,
        backend: B,
    ) -> Result<Self, DeviceError> {
        Ok(Self {
            // RX and TX must be ready; the event queue is never used.
            state: DeviceState::new("vsock", mem, VIRTIO_F_VERSION_1, &[QUEUE_SIZE; 3], 2)?,
            cid,
            backend,
            tx_throttled: false,
            metrics: VsockMetrics::default(),
        })
    }

    /// The guest CID.
    pub fn cid(&self) -> u64 {
        self.cid
    }

    /// The host side.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Serves the TX queue. Replies wait for RX buffers; a guest that
    /// sends without receiving is throttled instead of growing the
    /// backlog.
    fn process_tx(&mut self, ops: &mut EventOps<'_>) {
        if self.backend.rx_backlog_full() {
            self.tx_throttled = true;
            return;
        }
        let Self {
            state,
            backend,
            tx_throttled,
            metrics,
            ..
        } = self;
        state.serve_queue(TXQ, usize::from(QUEUE_SIZE), |chain, _| {
            match TxPacket::parse(chain) {
                Ok(pkt) => backend.send_pkt(pkt, ops),
                Err(e) => {
                    metrics.bad_tx += 1;
                    guest_event(format_args!("vsock: bad TX packet: {e}"));
                }
            }
            if backend.rx_backlog_full() {
                *tx_throttled = true;
                Served::Last(0)
            } else {
                Served::Next(0)
            }
        });
    }

    /// Fills RX buffers with what the backend has for the guest.
    fn process_rx(&mut self, ops: &mut EventOps<'_>) {
        if !self.state.is_activated() {
            return;
        }
        let mut used = false;
        while self.backend.has_pending_rx() {
            let Some(chain) = self.state.pop(RXQ) else {
                break;
            };
            let head = chain.head_index();
            let len = match RxBuffer::parse(chain) {
                Err(e) => {
                    self.metrics.bad_rx += 1;
                    guest_event(format_args!("vsock: bad RX buffer: {e}"));
                    0
                }
                Ok(rx) => match self.backend.recv_pkt(rx.payload_room(), ops) {
                    Some(pkt) => rx.write(self.state.mem(), pkt.hdr, &pkt.data),
                    None => {
                        // Nothing to read after all: give the buffer back.
                        self.state.undo_pop(RXQ);
                        continue;
                    }
                },
            };
            if self.state.add_used(RXQ, head, len).is_err() {
                break;
            }
            used = true;
        }
        if used {
            self.state.notify_used(RXQ);
        }
    }
}

impl<B: VsockBackend> VirtioDevice for Vsock<B> {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }
    fn state(&self) -> &DeviceState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut DeviceState {
        &mut self.state
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }
    fn on_activate(&mut self) {
        // Host connections that arrived before the driver was ready.
        self.state.kick(RXQ);
    }
    fn on_reset(&mut self) {
        self.backend.reset();
        self.tx_throttled = false;
    }
}

impl<B: VsockBackend> Subscriber for Vsock<B> {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        self.state.register_queue_events(ops);
        self.backend.init(ops);
    }

    fn process(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps<'_>) {
        match self.state.take_queue_event(fd) {
            Some(TXQ) if self.state.is_activated() => self.process_tx(ops),
            // RX buffers (served below), the unused event queue, or TX
            // before activation.
            Some(_) => {}
            None => self.backend.notify(fd, events, ops),
        }
        self.process_rx(ops);
        if self.tx_throttled && self.backend.rx_backlog_drained() && self.state.is_activated() {
            self.tx_throttled = false;
            self.process_tx(ops);
            self.process_rx(ops);
        }
    }
}

#[cfg(test)]
mod tests;
