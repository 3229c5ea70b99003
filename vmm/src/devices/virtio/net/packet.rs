//! Frames in descriptor chains: a TX chain is a virtio-net header and a
//! frame, all device-readable; an RX chain is device-writable and must
//! hold the header plus the frame it receives.

use virtio_queue::DescriptorChain;
use vm_memory::GuestMemoryBackend;

use super::{MAX_FRAME, NET_HDR_LEN};
use crate::devices::virtio::chain::{segments, ChainError, Segments};

/// Why a chain cannot carry a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The chain is unusable.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// TX chain shorter than the virtio-net header.
    #[error("TX chain of {0} bytes holds no frame")]
    TooShort(usize),
    /// RX chain too small for the frame.
    #[error("RX buffer of {have} bytes cannot hold a {need}-byte frame")]
    RxTooSmall {
        /// Buffer size.
        have: usize,
        /// Needed size.
        need: usize,
    },
}

/// Extracts the frame (without the virtio-net header) from a TX chain.
pub fn parse_tx<M>(chain: DescriptorChain<M>) -> Result<Vec<u8>, FrameError>
where
    M: std::ops::Deref + Clone,
    M::Target: GuestMemoryBackend,
{
    let mem = chain.memory();
    let segs = segments(chain.clone(), false, NET_HDR_LEN + MAX_FRAME)?;
    if segs.total <= NET_HDR_LEN {
        return Err(FrameError::TooShort(segs.total));
    }
    let mut all = vec![0u8; segs.total];
    let n = segs.read(mem, &mut all);
    all.truncate(n);
    Ok(all.split_off(NET_HDR_LEN))
}

/// A checked RX chain.
pub struct RxChain {
    segs: Segments,
}

impl RxChain {
    /// Checks an RX chain (all device-writable).
    pub fn parse<M>(chain: DescriptorChain<M>) -> Result<RxChain, FrameError>
    where
        M: std::ops::Deref + Clone,
        M::Target: GuestMemoryBackend,
    {
        Ok(RxChain {
            segs: segments(chain, true, usize::MAX)?,
        })
    }

    /// Writes a zeroed header (num_buffers = 1) and `frame`; returns the
    /// used length, or an error when the buffer is too small.
    pub fn write<M: vm_memory::Bytes<vm_memory::GuestAddress> + ?Sized>(
        &self,
        mem: &M,
        frame: &[u8],
    ) -> Result<u32, FrameError> {
        let need = NET_HDR_LEN + frame.len();
        if self.segs.total < need {
            return Err(FrameError::RxTooSmall {
                have: self.segs.total,
                need,
            });
        }
        let mut bytes = vec![0u8; NET_HDR_LEN];
        bytes[10] = 1; // num_buffers
        bytes.extend_from_slice(frame);
        Ok(self.segs.write(mem, &bytes) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    fn d(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    #[test]
    fn tx_strips_the_header_and_checks_chains() {
        let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        m.write_slice(&[0u8; 12], GuestAddress(0x10_0000)).unwrap();
        m.write_slice(b"frame!", GuestAddress(0x20_0000)).unwrap();
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, 12, 0), d(0x20_0000, 6, 0)])
            .unwrap();
        assert_eq!(parse_tx(c).unwrap(), b"frame!");
        let q = MockSplitQueue::new(&m, 16);
        let c = q.build_desc_chain(&[d(0x10_0000, 12, 0)]).unwrap();
        assert_eq!(parse_tx(c), Err(FrameError::TooShort(12)));
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, 12, 0), d(0x20_0000, 6, 2)])
            .unwrap();
        assert!(matches!(
            parse_tx(c),
            Err(FrameError::Chain(ChainError::WrongDirection))
        ));
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, 12, 0), d(0x20_0000, 70_000, 0)])
            .unwrap();
        assert!(matches!(
            parse_tx(c),
            Err(FrameError::Chain(ChainError::TooLong(_)))
        ));
    }

    #[test]
    fn rx_needs_room_for_header_and_frame() {
        let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        let q = MockSplitQueue::new(&m, 16);
        let c = q.build_desc_chain(&[d(0x10_0000, 20, 2)]).unwrap();
        let rx = RxChain::parse(c).unwrap();
        assert!(matches!(
            rx.write(&m, &[1u8; 9]),
            Err(FrameError::RxTooSmall { have: 20, need: 21 })
        ));
        assert_eq!(rx.write(&m, &[1u8; 8]).unwrap(), 20);
        let b: u8 = m.read_obj(GuestAddress(0x10_0000 + 10)).unwrap();
        assert_eq!(b, 1);
    }
}
