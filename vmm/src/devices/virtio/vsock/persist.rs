//! What a snapshot keeps of a virtio-vsock device besides the shared
//! state: the guest CID. Connections are not saved (their host ends are
//! sockets of the process that saved them): a restored device starts with
//! none and tells the guest so with VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on
//! the event queue, after which the guest resets every connected socket
//! and reads the CID again (so a clone may have its own); listening
//! sockets survive, and the host can connect anew. Firecracker does the
//! same on restore.

use serde::{Deserialize, Serialize};
use vm_memory::Bytes;

use super::{Vsock, VsockBackend};
use crate::devices::virtio::chain::segments;
use crate::logger::guest_event;

/// The event queue.
const EVQ: usize = 2;
/// `struct virtio_vsock_event` is one le32 id.
const EVENT_LEN: usize = 4;
/// The event id of a transport reset.
const VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: u32 = 0;

/// A vsock device as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockState {
    /// The guest CID.
    pub cid: u64,
}

impl<B: VsockBackend> Vsock<B> {
    /// The device's own part of the state.
    pub fn save_vsock(&self) -> VsockState {
        VsockState { cid: self.cid() }
    }

    /// Puts a transport-reset event in the driver's next event buffer and
    /// interrupts it; returns false (nothing sent) when the device is not
    /// running or the driver gave no event buffer.
    pub fn send_transport_reset(&mut self) -> bool {
        if !self.state.is_activated() {
            return false;
        }
        let Some(chain) = self.state.pop(EVQ) else {
            return false;
        };
        let head = chain.head_index();
        let written = match segments(chain, true, 1 << 16) {
            Ok(seg) => match seg.bufs.first() {
                Some((addr, len)) if *len as usize >= EVENT_LEN => self
                    .state
                    .mem()
                    .write_obj(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.to_le(), *addr)
                    .is_ok(),
                _ => false,
            },
            Err(_) => false,
        };
        if !written {
            guest_event(format_args!("vsock: event buffer cannot take an event"));
        }
        let len = if written { EVENT_LEN as u32 } else { 0 };
        if self.state.add_used(EVQ, head, len).is_err() {
            return false;
        }
        self.state.notify_used(EVQ);
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::{desc, guest_memory};
    use crate::devices::virtio::vsock::RxPacket;
    use crate::devices::virtio::vsock::TxPacket;
    use crate::devices::virtio::VirtioDevice;
    use crate::event_loop::EventOps;
    use std::os::fd::RawFd;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;
    use vmm_sys_util::epoll::EventSet;

    struct Nothing;
    impl VsockBackend for Nothing {
        fn init(&mut self, _: &mut EventOps<'_>) {}
        fn notify(&mut self, _: RawFd, _: EventSet, _: &mut EventOps<'_>) {}
        fn send_pkt(&mut self, _: TxPacket, _: &mut EventOps<'_>) {}
        fn has_pending_rx(&self) -> bool {
            false
        }
        fn recv_pkt(&mut self, _: usize, _: &mut EventOps<'_>) -> Option<RxPacket> {
            None
        }
        fn rx_backlog_full(&self) -> bool {
            false
        }
        fn rx_backlog_drained(&self) -> bool {
            true
        }
        fn reset(&mut self) {}
    }

    #[test]
    fn a_restored_device_tells_the_guest_its_connections_are_gone() {
        let mem = guest_memory();
        let mut v = Vsock::with_backend(mem.clone(), 42, Nothing).unwrap();
        assert_eq!(v.save_vsock(), VsockState { cid: 42 });
        assert!(!v.send_transport_reset(), "not running");
        let rx = MockSplitQueue::create(&*mem, GuestAddress(0x1_0000), 16);
        let tx = MockSplitQueue::create(&*mem, GuestAddress(0x2_0000), 16);
        let ev = MockSplitQueue::create(&*mem, GuestAddress(0x3_0000), 16);
        mem.write_obj(0xffff_ffffu32, GuestAddress(0x40_0000))
            .unwrap();
        ev.add_desc_chains(&[desc(0x40_0000, 4, 2), desc(0x40_1000, 2, 2)], 0)
            .unwrap();
        v.state.queues_mut()[0] = rx.create_queue().unwrap();
        v.state.queues_mut()[1] = tx.create_queue().unwrap();
        v.state.queues_mut()[2] = ev.create_queue().unwrap();
        v.activate().unwrap();
        assert!(v.send_transport_reset());
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x40_0000)).unwrap(), 0);
        assert_eq!(ev.used().idx().load(), 1);
        assert_eq!(ev.used().ring().ref_at(0).unwrap().load().len(), 4);
        assert_ne!(v.state.interrupt().status() & 1, 0);
        // A buffer too small for the event is returned empty.
        assert!(!v.send_transport_reset());
        assert_eq!(ev.used().idx().load(), 2);
        // No buffer left: nothing to do.
        assert!(!v.send_transport_reset());
    }
}
