//! Checked access to whole descriptor chains for devices whose packets are
//! byte streams (vsock, net): a chain is either all device-readable (the
//! driver sends) or all device-writable (the driver receives), every
//! descriptor lies in guest memory, and totals are bounded.

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

/// Why a chain cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A descriptor of the wrong direction.
    #[error("descriptor has the wrong direction")]
    WrongDirection,
    /// A descriptor outside guest memory.
    #[error("descriptor {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Start.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// The chain holds more bytes than allowed.
    #[error("chain longer than {0} bytes")]
    TooLong(usize),
    /// The chain is empty.
    #[error("empty descriptor chain")]
    Empty,
}

/// The buffers of a chain, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    /// Guest buffers in order.
    pub bufs: Vec<(GuestAddress, u32)>,
    /// Sum of their lengths.
    pub total: usize,
}

/// Checks `chain`: every descriptor has direction `writable` and lies in
/// memory, and the total is at most `max` bytes.
pub fn segments<M>(
    chain: DescriptorChain<M>,
    writable: bool,
    max: usize,
) -> Result<Segments, ChainError>
where
    M: std::ops::Deref + Clone,
    M::Target: GuestMemoryBackend,
{
    let mem = chain.memory();
    let mut bufs = Vec::new();
    let mut total: usize = 0;
    for d in chain.clone() {
        let d: Descriptor = d;
        if d.is_write_only() != writable {
            return Err(ChainError::WrongDirection);
        }
        if d.len() > 0 && !mem.check_range(d.addr(), d.len() as usize) {
            return Err(ChainError::OutOfRange {
                addr: d.addr().raw_value(),
                len: d.len(),
            });
        }
        total = total
            .checked_add(d.len() as usize)
            .filter(|t| *t <= max)
            .ok_or(ChainError::TooLong(max))?;
        bufs.push((d.addr(), d.len()));
    }
    if bufs.is_empty() {
        return Err(ChainError::Empty);
    }
    Ok(Segments { bufs, total })
}

impl Segments {
    /// Copies up to `out.len()` bytes from the buffers; returns the count.
    pub fn read<M: Bytes<GuestAddress> + ?Sized>(&self, mem: &M, out: &mut [u8]) -> usize {
        let mut done = 0;
        for (addr, len) in &self.bufs {
            if done == out.len() {
                break;
            }
            let n = (*len as usize).min(out.len() - done);
            if mem.read_slice(&mut out[done..done + n], *addr).is_err() {
                break;
            }
            done += n;
        }
        done
    }

    /// Copies `data` into the buffers; returns how much fitted.
    pub fn write<M: Bytes<GuestAddress> + ?Sized>(&self, mem: &M, data: &[u8]) -> usize {
        let mut done = 0;
        for (addr, len) in &self.bufs {
            if done == data.len() {
                break;
            }
            let n = (*len as usize).min(data.len() - done);
            if mem.write_slice(&data[done..done + n], *addr).is_err() {
                break;
            }
            done += n;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestMemoryMmap;

    fn d(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    #[test]
    fn direction_range_and_length_checks() {
        let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, 10, 0), d(0x11_0000, 20, 0)])
            .unwrap();
        let s = segments(c, false, 100).unwrap();
        assert_eq!(s.total, 30);
        m.write_slice(b"0123456789", GuestAddress(0x10_0000))
            .unwrap();
        let mut out = [0u8; 12];
        assert_eq!(s.read(&m, &mut out), 12);
        assert_eq!(&out[..10], b"0123456789");

        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, 10, 0), d(0x11_0000, 20, 2)])
            .unwrap();
        assert_eq!(segments(c, false, 100), Err(ChainError::WrongDirection));
        let q = MockSplitQueue::new(&m, 16);
        let c = q.build_desc_chain(&[d(0x1f_fff0, 0x20, 2)]).unwrap();
        assert!(matches!(
            segments(c, true, 100),
            Err(ChainError::OutOfRange { .. })
        ));
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, 60, 2), d(0x11_0000, 60, 2)])
            .unwrap();
        assert_eq!(segments(c, true, 100), Err(ChainError::TooLong(100)));
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, u32::MAX, 2), d(0x11_0000, u32::MAX, 2)])
            .unwrap();
        assert!(segments(c, true, usize::MAX).is_err());
    }
}
