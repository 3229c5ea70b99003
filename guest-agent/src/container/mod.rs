//! One container per VM: its root, its main process, its stdio, its end.

pub mod rootfs;
pub mod user;

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use hull_protocol::{
    AgentError, ControlMessage, ErrorKind, Event, ExitStatus, Reply, RunContainer,
};

use crate::agent::Agent;
use crate::process::{spawn, Launch, SpawnError};
use crate::stdio;
use crate::sys::{self, WaitStatus};

impl From<SpawnError> for AgentError {
    fn from(err: SpawnError) -> Self {
        let kind = match err {
            SpawnError::NotFound(_) => ErrorKind::CommandNotFound,
            SpawnError::NotExecutable(_) => ErrorKind::CommandNotExecutable,
            SpawnError::EmptyCommand | SpawnError::NulByte => ErrorKind::InvalidRequest,
            SpawnError::Chdir { .. } => ErrorKind::InvalidProcess,
            SpawnError::Exec { .. } | SpawnError::Setup { .. } => ErrorKind::Setup,
        };
        AgentError::new(kind, error_chain(&err))
    }
}

/// "outer: inner: innermost", as one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::InvalidRequest, message)
}

fn setup_error(err: &dyn std::error::Error) -> AgentError {
    AgentError::new(ErrorKind::Setup, error_chain(err))
}

/// Creates the container and starts its main process.
pub fn run(agent: &Arc<Agent>, spec: RunContainer) -> Result<Reply, AgentError> {
    let process = &spec.process;
    let stdio = process.stdio;
    let mut ids = vec![stdio.stdout, stdio.stderr];
    ids.extend(stdio.stdin);
    if ids
        .iter()
        .any(|&id| id == hull_protocol::CONTROL_STREAM || agent.streams.contains(id))
    {
        return Err(invalid("stream ids must be non-zero and unused"));
    }
    if ids.len() != ids.iter().collect::<std::collections::HashSet<_>>().len() {
        return Err(invalid("stream ids must be distinct"));
    }
    if process.args.is_empty() {
        return Err(invalid("no command given"));
    }
    agent.claim_container()?;
    debug!("container {}: preparing the root", spec.container_id);

    let rootfs = rootfs::prepare(
        &spec.rootfs.disk_serial,
        &spec.rootfs.fs_type,
        &spec.hostname,
    )
    .map_err(|e| setup_error(&e))?;
    debug!("root ready at {}", rootfs.display());
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let credentials = user::resolve(&process.user, &passwd, &group)
        .map_err(|e| AgentError::new(ErrorKind::InvalidProcess, e.to_string()))?;
    let mut env = process.env.clone();
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        env.push(format!("HOME={}", credentials.home));
    }
    rootfs::ensure_workdir(&rootfs, &process.cwd);

    let pipe = || sys::pipe().map_err(|e| setup_error(&e));
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let (stdin_child, stdin_parent): (OwnedFd, Option<OwnedFd>) = match stdio.stdin {
        Some(_) => {
            let (read, write) = pipe()?;
            (read, Some(write))
        }
        None => (
            File::open("/dev/null").map_err(|e| setup_error(&e))?.into(),
            None,
        ),
    };

    let launch = Launch {
        rootfs,
        hostname: spec.hostname.clone(),
        args: process.args.clone(),
        env,
        cwd: process.cwd.clone(),
        credentials,
        stdin: stdin_child,
        stdout: stdout_write,
        stderr: stderr_write,
    };
    debug!("spawning {:?}", process.args);
    let pid = spawn(launch, &agent.reaper)?;
    debug!("started pid {pid}");
    agent.set_main_process(&process.id, pid);

    let wire = agent.wire.clone();
    let pumps = [
        stdio::pump_output(
            stdout_read.into(),
            stdio.stdout,
            agent.streams.add_output(stdio.stdout),
            wire.clone(),
        ),
        stdio::pump_output(
            stderr_read.into(),
            stdio.stderr,
            agent.streams.add_output(stdio.stderr),
            wire.clone(),
        ),
    ];
    if let (Some(stream), Some(pipe)) = (stdio.stdin, stdin_parent) {
        agent
            .streams
            .add_input(stream, stdio::pump_input(pipe.into(), stream, wire.clone()));
    }

    let agent = agent.clone();
    let process_id = process.id.clone();
    std::thread::spawn(move || {
        let status = match agent.reaper.wait_for(pid) {
            WaitStatus::Exited(code) => ExitStatus::Code(code),
            WaitStatus::Signaled(signal) => ExitStatus::Signal(signal),
        };
        // Output first: the host reports the exit only after all of it.
        for pump in pumps {
            let _ = pump.join();
        }
        agent.streams.remove_output(stdio.stdout);
        agent.streams.remove_output(stdio.stderr);
        if let Some(stream) = stdio.stdin {
            agent.streams.close_input(stream);
        }
        agent.clear_main_process();
        let event = Event::ProcessExited {
            process: process_id,
            status,
        };
        let _ = agent.wire.send_message(&ControlMessage::Event { event });
        if spec.shutdown_on_exit {
            agent.power_off_soon();
        }
    });
    Ok(Reply::Started { pid: pid as u32 })
}
