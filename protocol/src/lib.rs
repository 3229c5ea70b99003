//! The host ↔ guest-agent protocol of hull.
//!
//! One connection carries everything between `hull` on the host and
//! `hull-agent` (PID 1 in the guest): a control stream of JSON messages and
//! any number of byte streams (the stdio of container processes). The
//! connection is any reliable byte stream — a vsock connection under
//! hull-vmm, a virtio-serial port under QEMU — so the framing assumes
//! nothing but ordered delivery.
//!
//! * [`frame`]: the wire format and an incremental decoder.
//! * [`flow`]: per-stream credit windows, so a process flooding stdout can
//!   never stall control messages (the SSH/HTTP2 scheme).
//! * [`message`]: what the control stream says.

pub mod flow;
pub mod frame;
pub mod message;

pub use flow::{Credit, INITIAL_WINDOW};
pub use frame::{Frame, FrameDecoder, FrameError, FrameKind, StreamId, CONTROL_STREAM};
pub use message::*;

/// Protocol version; both sides say it in their first control message and
/// refuse a peer that speaks another.
pub const PROTOCOL_VERSION: u32 = 1;

/// vsock port the host listens on for the agent (hull-vmm's hybrid vsock
/// turns a guest connection to CID 2, port P into `<uds>_P` on the host).
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// Name of the virtio-serial port the agent uses under QEMU.
pub const AGENT_SERIAL_PORT_NAME: &str = "hull.agent";

/// Kernel command-line key that tells the agent which channel to use
/// (`hull.channel=vsock` or `hull.channel=serial`).
pub const CHANNEL_CMDLINE_KEY: &str = "hull.channel";
