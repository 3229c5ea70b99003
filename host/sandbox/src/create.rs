//! Creating a sandbox: a private directory, the agent socket, the VM, and
//! the agent's hello.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;

use super::vm::VmProcess;
use super::{io_error, Sandbox, SandboxError};
use crate::agent_client::{AgentClient, ClientError};
use crate::assets::GuestAssets;
use crate::hypervisor::{DiskSpec, Hypervisor, VmSpec};

/// How long a guest may take from launch to its agent's hello. Generous:
/// under TCG on a loaded machine a boot can take several seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

pub struct SandboxConfig<'a> {
    pub id: String,
    /// The VM's private directory, created here and removed with the VM.
    pub dir: std::path::PathBuf,
    pub assets: &'a GuestAssets,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub disks: Vec<DiskSpec>,
    pub nic: Option<crate::hypervisor::NicSpec>,
}

impl Sandbox {
    /// Boots the VM and waits for its agent.
    pub async fn create(
        hypervisor: &dyn Hypervisor,
        config: SandboxConfig<'_>,
    ) -> Result<Sandbox, SandboxError> {
        let dir = config.dir;
        // A VM dir left by a supervisor that was killed is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        let spec_dir = dir.clone();
        // From here on, Drop cleans up whatever exists.
        let mut sandbox = Sandbox {
            id: config.id,
            console_log: dir.join("console.log"),
            dir,
            vm: None,
            client: None,
            events: None,
            guest: None,
        };
        let spec = VmSpec {
            kernel: config.assets.kernel.clone(),
            initramfs: config.assets.initramfs.clone(),
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            disks: config.disks,
            nic: config.nic.clone(),
            sandbox_dir: spec_dir,
        };
        let launch = hypervisor.launch(&spec)?;
        sandbox.console_log = launch.console_log.clone();
        let listener = UnixListener::bind(&launch.agent_socket).map_err(io_error(format!(
            "listen on {}",
            launch.agent_socket.display()
        )))?;
        let netns = config.nic.as_ref().map(|n| n.netns.as_path());
        let vm = VmProcess::spawn(launch.command, &sandbox.dir.join("hypervisor.log"), netns)
            .map_err(io_error(format!("start {}", hypervisor.name())))?;
        crate::timings::mark("hypervisor_spawned");
        let vm = sandbox.vm.insert(vm);

        let connected = tokio::select! {
            accepted = listener.accept() => accepted.map(|(stream, _)| stream).map_err(io_error("accept the agent connection")),
            status = vm.wait() => {
                let status = status.ok();
                return Err(SandboxError::BootFailed(sandbox.death_reason(status)));
            }
            _ = tokio::time::sleep(BOOT_TIMEOUT) => Err(SandboxError::BootTimeout(BOOT_TIMEOUT)),
        }?;
        drop(listener);
        let _ = std::fs::remove_file(&launch.agent_socket);

        match AgentClient::start(connected, BOOT_TIMEOUT).await {
            Ok((client, events)) => {
                crate::timings::mark("agent_ready");
                sandbox.client = Some(Arc::new(client));
                sandbox.events = Some(events);
                Ok(sandbox)
            }
            Err(ClientError::Disconnected) => {
                // The VM went down before the agent spoke: say why.
                let vm = sandbox.vm.as_mut().expect("vm was just started");
                let status = tokio::time::timeout(Duration::from_secs(5), vm.wait())
                    .await
                    .ok()
                    .and_then(Result::ok);
                Err(SandboxError::BootFailed(sandbox.death_reason(status)))
            }
            Err(ClientError::HelloTimeout(t)) => Err(SandboxError::BootTimeout(t)),
            Err(err) => Err(SandboxError::Agent(err)),
        }
    }
}
