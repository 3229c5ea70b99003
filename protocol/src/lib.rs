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

pub mod blockio;
pub mod flow;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;

pub use flow::{Credit, INITIAL_WINDOW};
pub use frame::{Frame, FrameDecoder, FrameError, FrameKind, StreamId, CONTROL_STREAM};
pub use message::*;

/// Linux capability names in bit order (capability.h): the host names
/// them in specs, the agent turns them into bits.
pub const CAPABILITY_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Protocol version; both sides say it in their first control message and
/// refuse a peer that speaks another (3: `Wake`, for template clones; 4:
/// the guest's steps in `Started`; 5: `RunContainer.share`; 6:
/// `ExportChanges`, a container's writable layer as a layer tar; 7:
/// `Checkpoint` and `Unpark`, a running container's VM saved and restored).
pub const PROTOCOL_VERSION: u32 = 7;

/// vsock port the host listens on for the agent (hull-vmm's hybrid vsock
/// turns a guest connection to CID 2, port P into `<uds>_P` on the host).
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// Name of the virtio-serial port the agent uses under QEMU.
pub const AGENT_SERIAL_PORT_NAME: &str = "hull.agent";

/// Name prefix of the virtio-serial ports hot-added to a running VM, one
/// per container that joins it (a pod): `hull.agent.<suffix>`. Each is a
/// connection of its own, serving that container.
pub const AGENT_JOIN_PORT_PREFIX: &str = "hull.agent.";

/// Name prefix of the virtio-serial port a container's share server
/// answers on under QEMU: `hull.share.<container's short id>`.
pub const SHARE_PORT_PREFIX: &str = "hull.share.";

/// The mount source prefix that names a share entry: `hull-share:<n>` is
/// entry `n` of the container's share server.
pub const SHARE_SOURCE_PREFIX: &str = "hull-share:";

/// Kernel command-line key that tells the agent which channel to use
/// (`hull.channel=vsock` or `hull.channel=serial`).
pub const CHANNEL_CMDLINE_KEY: &str = "hull.channel";
