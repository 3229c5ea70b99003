//! Control packets waiting for RX buffers, after Firecracker's
//! `vsock/unix/muxer_rxq.rs`: replies (RESPONSE, RST, CREDIT_UPDATE) and
//! host-initiated REQUESTs queue here until the guest posts buffers. The
//! queue is bounded by throttling TX at `MAX_PENDING_CONTROL` instead of
//! by dropping packets.

use std::collections::VecDeque;

/// Most control packets waiting for RX buffers before TX stops.
pub const MAX_PENDING_CONTROL: usize = 1024;

/// A control packet waiting for an RX buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// Our (host) port.
    pub local_port: u32,
    /// The guest's port.
    pub peer_port: u32,
    /// Operation.
    pub op: u16,
    /// Operation flags.
    pub flags: u32,
}

/// The queue of control packets, oldest first.
#[derive(Debug, Default)]
pub struct ControlQueue {
    q: VecDeque<Control>,
}

impl ControlQueue {
    /// Appends `c`.
    pub fn push(&mut self, c: Control) {
        self.q.push_back(c);
    }

    /// Takes the oldest packet.
    pub fn pop(&mut self) -> Option<Control> {
        self.q.pop_front()
    }

    /// The oldest packet, left in place.
    pub fn front(&self) -> Option<&Control> {
        self.q.front()
    }

    /// How many packets wait.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Whether TX must stop until the guest takes replies.
    pub fn is_full(&self) -> bool {
        self.q.len() >= MAX_PENDING_CONTROL
    }

    /// Whether throttled TX may resume.
    pub fn is_drained(&self) -> bool {
        self.q.len() < MAX_PENDING_CONTROL / 2
    }

    /// Forgets every packet.
    pub fn clear(&mut self) {
        self.q.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_throttle_marks() {
        let mut q = ControlQueue::default();
        let c = |op| Control {
            local_port: 1,
            peer_port: 2,
            op,
            flags: 0,
        };
        for i in 0..MAX_PENDING_CONTROL as u16 {
            assert!(!q.is_full());
            q.push(c(i));
        }
        assert!(q.is_full() && !q.is_drained());
        assert_eq!(q.front().map(|c| c.op), Some(0));
        while q.len() >= MAX_PENDING_CONTROL / 2 {
            q.pop();
        }
        assert!(q.is_drained() && !q.is_full());
        q.clear();
        assert!(q.is_empty() && q.pop().is_none());
    }
}
