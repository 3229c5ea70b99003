//! The supervisor: one small process per started container, in the role
//! conmon plays for podman. It owns the hypervisor process and the agent
//! connection, writes the container's output to its log, serves the
//! control socket (attach, signals, stop, exec, wait, and agent requests
//! relayed as they are), records the exit in the container's state and
//! outlives the `hull` command that started it. One supervisor serves one
//! boot: `hull start` spawns a new one on the same record.
//!
//! This module runs the parts in order: claim the container, listen,
//! boot ([`boot`]), and say goodbye. The control server is `server.rs`;
//! its conversations are `attach.rs` and `exec.rs`, its relay to the agent
//! `relay.rs`, `stop` is `stop.rs`.

mod agent;
mod attach;
mod boot;
mod checkpoint;
pub mod control;
mod exec;
mod export;
mod io;
pub mod launch;
mod network;
pub mod pooled;
mod relay;
pub mod runc;
mod server;
mod shared;
mod stop;
mod templates;
#[cfg(test)]
mod test_utils;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::record::{now_nanos, Container, Containers, ProcessRef, Status};
use boot::BootError;
use control::ControlReply;
use shared::Shared;

pub use boot::ROOTFS_SERIAL;

/// How long connections get to send their last reply before the
/// supervisor exits.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(5);

/// How one boot of the container ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Set when the container did not end by its main process exiting.
    pub error: Option<String>,
    /// Whether the main process ever started.
    pub started: bool,
}

impl Outcome {
    fn failed(exit_code: i32, error: String, started: bool) -> Self {
        Self {
            exit_code,
            oom_killed: false,
            error: Some(error),
            started,
        }
    }

    fn reply(&self) -> ControlReply {
        ControlReply::Exited {
            exit_code: self.exit_code,
            oom_killed: self.oom_killed,
            error: self.error.clone(),
        }
    }
}

/// How a supervisor was asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// Start the main process only once a client attached (or after a
    /// timeout), so an attached `run` misses no output.
    pub wait_attach: bool,
    /// runc mode (`hull-runc create`): the supervisor's own stdin, stdout
    /// and stderr, as the caller passed them, are the container's; the
    /// main process starts on a `Start` request; and the supervisor exits
    /// with the container's exit code, since the caller waits on its pid.
    pub runc: bool,
}

impl Mode {
    /// The supervisor's exit status when it could not boot at all.
    fn failure(self) -> i32 {
        if self.runc {
            125
        } else {
            1
        }
    }
}

/// Runs one boot of `container` to its end; returns the supervisor's exit
/// status (the container's in runc mode).
pub async fn supervise(
    root: &Path,
    containers: &Containers,
    container: Container,
    mode: Mode,
) -> i32 {
    supervise_with(root, containers, container, mode, None).await
}

/// As [`supervise`], with the VM a pooled clone when `pooled` is given.
async fn supervise_with(
    root: &Path,
    containers: &Containers,
    container: Container,
    mode: Mode,
    pooled: Option<pooled::Pooled>,
) -> i32 {
    // In runc mode the caller's stdio becomes the container's before
    // anything else can write to it.
    let runc_stdio = match mode.runc.then(|| runc::take_stdio(&container)).transpose() {
        Ok(stdio) => stdio,
        Err(e) => {
            tracing::error!("take over the caller's stdio: {e}");
            return 125;
        }
    };
    if !claim(&container) {
        tracing::error!("the container already has a supervisor");
        return 125;
    }
    let socket = container.socket_path();
    let listener = match server::listen(&socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("listen on {}: {e}", socket.display());
            record_exit(&container, &BootError::Socket(e).outcome(false));
            return mode.failure();
        }
    };
    clear_last_exit(&container);
    let shared = Arc::new(Shared::new(
        container.clone(),
        tokio::runtime::Handle::current(),
    ));
    if let Some(stdio) = runc_stdio {
        runc::attach_stdio(&shared, stdio);
    }
    let acceptor = tokio::spawn(server::accept_loop(listener, shared.clone()));
    let host = match boot::host_vm(containers, &container) {
        Ok(host) => host,
        Err(e) => {
            record_exit(&container, &e.outcome(false));
            hang_up(&socket, acceptor);
            return mode.failure();
        }
    };
    let networks = hull_net::Networks::new(root, containers.run_dir());
    let outcome = boot::run(&shared, networks, mode, host.as_ref(), pooled).await;
    let exit_code = outcome.exit_code;
    finish(&shared, root, containers, outcome).await;
    hang_up(&socket, acceptor);
    if mode.runc {
        exit_code
    } else {
        0
    }
}

/// Makes this process the container's supervisor, unless another live one
/// is: two `hull start`s racing must not boot two VMs on one writable
/// layer.
fn claim(container: &Container) -> bool {
    let me = ProcessRef::of_self();
    let claimed = container.update(|s| match s.supervisor {
        Some(other) if other != me && other.is_alive() => false,
        _ => {
            s.supervisor = Some(me);
            // Booting: no longer the exited container of a past boot.
            s.status = Some(Status::Created);
            true
        }
    });
    matches!(claimed, Ok(true))
}

fn clear_last_exit(container: &Container) {
    let _ = container.update(|s| {
        s.error = None;
        s.exit_code = None;
        s.oom_killed = false;
        s.finished_at = None;
    });
}

/// Records the boot's end, tells the waiters, and gives the connections a
/// moment for their last replies.
async fn finish(shared: &Shared, root: &Path, containers: &Containers, outcome: Outcome) {
    if shared.started.borrow().is_none() {
        shared.started.send_replace(Some(0));
    }
    hull_sandbox::timings::mark("vm_gone");
    record_exit(&shared.container, &outcome);
    if shared.container.config.auto_remove {
        containers.remove(&shared.container);
        // `--rm` takes the anonymous volumes with it, as Docker's does.
        crate::volume::remove_anonymous(root, containers, &shared.container.config);
    }
    hull_sandbox::timings::mark("cleaned_up");
    shared.outcome.send_replace(Some(outcome));
    // Let attached clients and waiters get their answer.
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        while shared.connections.load(Ordering::SeqCst) > 0 {
            shared.connections_done.notified().await;
        }
    })
    .await;
}

fn hang_up(socket: &Path, acceptor: JoinHandle<()>) {
    acceptor.abort();
    let _ = std::fs::remove_file(socket);
}

fn record_exit(container: &Container, outcome: &Outcome) {
    let _ = container.update(|s| {
        s.status = Some(Status::Exited);
        s.exit_code = Some(outcome.exit_code);
        s.oom_killed = outcome.oom_killed;
        s.error = outcome.error.clone();
        s.finished_at = Some(now_nanos());
        s.pid = None;
        s.vm_pid = None;
        s.ip_address = None;
        s.paused = false;
    });
}

/// "error: cause: cause" on one line.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}
