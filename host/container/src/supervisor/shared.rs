//! What the control connections and the main task of one supervisor
//! share: the container, its output sinks and stdin, the agent while the
//! main process runs, and the watches its life is told through.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, MutexGuard};

use hull_protocol::{ExitStatus, Request};
use hull_sandbox::agent_client::{AgentClient, InputStream};
use tokio::sync::{oneshot, watch, Notify};

use super::agent::Agent;
use super::io::Sink;
use super::Outcome;
use crate::record::Container;

/// The state of one supervisor; `A` is the agent connection (a fake in
/// tests).
pub(super) struct Shared<A = AgentClient> {
    pub container: Container,
    pub handle: tokio::runtime::Handle,
    pub stdout: Sink,
    pub stderr: Sink,
    /// The main process's stdin, once it runs (with `-i`).
    pub stdin: Mutex<Option<Arc<InputStream>>>,
    /// A stdin that attached before the main process started.
    pub early_stdin: Mutex<Option<(OwnedFd, Arc<AtomicBool>)>>,
    pub attached: Notify,
    /// The agent, while the main process runs.
    pub client: watch::Sender<Option<Arc<A>>>,
    /// The agent of a VM kept after the main process exited, for exports
    /// (`keep_vm_for_export`), until a stop.
    pub kept: watch::Sender<Option<Arc<A>>>,
    /// The main process's guest pid once started; 0 if it failed to.
    pub started: watch::Sender<Option<u32>>,
    /// Set once everything is cleaned up.
    pub outcome: watch::Sender<Option<Outcome>>,
    pub exec_exits: Mutex<HashMap<String, oneshot::Sender<ExitStatus>>>,
    pub next_exec: AtomicU32,
    /// Power the VM off now.
    pub kill_vm: Notify,
    /// Start the main process now (runc mode).
    pub start_gate: Notify,
    /// Checkpoints asked for, for the boot that holds the VM.
    pub checkpoints: Orders,
    /// Open control connections, so the last replies go out before exit.
    pub connections: AtomicU32,
    pub connections_done: Notify,
}

impl<A: Agent> Shared<A> {
    pub fn new(container: Container, handle: tokio::runtime::Handle) -> Self {
        Self {
            container,
            handle,
            stdout: Sink::default(),
            stderr: Sink::default(),
            stdin: Mutex::new(None),
            early_stdin: Mutex::new(None),
            attached: Notify::new(),
            client: watch::Sender::new(None),
            kept: watch::Sender::new(None),
            started: watch::Sender::new(None),
            outcome: watch::Sender::new(None),
            exec_exits: Mutex::new(HashMap::new()),
            next_exec: AtomicU32::new(0),
            kill_vm: Notify::new(),
            start_gate: Notify::new(),
            checkpoints: Orders::default(),
            connections: AtomicU32::new(0),
            connections_done: Notify::new(),
        }
    }

    /// The agent, if the main process runs.
    pub fn agent(&self) -> Option<Arc<A>> {
        self.client.borrow().clone()
    }

    /// The agent to export the changes through: the running container's,
    /// or that of a VM kept after its exit; and whether the container runs.
    pub fn export_agent(&self) -> Option<(Arc<A>, bool)> {
        if let Some(agent) = self.agent() {
            return Some((agent, true));
        }
        self.kept.borrow().clone().map(|agent| (agent, false))
    }

    /// Tells `process`'s terminal its new size, if the container runs.
    pub fn resize(&self, process: &str, rows: u16, cols: u16) {
        if let Some(agent) = self.agent() {
            agent.notify(Request::ResizeTerminal {
                process: process.into(),
                rows,
                cols,
            });
        }
    }

    /// How the boot ended, once it has.
    pub async fn wait_outcome(&self) -> Outcome {
        let mut rx = self.outcome.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(o) => o.clone(),
            Err(_) => None,
        };
        outcome
            .unwrap_or_else(|| Outcome::failed(125, "the supervisor is going away".into(), false))
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One checkpoint asked for.
pub(super) struct CheckpointOrder {
    pub image_path: std::path::PathBuf,
    pub leave_running: bool,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// The orders' way from the control server to the boot: one at a time.
pub(super) struct Orders {
    pub tx: tokio::sync::mpsc::Sender<CheckpointOrder>,
    rx: Mutex<Option<tokio::sync::mpsc::Receiver<CheckpointOrder>>>,
}

impl Default for Orders {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Orders {
    /// The boot's end; `None` after the first call.
    pub fn take(&self) -> Option<tokio::sync::mpsc::Receiver<CheckpointOrder>> {
        lock(&self.rx).take()
    }
}
