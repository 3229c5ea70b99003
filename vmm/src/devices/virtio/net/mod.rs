//! virtio-net (virtio 1.2, 5.1) on a host tap device: no offloads, one
//! queue pair, the guest's MAC in config space. `packet` checks frames
//! from descriptor chains; `tap` opens the device; `device` moves frames.

pub mod backing;
pub mod device;
pub mod packet;
pub mod persist;
pub mod tap;

pub use backing::NetBacking;
pub use device::Net;

/// Size of `struct virtio_net_hdr_v1` (VERSION_1 always has num_buffers).
pub const NET_HDR_LEN: usize = 12;
/// Largest frame we move (a 64 KiB IP packet with its Ethernet header).
pub const MAX_FRAME: usize = 65_550;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
