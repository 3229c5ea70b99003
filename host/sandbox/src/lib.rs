//! A sandbox: one microVM with its agent, holding one container; or a
//! container that joined another container's VM (a pod), with an agent
//! connection of its own.
//!
//! The lifecycle verbs live one per file as `impl Sandbox` blocks:
//! [`create`] boots the VM and greets the agent, [`start`] starts the
//! container's main process, [`delete`] shuts the VM down and removes the
//! VM's directory. The writable layer belongs to the container record
//! (it outlives the VM for `hull start`).

pub mod agent_client;
pub mod assets;
pub mod capped_log;
mod checkpoint;
mod create;
mod delete;
pub mod hypervisor;
mod join;
mod prepared;
pub mod private;
pub mod process;
pub mod scratch;
pub mod share;
mod start;
pub mod template;
pub mod timings;
pub mod vm;

use std::path::{Path, PathBuf};

use hull_protocol::AgentError;
use thiserror::Error;

use crate::agent_client::{AgentClient, ClientError, RequestError};
use crate::hypervisor::HypervisorError;
use vm::VmProcess;

pub use checkpoint::{CHECKPOINT_ROOTFS, CHECKPOINT_SCRATCH};
pub use create::SandboxConfig;
pub use prepared::PreparedClone;
pub use start::{MAIN_STDERR, MAIN_STDIN, MAIN_STDOUT};

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
    #[error("cannot join the VM: {0}")]
    CannotJoin(String),
    #[error("cannot restore the VM from its template: {0}")]
    Restore(String),
    #[error("cannot add the disks to the VM: {0}")]
    Disks(String),
    #[error("cannot give the VM the host's files: {0}")]
    Shares(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("cannot restore the checkpoint: {0}")]
    RestoreCheckpoint(String),
}

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

pub struct Sandbox {
    pub id: String,
    dir: PathBuf,
    console_log: PathBuf,
    vm: Option<VmProcess>,
    client: Option<std::sync::Arc<AgentClient>>,
    events: Option<agent_client::Events>,
    /// Set when the container runs in another container's VM.
    guest: Option<join::Guest>,
    /// Its bind mounts' and volumes' server, once attached.
    shares: Option<share::ShareServer>,
    /// How the VM can be saved, when it has a template's devices (it was
    /// restored from a template or a checkpoint): a cold-booted VM has
    /// other devices, which no restore could match.
    snapshot: Option<hypervisor::SnapshotMethod>,
}

impl Sandbox {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its directory was renamed to `dir`.
    fn moved_to(&mut self, dir: PathBuf) {
        if let Some(name) = self.console_log.file_name() {
            self.console_log = dir.join(name);
        }
        if let Some(vm) = self.vm.as_mut() {
            vm.moved_to(&dir);
        }
        self.dir = dir;
    }

    pub fn client(&self) -> std::sync::Arc<AgentClient> {
        self.client.clone().expect("a created sandbox has a client")
    }

    /// The agent's events; `None` after the first call.
    pub fn take_events(&mut self) -> Option<agent_client::Events> {
        self.events.take()
    }

    /// The hypervisor's pid.
    pub fn vm_pid(&self) -> Option<u32> {
        self.vm.as_ref().and_then(VmProcess::pid)
    }

    /// Why the VM went away, from what it left behind: a kernel panic line
    /// on the console, else the hypervisor's last error, else its status.
    fn death_reason(&self, status: Option<std::process::ExitStatus>) -> String {
        if self.guest.is_some() {
            return "the VM it shared with another container stopped".into();
        }
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
        if let Some(guest) = self.guest.take() {
            // No executor here for QMP: the devices stay until the VM ends.
            tracing::warn!(sandbox = %self.id, vm = %guest.vm_dir.display(), "left devices in the VM");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
