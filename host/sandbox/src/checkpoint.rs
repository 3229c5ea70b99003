//! A running container's VM saved to a directory and restored from it
//! (runc's `checkpoint` and `restore`; CRIU cannot reach into a VM, so
//! the whole VM is the checkpoint).
//!
//! Only a VM with a template's devices can be saved: one restored from a
//! template, a pooled clone, or a restored checkpoint. The restore
//! launches it the way a template's clone is launched, from the
//! checkpoint's directory instead of the template's, so the devices
//! match one for one. On QEMU the clone's RAM is a private mapping, which
//! `x-ignore-shared` does not skip: the whole of guest RAM goes into the
//! state file, and `memory` is an empty file of the guest's size for the
//! restore to map. hull-vmm writes `state` and `memory` as for a
//! template.
//!
//! The agent connection stays whole across the save: the host asks the
//! agent to `Checkpoint` and sends nothing after it; the agent freezes
//! the container and holds its wire after the answer. Nothing is then
//! half-way on the connection while the VM stops. A restore greets the
//! agent on a new connection and `Unpark`s it: each output stream starts
//! with a fresh window, and the VM takes host entropy and the clock.

use std::path::{Path, PathBuf};

use hull_protocol::{Reply, Request, Wake};

use super::{io_error, Sandbox, SandboxError};
use crate::agent_client::{AgentClient, RequestError};
use crate::hypervisor::{
    migration, vmm_snapshot, Boot, Hypervisor, SnapshotMethod, VmSpec, SNAPSHOT_MEMORY,
    SNAPSHOT_STATE,
};
use crate::SandboxConfig;

/// The container image's disk, as the checkpoint keeps it.
pub const CHECKPOINT_ROOTFS: &str = "rootfs.disk";
/// The container's writable layer, as the checkpoint keeps it.
pub const CHECKPOINT_SCRATCH: &str = "scratch.disk";
/// Where a save writes before its files are renamed into place: a VM
/// restored from this very directory still maps its `memory`.
const SAVING: &str = ".saving";

impl Sandbox {
    /// How this VM can be saved; `None` if it cannot.
    pub fn snapshot_method(&self) -> Option<SnapshotMethod> {
        self.snapshot
    }

    /// Saves the running VM of container `container_id` into `dir`
    /// (created if missing): its state and memory. The VM is left stopped
    /// and the agent parked: [`Self::carry_on`] lets both go on, else the
    /// caller kills the VM. Disks are the caller's to copy, now that the
    /// VM writes none.
    pub async fn save_checkpoint(
        &mut self,
        container_id: &str,
        dir: &Path,
        memory_mib: u32,
    ) -> Result<SnapshotMethod, SandboxError> {
        let refuse = |why: &str| Err(SandboxError::Checkpoint(why.to_string()));
        let Some(method) = self.snapshot else {
            return refuse("the container's VM booted cold (--no-template or HULL_TEMPLATE=off); only a VM restored from a template can be saved");
        };
        if self.guest.is_some() {
            return refuse("the container runs in another container's VM");
        }
        if self.shares.is_some() {
            return refuse("the container has bind mounts or volumes, whose host files a saved VM cannot take along");
        }
        let saving = dir.join(SAVING);
        let _ = std::fs::remove_dir_all(&saving);
        crate::private::ensure_dir(dir)
            .and_then(|()| crate::private::create_dir(&saving))
            .map_err(io_error(format!("create {}", saving.display())))?;
        let client = self.client();
        let parked = client
            .request_then_hold(Request::Checkpoint {
                container_id: container_id.to_string(),
            })
            .await;
        if let Err(e) = parked {
            client.release();
            let _ = std::fs::remove_dir_all(&saving);
            return Err(checkpoint_refused(e));
        }
        if let Err(e) = save(method, &self.dir, &saving, memory_mib).await {
            let _ = std::fs::remove_dir_all(&saving);
            // The VM goes on as it was, if it can.
            let _ = self.carry_on(container_id).await;
            return Err(SandboxError::Checkpoint(e));
        }
        for name in [SNAPSHOT_STATE, SNAPSHOT_MEMORY] {
            std::fs::rename(saving.join(name), dir.join(name))
                .map_err(io_error(format!("move the checkpoint's {name} into place")))?;
        }
        let _ = std::fs::remove_dir_all(&saving);
        Ok(method)
    }

    /// Lets a VM saved by [`Self::save_checkpoint`] run on, its container
    /// as it was (`--leave-running`).
    pub async fn carry_on(&mut self, container_id: &str) -> Result<(), SandboxError> {
        let resumed = match self.snapshot {
            Some(SnapshotMethod::QemuMigration) => migration::resume(&self.dir)
                .await
                .map_err(|e| e.to_string()),
            Some(SnapshotMethod::HullVmm) => vmm_snapshot::resume(&self.dir)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(()),
        };
        resumed.map_err(|e| SandboxError::Checkpoint(format!("resume the VM: {e}")))?;
        let client = self.client();
        client.release();
        unpark(&client, container_id, None).await
    }

    /// Restores the VM saved in `checkpoint` by `method`, its disks those
    /// of `config` (copies of the checkpoint's), and takes up its agent's
    /// connection; the container stays parked until [`Self::unpark_restored`].
    pub async fn restore_checkpoint(
        hypervisor: &dyn Hypervisor,
        config: SandboxConfig<'_>,
        checkpoint: &Path,
        method: SnapshotMethod,
    ) -> Result<Sandbox, SandboxError> {
        if hypervisor.snapshots() != Some(method) {
            return Err(SandboxError::RestoreCheckpoint(format!(
                "it was saved by another hypervisor than {}",
                hypervisor.name()
            )));
        }
        let spec = VmSpec {
            kernel: config.assets.kernel.clone(),
            initramfs: config.assets.initramfs.clone(),
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            disks: config.disks,
            nic: config.nic,
            sandbox_dir: config.dir,
            boot: Boot::Clone {
                snapshot: checkpoint.to_path_buf(),
            },
        };
        let failed = |e: SandboxError| match e {
            SandboxError::BootFailed(why) => SandboxError::RestoreCheckpoint(why),
            other => other,
        };
        let (mut sandbox, stream) = Self::launch(hypervisor, config.id, &spec)
            .await
            .map_err(failed)?;
        sandbox.snapshot = Some(method);
        let client = match method {
            SnapshotMethod::QemuMigration => {
                // The saved state names the disks: they must be there
                // before it loads.
                sandbox.plug_disks(&spec.disks).await?;
                migration::restore(&sandbox.dir, &checkpoint.join(SNAPSHOT_STATE))
                    .await
                    .map_err(|e| SandboxError::RestoreCheckpoint(e.to_string()))?;
                let (client, events) = AgentClient::resume(stream);
                sandbox.events = Some(events);
                std::sync::Arc::new(client)
            }
            // Restored at launch; its agent, whose connection the restore
            // reset, connected again and said hello.
            SnapshotMethod::HullVmm => sandbox.hello(stream).await.map_err(failed)?,
        };
        crate::timings::mark("restored");
        sandbox.client = Some(client);
        Ok(sandbox)
    }

    /// The restored container carries on: its streams (opened on the
    /// client before this) flow again, and the VM takes host entropy and
    /// the clock, so no two restores of one checkpoint are twins.
    pub async fn unpark_restored(&self, container_id: &str) -> Result<(), SandboxError> {
        let wake = Wake {
            entropy: crate::create::host_entropy().map_err(io_error("read host entropy"))?,
            realtime_nanos: crate::process::now_nanos(),
            mac: None,
        };
        unpark(&self.client(), container_id, Some(wake)).await
    }
}

async fn unpark(
    client: &AgentClient,
    container_id: &str,
    restored: Option<Wake>,
) -> Result<(), SandboxError> {
    let request = Request::Unpark {
        container_id: container_id.to_string(),
        restored,
    };
    match client.request(request).await {
        Ok(Reply::Done) => Ok(()),
        Ok(other) => Err(SandboxError::Checkpoint(format!(
            "the agent answered {other:?} to unpark"
        ))),
        Err(RequestError::Agent(e)) => Err(SandboxError::Start(e)),
        Err(e) => Err(SandboxError::Request(e)),
    }
}

fn checkpoint_refused(e: RequestError) -> SandboxError {
    match e {
        RequestError::Agent(e) => SandboxError::Checkpoint(e.message),
        other => SandboxError::Request(other),
    }
}

/// Writes the stopped VM's state (and memory) into `dir`.
async fn save(
    method: SnapshotMethod,
    vm_dir: &Path,
    dir: &Path,
    memory_mib: u32,
) -> Result<(), String> {
    match method {
        SnapshotMethod::QemuMigration => {
            migration::save(vm_dir, &dir.join(SNAPSHOT_STATE))
                .await
                .map_err(|e| e.to_string())?;
            empty_memory_file(&dir.join(SNAPSHOT_MEMORY), memory_mib)
                .map_err(|e| format!("create the memory file: {e}"))
        }
        SnapshotMethod::HullVmm => vmm_snapshot::save(vm_dir, dir)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// QEMU: the file a restore maps as guest RAM before the state (which
/// holds all of RAM) is loaded into it: sparse, the guest's size.
fn empty_memory_file(path: &PathBuf, memory_mib: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.set_len(SnapshotMethod::QemuMigration.memory_file_len(memory_mib))
}
