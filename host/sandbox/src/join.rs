//! Joining a running VM (a pod): the container's disks and an agent port of
//! its own are hot-added to another container's VM, whose agent serves the
//! new port as a separate connection. Leaving takes them out again; the VM
//! and its other containers run on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hull_protocol::Request;
use tokio::net::UnixListener;

use super::{io_error, Sandbox, SandboxError};
use crate::agent_client::{AgentClient, ClientError};
use crate::hypervisor::{hotplug, DiskSpec};

/// How long the joined VM's agent may take to greet the new port.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the agent may take to end the container and unmount its root.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits for the agent on the new port and exchanges hellos.
async fn greet(
    listener: UnixListener,
) -> Result<(AgentClient, crate::agent_client::Events), SandboxError> {
    let (stream, _) = tokio::time::timeout(HELLO_TIMEOUT, listener.accept())
        .await
        .map_err(|_| SandboxError::BootTimeout(HELLO_TIMEOUT))?
        .map_err(io_error("accept the agent connection"))?;
    AgentClient::start(stream, HELLO_TIMEOUT)
        .await
        .map_err(|err| match err {
            ClientError::HelloTimeout(t) => SandboxError::BootTimeout(t),
            err => SandboxError::Agent(err),
        })
}

/// What a joined sandbox put into another container's VM.
pub(super) struct Guest {
    /// The VM directory of the container whose VM this is.
    pub(super) vm_dir: PathBuf,
    /// Names the hot-added devices.
    tag: String,
    disks: usize,
}

impl Sandbox {
    /// Puts container `id` into the VM whose sandbox directory is
    /// `host_vm_dir`, with `disks` (found by the agent by serial) and its
    /// own agent connection; `dir` is this container's own directory.
    pub async fn join(
        id: String,
        dir: PathBuf,
        host_vm_dir: &Path,
        disks: Vec<DiskSpec>,
    ) -> Result<Sandbox, SandboxError> {
        if !hotplug::can_join(host_vm_dir) {
            return Err(SandboxError::CannotJoin(
                "its hypervisor cannot add devices to a running VM (only qemu can, so far)".into(),
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
        crate::private::create_dir(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        let tag = id[..12.min(id.len())].to_string();
        let mut sandbox = Sandbox {
            id,
            console_log: host_vm_dir.join("console.log"),
            dir,
            vm: None,
            client: None,
            events: None,
            guest: None,
            shares: None,
            snapshot: None,
        };
        let agent_socket = sandbox.dir.join("agent.sock");
        let listener = UnixListener::bind(&agent_socket)
            .map_err(io_error(format!("listen on {}", agent_socket.display())))?;
        hotplug::plug(host_vm_dir, &tag, &disks, &agent_socket)
            .await
            .map_err(|e| SandboxError::CannotJoin(e.to_string()))?;
        crate::timings::mark("devices_plugged");
        sandbox.guest = Some(Guest {
            vm_dir: host_vm_dir.to_path_buf(),
            tag,
            disks: disks.len(),
        });
        match greet(listener).await {
            Ok((client, events)) => {
                crate::timings::mark("agent_ready");
                let _ = std::fs::remove_file(&agent_socket);
                sandbox.client = Some(Arc::new(client));
                sandbox.events = Some(events);
                Ok(sandbox)
            }
            Err(err) => {
                sandbox.leave().await;
                Err(err)
            }
        }
    }

    /// Whether this sandbox is a container in another container's VM.
    pub fn is_guest(&self) -> bool {
        self.guest.is_some()
    }

    /// Ends the container in the other VM and takes its devices out.
    pub(super) async fn leave(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(
                REMOVE_TIMEOUT,
                client.request(Request::RemoveContainer {
                    container_id: self.id.clone(),
                }),
            )
            .await;
            crate::timings::mark("container_removed");
        }
        if let Some(guest) = self.guest.take() {
            hotplug::unplug(&guest.vm_dir, &guest.tag, guest.disks).await;
            crate::timings::mark("devices_unplugged");
        }
    }
}
