//! What every front door does to a container that exists: ask its
//! supervisor something, stop it and wait for the supervisor to be gone,
//! remove it. (Starting one is [`crate::supervisor::launch`].)

use std::path::Path;
use std::time::{Duration, Instant};

use hull_sandbox::process::ProcessRef;

use crate::error::Error;
use crate::record::{Container, Containers};
use crate::supervisor::control::{self, ControlReply, ControlRequest};

/// How long a supervisor may take, beyond the grace time, to power its VM
/// off and record the exit before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(30);
/// How long a supervisor may take to tidy up after its container stopped.
const EXIT_PATIENCE: Duration = Duration::from_secs(15);

/// One request to a running container's supervisor; an error reply is an
/// [`Error::Refused`].
pub async fn ask(container: &Container, request: &ControlRequest) -> Result<ControlReply, Error> {
    let not_running = || Error::NotRunning(container.config.name.clone());
    if !container.state().is_running() {
        return Err(not_running());
    }
    match call(container, request).await {
        // It stopped between the check and the call.
        Err(Error::NoAnswer { .. }) if !container.state().is_running() => Err(not_running()),
        other => other,
    }
}

/// One request to a container's supervisor, whatever the container's
/// state; an error reply is an [`Error::Refused`].
pub async fn call(container: &Container, request: &ControlRequest) -> Result<ControlReply, Error> {
    match control::call(&container.socket_path(), request).await {
        Ok(ControlReply::Error { message, code }) => Err(Error::Refused { message, code }),
        Ok(reply) => Ok(reply),
        Err(source) => Err(Error::NoAnswer {
            name: container.config.name.clone(),
            source,
        }),
    }
}

/// Stops a container with `grace` before SIGKILL, and waits until its
/// supervisor is gone. A supervisor that does not answer is killed (its
/// VM dies with it).
pub async fn stop(container: &Container, grace: Duration) {
    let Some(supervisor) = container.live_supervisor() else {
        return;
    };
    let request = ControlRequest::Stop {
        timeout_secs: grace.as_secs(),
    };
    let socket = container.socket_path();
    let asked = control::call(&socket, &request);
    let answered = tokio::time::timeout(grace + STOP_PATIENCE, asked).await;
    if !matches!(answered, Ok(Ok(_))) {
        tracing::warn!(container = %container.config.name, "the supervisor did not answer stop");
        kill(supervisor);
    }
    await_supervisor_exit(container, Some(supervisor), EXIT_PATIENCE).await;
}

/// Kills the container's VM if it outlived its supervisor. A jailed
/// hypervisor changes its uid, which clears the parent-death signal it
/// was started with: it no longer dies with a supervisor that was killed.
/// Only a process whose command line names the container's directory is
/// taken for its VM, never a recycled pid.
async fn kill_orphaned_vm(container: &Container, vm_pid: Option<i32>) {
    use std::os::unix::ffi::OsStrExt;
    let Some(pid) = vm_pid else {
        return;
    };
    let dir = container.dir.as_os_str().as_bytes().to_vec();
    let names_dir = || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| !dir.is_empty() && cmdline.windows(dir.len()).any(|w| w == dir))
    };
    if !names_dir() {
        return;
    }
    tracing::warn!(container = %container.config.name, pid, "killing a VM its supervisor left");
    // SAFETY: kill on a pid whose command line names this container.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Gone, or a zombie (no command line) for whoever reaps it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while names_dir() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for a container's supervisor to finish (it is cleaning up after
/// the container stopped); kills it if it takes longer than `patience`.
/// `supervisor` is taken from the state before anything was asked of it:
/// with `--rm` the record may be gone by now.
pub async fn await_supervisor_exit(
    container: &Container,
    supervisor: Option<ProcessRef>,
    patience: Duration,
) {
    let Some(supervisor) = supervisor else {
        return;
    };
    let vm_pid = container.state().vm_pid;
    let deadline = Instant::now() + patience;
    while supervisor.is_alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if supervisor.is_alive() {
        kill(supervisor);
    }
    kill_orphaned_vm(container, vm_pid).await;
    container.settle();
}

/// Stops the container if its supervisor is alive, waits for that to be
/// gone, and removes everything of it (record, disks, sockets).
pub async fn remove(run_dir: &Path, container: &Container) {
    stop(container, Duration::ZERO).await;
    Containers::new(run_dir).remove(container);
}

fn kill(process: ProcessRef) {
    if process.is_alive() {
        // SAFETY: kill on a pid whose start time says it is this process.
        unsafe { libc::kill(process.pid, libc::SIGKILL) };
    }
}
