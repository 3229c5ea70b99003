//! Hijacked streams (`attach`, `exec start`): the client asks to upgrade
//! (`Connection: Upgrade`, `Upgrade: tcp`), gets 101, and the connection
//! then carries the process's stdio. Without a TTY the output is framed as
//! Docker frames it (8 bytes: stream, three zeros, big-endian length);
//! with one it is raw. The supervisor gets pipes (its control socket takes
//! descriptors), and this module moves bytes between them and the client.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hull_container::supervisor::control::{ControlClient, ControlReply, ControlRequest};
use hyper::header::{CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::http::{full, Request, Response};

/// Docker's stream numbers in a frame's first byte.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// How long the output may take to end once the process has.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the client asked for the connection to be hijacked.
pub fn wants_upgrade(req: &Request) -> bool {
    let has = |name, value: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(value))
            })
    };
    has(CONNECTION, "upgrade") && has(UPGRADE, "tcp")
}

/// The 101 answer that hands the connection over.
pub fn switching(tty: bool) -> Response {
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    hyper::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "tcp")
        .header(CONTENT_TYPE, content_type)
        .body(full(Bytes::new()))
        .expect("a static response")
}

/// One Docker frame of `stream`.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + data.len());
    out.put_slice(&[stream, 0, 0, 0]);
    out.put_u32(data.len() as u32);
    out.put_slice(data);
    out.freeze()
}

/// The pipes of one hijacked process: the supervisor's ends (stdin
/// first when asked for, then stdout and stderr) and ours.
pub struct Pipes {
    pub theirs: Vec<OwnedFd>,
    stdin: Option<pipe::Sender>,
    stdout: pipe::Receiver,
    stderr: Option<pipe::Receiver>,
    tty: bool,
}

impl Pipes {
    pub fn new(stdin: bool, tty: bool) -> io::Result<Self> {
        let mut theirs = Vec::new();
        let ours_in = if stdin {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            theirs.push(read);
            Some(pipe::Sender::from_owned_fd(write)?)
        } else {
            None
        };
        let (out_read, out_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let stderr = if tty {
            // One terminal: both descriptors are the same pipe.
            theirs.push(out_write.try_clone()?);
            theirs.push(out_write);
            None
        } else {
            let (err_read, err_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            theirs.push(out_write);
            theirs.push(err_write);
            Some(pipe::Receiver::from_owned_fd(err_read)?)
        };
        Ok(Self {
            theirs,
            stdin: ours_in,
            stdout: pipe::Receiver::from_owned_fd(out_read)?,
            stderr,
            tty,
        })
    }
}

/// What the relay reports about the conversation's replies.
pub trait Replies: Send {
    /// Called for each reply; true when it is the last one.
    fn reply(&mut self, reply: &ControlReply) -> bool;
}

/// What a client sent before the process could take it: its first
/// stdin bytes, and whether its stdin already ended.
#[derive(Debug, Default)]
pub struct EarlyInput {
    pub bytes: Vec<u8>,
    pub ended: bool,
}

/// Relays between the upgraded connection and the process until the
/// supervisor's last reply and the end of the output. `requests` are sent
/// on the conversation (an exec's resizes); `early` is stdin read before.
/// A client that goes away ends the relay; the process runs on, as
/// Docker's does.
pub async fn relay(
    io: TokioIo<hyper::upgrade::Upgraded>,
    mut client: ControlClient,
    mut pipes: Pipes,
    mut requests: Option<mpsc::Receiver<ControlRequest>>,
    replies: &mut dyn Replies,
    early: EarlyInput,
) {
    let (mut from_client, mut to_client) = tokio::io::split(io);
    let stdin_task = pipes.stdin.take().map(|mut sink| {
        tokio::spawn(async move {
            if sink.write_all(&early.bytes).await.is_err() || early.ended {
                return;
            }
            let _ = tokio::io::copy(&mut from_client, &mut sink).await;
            // Dropping `sink` closes the process's stdin.
        })
    });
    let tty = pipes.tty;
    let mut out_open = true;
    let mut err_open = pipes.stderr.is_some();
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut err_buf = vec![0u8; 32 * 1024];
    let mut finished = false;
    let mut drain_deadline = None;
    loop {
        if !out_open && !err_open && finished {
            break;
        }
        let drained = async {
            match drain_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = pipes.stdout.read(&mut out_buf), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    let chunk = if tty { Bytes::copy_from_slice(&out_buf[..n]) } else { frame(STDOUT, &out_buf[..n]) };
                    if to_client.write_all(&chunk).await.is_err() { break; }
                }
            },
            n = async { pipes.stderr.as_mut().expect("open stderr").read(&mut err_buf).await }, if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    if to_client.write_all(&frame(STDERR, &err_buf[..n])).await.is_err() { break; }
                }
            },
            reply = client.reply(), if !finished => {
                let reply = reply.unwrap_or_else(|e| ControlReply::Error {
                    message: format!("lost the container's supervisor: {e}"),
                    code: 125,
                });
                if replies.reply(&reply) {
                    finished = true;
                    if let ControlReply::Error { message, .. } = &reply {
                        let line = format!("{message}\n");
                        let chunk = if tty { Bytes::from(line) } else { frame(STDERR, line.as_bytes()) };
                        let _ = to_client.write_all(&chunk).await;
                    }
                    drain_deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
            },
            Some(request) = async { match requests.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } }, if !finished => {
                let _ = client.send(&request).await;
            },
            () = drained => break,
        }
    }
    drop(client);
    let _ = to_client.shutdown().await;
    if let Some(task) = stdin_task {
        task.abort();
    }
}

/// Writes `message` as the process's stderr and ends the stream.
pub async fn tell_and_close(upgraded: hyper::upgrade::Upgraded, tty: bool, message: &str) {
    let mut io = TokioIo::new(upgraded);
    if !message.is_empty() {
        let line = format!("{message}\n");
        let chunk = if tty {
            Bytes::from(line)
        } else {
            frame(STDERR, line.as_bytes())
        };
        let _ = io.write_all(&chunk).await;
    }
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_dockers_header() {
        let f = frame(STDERR, b"hi\n");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
    }
}
