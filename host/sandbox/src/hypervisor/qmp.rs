//! A minimal client of QEMU's machine protocol (QMP): JSON lines on the
//! VM's `qmp.sock`. QEMU serves one client at a time, so whoever holds a
//! connection has the VM's device model to itself until it lets go.
//!
//! QEMU is treated as hostile too (a guest that broke out of its device
//! model is QEMU): a reply line is read up to [`MAX_LINE`] bytes only.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Name of the QMP socket in a QEMU VM's sandbox directory.
pub const QMP_SOCKET: &str = "qmp.sock";

/// How long one command (or the greeting) may take. A VM busy with other
/// clients holds the greeting back until they are done.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest message read from QEMU; its answers to us are small.
const MAX_LINE: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum QmpError {
    #[error("connect to {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("open {path} for the VM")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP: no answer within {0:?}")]
    Timeout(Duration),
    #[error("QMP: the VM closed the connection")]
    Closed,
    #[error("QMP: unreadable message: {0}")]
    Protocol(String),
    #[error("{command}: {message}")]
    Command { command: String, message: String },
}

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connects to the VM whose sandbox directory is `vm_dir` and leaves
    /// the greeting's capability negotiation behind.
    pub async fn connect(vm_dir: &Path) -> Result<Self, QmpError> {
        let path = vm_dir.join(QMP_SOCKET);
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (reader, writer) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(reader),
            writer,
        };
        let greeting = qmp.next_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Runs `command`; its `return` value, or its `error` as an error.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let mut line = json!({ "execute": command, "arguments": arguments }).to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await?;
        self.answer(command).await
    }

    /// Hands `fd` to QEMU under the name `name` (`getfd`): what a
    /// sandboxed QEMU, which may not open or spawn what a URI names, is
    /// given to write or read instead.
    pub async fn send_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        self.execute_with_fd("getfd", json!({ "fdname": name }), fd)
            .await
            .map(|_| ())
    }

    /// Adds `fd` to a new fd set (`add-fd`) tagged `opaque`; returns the
    /// set's id. QEMU opens `/dev/fdset/ID` as if it were a path: how a
    /// jailed QEMU, which sees no host path, gets a hot-added disk.
    pub async fn add_fd(&mut self, opaque: &str, fd: BorrowedFd<'_>) -> Result<u64, QmpError> {
        let answer = self
            .execute_with_fd("add-fd", json!({ "opaque": opaque }), fd)
            .await?;
        answer
            .get("fdset-id")
            .and_then(Value::as_u64)
            .ok_or_else(|| QmpError::Protocol(format!("add-fd answered {answer}")))
    }

    /// Removes the fd sets tagged `opaque` (best effort): their
    /// descriptors close once nothing in QEMU uses them.
    pub async fn remove_fds(&mut self, opaque: &str) {
        let Ok(sets) = self.execute("query-fdsets", json!({})).await else {
            return;
        };
        let ids = sets.as_array().into_iter().flatten().filter_map(|set| {
            let tagged = set["fds"]
                .as_array()?
                .iter()
                .any(|fd| fd["opaque"].as_str() == Some(opaque));
            tagged.then(|| set["fdset-id"].as_u64()).flatten()
        });
        for id in ids.collect::<Vec<_>>() {
            let _ = self.execute("remove-fd", json!({ "fdset-id": id })).await;
        }
    }

    /// Runs `command` with `fd` passed along (SCM_RIGHTS on its line).
    async fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Value,
        fd: BorrowedFd<'_>,
    ) -> Result<Value, QmpError> {
        let mut line = json!({ "execute": command, "arguments": arguments }).to_string();
        line.push('\n');
        let socket: &UnixStream = self.writer.as_ref();
        loop {
            socket.writable().await?;
            match socket.try_io(tokio::io::Interest::WRITABLE, || {
                send_with_fd(socket.as_raw_fd(), line.as_bytes(), fd.as_raw_fd())
            }) {
                Ok(sent) if sent == line.len() => break,
                // The descriptor went with the first bytes; QEMU would
                // wait for the rest of the line forever.
                Ok(_) => return Err(QmpError::Protocol(format!("{command}: short write"))),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.answer(command).await
    }

    async fn answer(&mut self, command: &str) -> Result<Value, QmpError> {
        loop {
            let message = self.next_message().await?;
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let message = error
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("failed")
                    .to_string();
                return Err(QmpError::Command {
                    command: command.to_string(),
                    message,
                });
            }
            // Anything else is an asynchronous event: not our answer.
        }
    }

    async fn next_message(&mut self) -> Result<Value, QmpError> {
        let mut line = Vec::new();
        let mut limited = (&mut self.reader).take(MAX_LINE);
        let read = tokio::time::timeout(COMMAND_TIMEOUT, limited.read_until(b'\n', &mut line))
            .await
            .map_err(|_| QmpError::Timeout(COMMAND_TIMEOUT))??;
        if read == 0 {
            return Err(QmpError::Closed);
        }
        if !line.ends_with(b"\n") {
            return Err(QmpError::Protocol(format!(
                "a message over {MAX_LINE} bytes"
            )));
        }
        serde_json::from_slice(&line)
            .map_err(|_| QmpError::Protocol(String::from_utf8_lossy(&line).trim().to_string()))
    }
}

/// One `sendmsg` of `data` with `fd` as SCM_RIGHTS.
fn send_with_fd(socket: i32, data: &[u8], fd: i32) -> std::io::Result<usize> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one; its pointers are
    // set below to buffers that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer is CMSG_SPACE(one int) long, so the first
    // header and its data fit in it.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header) as *mut i32, fd);
    }
    // SAFETY: a connected socket we own and a message whose buffers live
    // across the call.
    let sent = unsafe { libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sent as usize)
}
