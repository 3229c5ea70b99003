//! A clone restored ahead of its container, for the warm pool: the VM
//! launched from its template, its state loaded and its vCPUs stopped,
//! the agent's connection accepted. Taking it moves the VM's directory to
//! the container's, lets it run, adds the container's disks and wakes the
//! agent; from there on it is an ordinary sandbox. QEMU only: a hull-vmm
//! clone takes its disks when it restores (virtio-mmio has no hotplug).

use std::path::PathBuf;

use tokio::net::UnixStream;

use super::{io_error, Sandbox, SandboxError};
use crate::hypervisor::{migration, Boot, DiskSpec, Hypervisor, SnapshotMethod, VmSpec};
use crate::template::Template;
use crate::SandboxConfig;

pub struct PreparedClone {
    sandbox: Sandbox,
    stream: UnixStream,
}

impl Sandbox {
    /// Restores a clone of `config.template` and leaves it stopped until
    /// [`PreparedClone::finish`]. `config.disks` must be empty: they are
    /// the container's, added when it is taken.
    pub async fn prepare_clone(
        hypervisor: &dyn Hypervisor,
        config: SandboxConfig<'_>,
    ) -> Result<PreparedClone, SandboxError> {
        let template: &Template = config
            .template
            .ok_or_else(|| SandboxError::Restore("a pooled clone needs a template".into()))?;
        if template.method != SnapshotMethod::QemuMigration {
            return Err(SandboxError::Restore(format!(
                "{} restores its disks with the VM: its clones cannot wait in a pool",
                template.hypervisor
            )));
        }
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
        sandbox.load_template_state(template).await?;
        migration::pause(&sandbox.dir)
            .await
            .map_err(|e| SandboxError::Restore(format!("pause the clone: {e}")))?;
        Ok(PreparedClone { sandbox, stream })
    }
}

impl PreparedClone {
    /// The hypervisor's pid.
    pub fn vm_pid(&self) -> Option<u32> {
        self.sandbox.vm_pid()
    }

    /// Makes the clone the sandbox `id`: its directory becomes `dir`, it
    /// runs again, gets `disks`, and its agent is woken with `mac`.
    pub async fn finish(
        self,
        id: String,
        dir: PathBuf,
        disks: Vec<DiskSpec>,
        mac: Option<String>,
    ) -> Result<Sandbox, SandboxError> {
        let PreparedClone {
            mut sandbox,
            stream,
        } = self;
        sandbox.id = id;
        // A VM dir left by a supervisor that was killed is stale.
        let _ = std::fs::remove_dir_all(&dir);
        // QEMU's sockets and logs are in the directory and move with it.
        std::fs::rename(&sandbox.dir, &dir)
            .map_err(io_error(format!("move the clone to {}", dir.display())))?;
        sandbox.moved_to(dir);
        migration::resume(&sandbox.dir)
            .await
            .map_err(|e| SandboxError::Restore(format!("resume the clone: {e}")))?;
        let client = sandbox.plug_and_resume(stream, &disks).await?;
        sandbox.wake(client, mac).await?;
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
