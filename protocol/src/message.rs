//! Control messages: what travels on stream 0, as JSON.
//!
//! Each side opens with [`ControlMessage::Hello`]. The host sends
//! [`Request`]s, each answered by one [`ControlMessage::Response`] with the
//! same id; the agent also sends unsolicited [`Event`]s (a process exited).
//! Data streams are named by the host in requests; their ids must be unique
//! on the connection and non-zero.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::frame::{Frame, FrameKind, StreamId};

/// Everything the control stream can carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlMessage {
    /// First message of each side.
    Hello {
        version: u32,
        software: String,
    },
    Request {
        id: u64,
        request: Request,
    },
    Response {
        id: u64,
        result: Result<Reply, AgentError>,
    },
    Event {
        event: Event,
    },
}

/// What the host asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Mount the image, create the container and start its main process.
    RunContainer(Box<RunContainer>),
    /// Send a signal to a process of the container.
    Signal { process: String, signal: i32 },
    /// The host terminal of a process with a TTY changed size.
    ResizeTerminal {
        process: String,
        rows: u16,
        cols: u16,
    },
    /// Start another process in a running container (`hull exec`).
    ExecProcess(Box<ExecProcess>),
    /// The container's resource usage, from its cgroup.
    Stats { container_id: String },
    /// The processes of the container (`hull top`).
    ListProcesses { container_id: String },
    /// Send a signal to every process of the container (its cgroup's).
    SignalContainer { container_id: String, signal: i32 },
    /// Freeze (`frozen`) or thaw every process of the container through
    /// its cgroup's freezer (`pause`/`resume`, `docker pause`).
    Freeze { container_id: String, frozen: bool },
    /// Change the running container's cgroup limits (`runc update`):
    /// what `resources` sets is written, what it leaves out stays as it is.
    UpdateResources {
        container_id: String,
        resources: Box<oci_spec::runtime::LinuxResources>,
    },
    /// End a container that joined this VM on its own connection: kill
    /// what is left of it, unmount its root and forget it, so the host can
    /// unplug its disks. The VM runs on.
    RemoveContainer { container_id: String },
    /// Stop everything and power the VM off.
    Shutdown,
    /// This VM was just cloned from a template: stop being its twin (see
    /// [`Wake`]). The first request on a clone's channel, before any
    /// container.
    Wake(Wake),
    /// Write the container's changes (its overlay's upper layer) as an
    /// uncompressed OCI layer tar on `stream`, then Eof (see
    /// [`ExportChanges`]). Answered with [`Reply::Exported`] once the
    /// last byte is on the wire. The container may be running (the host
    /// freezes it first) or its main process may have exited.
    ExportChanges(ExportChanges),
    /// The host is about to save the VM (a checkpoint): freeze the
    /// container, answer, and send nothing after the answer until
    /// [`Request::Unpark`], so the connection is quiet both ways while the
    /// VM is saved (the host sends nothing after this request either).
    Checkpoint { container_id: String },
    /// Carry on after a checkpoint: thaw the container (unless it was
    /// paused before) and send again. With `restored`, this is a VM
    /// restored from the checkpoint on a new host connection: every
    /// output stream starts again with a fresh window, and the clone
    /// takes host entropy and the host's clock as a woken clone does (no
    /// two restores of one checkpoint are twins).
    Unpark {
        container_id: String,
        restored: Option<Wake>,
    },
}

/// What [`Request::ExportChanges`] asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportChanges {
    pub container_id: String,
    /// An output stream the host opened for it; unique on the connection.
    pub stream: StreamId,
    /// `SOURCE_DATE_EPOCH`: no entry's mtime is later than this (seconds
    /// since the Unix epoch), so a rebuild gives the same bytes.
    #[serde(default)]
    pub source_date_epoch: Option<i64>,
}

/// What a clone takes as its own before it runs anything: every clone of
/// one template starts with the same RNG state, clock and MAC address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wake {
    /// Host entropy, credited to the guest kernel's pool, which is then
    /// reseeded (at least [`WAKE_MIN_ENTROPY`] bytes).
    pub entropy: Vec<u8>,
    /// The host's wall clock, nanoseconds since the Unix epoch.
    pub realtime_nanos: u64,
    /// The MAC address the VM's one network interface takes (the template
    /// had another); `None` when the VM has no interface.
    pub mac: Option<String>,
}

/// The least entropy a [`Wake`] carries, in bytes (256 bits).
pub const WAKE_MIN_ENTROPY: usize = 32;

/// A process to start inside a running container: it joins the
/// container's namespaces and cgroup and gets the container's seccomp
/// filter; `process` carries its own args, env, cwd, terminal,
/// capabilities, rlimits and no_new_privileges. Its exit is reported as
/// [`Event::ProcessExited`] under `process_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecProcess {
    pub container_id: String,
    /// Chosen by the host, unique within the container, never
    /// [`MAIN_PROCESS`].
    pub process_id: String,
    pub process: oci_spec::runtime::Process,
    /// Image-style user (`name`, `uid`, `uid:gid`, `name:group`),
    /// resolved in the container's `/etc/passwd` and `/etc/group`.
    pub user: String,
    pub stdio: Stdio,
}

/// A container with its main process, described by an OCI runtime spec.
///
/// The agent applies the spec's process (args, env, cwd, capabilities,
/// rlimits, no_new_privileges), hostname, mounts, namespaces, cgroup
/// resources, seccomp, masked and read-only paths, and read-only root. The
/// spec's `root.path` is ignored: the root is the image disk under an
/// overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunContainer {
    pub container_id: String,
    pub rootfs: RootfsSource,
    pub spec: oci_spec::runtime::Spec,
    /// The image-style user ("", "uid", "uid:gid", "name", "name:group"),
    /// resolved against the container's /etc/passwd and /etc/group; it
    /// replaces the spec's numeric user when not empty.
    pub user: String,
    /// With `spec.process.terminal`, the process gets a pty: its output
    /// (stdout and stderr merged, as on a terminal) comes on `stdout`, and
    /// `stderr` is closed at once.
    pub stdio: Stdio,
    /// Power the VM off as soon as the main process has exited and its
    /// exit has been reported (`hull run --rm`).
    pub shutdown_on_exit: bool,
    /// The VM's network interface and name resolution; `None`: loopback
    /// only (`--network none`).
    #[serde(default)]
    pub network: Option<GuestNetwork>,
    /// Where the container's host files and directories come from (bind
    /// mounts, volumes): a 9P2000.L server at the other end of a stream.
    /// The spec's mounts name its entries as sources `hull-share:<n>`.
    #[serde(default)]
    pub share: Option<ShareChannel>,
}

/// The stream a container's share server answers on; the agent mounts it
/// with the kernel's 9P `trans=fd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareChannel {
    /// A virtio-serial port of this name (QEMU).
    SerialPort(String),
    /// A vsock connection to the host (CID 2) on this port (hull-vmm).
    Vsock(u32),
}

/// How the agent configures the VM's (single) network interface, which
/// the VM's containers share, and their `/etc/hosts` and
/// `/etc/resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestNetwork {
    /// The interface's MAC address, to find it (`52:54:00:…`).
    pub mac: String,
    /// Address and prefix length, e.g. `10.89.0.5/24`.
    pub address: String,
    /// The default route's gateway, if any.
    pub gateway: Option<String>,
    pub mtu: u32,
    /// Other containers on the network: `/etc/hosts` lines.
    pub hosts: Vec<HostEntry>,
    /// Nameservers for `/etc/resolv.conf` (none: the file is left alone).
    pub dns: Vec<String>,
}

/// One `/etc/hosts` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub ip: String,
    pub names: Vec<String>,
}

/// Where the image's root filesystem is: a virtio-blk disk found by its
/// serial (device id), so the agent does not depend on probe order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsSource {
    pub disk_serial: String,
    /// Filesystem type to mount it with (`erofs` or `ext4`).
    pub fs_type: String,
    /// A writable ext4 disk (found by serial) for the overlay's upper
    /// layer; without one, the upper layer is a tmpfs in guest memory.
    #[serde(default)]
    pub scratch_serial: Option<String>,
}

/// The id of a container's main process in requests and events.
pub const MAIN_PROCESS: &str = "init";

/// Stream ids for a process's standard streams. Without `stdin` the process
/// reads /dev/null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stdio {
    pub stdin: Option<StreamId>,
    pub stdout: StreamId,
    pub stderr: StreamId,
}

/// Successful answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Done,
    Started {
        pid: u32,
        /// How long the guest's steps took (`RunContainer` only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<GuestStep>,
    },
    Stats(ContainerStats),
    Processes {
        processes: Vec<ProcessInfo>,
    },
    /// The layer of an [`ExportChanges`] is sent: its entries and file
    /// bytes as the agent counted them (the host counts for itself).
    Exported {
        entries: u64,
        bytes: u64,
    },
}

/// One step of the guest's work on a request: its end, in microseconds
/// since the agent took the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestStep {
    pub name: String,
    pub micros: u64,
}

/// A container's resource usage, read from its cgroup v2 files. The
/// fields after `io_write_bytes` came with `runc events` and default to
/// zero (empty) in replies of older agents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerStats {
    /// `cpu.stat` usage_usec.
    pub cpu_usage_usec: u64,
    /// `memory.current`.
    pub memory_bytes: u64,
    /// `memory.max`, or the VM's total memory when that is `max`.
    pub memory_limit_bytes: u64,
    /// `pids.current`.
    pub pids: u64,
    /// `io.stat` rbytes and wbytes summed over devices.
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// `cpu.stat` user_usec and system_usec.
    #[serde(default)]
    pub cpu_user_usec: u64,
    #[serde(default)]
    pub cpu_system_usec: u64,
    /// `cpu.stat` nr_periods, nr_throttled, throttled_usec.
    #[serde(default)]
    pub cpu_periods: u64,
    #[serde(default)]
    pub cpu_throttled_periods: u64,
    #[serde(default)]
    pub cpu_throttled_usec: u64,
    /// `memory.max` as the kernel has it: [`NO_LIMIT`] for `max`.
    #[serde(default)]
    pub memory_max: u64,
    /// `memory.peak` (0 before Linux 5.19).
    #[serde(default)]
    pub memory_peak: u64,
    /// `memory.events`: how often usage hit `memory.max` (`max`), and how
    /// many processes the OOM killer took (`oom_kill`).
    #[serde(default)]
    pub memory_max_events: u64,
    #[serde(default)]
    pub oom_kills: u64,
    /// `memory.swap.current` and `memory.swap.max` ([`NO_LIMIT`] for
    /// `max`); zero when the kernel has no swap accounting.
    #[serde(default)]
    pub swap_bytes: u64,
    #[serde(default)]
    pub swap_max: u64,
    /// `memory.stat`, every key.
    #[serde(default)]
    pub memory_stat: std::collections::BTreeMap<String, u64>,
    /// `pids.max`; 0 for `max`, as runc reports it.
    #[serde(default)]
    pub pids_limit: u64,
    /// `io.stat`, one entry per device.
    #[serde(default)]
    pub io_devices: Vec<IoDeviceStats>,
}

/// A cgroup v2 limit file's `max`, as a number.
pub const NO_LIMIT: u64 = u64::MAX;

/// One line of `io.stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoDeviceStats {
    pub major: u64,
    pub minor: u64,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}

/// One process of a container, as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    /// The pid in the guest (the VM's pid namespace).
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// `/proc/PID/cmdline` joined with spaces, or `[comm]` when empty.
    pub command: String,
}

/// Why the agent refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[error("{message}")]
#[serde(deny_unknown_fields)]
pub struct AgentError {
    pub kind: ErrorKind,
    pub message: String,
}

impl AgentError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself is wrong (unknown process, duplicate stream…).
    InvalidRequest,
    /// The command does not exist in the container (Docker exits 127).
    CommandNotFound,
    /// The command exists but cannot be executed (Docker exits 126).
    CommandNotExecutable,
    /// The user, group or working directory is unusable.
    InvalidProcess,
    /// Mounting or setting up the container failed.
    Setup,
}

/// Things that happen without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A process ended; all its output streams were closed before this.
    /// `oom_killed`: the container's memory limit killed something.
    ProcessExited {
        process: String,
        status: ExitStatus,
        oom_killed: bool,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell (and `docker run`) reports: the code, or 128 + the
    /// signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(signal) => 128 + signal,
        }
    }
}

/// Errors turning control frames into messages.
#[derive(Debug, Error)]
pub enum MessageError {
    #[error("expected a control frame, got {0:?}")]
    NotControl(FrameKind),
    #[error("malformed control message")]
    Json(#[source] serde_json::Error),
}

impl ControlMessage {
    pub fn to_frame(&self) -> Frame {
        // Serializing these plain types cannot fail.
        Frame::control(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_frame(frame: &Frame) -> Result<Self, MessageError> {
        if frame.kind != FrameKind::Control {
            return Err(MessageError::NotControl(frame.kind));
        }
        serde_json::from_slice(&frame.payload).map_err(MessageError::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_run() -> ControlMessage {
        ControlMessage::Request {
            id: 7,
            request: Request::RunContainer(Box::new(RunContainer {
                container_id: "c1".into(),
                rootfs: RootfsSource {
                    disk_serial: "rootfs".into(),
                    fs_type: "erofs".into(),
                    scratch_serial: Some("scratch".into()),
                },
                spec: oci_spec::runtime::Spec::default(),
                user: "1000:1000".into(),
                stdio: Stdio {
                    stdin: Some(1),
                    stdout: 2,
                    stderr: 3,
                },
                shutdown_on_exit: true,
                network: None,
                share: Some(ShareChannel::SerialPort("hull.share.c1".into())),
            })),
        }
    }

    #[test]
    fn messages_roundtrip_through_frames() {
        let msgs = vec![
            ControlMessage::Hello {
                version: 1,
                software: "hull-agent 0.1".into(),
            },
            sample_run(),
            ControlMessage::Response {
                id: 7,
                result: Ok(Reply::Started {
                    pid: 42,
                    steps: Vec::new(),
                }),
            },
            ControlMessage::Response {
                id: 8,
                result: Err(AgentError::new(ErrorKind::CommandNotFound, "nope")),
            },
            ControlMessage::Event {
                event: Event::ProcessExited {
                    process: "init".into(),
                    status: ExitStatus::Signal(9),
                    oom_killed: true,
                },
            },
            ControlMessage::Request {
                id: 9,
                request: Request::Shutdown,
            },
            ControlMessage::Request {
                id: 10,
                request: Request::ExportChanges(ExportChanges {
                    container_id: "c1".into(),
                    stream: 1 << 30,
                    source_date_epoch: Some(1_700_000_000),
                }),
            },
            ControlMessage::Response {
                id: 10,
                result: Ok(Reply::Exported {
                    entries: 3,
                    bytes: 12,
                }),
            },
        ];
        for msg in msgs {
            assert_eq!(ControlMessage::from_frame(&msg.to_frame()).unwrap(), msg);
        }
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        let bad = [
            r#"{"type":"hello","version":1,"software":"x","extra":1}"#,
            r#"{"type":"nonsense"}"#,
            r#"{"type":"request","id":1,"request":{"op":"format_disk"}}"#,
            r#"not json"#,
        ];
        for json in bad {
            let frame = Frame::control(json.as_bytes().to_vec());
            assert!(ControlMessage::from_frame(&frame).is_err(), "{json}");
        }
        assert!(matches!(
            ControlMessage::from_frame(&Frame::eof(3)),
            Err(MessageError::NotControl(FrameKind::Eof))
        ));
    }

    #[test]
    fn shell_codes_match_docker() {
        assert_eq!(ExitStatus::Code(3).shell_code(), 3);
        assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
    }
}
