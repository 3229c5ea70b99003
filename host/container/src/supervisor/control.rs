//! The supervisor's control socket: JSON lines both ways. The first line a
//! client sends may carry file descriptors (SCM_RIGHTS): its own stdio,
//! which the supervisor then reads and writes directly, so output never
//! takes an extra hop through the `hull` command.
//!
//! Requests that only an agent can answer (stats, top, `kill --all`,
//! pause) are not mirrored here one by one: a client sends the agent's own
//! [`AgentRequest`] in [`ControlRequest::Agent`] and gets the agent's
//! [`AgentReply`] back (see `relay.rs` for what the supervisor lets
//! through). The explicit requests are the supervisor's own work.
//!
//! Both ends are the same binary, so the wire format is internal.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

pub use hull_protocol::{Reply as AgentReply, Request as AgentRequest};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Most descriptors one request carries (stdin, stdout, stderr).
const MAX_FDS: usize = 3;
/// Longest control line accepted.
const MAX_LINE: usize = 1 << 20;

/// Why a control line could not be sent or read; carried inside the
/// [`io::Error`]s this module returns, whose callers treat any of them as
/// "the supervisor did not answer".
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("more than {MAX_FDS} descriptors with one request")]
    TooManyFds,
    #[error("control line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("malformed control line")]
    Malformed(#[source] serde_json::Error),
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Attach the passed stdio (stdin first when `stdin`, then stdout and
    /// stderr) to the main process; answered with `Exited` when it ends.
    Attach { stdin: bool },
    /// Signal this connection's process: the main process, or the
    /// attached or exec'd one of the conversation.
    Signal { signal: i32 },
    /// The terminal of this connection's process (the main process on a
    /// connection of its own) changed size; answered with `Ok` at once.
    Resize { rows: u16, cols: u16 },
    /// SIGTERM, then SIGKILL after `timeout_secs`, then power off.
    Stop { timeout_secs: u64 },
    /// Start a process in the container with the passed stdio; answered
    /// with `Started`, then `Exited`.
    Exec(Box<ExecRequest>),
    /// Answered with `Exited` when the container has stopped.
    Wait,
    /// Answered with `Started` once the main process runs, or `Error` if
    /// it could not start.
    Started,
    /// Lets a supervisor in runc mode start the main process (it boots the
    /// VM, then waits for this, as `runc create` leaves `runc start` to
    /// exec the process); answered with `Ok` at once.
    Start,
    /// A request for the agent about this container (stats, its
    /// processes, signal them all, freeze or thaw them), relayed as it is;
    /// answered with `Agent` or `Error`.
    Agent { request: AgentRequest },
    /// Write the container's changes (its writable layer as an
    /// uncompressed layer tar) into the passed file descriptor; a running
    /// container is frozen meanwhile. Answered with `Agent` (the agent's
    /// `Exported`) or `Error`.
    ExportChanges {
        #[serde(default)]
        source_date_epoch: Option<i64>,
    },
    /// Save the running container's VM into `image_path` (runc's
    /// `checkpoint`); unless `leave_running`, the container stops once it
    /// is saved. Answered with `Ok` or `Error`.
    Checkpoint {
        image_path: std::path::PathBuf,
        #[serde(default)]
        leave_running: bool,
    },
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
    /// The whole OCI process to start (runc's `exec --process`, a CRI
    /// exec): its capabilities, rlimits, user and no_new_privileges apply
    /// as given, instead of the container's; the fields above still
    /// override args, env, cwd, user and the terminal.
    #[serde(default)]
    pub process: Option<Box<oci_spec::runtime::Process>>,
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
    /// The agent's answer to a relayed request.
    Agent {
        answer: AgentReply,
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
            Some(line) => Ok(serde_json::from_str(&line).map_err(FrameError::Malformed)?),
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

/// `value` as one JSON line.
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value).map_err(FrameError::Malformed)?;
    line.push(b'\n');
    Ok(line)
}

fn send_with_fds(socket: &impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_FDS
        || (!fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)))
    {
        return Err(FrameError::TooManyFds.into());
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
        let (mut first, fds) = read_first_line(&stream).await?;
        let end = first
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(FrameError::TooLong)?;
        let request: ControlRequest =
            serde_json::from_slice(&first[..end]).map_err(FrameError::Malformed)?;
        let pending = first.split_off(end + 1);
        let (reader, writer) = stream.into_split();
        let conn = Self {
            reader: BufReader::new(reader),
            pending,
            writer,
        };
        Ok((conn, request, fds))
    }

    /// The next request on the connection; `None` when the client left.
    /// Lines that are not requests are skipped.
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

/// Reads until the first newline (or past [`MAX_LINE`]), collecting the
/// descriptors that come along; more than [`MAX_FDS`] is an error.
async fn read_first_line(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut fds = Vec::new();
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.readable().await?;
        let n = match stream.try_io(tokio::io::Interest::READABLE, || {
            recv_with_fds(stream, &mut buf, &mut fds)
        }) {
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
        if fds.len() > MAX_FDS {
            return Err(FrameError::TooManyFds.into());
        }
        first.extend_from_slice(&buf[..n]);
        if first.contains(&b'\n') || first.len() > MAX_LINE {
            return Ok((first, fds));
        }
    }
}

/// One `recvmsg`: bytes into `buf`, descriptors onto `fds`. Descriptors
/// the kernel had no room for are an error (it closed them).
fn recv_with_fds(socket: &impl AsFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(FrameError::TooManyFds.into());
    }
    Ok(msg.bytes)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    use super::*;

    /// A listener on a socket in a temporary directory.
    fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixListener) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        (dir, path, listener)
    }

    /// What the server makes of `bytes` sent raw as a first request.
    async fn accept_raw(bytes: Vec<u8>) -> io::Result<ControlRequest> {
        let (_dir, path, listener) = listener();
        let writer = tokio::spawn(async move {
            let mut client = UnixStream::connect(&path).await.unwrap();
            // The server may hang up first on bad input.
            let _ = client.write_all(&bytes).await;
        });
        let (stream, _) = listener.accept().await.unwrap();
        let accepted = ControlConn::accept(stream)
            .await
            .map(|(_, request, _)| request);
        let _ = writer.await;
        accepted
    }

    fn frame_error(e: &io::Error) -> Option<&FrameError> {
        e.get_ref()?.downcast_ref::<FrameError>()
    }

    #[tokio::test]
    async fn a_request_and_its_descriptors_arrive_together() {
        let (_dir, path, listener) = listener();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let first = ControlRequest::Attach { stdin: false };
        let fds = [a.as_fd(), a.as_fd()];
        let client = ControlClient::connect(&path, &first, &fds);
        let (client, accepted) = tokio::join!(client, async {
            let (stream, _) = listener.accept().await.unwrap();
            ControlConn::accept(stream).await
        });
        let mut client = client.unwrap();
        let (mut conn, request, fds) = accepted.unwrap();
        assert!(matches!(request, ControlRequest::Attach { stdin: false }));
        assert_eq!(fds.len(), 2);
        client
            .send(&ControlRequest::Resize { rows: 3, cols: 4 })
            .await
            .unwrap();
        assert!(matches!(
            conn.next().await,
            Some(ControlRequest::Resize { rows: 3, cols: 4 })
        ));
        conn.reply(&ControlReply::Ok).await.unwrap();
        assert!(matches!(client.reply().await.unwrap(), ControlReply::Ok));
    }

    #[test]
    fn relayed_requests_and_replies_keep_the_agents_own_tags() {
        let request = ControlRequest::Agent {
            request: AgentRequest::Freeze {
                container_id: "c".into(),
                frozen: true,
            },
        };
        let line = encode(&request).unwrap();
        let back: ControlRequest = serde_json::from_slice(&line).unwrap();
        assert!(matches!(
            back,
            ControlRequest::Agent {
                request: AgentRequest::Freeze { frozen: true, .. }
            }
        ));
        let reply = ControlReply::Agent {
            answer: AgentReply::Processes { processes: vec![] },
        };
        let back: ControlReply = serde_json::from_slice(&encode(&reply).unwrap()).unwrap();
        assert!(matches!(
            back,
            ControlReply::Agent {
                answer: AgentReply::Processes { .. }
            }
        ));
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_request() {
        let e = accept_raw(b"{\"op\": \"reboot_the_host\"}\n".to_vec())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(frame_error(&e), Some(FrameError::Malformed(_))));
        let e = accept_raw(b"\xff\xfe not json\n".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(frame_error(&e), Some(FrameError::Malformed(_))));
    }

    #[tokio::test]
    async fn a_first_line_past_the_limit_is_refused() {
        let e = accept_raw(vec![b'x'; MAX_LINE + 2]).await.unwrap_err();
        assert!(matches!(frame_error(&e), Some(FrameError::TooLong)));
    }

    #[tokio::test]
    async fn a_client_hanging_up_before_a_line_is_an_error() {
        let e = accept_raw(b"{\"op\":".to_vec()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_client_cannot_send_too_many_descriptors() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fds = [a.as_fd(); MAX_FDS + 1];
        let e = send_with_fds(&a, b"{}\n", &fds).unwrap_err();
        assert!(matches!(frame_error(&e), Some(FrameError::TooManyFds)));
    }

    #[tokio::test]
    async fn descriptors_over_several_messages_count_together() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        // Two chunks of one line, each with two descriptors: four in all.
        send_with_fds(&a, b"{\"op\":", &[a.as_fd(), a.as_fd()]).unwrap();
        send_with_fds(&a, b"\"wait\"}\n", &[a.as_fd(), a.as_fd()]).unwrap();
        b.set_nonblocking(true).unwrap();
        let stream = UnixStream::from_std(b).unwrap();
        let Err(e) = ControlConn::accept(stream).await else {
            panic!("four descriptors accepted");
        };
        assert!(matches!(frame_error(&e), Some(FrameError::TooManyFds)));
    }

    #[tokio::test]
    async fn later_lines_that_are_not_requests_are_skipped() {
        let mut bytes = encode(&ControlRequest::Wait).unwrap();
        bytes.extend_from_slice(b"nonsense\n");
        bytes.extend(encode(&ControlRequest::Signal { signal: 2 }).unwrap());
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        send_with_fds(&a, &bytes, &[]).unwrap();
        drop(a);
        b.set_nonblocking(true).unwrap();
        let (mut conn, first, _) = ControlConn::accept(UnixStream::from_std(b).unwrap())
            .await
            .unwrap();
        assert!(matches!(first, ControlRequest::Wait));
        assert!(matches!(
            conn.next().await,
            Some(ControlRequest::Signal { signal: 2 })
        ));
        assert!(conn.next().await.is_none());
    }
}
