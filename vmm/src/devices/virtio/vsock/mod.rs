//! virtio-vsock (virtio 1.2, 5.10) with a hybrid host side on unix
//! sockets, the convention of Firecracker's vsock: a guest connecting to
//! host port P reaches `<uds>_P`; a host process connects to `<uds>`,
//! writes `CONNECT P\n`, and once the guest accepts reads `OK <port>\n`.
//! No `vhost-vsock` module is needed.
//!
//! `packet` parses and builds packets (no I/O), `device` moves them
//! between the queues and a `backend::VsockBackend`, and `unix` is the
//! host side: the muxer of connections on unix sockets (Firecracker's
//! `vsock/unix`).

pub mod backend;
pub mod device;
pub mod packet;
pub mod persist;
pub mod unix;

pub use backend::{RxPacket, VsockBackend};
pub use device::{Vsock, VsockMetrics};
pub use packet::{Header, PacketError, TxPacket};
pub use unix::VsockMuxer;

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
