//! virtio-blk (virtio 1.2, 5.2): read, write, flush and device id on a
//! host file, read-only or read-write. `request` parses a descriptor chain
//! without I/O; `device` executes requests through a `DiskBackend`.

pub mod backing;
pub mod device;
pub mod persist;
pub mod request;

pub use backing::Backing;
pub use device::{Block, BlockMetrics, DiskBackend};
pub use request::{Op, Request, RequestError};

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;
/// Largest data descriptor accepted (advertised as `size_max`).
pub const SIZE_MAX: u32 = 1 << 20;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Most data segments per request (advertised as `seg_max`).
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Length of the device id (VIRTIO_BLK_ID_BYTES).
pub const ID_BYTES: usize = 20;
