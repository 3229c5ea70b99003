//! Starting the container's main process. Its output arrives on the
//! client's streams [`MAIN_STDOUT`] and [`MAIN_STDERR`]; whoever opened
//! them before the start reads it.

use hull_protocol::{Reply, Request, RunContainer};

use super::{Sandbox, SandboxError};
use crate::agent_client::RequestError;

/// At most this many of the guest's steps are recorded.
const MAX_GUEST_STEPS: usize = 16;

/// Stream ids of the main process.
pub const MAIN_STDOUT: u32 = 1;
pub const MAIN_STDERR: u32 = 2;
pub const MAIN_STDIN: u32 = 3;

impl Sandbox {
    /// Asks the agent to set the container up and start its main process;
    /// returns the process's pid in the guest.
    pub async fn start_main(&mut self, request: RunContainer) -> Result<u32, SandboxError> {
        let client = self.client();
        let asked = crate::timings::now_micros();
        match client
            .request(Request::RunContainer(Box::new(request)))
            .await
        {
            Ok(Reply::Started { pid, steps }) => {
                // The guest's clock is not ours: its steps are placed after
                // the moment we asked (the first one holds the transit).
                for step in steps.iter().take(MAX_GUEST_STEPS) {
                    let name: String = step
                        .name
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .take(32)
                        .collect();
                    crate::timings::mark_at(
                        &format!("guest_{name}"),
                        asked + u128::from(step.micros),
                    );
                }
                Ok(pid)
            }
            Ok(_) => Ok(0),
            Err(RequestError::Agent(err)) => Err(SandboxError::Start(err)),
            // The host dropped the connection: the VM has not died.
            Err(err) if err.violation().is_some() => Err(SandboxError::Request(err)),
            Err(err) => Err(self.vm_died(SandboxError::Request(err)).await),
        }
    }

    /// Turns a lost connection into the VM's own account of its death.
    pub async fn vm_died(&mut self, fallback: SandboxError) -> SandboxError {
        let Some(vm) = self.vm.as_mut() else {
            return fallback;
        };
        let status = tokio::time::timeout(std::time::Duration::from_secs(5), vm.wait())
            .await
            .ok()
            .and_then(Result::ok);
        SandboxError::VmDied(self.death_reason(status))
    }

    /// Waits for the hypervisor process to end.
    pub async fn wait_vm(&mut self) -> Option<std::process::ExitStatus> {
        match self.vm.as_mut() {
            Some(vm) => vm.wait().await.ok(),
            None => std::future::pending().await,
        }
    }

    /// Why the VM is gone, for a record.
    pub fn vm_gone_reason(&self, status: Option<std::process::ExitStatus>) -> String {
        self.death_reason(status)
    }
}
