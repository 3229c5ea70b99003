//! vsock packets: the 44-byte header and its payload, parsed from a TX
//! chain or written into an RX chain, with every length checked.

use virtio_queue::DescriptorChain;
use vm_memory::{ByteValued, GuestMemoryBackend};

use super::MAX_PKT_PAYLOAD;
use crate::devices::virtio::chain::{segments, ChainError, Segments};

/// Operation: connect.
pub const OP_REQUEST: u16 = 1;
/// Operation: accept.
pub const OP_RESPONSE: u16 = 2;
/// Operation: reset.
pub const OP_RST: u16 = 3;
/// Operation: shut down one or both directions.
pub const OP_SHUTDOWN: u16 = 4;
/// Operation: data.
pub const OP_RW: u16 = 5;
/// Operation: credit update.
pub const OP_CREDIT_UPDATE: u16 = 6;
/// Operation: credit request.
pub const OP_CREDIT_REQUEST: u16 = 7;
/// Socket type: stream.
pub const TYPE_STREAM: u16 = 1;
/// Shutdown flag: no more receiving.
pub const SHUTDOWN_RCV: u32 = 1;
/// Shutdown flag: no more sending.
pub const SHUTDOWN_SEND: u32 = 2;

/// `struct virtio_vsock_hdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed)]
pub struct Header {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type.
    pub type_: u16,
    /// Operation.
    pub op: u16,
    /// Operation flags.
    pub flags: u32,
    /// Sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed.
    pub fwd_cnt: u32,
}

// SAFETY: a packed struct of integers: every byte pattern is valid and
// there is no padding.
unsafe impl ByteValued for Header {}

/// Header size on the wire.
pub const HDR_LEN: usize = std::mem::size_of::<Header>();

/// Why a chain is not a valid vsock packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The chain itself is unusable.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Shorter than a header.
    #[error("packet shorter than its header")]
    TooShort,
    /// `len` claims more bytes than the chain holds.
    #[error("header length {0} exceeds the buffer")]
    LenMismatch(u32),
    /// `len` above our payload limit.
    #[error("payload of {0} bytes is too large")]
    TooLarge(u32),
    /// An RX buffer too small for a header.
    #[error("receive buffer of {0} bytes cannot hold a header")]
    RxTooSmall(usize),
}

/// A packet the guest sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxPacket {
    /// Header.
    pub hdr: Header,
    /// Payload (`hdr.len` bytes).
    pub data: Vec<u8>,
}

impl TxPacket {
    /// Parses a TX chain (all device-readable).
    pub fn parse<M>(chain: DescriptorChain<M>) -> Result<TxPacket, PacketError>
    where
        M: std::ops::Deref + Clone,
        M::Target: GuestMemoryBackend,
    {
        let mem = chain.memory();
        let segs = segments(chain.clone(), false, HDR_LEN + MAX_PKT_PAYLOAD + 4096)?;
        if segs.total < HDR_LEN {
            return Err(PacketError::TooShort);
        }
        let mut hb = [0u8; HDR_LEN];
        if segs.read(mem, &mut hb) != HDR_LEN {
            return Err(PacketError::TooShort);
        }
        let hdr = *Header::from_slice(&hb).ok_or(PacketError::TooShort)?;
        let len = hdr.len;
        if len as usize > MAX_PKT_PAYLOAD {
            return Err(PacketError::TooLarge(len));
        }
        if HDR_LEN + len as usize > segs.total {
            return Err(PacketError::LenMismatch(len));
        }
        let mut all = vec![0u8; HDR_LEN + len as usize];
        if segs.read(mem, &mut all) != all.len() {
            return Err(PacketError::LenMismatch(len));
        }
        Ok(TxPacket {
            hdr,
            data: all.split_off(HDR_LEN),
        })
    }
}

/// A checked RX chain: where a packet for the guest can go.
pub struct RxBuffer {
    segs: Segments,
}

impl RxBuffer {
    /// Checks an RX chain (all device-writable, room for a header).
    pub fn parse<M>(chain: DescriptorChain<M>) -> Result<RxBuffer, PacketError>
    where
        M: std::ops::Deref + Clone,
        M::Target: GuestMemoryBackend,
    {
        let segs = segments(chain, true, usize::MAX)?;
        if segs.total < HDR_LEN {
            return Err(PacketError::RxTooSmall(segs.total));
        }
        Ok(RxBuffer { segs })
    }

    /// Payload bytes the buffer can take after the header.
    pub fn payload_room(&self) -> usize {
        (self.segs.total - HDR_LEN).min(MAX_PKT_PAYLOAD)
    }

    /// Writes `hdr` (with `len` set) and `data`; returns the used length.
    pub fn write<M: vm_memory::Bytes<vm_memory::GuestAddress> + ?Sized>(
        &self,
        mem: &M,
        mut hdr: Header,
        data: &[u8],
    ) -> u32 {
        let data = &data[..data.len().min(self.payload_room())];
        hdr.len = data.len() as u32;
        let mut bytes = Vec::with_capacity(HDR_LEN + data.len());
        bytes.extend_from_slice(hdr.as_slice());
        bytes.extend_from_slice(data);
        self.segs.write(mem, &bytes) as u32
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

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
    }

    fn hdr(len: u32) -> Header {
        Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 10,
            dst_port: 1024,
            len,
            type_: TYPE_STREAM,
            op: OP_RW,
            ..Default::default()
        }
    }

    #[test]
    fn tx_header_and_payload_across_descriptors() {
        let m = mem();
        m.write_obj(hdr(5), GuestAddress(0x10_0000)).unwrap();
        m.write_slice(b"hello", GuestAddress(0x20_0000)).unwrap();
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, HDR_LEN as u32, 0), d(0x20_0000, 5, 0)])
            .unwrap();
        let p = TxPacket::parse(c).unwrap();
        assert_eq!(p.data, b"hello");
        assert_eq!({ p.hdr.dst_port }, 1024);
    }

    #[test]
    fn tx_errors() {
        let m = mem();
        m.write_obj(hdr(100), GuestAddress(0x10_0000)).unwrap();
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, HDR_LEN as u32 + 10, 0)])
            .unwrap();
        assert_eq!(TxPacket::parse(c), Err(PacketError::LenMismatch(100)));
        let q = MockSplitQueue::new(&m, 16);
        let c = q.build_desc_chain(&[d(0x10_0000, 20, 0)]).unwrap();
        assert_eq!(TxPacket::parse(c), Err(PacketError::TooShort));
        m.write_obj(hdr(u32::MAX), GuestAddress(0x10_0000)).unwrap();
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, HDR_LEN as u32, 0)])
            .unwrap();
        assert_eq!(TxPacket::parse(c), Err(PacketError::TooLarge(u32::MAX)));
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, HDR_LEN as u32, 2)])
            .unwrap();
        assert!(matches!(
            TxPacket::parse(c),
            Err(PacketError::Chain(ChainError::WrongDirection))
        ));
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x3f_fff0, HDR_LEN as u32, 0)])
            .unwrap();
        assert!(matches!(
            TxPacket::parse(c),
            Err(PacketError::Chain(ChainError::OutOfRange { .. }))
        ));
    }

    #[test]
    fn rx_write_truncates_to_room() {
        let m = mem();
        let q = MockSplitQueue::new(&m, 16);
        let c = q
            .build_desc_chain(&[d(0x10_0000, HDR_LEN as u32 + 3, 2)])
            .unwrap();
        let rx = RxBuffer::parse(c).unwrap();
        assert_eq!(rx.payload_room(), 3);
        assert_eq!(rx.write(&m, hdr(0), b"abcdef"), HDR_LEN as u32 + 3);
        let h: Header = m.read_obj(GuestAddress(0x10_0000)).unwrap();
        assert_eq!({ h.len }, 3);
        let q = MockSplitQueue::new(&m, 16);
        let c = q.build_desc_chain(&[d(0x10_0000, 10, 2)]).unwrap();
        assert!(matches!(
            RxBuffer::parse(c),
            Err(PacketError::RxTooSmall(10))
        ));
    }
}
