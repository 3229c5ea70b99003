//! Creating a sandbox: a private directory, the agent socket, the VM, and
//! the agent's hello; or, from a template, the VM restored, its disks
//! added and the agent woken as a clone.

use std::sync::Arc;
use std::time::Duration;

use hull_protocol::{Reply, Request, Wake, WAKE_MIN_ENTROPY};
use tokio::net::{UnixListener, UnixStream};

use super::vm::VmProcess;
use super::{io_error, Sandbox, SandboxError};
use crate::agent_client::{AgentClient, ClientError, RequestError};
use crate::assets::GuestAssets;
use crate::hypervisor::{
    hotplug, migration, Boot, DiskSpec, Hypervisor, NicSpec, SnapshotMethod, VmSpec,
};
use crate::template::Template;

/// How long a guest may take from launch to its agent's hello. Generous:
/// under TCG on a loaded machine a boot can take several seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a restored clone's agent may take to answer its wake.
const WAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Names the disks hot-added to a clone.
const CLONE_DISK_TAG: &str = "clone";

pub struct SandboxConfig<'a> {
    pub id: String,
    /// The VM's private directory, created here and removed with the VM.
    pub dir: std::path::PathBuf,
    pub assets: &'a GuestAssets,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub disks: Vec<DiskSpec>,
    pub nic: Option<NicSpec>,
    /// Restore a clone of this template instead of booting (its shape is
    /// the config's).
    pub template: Option<&'a Template>,
}

impl Sandbox {
    /// Boots the VM (or restores a clone of the template) and waits for
    /// its agent.
    pub async fn create(
        hypervisor: &dyn Hypervisor,
        config: SandboxConfig<'_>,
    ) -> Result<Sandbox, SandboxError> {
        let spec = VmSpec {
            kernel: config.assets.kernel.clone(),
            initramfs: config.assets.initramfs.clone(),
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            disks: config.disks,
            nic: config.nic,
            sandbox_dir: config.dir,
            boot: match config.template {
                Some(template) => Boot::Clone {
                    snapshot: template.snapshot().to_path_buf(),
                },
                None => Boot::Cold,
            },
        };
        let launched = Self::launch(hypervisor, config.id, &spec).await;
        let (mut sandbox, stream) = match launched {
            // A clone whose VM ends before its agent is there could not be
            // restored (hull-vmm refuses a snapshot at launch).
            Err(SandboxError::BootFailed(why)) if config.template.is_some() => {
                return Err(SandboxError::Restore(why))
            }
            other => other?,
        };
        let started = match config.template {
            None => sandbox.greet(stream).await,
            Some(template) => {
                sandbox.snapshot = Some(template.method);
                sandbox.wake_clone(stream, &spec, template).await
            }
        };
        started.map(|()| sandbox)
    }

    /// Starts the VM of `spec` and accepts its agent's connection.
    pub(crate) async fn launch(
        hypervisor: &dyn Hypervisor,
        id: String,
        spec: &VmSpec,
    ) -> Result<(Sandbox, UnixStream), SandboxError> {
        let dir = spec.sandbox_dir.clone();
        // A VM dir left by a supervisor that was killed is stale.
        let _ = std::fs::remove_dir_all(&dir);
        crate::private::create_dir(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        // From here on, Drop cleans up whatever exists.
        let mut sandbox = Sandbox {
            id,
            console_log: dir.join(crate::hypervisor::CONSOLE_LOG),
            dir,
            vm: None,
            client: None,
            events: None,
            guest: None,
            shares: None,
            snapshot: None,
        };
        let mut launch = hypervisor.launch(spec)?;
        hypervisor.jail(&mut launch, &sandbox.dir)?;
        sandbox.console_log = launch.console_log.clone();
        let listener = UnixListener::bind(&launch.agent_socket).map_err(io_error(format!(
            "listen on {}",
            launch.agent_socket.display()
        )))?;
        let netns = spec.nic.as_ref().map(|n| n.netns.as_path());
        let jail_lock = launch.jail.map(|jail| jail.into_lock());
        let vm = VmProcess::spawn(launch.command, jail_lock, &sandbox.dir, netns)
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
        Ok((sandbox, connected))
    }

    /// Exchanges hellos with a freshly booted agent.
    pub(crate) async fn greet(&mut self, stream: UnixStream) -> Result<(), SandboxError> {
        let client = self.hello(stream).await?;
        crate::timings::mark("agent_ready");
        self.client = Some(client);
        Ok(())
    }

    /// The hello exchange; the client, its events kept by the sandbox.
    pub(crate) async fn hello(
        &mut self,
        stream: UnixStream,
    ) -> Result<Arc<AgentClient>, SandboxError> {
        match AgentClient::start(stream, BOOT_TIMEOUT).await {
            Ok((client, events)) => {
                self.events = Some(events);
                Ok(Arc::new(client))
            }
            Err(ClientError::Disconnected) => {
                // The VM went down before the agent spoke: say why.
                let status = self.vm_status_soon().await;
                Err(SandboxError::BootFailed(self.death_reason(status)))
            }
            Err(ClientError::HelloTimeout(t)) => Err(SandboxError::BootTimeout(t)),
            Err(err) => Err(SandboxError::Agent(err)),
        }
    }

    /// Brings a clone up and wakes its agent with this clone's entropy,
    /// clock and MAC. QEMU: the template's state is loaded now, the
    /// clone's disks added, and the agent carries on the template's
    /// session. hull-vmm restored at launch with the disks in place; the
    /// restore reset the agent's vsock connection, and `stream` is the
    /// one it made again, which starts with a hello.
    async fn wake_clone(
        &mut self,
        stream: UnixStream,
        spec: &VmSpec,
        template: &Template,
    ) -> Result<(), SandboxError> {
        let client = match template.method {
            SnapshotMethod::QemuMigration => {
                self.load_template_state(template).await?;
                self.plug_and_resume(stream, &spec.disks).await?
            }
            SnapshotMethod::HullVmm => {
                // Here: restored, and its agent connected again.
                crate::timings::mark("restored");
                self.hello(stream).await.map_err(|e| match e {
                    SandboxError::BootFailed(why) => SandboxError::Restore(why),
                    other => other,
                })?
            }
        };
        let mac = spec.nic.as_ref().map(|nic| nic.mac.clone());
        self.wake(client, mac).await
    }

    /// QEMU: loads the template's device and CPU state into the VM, which
    /// then runs.
    pub(crate) async fn load_template_state(
        &mut self,
        template: &Template,
    ) -> Result<(), SandboxError> {
        let restored = migration::restore(&self.dir, &template.state()).await;
        restored.map_err(|e| SandboxError::Restore(e.to_string()))?;
        crate::timings::mark("restored");
        Ok(())
    }

    /// QEMU: hot-adds the clone's disks.
    pub(crate) async fn plug_disks(&mut self, disks: &[DiskSpec]) -> Result<(), SandboxError> {
        hotplug::plug_disks(&self.dir, CLONE_DISK_TAG, disks)
            .await
            .map_err(|e| SandboxError::Disks(e.to_string()))?;
        crate::timings::mark("disks_plugged");
        Ok(())
    }

    /// QEMU: adds the clone's disks and takes up the agent's session.
    async fn plug_and_resume(
        &mut self,
        stream: UnixStream,
        disks: &[DiskSpec],
    ) -> Result<Arc<AgentClient>, SandboxError> {
        self.plug_disks(disks).await?;
        let (client, events) = AgentClient::resume(stream);
        self.events = Some(events);
        Ok(Arc::new(client))
    }

    /// Makes the agent this clone's own: host entropy, the clock, its MAC.
    pub(crate) async fn wake(
        &mut self,
        client: Arc<AgentClient>,
        mac: Option<String>,
    ) -> Result<(), SandboxError> {
        let wake = Wake {
            entropy: host_entropy().map_err(io_error("read host entropy"))?,
            realtime_nanos: crate::process::now_nanos(),
            mac,
        };
        let answer = tokio::time::timeout(WAKE_TIMEOUT, client.request(Request::Wake(wake)));
        match answer.await {
            Ok(Ok(Reply::Done)) => {}
            Ok(Ok(other)) => return Err(SandboxError::Restore(format!("wake answered {other:?}"))),
            Ok(Err(RequestError::Agent(err))) => return Err(SandboxError::Start(err)),
            Ok(Err(err)) => return Err(self.vm_died(SandboxError::Request(err)).await),
            Err(_) => return Err(SandboxError::BootTimeout(WAKE_TIMEOUT)),
        }
        crate::timings::mark("agent_ready");
        self.client = Some(client);
        Ok(())
    }

    async fn vm_status_soon(&mut self) -> Option<std::process::ExitStatus> {
        let vm = self.vm.as_mut()?;
        tokio::time::timeout(Duration::from_secs(5), vm.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

pub(crate) fn host_entropy() -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0u8; WAKE_MIN_ENTROPY * 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}
