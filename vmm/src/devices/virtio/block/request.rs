//! Parsing a virtio-blk request from a descriptor chain: header (16
//! device-readable bytes), data, and a device-writable status byte. Every
//! rule is checked here and nothing is read from or written to the disk.

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

use super::{SECTOR_SIZE, SEG_MAX, SIZE_MAX};

/// Request type: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Request type: flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Request type: get device id.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

/// Why a chain is not a valid request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Fewer than two descriptors (header and status).
    #[error("descriptor chain too short")]
    ChainTooShort,
    /// More data descriptors than `seg_max`.
    #[error("too many descriptors")]
    TooManyDescriptors,
    /// The header is device-writable.
    #[error("request header is device-writable")]
    HeaderWritable,
    /// The header is shorter than 16 bytes.
    #[error("request header too short")]
    HeaderTooShort,
    /// The status descriptor is device-readable.
    #[error("status descriptor is not device-writable")]
    StatusNotWritable,
    /// The status descriptor is empty.
    #[error("status descriptor is empty")]
    StatusTooShort,
    /// A descriptor points outside guest memory.
    #[error("descriptor {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Start.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// A data descriptor has the wrong direction for the request type.
    #[error("data descriptor has the wrong direction")]
    WrongDirection,
    /// Data length not a multiple of 512 bytes.
    #[error("data length {0} is not a multiple of 512")]
    Unaligned(u64),
    /// A data descriptor is larger than `size_max`.
    #[error("data descriptor of {0} bytes exceeds size_max")]
    SegmentTooLarge(u32),
    /// The request reaches past the end of the disk.
    #[error("sectors {sector}+{count} are past the end of the disk")]
    PastEnd {
        /// First sector.
        sector: u64,
        /// Sector count.
        count: u64,
    },
    /// A write to a read-only disk.
    #[error("write to a read-only disk")]
    ReadOnly,
    /// GET_ID without a writable buffer.
    #[error("GET_ID needs one device-writable buffer")]
    BadGetId,
    /// A request type we do not implement.
    #[error("unsupported request type {0}")]
    Unsupported(u32),
}

/// The 16-byte request header.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct RequestHeader {
    /// VIRTIO_BLK_T_*.
    pub kind: u32,
    /// Reserved (was ioprio).
    pub reserved: u32,
    /// First sector.
    pub sector: u64,
}

// SAFETY: plain old data of integers with no padding (4 + 4 + 8 bytes).
unsafe impl ByteValued for RequestHeader {}

/// One validated operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read into these guest buffers, starting at `sector`.
    Read {
        /// First sector.
        sector: u64,
        /// Device-writable guest buffers.
        bufs: Vec<(GuestAddress, u32)>,
    },
    /// Write these guest buffers, starting at `sector`.
    Write {
        /// First sector.
        sector: u64,
        /// Device-readable guest buffers.
        bufs: Vec<(GuestAddress, u32)>,
    },
    /// Flush to stable storage.
    Flush,
    /// Write the device id into this buffer (at most 20 bytes used).
    GetId(GuestAddress, u32),
}

impl Op {
    /// The data bytes the request moves to or from the disk (what a
    /// bandwidth limit counts).
    pub fn data_bytes(&self) -> u64 {
        match self {
            Op::Read { bufs, .. } | Op::Write { bufs, .. } => {
                bufs.iter().map(|(_, len)| u64::from(*len)).sum()
            }
            Op::Flush | Op::GetId(..) => 0,
        }
    }
}

/// A parsed request: where its status goes and what it asks (or why the
/// device must answer it with an error status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Head descriptor index, for the used ring.
    pub head: u16,
    /// The status byte.
    pub status: GuestAddress,
    /// The operation, or the reason it is refused.
    pub op: Result<Op, RequestError>,
}

fn check_range<M: GuestMemoryBackend + ?Sized>(
    mem: &M,
    d: &Descriptor,
) -> Result<(), RequestError> {
    let err = RequestError::OutOfRange {
        addr: d.addr().raw_value(),
        len: d.len(),
    };
    if d.len() == 0 {
        return if mem.address_in_range(d.addr()) {
            Ok(())
        } else {
            Err(err)
        };
    }
    if mem.check_range(d.addr(), d.len() as usize) {
        Ok(())
    } else {
        Err(err)
    }
}

impl Request {
    /// Parses `chain`. `Err` means no usable status byte (the chain is
    /// returned with nothing written); `Ok` with `op: Err` means the device
    /// answers with an error status.
    pub fn parse<M>(
        chain: DescriptorChain<M>,
        capacity: u64,
        read_only: bool,
    ) -> Result<Request, RequestError>
    where
        M: std::ops::Deref + Clone,
        M::Target: GuestMemoryBackend,
    {
        let head = chain.head_index();
        let mem = chain.memory();
        // The chain iterator stops at loops and out-of-table indices (it has
        // a TTL of the queue size), so this is bounded.
        let descs: Vec<Descriptor> = chain.clone().take(SEG_MAX as usize + 3).collect();
        if descs.len() < 2 {
            return Err(RequestError::ChainTooShort);
        }
        if descs.len() > SEG_MAX as usize + 2 {
            return Err(RequestError::TooManyDescriptors);
        }
        let hdr_desc = descs[0];
        let status_desc = descs[descs.len() - 1];
        if hdr_desc.is_write_only() {
            return Err(RequestError::HeaderWritable);
        }
        if (hdr_desc.len() as usize) < std::mem::size_of::<RequestHeader>() {
            return Err(RequestError::HeaderTooShort);
        }
        check_range(mem, &hdr_desc)?;
        if !status_desc.is_write_only() {
            return Err(RequestError::StatusNotWritable);
        }
        if status_desc.len() < 1 {
            return Err(RequestError::StatusTooShort);
        }
        check_range(mem, &status_desc)?;
        let hdr: RequestHeader =
            mem.read_obj(hdr_desc.addr())
                .map_err(|_| RequestError::OutOfRange {
                    addr: hdr_desc.addr().raw_value(),
                    len: hdr_desc.len(),
                })?;
        let data = &descs[1..descs.len() - 1];
        let op = Self::parse_op(mem, &hdr, data, capacity, read_only);
        Ok(Request {
            head,
            status: status_desc.addr(),
            op,
        })
    }

    fn parse_op<M: GuestMemoryBackend + ?Sized>(
        mem: &M,
        hdr: &RequestHeader,
        data: &[Descriptor],
        capacity: u64,
        read_only: bool,
    ) -> Result<Op, RequestError> {
        for d in data {
            check_range(mem, d)?;
        }
        match hdr.kind {
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => {
                let write = hdr.kind == VIRTIO_BLK_T_OUT;
                if write && read_only {
                    return Err(RequestError::ReadOnly);
                }
                let mut total: u64 = 0;
                let mut bufs = Vec::with_capacity(data.len());
                for d in data {
                    // A read fills device-writable buffers; a write takes
                    // device-readable ones.
                    if d.is_write_only() == write {
                        return Err(RequestError::WrongDirection);
                    }
                    if d.len() > SIZE_MAX {
                        return Err(RequestError::SegmentTooLarge(d.len()));
                    }
                    total += u64::from(d.len());
                    bufs.push((d.addr(), d.len()));
                }
                if !total.is_multiple_of(SECTOR_SIZE) {
                    return Err(RequestError::Unaligned(total));
                }
                let count = total / SECTOR_SIZE;
                match hdr.sector.checked_add(count) {
                    Some(end) if end <= capacity => {}
                    _ => {
                        return Err(RequestError::PastEnd {
                            sector: hdr.sector,
                            count,
                        })
                    }
                }
                Ok(if write {
                    Op::Write {
                        sector: hdr.sector,
                        bufs,
                    }
                } else {
                    Op::Read {
                        sector: hdr.sector,
                        bufs,
                    }
                })
            }
            VIRTIO_BLK_T_FLUSH => Ok(Op::Flush),
            VIRTIO_BLK_T_GET_ID => match data {
                [d] if d.is_write_only() => Ok(Op::GetId(d.addr(), d.len())),
                _ => Err(RequestError::BadGetId),
            },
            other => Err(RequestError::Unsupported(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestMemoryMmap;

    const F_WRITE: u16 = 2;
    const CAP: u64 = 100;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
    }

    fn d(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    fn parse_with(
        m: &GuestMemoryMmap,
        hdr: RequestHeader,
        descs: &[RawDescriptor],
        ro: bool,
    ) -> Result<Request, RequestError> {
        m.write_obj(hdr, GuestAddress(0x10_0000)).unwrap();
        let q = MockSplitQueue::new(m, 16);
        let chain = q.build_desc_chain(descs).unwrap();
        Request::parse(chain, CAP, ro)
    }

    fn hdr(kind: u32, sector: u64) -> RequestHeader {
        RequestHeader {
            kind,
            reserved: 0,
            sector,
        }
    }

    #[test]
    fn valid_read_write_flush_getid() {
        let m = mem();
        let r = parse_with(
            &m,
            hdr(VIRTIO_BLK_T_IN, 3),
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, 1024, F_WRITE),
                d(0x30_0000, 1, F_WRITE),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            r.op,
            Ok(Op::Read {
                sector: 3,
                bufs: vec![(GuestAddress(0x20_0000), 1024)]
            })
        );
        assert_eq!(r.status, GuestAddress(0x30_0000));
        let w = parse_with(
            &m,
            hdr(VIRTIO_BLK_T_OUT, 0),
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, 512, 0),
                d(0x21_0000, 512, 0),
                d(0x30_0000, 1, F_WRITE),
            ],
            false,
        )
        .unwrap();
        assert!(matches!(w.op, Ok(Op::Write { sector: 0, ref bufs }) if bufs.len() == 2));
        let f = parse_with(
            &m,
            hdr(VIRTIO_BLK_T_FLUSH, 0),
            &[d(0x10_0000, 16, 0), d(0x30_0000, 1, F_WRITE)],
            false,
        )
        .unwrap();
        assert_eq!(f.op, Ok(Op::Flush));
        let g = parse_with(
            &m,
            hdr(VIRTIO_BLK_T_GET_ID, 0),
            &[
                d(0x10_0000, 16, 0),
                d(0x20_0000, 20, F_WRITE),
                d(0x30_0000, 1, F_WRITE),
            ],
            false,
        )
        .unwrap();
        assert_eq!(g.op, Ok(Op::GetId(GuestAddress(0x20_0000), 20)));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let m = mem();
        let h = hdr(VIRTIO_BLK_T_IN, 0);
        assert_eq!(
            parse_with(&m, h, &[d(0x10_0000, 16, 0)], false),
            Err(RequestError::ChainTooShort)
        );
        assert_eq!(
            parse_with(
                &m,
                h,
                &[d(0x10_0000, 16, F_WRITE), d(0x30_0000, 1, F_WRITE)],
                false
            ),
            Err(RequestError::HeaderWritable)
        );
        assert_eq!(
            parse_with(
                &m,
                h,
                &[d(0x10_0000, 8, 0), d(0x30_0000, 1, F_WRITE)],
                false
            ),
            Err(RequestError::HeaderTooShort)
        );
        assert_eq!(
            parse_with(&m, h, &[d(0x10_0000, 16, 0), d(0x30_0000, 1, 0)], false),
            Err(RequestError::StatusNotWritable)
        );
        assert_eq!(
            parse_with(
                &m,
                h,
                &[d(0x10_0000, 16, 0), d(0x30_0000, 0, F_WRITE)],
                false
            ),
            Err(RequestError::StatusTooShort)
        );
        assert!(matches!(
            parse_with(
                &m,
                h,
                &[d(0x10_0000, 16, 0), d(0x2000_0000, 1, F_WRITE)],
                false
            ),
            Err(RequestError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_with(
                &m,
                h,
                &[d(0xff_fff8, 16, 0), d(0x30_0000, 1, F_WRITE)],
                false
            ),
            Err(RequestError::OutOfRange { .. })
        ));
    }

    #[test]
    fn refused_requests_still_get_a_status() {
        let m = mem();
        let st = d(0x30_0000, 1, F_WRITE);
        let hd = d(0x10_0000, 16, 0);
        let op = |h, data: &[RawDescriptor], ro| {
            let mut v = vec![hd];
            v.extend_from_slice(data);
            v.push(st);
            parse_with(&m, h, &v, ro).unwrap().op
        };
        assert_eq!(
            op(hdr(VIRTIO_BLK_T_IN, 0), &[d(0x20_0000, 512, 0)], false),
            Err(RequestError::WrongDirection)
        );
        assert_eq!(
            op(
                hdr(VIRTIO_BLK_T_OUT, 0),
                &[d(0x20_0000, 512, F_WRITE)],
                false
            ),
            Err(RequestError::WrongDirection)
        );
        assert_eq!(
            op(
                hdr(VIRTIO_BLK_T_IN, 0),
                &[d(0x20_0000, 100, F_WRITE)],
                false
            ),
            Err(RequestError::Unaligned(100))
        );
        assert_eq!(
            op(
                hdr(VIRTIO_BLK_T_IN, 99),
                &[d(0x20_0000, 1024, F_WRITE)],
                false
            ),
            Err(RequestError::PastEnd {
                sector: 99,
                count: 2
            })
        );
        assert_eq!(
            op(
                hdr(VIRTIO_BLK_T_IN, u64::MAX),
                &[d(0x20_0000, 512, F_WRITE)],
                false
            ),
            Err(RequestError::PastEnd {
                sector: u64::MAX,
                count: 1
            })
        );
        assert_eq!(
            op(
                hdr(VIRTIO_BLK_T_IN, 0),
                &[d(0x20_0000, SIZE_MAX + 512, F_WRITE)],
                false
            ),
            Err(RequestError::SegmentTooLarge(SIZE_MAX + 512))
        );
        assert_eq!(
            op(hdr(VIRTIO_BLK_T_OUT, 0), &[d(0x20_0000, 512, 0)], true),
            Err(RequestError::ReadOnly)
        );
        assert_eq!(
            op(hdr(VIRTIO_BLK_T_GET_ID, 0), &[], false),
            Err(RequestError::BadGetId)
        );
        assert_eq!(
            op(hdr(77, 0), &[], false),
            Err(RequestError::Unsupported(77))
        );
        assert!(matches!(
            op(
                hdr(VIRTIO_BLK_T_IN, 0),
                &[d(0xfff_0000, 512, F_WRITE)],
                false
            ),
            Err(RequestError::OutOfRange { .. })
        ));
    }
}
