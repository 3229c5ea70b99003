//! A sandbox: one microVM with its agent, holding one container.
//!
//! The lifecycle verbs live one per file as `impl Sandbox` blocks:
//! [`create`] boots the VM and greets the agent, [`start`] runs the
//! container's main process attached to our stdio, [`delete`] shuts the VM
//! down and removes every host-side trace.

mod create;
mod delete;
pub mod scratch;
mod start;
pub mod vm;

use std::path::{Path, PathBuf};

use hull_protocol::{AgentError, Event};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::agent_client::{AgentClient, ClientError, RequestError};
use crate::hypervisor::HypervisorError;
use vm::VmProcess;

pub use create::SandboxConfig;
pub use start::{ContainerSpec, Exit};

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    #[error("the VM stopped before its agent started ({0})")]
    BootFailed(String),
    #[error("the guest agent did not come up within {0:?}")]
    BootTimeout(std::time::Duration),
    #[error("guest agent")]
    Agent(#[source] ClientError),
    #[error("{0}")]
    Start(AgentError),
    #[error("the VM died while the container ran ({0})")]
    VmDied(String),
    #[error("guest agent request")]
    Request(#[source] RequestError),
}

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

pub struct Sandbox {
    pub id: String,
    dir: PathBuf,
    console_log: PathBuf,
    /// The writable layer's directory under the hull root.
    scratch_dir: Option<PathBuf>,
    vm: Option<VmProcess>,
    client: Option<std::sync::Arc<AgentClient>>,
    events: Option<mpsc::UnboundedReceiver<Event>>,
}

impl Sandbox {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why the VM went away, from what it left behind: a kernel panic line
    /// on the console, else the hypervisor's last error, else its status.
    fn death_reason(&self, status: Option<std::process::ExitStatus>) -> String {
        let panic = vm::last_line(&self.console_log, |l| {
            l.contains("Kernel panic") || l.contains("hull-agent:")
        });
        if let Some(line) = panic {
            return strip_timestamp(&line);
        }
        if let Some(line) = self.vm.as_ref().and_then(VmProcess::last_error_line) {
            return line;
        }
        match status {
            Some(status) => format!("hypervisor exited with {status}"),
            None => "no diagnostics".to_string(),
        }
    }
}

fn strip_timestamp(line: &str) -> String {
    match line.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((_, rest)) => rest.trim().to_string(),
        None => line.to_string(),
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Normal paths went through `delete`; this is for errors and panics.
        if let Some(vm) = &mut self.vm {
            vm.kill_now();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(scratch) = &self.scratch_dir {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// File in a sandbox directory naming the `hull` process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Removes sandbox directories whose owning `hull` process is gone (it was
/// killed with SIGKILL; its VM died with it through the parent-death
/// signal), with their writable layers under `root`, and writable layers
/// whose sandbox is gone. Returns how many sandboxes were removed.
pub fn sweep_stale(run_dir: &Path, root: &Path) -> usize {
    let mut removed = 0;
    let mut live = std::collections::HashSet::new();
    for entry in std::fs::read_dir(run_dir).into_iter().flatten().flatten() {
        let dir = entry.path();
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        // No owner file: still being created, or not ours; leave it.
        let alive = owner.is_none_or(process_exists);
        if alive {
            live.insert(entry.file_name());
        } else if std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    // A writable layer is made after its run dir, so one without a run dir
    // belongs to a sandbox that is gone.
    for entry in std::fs::read_dir(scratch::sandboxes_dir(root))
        .into_iter()
        .flatten()
        .flatten()
    {
        if !live.contains(&entry.file_name()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    removed
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A fresh random container id: 64 hex digits, like Docker's.
pub fn new_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn console_timestamps_are_dropped() {
        assert_eq!(
            strip_timestamp("[    1.234] Kernel panic - not syncing: x"),
            "Kernel panic - not syncing: x"
        );
        assert_eq!(strip_timestamp("plain"), "plain");
    }
}
