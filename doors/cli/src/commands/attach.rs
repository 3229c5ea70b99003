//! Attaching a `hull` command's stdio to a container's main process: the
//! descriptors go to the supervisor, signals and terminal size follow.

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{anyhow, Result};
use tokio::signal::unix::{signal, SignalKind};

use hull_container::record::{Container, Status};
use hull_container::supervisor::control::{ControlClient, ControlReply, ControlRequest};

/// How an attached container ended.
pub struct Ended {
    pub exit_code: i32,
    pub oom_killed: bool,
    pub error: Option<String>,
}

impl Ended {
    /// Prints what `docker run` prints and returns the exit status.
    pub fn report(&self) -> i32 {
        if let Some(error) = &self.error {
            eprintln!("hull: {error}");
        }
        if self.oom_killed {
            eprintln!("hull: the container was killed by its memory limit (OOM)");
        }
        self.exit_code
    }
}

/// The signals `docker run` forwards to the container.
const FORWARDED: [fn() -> SignalKind; 6] = [
    SignalKind::interrupt,
    SignalKind::terminate,
    SignalKind::hangup,
    SignalKind::quit,
    SignalKind::user_defined1,
    SignalKind::user_defined2,
];

/// Attaches our stdio and waits for the main process to end.
pub async fn attach_and_wait(container: &Container, stdin: bool, tty: bool) -> Result<Ended> {
    let (input, out, err) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    if stdin {
        fds.push(input.as_fd());
    }
    fds.push(out.as_fd());
    fds.push(err.as_fd());
    let mut client = ControlClient::connect(
        &container.socket_path(),
        &ControlRequest::Attach { stdin },
        &fds,
    )
    .await
    .map_err(|e| anyhow!("attach to the container: {e}"))?;
    // Raw mode only while the container owns the terminal.
    let _raw_mode = (tty && stdin)
        .then(crate::terminal::RawMode::enable)
        .flatten();
    if tty {
        let (rows, cols) = crate::terminal::size();
        let _ = client.send(&ControlRequest::Resize { rows, cols }).await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut forwarders = Vec::new();
    for kind in FORWARDED {
        let kind = kind();
        if let Ok(mut stream) = signal(kind) {
            let tx = tx.clone();
            forwarders.push(tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    let _ = tx.send(ControlRequest::Signal {
                        signal: kind.as_raw_value(),
                    });
                }
            }));
        }
    }
    if tty {
        if let Ok(mut winch) = signal(SignalKind::window_change()) {
            let tx = tx.clone();
            forwarders.push(tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    let (rows, cols) = crate::terminal::size();
                    let _ = tx.send(ControlRequest::Resize { rows, cols });
                }
            }));
        }
    }
    let ended = loop {
        tokio::select! {
            reply = client.reply() => break reply,
            Some(request) = rx.recv() => {
                let _ = client.send(&request).await;
            }
        }
    };
    for f in forwarders {
        f.abort();
    }
    match ended {
        Ok(ControlReply::Exited {
            exit_code,
            oom_killed,
            error,
        }) => Ok(Ended {
            exit_code,
            oom_killed,
            error,
        }),
        Ok(ControlReply::Error { message, code }) => Ok(Ended {
            exit_code: code,
            oom_killed: false,
            error: Some(message),
        }),
        Ok(other) => Err(anyhow!("unexpected supervisor reply {other:?}")),
        // A start that failed at once (its network, say) can end the
        // supervisor before it heard us: its record says why.
        Err(e) => recorded_failure(container)
            .ok_or_else(|| anyhow!("lost the container's supervisor: {e}")),
    }
}

/// The end a supervisor recorded, if it recorded a failure.
fn recorded_failure(container: &Container) -> Option<Ended> {
    let state = container.state();
    if state.status() != Status::Exited {
        return None;
    }
    let error = state.error?;
    Some(Ended {
        exit_code: state.exit_code.unwrap_or(125),
        oom_killed: state.oom_killed,
        error: Some(error),
    })
}
