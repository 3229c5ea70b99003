//! A minimal client of QEMU's machine protocol (QMP): JSON lines on the
//! VM's `qmp.sock`. QEMU serves one client at a time, so whoever holds a
//! connection has the VM's device model to itself until it lets go.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Name of the QMP socket in a QEMU VM's sandbox directory.
pub const QMP_SOCKET: &str = "qmp.sock";

/// How long one command (or the greeting) may take. A VM busy with other
/// clients holds the greeting back until they are done.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum QmpError {
    #[error("connect to {path}: {source}")]
    Connect {
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
        let mut line = String::new();
        let read = tokio::time::timeout(COMMAND_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| QmpError::Timeout(COMMAND_TIMEOUT))??;
        if read == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Protocol(line.trim().to_string()))
    }
}
