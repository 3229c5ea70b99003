//! `hull exec`: a process started in the running container, with the
//! client's stdio passed to the supervisor. The connection is the
//! process's conversation: signals and terminal sizes come on it, and it
//! is answered with `Started`, then `Exited`.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use hull_protocol::{ErrorKind, ExecProcess, ExitStatus, Reply, Request, Stdio};
use thiserror::Error;
use tokio::sync::oneshot;

use super::control::{ControlConn, ControlReply, ControlRequest, ExecRequest};
use super::io::{self, Sink};
use super::shared::{lock, Shared};
use hull_sandbox::agent_client::{AgentClient, InputStream, RequestError};

/// Stream ids of exec'd processes start here, three per process.
const FIRST_EXEC_STREAM: u32 = 16;

/// Why an exec did not start; the reply's message is the error's.
#[derive(Debug, Error)]
pub(super) enum ExecError {
    #[error("the container is not running")]
    NotRunning,
    #[error("exec needs stdout and stderr descriptors")]
    NoStdio,
    #[error("exec needs a command")]
    NoCommand,
    #[error("the working directory {0:?} is not absolute")]
    RelativeWorkdir(String),
    #[error(transparent)]
    Start(RequestError),
}

impl ExecError {
    /// The exit status the client reports: 126/127 as a shell does.
    fn code(&self) -> i32 {
        match self {
            Self::Start(RequestError::Agent(err)) => match err.kind {
                ErrorKind::CommandNotFound => 127,
                ErrorKind::CommandNotExecutable => 126,
                _ => 125,
            },
            _ => 125,
        }
    }

    fn reply(&self) -> ControlReply {
        ControlReply::Error {
            message: self.to_string(),
            code: self.code(),
        }
    }
}

/// The stdio of one exec'd process.
struct ExecStdio {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl ExecStdio {
    /// The passed descriptors: stdin first when `stdin`, then stdout and
    /// stderr.
    fn take(fds: Vec<OwnedFd>, stdin: bool) -> Result<Self, ExecError> {
        let mut fds = fds.into_iter();
        let stdin = if stdin { fds.next() } else { None };
        let (Some(stdout), Some(stderr)) = (fds.next(), fds.next()) else {
            return Err(ExecError::NoStdio);
        };
        Ok(Self {
            stdin,
            stdout,
            stderr,
        })
    }
}

/// One exec'd process, started: its agent, id, pid, streams and exit.
struct Running {
    client: Arc<AgentClient>,
    process_id: String,
    pid: u32,
    pumps: Vec<JoinHandle<()>>,
    /// The output streams the pumps read.
    outputs: [u32; 2],
    input: Option<(OwnedFd, Arc<InputStream>)>,
    exit: oneshot::Receiver<ExitStatus>,
}

/// Serves one exec conversation.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    mut conn: ControlConn,
    request: ExecRequest,
    fds: Vec<OwnedFd>,
) {
    let running = match start(shared, &request, fds).await {
        Ok(running) => running,
        Err(e) => {
            let _ = conn.reply(&e.reply()).await;
            return;
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    if let Some((fd, input)) = running.input {
        io::pump_input(shared.handle.clone(), fd, input, cancel.clone(), true);
    }
    let _ = conn
        .reply(&ControlReply::Started { pid: running.pid })
        .await;
    let (client, id) = (running.client, running.process_id);
    let status = converse(&client, &mut conn, &id, request.owned, running.exit).await;
    cancel.store(true, Ordering::Relaxed);
    // The agent closes a process's output before it reports the exit; if
    // it did not, the host reads no more of it, so the pumps end.
    for stream in running.outputs {
        client.close_output(stream);
    }
    drop(client);
    io::join(running.pumps).await;
    let _ = conn.reply(&exited(status)).await;
}

/// Starts the process with the passed stdio and its output pumps.
async fn start(
    shared: &Shared,
    request: &ExecRequest,
    fds: Vec<OwnedFd>,
) -> Result<Running, ExecError> {
    let client = shared.agent().ok_or(ExecError::NotRunning)?;
    let stdio = ExecStdio::take(fds, request.stdin)?;
    let process = exec_process(&shared.container.config.spec, request)?;
    let n = shared.next_exec.fetch_add(1, Ordering::Relaxed);
    let process_id = format!("exec-{n}");
    let base = FIRST_EXEC_STREAM + 3 * n;
    let (out_id, err_id, in_id) = (base, base + 1, base + 2);
    let (exit_tx, exit) = oneshot::channel();
    lock(&shared.exec_exits).insert(process_id.clone(), exit_tx);
    let pumps = pump_output(
        shared,
        &client,
        [(out_id, stdio.stdout), (err_id, stdio.stderr)],
    );
    let input = stdio
        .stdin
        .map(|fd| (fd, Arc::new(client.open_input(in_id))));
    let exec = ExecProcess {
        container_id: shared.container.config.agent_id().to_string(),
        process_id: process_id.clone(),
        process,
        user: (request.user.clone()).unwrap_or_else(|| shared.container.config.user.clone()),
        stdio: Stdio {
            stdin: input.as_ref().map(|_| in_id),
            stdout: out_id,
            stderr: err_id,
        },
    };
    let pid = match client.request(Request::ExecProcess(Box::new(exec))).await {
        Ok(Reply::Started { pid, .. }) => pid,
        Ok(_) => 0,
        Err(e) => {
            lock(&shared.exec_exits).remove(&process_id);
            // Nothing will come on the streams: end the pumps.
            client.close_output(out_id);
            client.close_output(err_id);
            io::join(pumps).await;
            return Err(ExecError::Start(e));
        }
    };
    Ok(Running {
        client,
        process_id,
        pid,
        pumps,
        outputs: [out_id, err_id],
        input,
        exit,
    })
}

/// Pumps each agent output stream into its descriptor (not the log).
fn pump_output(
    shared: &Shared,
    client: &AgentClient,
    streams: [(u32, OwnedFd); 2],
) -> Vec<JoinHandle<()>> {
    streams
        .into_iter()
        .map(|(id, fd)| {
            let sink = Sink::default();
            sink.attach(fd);
            io::pump_output(shared.handle.clone(), client.open_output(id), None, sink)
        })
        .collect()
}

/// Passes the client's signals and sizes on until the process exits;
/// kills an `owned` process when the client leaves. `None` when the
/// container stopped first.
async fn converse(
    client: &AgentClient,
    conn: &mut ControlConn,
    process_id: &str,
    owned: bool,
    mut exit: oneshot::Receiver<ExitStatus>,
) -> Option<ExitStatus> {
    let mut client_gone = false;
    let process = || process_id.to_string();
    loop {
        tokio::select! {
            status = &mut exit => return status.ok(),
            request = conn.next(), if !client_gone => match request {
                Some(ControlRequest::Signal { signal }) => {
                    client.notify(Request::Signal { process: process(), signal });
                }
                Some(ControlRequest::Resize { rows, cols }) => {
                    client.notify(Request::ResizeTerminal { process: process(), rows, cols });
                }
                Some(_) => {}
                None => {
                    client_gone = true;
                    if owned {
                        client.notify(Request::Signal { process: process(), signal: libc::SIGKILL });
                    }
                }
            },
        }
    }
}

/// The last reply: the process's exit, or the container's end.
fn exited(status: Option<ExitStatus>) -> ControlReply {
    match status {
        Some(status) => ControlReply::Exited {
            exit_code: status.shell_code(),
            oom_killed: false,
            error: None,
        },
        None => ControlReply::Exited {
            exit_code: 137,
            oom_killed: false,
            error: Some("the container stopped".into()),
        },
    }
}

/// The exec'd process: the container's process with the request's
/// command, environment, directory and terminal.
fn exec_process(
    spec: &oci_spec::runtime::Spec,
    request: &ExecRequest,
) -> Result<oci_spec::runtime::Process, ExecError> {
    if request.args.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let mut process = match &request.process {
        Some(given) => (**given).clone(),
        None => spec.process().clone().unwrap_or_default(),
    };
    process.set_args(Some(request.args.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for entry in &request.env {
        let key = entry.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(dir) = &request.workdir {
        if !dir.starts_with('/') {
            return Err(ExecError::RelativeWorkdir(dir.clone()));
        }
        process.set_cwd(dir.into());
    }
    process.set_terminal(Some(request.tty));
    process.set_console_size(request.size.and_then(|(rows, cols)| {
        oci_spec::runtime::BoxBuilder::default()
            .height(u64::from(rows))
            .width(u64::from(cols))
            .build()
            .ok()
    }));
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_keeps_the_containers_process_and_overrides_what_was_asked() {
        let spec = oci_spec::runtime::Spec::default();
        let request = ExecRequest {
            process: None,
            owned: false,
            args: vec!["sh".into()],
            env: vec!["PATH=/x".into(), "A=1".into()],
            workdir: Some("/tmp".into()),
            user: None,
            tty: true,
            stdin: false,
            size: Some((24, 80)),
        };
        let p = exec_process(&spec, &request).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["sh"]);
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"PATH=/x".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.console_size().unwrap().height(), 24);
        assert!(exec_process(
            &spec,
            &ExecRequest {
                process: None,
                args: vec![],
                ..request.clone()
            }
        )
        .is_err());
        assert!(exec_process(
            &spec,
            &ExecRequest {
                process: None,
                workdir: Some("rel".into()),
                ..request
            }
        )
        .is_err());
    }
}
