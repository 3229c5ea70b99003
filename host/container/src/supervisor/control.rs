//! The supervisor's control socket: JSON lines both ways. The first line a
//! client sends may carry file descriptors (SCM_RIGHTS): its own stdio,
//! which the supervisor then reads and writes directly, so output never
//! takes an extra hop through the `hull` command.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use hull_protocol::{ContainerStats, ProcessInfo};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Most descriptors one request carries (stdin, stdout, stderr).
const MAX_FDS: usize = 3;
/// Longest control line accepted.
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Attach the passed stdio (stdin first when `stdin`, then stdout and
    /// stderr) to the main process; answered with `Exited` when it ends.
    Attach {
        stdin: bool,
    },
    /// Signal the main process, or this connection's exec'd process.
    Signal {
        signal: i32,
    },
    /// The terminal of this connection's process changed size.
    Resize {
        rows: u16,
        cols: u16,
    },
    /// SIGTERM, then SIGKILL after `timeout_secs`, then power off.
    Stop {
        timeout_secs: u64,
    },
    /// Start a process in the container with the passed stdio; answered
    /// with `Started`, then `Exited`.
    Exec(Box<ExecRequest>),
    Stats,
    Top,
    /// Answered with `Exited` when the container has stopped.
    Wait,
    /// Answered with `Started` once the main process runs, or `Error` if
    /// it could not start.
    Started,
    /// Signal every process of the container (`kill --all`).
    SignalAll {
        signal: i32,
    },
    /// Freeze every process of the container (`hull pause`).
    Pause,
    /// Thaw them (`hull unpause`).
    Resume,
    /// Lets a supervisor in runc mode start the main process (it boots the
    /// VM, then waits for this, as `runc create` leaves `runc start` to
    /// exec the process); answered with `Ok` at once.
    Start,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// KEY=VALUE pairs added to the container's environment.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// Image-style user; the container's user when absent.
    pub user: Option<String>,
    pub tty: bool,
    /// Whether a stdin descriptor comes with the request.
    pub stdin: bool,
    /// The terminal size, with `tty`.
    pub size: Option<(u16, u16)>,
    /// The process dies with this connection: its client stands for it
    /// (hull-runc's exec helper, whose pid is the exec's for containerd
    /// and podman; the shim). Without it the process runs on, as a
    /// `docker exec` whose client went away does.
    #[serde(default)]
    pub owned: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControlReply {
    Ok,
    Started {
        pid: u32,
    },
    Exited {
        exit_code: i32,
        oom_killed: bool,
        error: Option<String>,
    },
    Stats(ContainerStats),
    Processes {
        processes: Vec<ProcessInfo>,
    },
    Error {
        message: String,
        /// The exit status the CLI should use (125, or 126/127 for exec).
        code: i32,
    },
}

/// The client end of a control connection.
pub struct ControlClient {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl ControlClient {
    /// Connects and sends `first` with `fds`.
    pub async fn connect(
        socket: &Path,
        first: &ControlRequest,
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<Self> {
        let std_stream = std::os::unix::net::UnixStream::connect(socket)?;
        send_with_fds(&std_stream, &encode(first)?, fds)?;
        std_stream.set_nonblocking(true)?;
        let (reader, writer) = UnixStream::from_std(std_stream)?.into_split();
        Ok(Self {
            lines: BufReader::new(reader).lines(),
            writer,
        })
    }

    pub async fn send(&mut self, request: &ControlRequest) -> io::Result<()> {
        self.writer.write_all(&encode(request)?).await
    }

    /// The next reply; an error when the supervisor hung up.
    pub async fn reply(&mut self) -> io::Result<ControlReply> {
        match self.lines.next_line().await? {
            Some(line) => serde_json::from_str(&line).map_err(io::Error::other),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the container's supervisor hung up",
            )),
        }
    }
}

/// One request, one reply.
pub async fn call(socket: &Path, request: &ControlRequest) -> io::Result<ControlReply> {
    let mut client = ControlClient::connect(socket, request, &[]).await?;
    client.reply().await
}

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

fn send_with_fds(socket: &impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors"));
    }
    let mut sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    // The descriptors went with the first byte; the rest is plain data.
    while sent < bytes.len() {
        sent += rustix::net::send(socket, &bytes[sent..], SendFlags::NOSIGNAL)?;
    }
    Ok(())
}

/// The server end of one control connection.
pub struct ControlConn {
    reader: BufReader<OwnedReadHalf>,
    /// Bytes that arrived with the first request, read before `reader`.
    pending: Vec<u8>,
    pub writer: OwnedWriteHalf,
}

impl ControlConn {
    /// Reads the first request and the descriptors that came with it.
    pub async fn accept(stream: UnixStream) -> io::Result<(Self, ControlRequest, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        let mut first = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            stream.readable().await?;
            let got = stream.try_io(tokio::io::Interest::READABLE, || {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let msg = rustix::net::recvmsg(
                    &stream,
                    &mut [IoSliceMut::new(&mut buf)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )?;
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = message {
                        fds.extend(received);
                    }
                }
                Ok(msg.bytes)
            });
            let n = match got {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client hung up",
                ));
            }
            first.extend_from_slice(&buf[..n]);
            if first.contains(&b'\n') || first.len() > MAX_LINE {
                break;
            }
        }
        let end = first
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "request too long"))?;
        let request: ControlRequest =
            serde_json::from_slice(&first[..end]).map_err(io::Error::other)?;
        let pending = first[end + 1..].to_vec();
        let (reader, writer) = stream.into_split();
        let conn = Self {
            reader: BufReader::new(reader),
            pending,
            writer,
        };
        Ok((conn, request, fds))
    }

    /// The next request on the connection; `None` when the client left.
    pub async fn next(&mut self) -> Option<ControlRequest> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                match serde_json::from_slice(&line[..end]) {
                    Ok(request) => return Some(request),
                    Err(_) => continue,
                }
            }
            if self.pending.len() > MAX_LINE {
                return None;
            }
            let mut more = Vec::new();
            match self.reader.read_until(b'\n', &mut more).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => self.pending.extend_from_slice(&more),
            }
        }
    }

    pub async fn reply(&mut self, reply: &ControlReply) -> io::Result<()> {
        self.writer.write_all(&encode(reply)?).await
    }
}
