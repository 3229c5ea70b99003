//! Starting the container's main process with our stdio attached, and
//! forwarding the signals `docker run` forwards.

use std::sync::Arc;

use hull_protocol::{Event, ExitStatus, ProcessSpec, Reply, Request, RunContainer, Stdio};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use super::{Sandbox, SandboxError};
use crate::agent_client::{AgentClient, Chunk, OutputStream, RequestError};

/// Stream ids of the main process.
const STDOUT: u32 = 1;
const STDERR: u32 = 2;
const STDIN: u32 = 3;

/// The main process's id in requests and events.
pub const MAIN_PROCESS: &str = "init";

/// What to run, before stream ids are assigned.
pub struct MainProcess {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    /// Attach our stdin (`-i`).
    pub interactive: bool,
}

pub struct ContainerSpec {
    pub hostname: String,
    pub disk_serial: String,
    pub fs_type: String,
    pub shutdown_on_exit: bool,
}

impl Sandbox {
    /// Runs the container's main process to completion with our stdio.
    pub async fn run_attached(
        &mut self,
        container: ContainerSpec,
        main: MainProcess,
    ) -> Result<ExitStatus, SandboxError> {
        let client = self.client.clone().expect("a created sandbox has a client");
        let stdout = client.open_output(STDOUT);
        let stderr = client.open_output(STDERR);
        let stdin = main.interactive.then(|| client.open_input(STDIN));
        let request = Request::RunContainer(Box::new(RunContainer {
            container_id: self.id.clone(),
            hostname: container.hostname,
            rootfs: hull_protocol::RootfsSource {
                disk_serial: container.disk_serial,
                fs_type: container.fs_type,
            },
            process: ProcessSpec {
                id: MAIN_PROCESS.into(),
                args: main.args,
                env: main.env,
                cwd: main.cwd,
                user: main.user,
                stdio: Stdio {
                    stdin: stdin.as_ref().map(|_| STDIN),
                    stdout: STDOUT,
                    stderr: STDERR,
                },
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

        let events = self.events.as_mut().expect("a created sandbox has events");
        let status = loop {
            match events.recv().await {
                Some(Event::ProcessExited { process, status }) if process == MAIN_PROCESS => {
                    break Some(status)
                }
                Some(_) => continue,
                None => break None,
            }
        };
        forwarder.abort();
        let Some(status) = status else {
            return Err(self.vm_died(SandboxError::VmDied(String::new())).await);
        };
        // The agent closes the output streams before reporting the exit.
        let _ = out_task.await;
        let _ = err_task.await;
        Ok(status)
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
