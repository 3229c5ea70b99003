//! A clone restored ahead of its container, for the warm pool: the VM
//! launched from its template with no disks, its vCPUs stopped, the
//! agent's connection open. Taking it moves the VM's directory to the
//! container's, gives it the container's disks, lets it run and wakes the
//! agent; from there on it is an ordinary sandbox. QEMU: the state is
//! loaded after the launch (`-incoming defer`), the agent carries on the
//! template's session, the disks are hot-added after `cont`. hull-vmm:
//! restored at launch with its disk slots empty (placeholders), the agent
//! reconnected and said hello; the disks go into the slots over the API
//! socket while the vCPUs are still stopped (virtio-mmio has no hotplug).

use std::path::PathBuf;
use std::sync::Arc;

use super::{io_error, Sandbox, SandboxError};
use crate::agent_client::AgentClient;
use crate::hypervisor::{
    migration, vmm_snapshot, Boot, DiskSpec, Hypervisor, SnapshotMethod, VmSpec, TEMPLATE_MAC,
};
use crate::template::Template;
use crate::SandboxConfig;

pub struct PreparedClone {
    sandbox: Sandbox,
    method: SnapshotMethod,
    agent: Arc<AgentClient>,
}

impl Sandbox {
    /// Restores a clone of `config.template` and leaves it stopped until
    /// [`PreparedClone::finish`]. `config.disks` is not used: the disks
    /// are the container's, given when it is taken.
    pub async fn prepare_clone(
        hypervisor: &dyn Hypervisor,
        config: SandboxConfig<'_>,
    ) -> Result<PreparedClone, SandboxError> {
        let template: &Template = config
            .template
            .ok_or_else(|| SandboxError::Restore("a pooled clone needs a template".into()))?;
        let spec = VmSpec {
            kernel: config.assets.kernel.clone(),
            initramfs: config.assets.initramfs.clone(),
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            disks: Vec::new(),
            nic: config.nic,
            sandbox_dir: config.dir,
            boot: Boot::Clone {
                snapshot: template.snapshot().to_path_buf(),
            },
        };
        let (mut sandbox, stream) = match Self::launch(hypervisor, config.id, &spec).await {
            Err(SandboxError::BootFailed(why)) => return Err(SandboxError::Restore(why)),
            other => other?,
        };
        let agent = match template.method {
            SnapshotMethod::QemuMigration => {
                sandbox.load_template_state(template).await?;
                let (client, events) = AgentClient::resume(stream);
                sandbox.events = Some(events);
                Arc::new(client)
            }
            SnapshotMethod::HullVmm => sandbox.hello(stream).await.map_err(|e| match e {
                SandboxError::BootFailed(why) => SandboxError::Restore(why),
                other => other,
            })?,
        };
        // A first wake now, while nothing waits for the clone: under TCG
        // a restored VM runs every path for the first time through the
        // translator, and the wake its container waits for then takes a
        // fraction of the time. The container's own wake comes after.
        let mac = spec.nic.as_ref().map(|_| TEMPLATE_MAC.to_string());
        sandbox.wake(agent.clone(), mac).await?;
        let paused = match template.method {
            SnapshotMethod::QemuMigration => migration::pause(&sandbox.dir)
                .await
                .map_err(|e| e.to_string()),
            SnapshotMethod::HullVmm => vmm_snapshot::pause(&sandbox.dir)
                .await
                .map_err(|e| e.to_string()),
        };
        paused.map_err(|e| SandboxError::Restore(format!("pause the clone: {e}")))?;
        let method = template.method;
        Ok(PreparedClone {
            sandbox,
            method,
            agent,
        })
    }
}

impl PreparedClone {
    /// The hypervisor's pid.
    pub fn vm_pid(&self) -> Option<u32> {
        self.sandbox.vm_pid()
    }

    /// Makes the clone the sandbox `id`: its directory becomes `dir`, it
    /// gets `disks` and runs again, and its agent is woken with `mac`.
    pub async fn finish(
        self,
        id: String,
        dir: PathBuf,
        disks: Vec<DiskSpec>,
        mac: Option<String>,
    ) -> Result<Sandbox, SandboxError> {
        let PreparedClone {
            mut sandbox,
            method,
            agent,
        } = self;
        sandbox.id = id;
        // A VM dir left by a supervisor that was killed is stale.
        let _ = std::fs::remove_dir_all(&dir);
        // The hypervisor's sockets and logs are in the directory and move
        // with it.
        std::fs::rename(&sandbox.dir, &dir)
            .map_err(io_error(format!("move the clone to {}", dir.display())))?;
        sandbox.moved_to(dir);
        sandbox.snapshot = Some(method);
        match method {
            SnapshotMethod::QemuMigration => {
                migration::resume(&sandbox.dir)
                    .await
                    .map_err(|e| SandboxError::Restore(format!("resume the clone: {e}")))?;
                sandbox.plug_disks(&disks).await?;
            }
            SnapshotMethod::HullVmm => {
                vmm_snapshot::attach_and_resume(&sandbox.dir, &disks)
                    .await
                    .map_err(|e| SandboxError::Disks(e.to_string()))?;
                crate::timings::mark("disks_plugged");
            }
        }
        sandbox.wake(agent, mac).await?;
        Ok(sandbox)
    }

    /// Waits for the hypervisor process to end.
    pub async fn wait_vm(&mut self) -> Option<std::process::ExitStatus> {
        self.sandbox.wait_vm().await
    }

    /// Kills the VM and removes its directory.
    pub async fn discard(self) {
        self.sandbox.destroy().await;
    }
}
