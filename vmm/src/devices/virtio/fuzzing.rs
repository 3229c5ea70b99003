//! Harnesses shared by the `cargo fuzz` targets (`vmm/fuzz`) and the
//! randomized unit tests below: the guest controls a whole descriptor
//! table, the head index and the buffer contents; parsing must return an
//! error or a value, never panic or hang (vm-virtio's `fuzz/` model).

use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::block::Request;
use super::net::packet::{parse_tx, RxChain};
use super::vsock::packet::{RxBuffer, TxPacket};

const QSIZE: u16 = 16;
/// Guest memory size of the harness (the data area starts at 0x1000).
pub const MEM_SIZE: usize = 0x1_0000;

/// Lays `data` out as guest state and hands the first available chain to
/// `f`: bytes 0..256 are the descriptor table, byte 256 the head index,
/// the rest is copied to guest memory at 0x1000.
pub fn with_chain(data: &[u8], f: impl FnOnce(DescriptorChain<&GuestMemoryMmap>) -> bool) -> bool {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]) else {
        return false;
    };
    let table = &data[..data.len().min(256)];
    let _ = mem.write_slice(table, GuestAddress(0));
    let head = u16::from(data.get(256).copied().unwrap_or(0)) % QSIZE;
    if data.len() > 257 {
        let rest = &data[257..data.len().min(257 + MEM_SIZE - 0x1000)];
        let _ = mem.write_slice(rest, GuestAddress(0x1000));
    }
    // Avail ring at 0x100: flags, idx = 1, ring[0] = head. Used ring at 0x200.
    let _ = mem.write_obj(0u16, GuestAddress(0x100));
    let _ = mem.write_obj(1u16, GuestAddress(0x102));
    let _ = mem.write_obj(head, GuestAddress(0x104));
    let Ok(mut q) = Queue::new(QSIZE) else {
        return false;
    };
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(0), Some(0));
    q.set_avail_ring_address(Some(0x100), Some(0));
    q.set_used_ring_address(Some(0x200), Some(0));
    q.set_ready(true);
    match q.pop_descriptor_chain(&mem) {
        Some(chain) => f(chain),
        None => false,
    }
}

/// virtio-blk request parsing; true if the chain was a request.
pub fn blk(data: &[u8]) -> bool {
    with_chain(data, |c| {
        Request::parse(c, 64, data.first().is_some_and(|b| b & 1 == 1)).is_ok_and(|r| r.op.is_ok())
    })
}

/// virtio-net TX and RX chain handling; true if either succeeded.
pub fn net(data: &[u8]) -> bool {
    with_chain(data, |c| {
        let mem = c.memory().clone();
        let tx = parse_tx(c.clone()).is_ok();
        let rx =
            RxChain::parse(c).is_ok_and(|rx| rx.write(&mem, &data[..data.len().min(2000)]).is_ok());
        tx || rx
    })
}

/// virtio-vsock TX packet parsing and RX buffer filling; true if either
/// succeeded.
pub fn vsock(data: &[u8]) -> bool {
    with_chain(data, |c| {
        let mem = c.memory().clone();
        let tx = TxPacket::parse(c.clone()).is_ok();
        let rx = match RxBuffer::parse(c) {
            Ok(rx) => {
                rx.write(&mem, Default::default(), &data[..data.len().min(2000)]);
                true
            }
            Err(_) => false,
        };
        tx || rx
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64: deterministic, dependency-free randomness.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Descriptor tables that are mostly plausible (addresses near guest
    /// memory, small lengths, random flags and links), plus noise.
    fn input(r: &mut Rng) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..16 {
            let addr = match r.next() % 4 {
                0 => r.next(),
                1 => MEM_SIZE as u64 - (r.next() % 64),
                _ => 0x1000 + r.next() % 0xf000,
            };
            let len = match r.next() % 4 {
                0 => r.next() as u32,
                1 => 44,
                _ => (r.next() % 4096) as u32,
            };
            let flags = (r.next() % 8) as u16; // NEXT, WRITE, INDIRECT
            let next = (r.next() % 20) as u16;
            v.extend_from_slice(&addr.to_le_bytes());
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&flags.to_le_bytes());
            v.extend_from_slice(&next.to_le_bytes());
        }
        v.push((r.next() % 16) as u8);
        for _ in 0..(r.next() % 512) {
            v.push(r.next() as u8);
        }
        v
    }

    #[test]
    fn random_chains_never_panic() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        let mut ok = [0usize; 3];
        for _ in 0..3000 {
            let d = input(&mut r);
            ok[0] += usize::from(blk(&d));
            ok[1] += usize::from(net(&d));
            ok[2] += usize::from(vsock(&d));
        }
        // The inputs reach the success paths too, not only early errors.
        assert!(ok.iter().all(|n| *n > 0), "successful parses: {ok:?}");
        // Degenerate inputs.
        for d in [vec![], vec![0u8; 10], vec![0xffu8; 300]] {
            blk(&d);
            net(&d);
            vsock(&d);
        }
    }
}
