//! Starting the container's main process with our stdio attached, and
//! forwarding the signals `docker run` forwards.

use std::sync::Arc;

use hull_protocol::{Event, ExitStatus, Reply, Request, RunContainer, Stdio, MAIN_PROCESS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use super::{Sandbox, SandboxError};
use crate::agent_client::{AgentClient, Chunk, OutputStream, RequestError};

/// Stream ids of the main process.
const STDOUT: u32 = 1;
const STDERR: u32 = 2;
const STDIN: u32 = 3;

/// What to run in the sandbox.
pub struct ContainerSpec {
    /// The OCI runtime spec (its process is the main process).
    pub spec: oci_spec::runtime::Spec,
    /// The image-style user, resolved in the guest.
    pub user: String,
    pub disk_serial: String,
    pub fs_type: String,
    pub shutdown_on_exit: bool,
    /// Attach our stdin (`-i`).
    pub interactive: bool,
    /// The process has a terminal: follow our window size.
    pub tty: bool,
}

/// How the main process ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub status: ExitStatus,
    /// The container's memory limit killed a process.
    pub oom_killed: bool,
}

impl Sandbox {
    /// Runs the container's main process to completion with our stdio.
    pub async fn run_attached(&mut self, container: ContainerSpec) -> Result<Exit, SandboxError> {
        let client = self.client.clone().expect("a created sandbox has a client");
        let stdout = client.open_output(STDOUT);
        let stderr = client.open_output(STDERR);
        let stdin = container.interactive.then(|| client.open_input(STDIN));
        let container_tty = container.tty;
        let request = Request::RunContainer(Box::new(RunContainer {
            container_id: self.id.clone(),
            rootfs: hull_protocol::RootfsSource {
                disk_serial: container.disk_serial,
                fs_type: container.fs_type,
                scratch_serial: self
                    .scratch_dir
                    .as_ref()
                    .map(|_| super::scratch::SCRATCH_SERIAL.to_string()),
            },
            spec: container.spec,
            user: container.user,
            stdio: Stdio {
                stdin: stdin.as_ref().map(|_| STDIN),
                stdout: STDOUT,
                stderr: STDERR,
            },
            shutdown_on_exit: container.shutdown_on_exit,
        }));

        let out_task = tokio::spawn(copy_out(stdout, tokio::io::stdout()));
        let err_task = tokio::spawn(copy_out(stderr, tokio::io::stderr()));
        match client.request(request).await {
            Ok(Reply::Started { .. }) | Ok(Reply::Done) => {}
            Err(RequestError::Agent(err)) => return Err(SandboxError::Start(err)),
            Err(err) => return Err(self.vm_died(SandboxError::Request(err)).await),
        }
        if let Some(input) = stdin {
            tokio::spawn(async move {
                copy_in(tokio::io::stdin(), &input).await;
                input.close();
            });
        }
        let forwarder = tokio::spawn(forward_signals(client.clone()));
        let resizer = container_tty.then(|| tokio::spawn(follow_window_size(client.clone())));

        let events = self.events.as_mut().expect("a created sandbox has events");
        let status = loop {
            match events.recv().await {
                Some(Event::ProcessExited {
                    process,
                    status,
                    oom_killed,
                }) if process == MAIN_PROCESS => break Some(Exit { status, oom_killed }),
                Some(_) => continue,
                None => break None,
            }
        };
        forwarder.abort();
        if let Some(resizer) = resizer {
            resizer.abort();
        }
        let Some(exit) = status else {
            return Err(self.vm_died(SandboxError::VmDied(String::new())).await);
        };
        // The agent closes the output streams before reporting the exit.
        let _ = out_task.await;
        let _ = err_task.await;
        Ok(exit)
    }

    /// Turns a lost connection into the VM's own account of its death.
    async fn vm_died(&mut self, fallback: SandboxError) -> SandboxError {
        let Some(vm) = self.vm.as_mut() else {
            return fallback;
        };
        let status = tokio::time::timeout(std::time::Duration::from_secs(5), vm.wait())
            .await
            .ok()
            .and_then(Result::ok);
        SandboxError::VmDied(self.death_reason(status))
    }
}

/// Copies one output stream to `out`, returning credit as bytes leave. If
/// `out` breaks (a closed pipe) the stream is still drained, so the
/// container never blocks on a reader that is gone.
async fn copy_out(mut stream: OutputStream, mut out: impl AsyncWrite + Unpin) {
    let mut writable = true;
    while let Some(Chunk::Data(bytes)) = stream.next().await {
        if writable {
            writable = out.write_all(&bytes).await.is_ok() && out.flush().await.is_ok();
        }
        stream.consumed(bytes.len());
    }
    let _ = out.flush().await;
}

async fn copy_in(mut input: impl AsyncRead + Unpin, stream: &crate::agent_client::InputStream) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match input.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !stream.send(&buf[..n]).await {
                    return;
                }
            }
        }
    }
}

/// Sends our terminal's new size to the agent on every SIGWINCH.
async fn follow_window_size(client: Arc<AgentClient>) {
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    while winch.recv().await.is_some() {
        let (rows, cols) = crate::terminal::size();
        client.notify(Request::ResizeTerminal {
            process: MAIN_PROCESS.into(),
            rows,
            cols,
        });
    }
}

/// Forwards the signals `docker run` proxies to the main process.
async fn forward_signals(client: Arc<AgentClient>) {
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ];
    let mut streams = Vec::new();
    for kind in kinds {
        if let Ok(stream) = signal(kind) {
            streams.push((kind.as_raw_value(), stream));
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (number, mut stream) in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(number).is_err() {
                    return;
                }
            }
        });
    }
    while let Some(number) = rx.recv().await {
        client.notify(Request::Signal {
            process: MAIN_PROCESS.into(),
            signal: number,
        });
    }
}
