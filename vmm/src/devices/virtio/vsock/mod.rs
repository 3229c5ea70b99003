//! virtio-vsock (virtio 1.2, 5.10) with a hybrid host side on unix
//! sockets, the convention of Firecracker's vsock: a guest connecting to
//! host port P reaches `<uds>_P`; a host process connects to `<uds>`,
//! writes `CONNECT P\n`, and once the guest accepts reads `OK <port>\n`.
//! No `vhost-vsock` module is needed.
//!
//! `packet` parses and builds packets (no I/O), `connection` holds one
//! stream's state and credit, `device` multiplexes them on the queues.

pub mod connection;
pub mod device;
pub mod packet;

pub use device::Vsock;
pub use packet::{Header, PacketError, TxPacket};

/// The host's CID.
pub const HOST_CID: u64 = 2;
/// Receive buffer we advertise per connection (our `buf_alloc`).
pub const CONN_BUF_ALLOC: u32 = 256 * 1024;
/// Largest payload we take in or hand out in one packet.
pub const MAX_PKT_PAYLOAD: usize = 64 * 1024;
/// Most connections at once (hostile guests cannot exhaust the host).
pub const MAX_CONNECTIONS: usize = 1024;
/// Queue size of each of the three queues.
pub const QUEUE_SIZE: u16 = 256;
