//! The hybrid unix-socket host side of virtio-vsock, after Firecracker's
//! `devices/virtio/vsock/unix/`: `muxer` routes packets between guest
//! ports and host streams (a `VsockBackend`), `connection` holds one
//! stream's state and credit, `listener` is the `<uds>` socket with its
//! `CONNECT <port>` handshake, `muxer_rxq` the control packets waiting for
//! RX buffers.

pub mod connection;
pub mod listener;
pub mod muxer;
pub mod muxer_rxq;

pub use muxer::{MuxerMetrics, VsockMuxer};
