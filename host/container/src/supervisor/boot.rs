//! One boot of the container: join its network, boot a VM of its own or
//! join another container's, wait for the go (an attach, or `start` in
//! runc mode), start the main process with its output pumped into the log
//! and the attached sinks, and wait for its end, then power the VM off.
//! Every way this can fail is a [`BootError`], which becomes the boot's
//! [`Outcome`].

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hull_protocol::{
    ErrorKind, Event, ExitStatus, RootfsSource, RunContainer, ShareChannel, Stdio,
};
use hull_sandbox::agent_client::{AgentClient, Events, InputStream, Violation};
use hull_sandbox::assets::GuestAssets;
use hull_sandbox::hypervisor::{self, DiskSpec};
use hull_sandbox::share::{IdMap, IdRange, ShareSource, ShareSpec};
use hull_sandbox::{
    scratch::SCRATCH_SERIAL, Sandbox, SandboxConfig, SandboxError, MAIN_STDERR, MAIN_STDIN,
    MAIN_STDOUT,
};
use thiserror::Error;
use tokio::sync::Notify;

use super::network::{self, JoinError, Joined};
use super::pooled::Pooled;
use super::shared::{lock, Shared};
use super::templates::{find_template, warn};
use super::{io as pumps, one_line, Mode, Outcome};
use crate::logs::{LogStream, LogWriter};
use crate::record::{now_nanos, Container, Containers, Status};

/// Serial of the image disk, which the agent looks for (a template's
/// disk slots are named by it too).
pub use hull_sandbox::hypervisor::ROOTFS_SERIAL;
/// The log's size cap per file and how many files are kept (Docker's
/// json-file max-size and max-file).
const LOG_MAX_SIZE: u64 = 20 << 20;
const LOG_MAX_FILES: u32 = 5;
/// How long an attached `run` may take to attach before the container
/// starts without it.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a start that failed before the boot waits for its attached
/// `run` to attach and hear why.
const EARLY_FAILURE_ATTACH_WAIT: Duration = Duration::from_secs(5);
/// How long the agent may take to answer the request that starts the main
/// process: mounting the disks, the network, the guest's OCI hooks and the
/// exec, on a slow (TCG) VM. Generous, since a legitimate start is never
/// cut short; it only keeps an agent that never answers from holding
/// `hull run` and `hull wait` forever.
const START_REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a boot did not end with the main process's exit.
#[derive(Debug, Error)]
pub(super) enum BootError {
    #[error("supervisor socket")]
    Socket(#[source] io::Error),
    #[error("container {0} (whose VM it joins) is gone")]
    HostGone(String),
    #[error("container {0} (whose VM it joins) is not running")]
    HostStopped(String),
    #[error(transparent)]
    Network(JoinError),
    #[error("stopped while the VM booted")]
    StoppedBooting,
    #[error("stopped before it started")]
    StoppedBeforeStart,
    #[error(transparent)]
    Sandbox(SandboxError),
    #[error("open the container log")]
    Log(#[source] io::Error),
    #[error(transparent)]
    Start(SandboxError),
    #[error("the VM died while the container ran ({0})")]
    VmDied(String),
    #[error("the guest agent did not answer the start request within {0:?}")]
    StartTimeout(Duration),
    #[error("the guest agent broke the protocol")]
    Agent(#[source] Violation),
}

impl BootError {
    /// The exit code recorded: docker's 125 for hull's failures, 126/127
    /// for a command that cannot run, 137 for a stop.
    fn exit_code(&self) -> i32 {
        match self {
            Self::StoppedBooting | Self::StoppedBeforeStart => 137,
            Self::Start(SandboxError::Start(err)) => match err.kind {
                ErrorKind::CommandNotFound => 127,
                ErrorKind::CommandNotExecutable => 126,
                _ => 125,
            },
            _ => 125,
        }
    }

    /// The boot's outcome: the error on one line; `started` if the main
    /// process ever ran.
    pub fn outcome(&self, started: bool) -> Outcome {
        Outcome::failed(self.exit_code(), one_line(self), started)
    }
}

/// The running container whose VM `container` joins, if it joins one.
pub(super) fn host_vm(
    containers: &Containers,
    container: &Container,
) -> Result<Option<Container>, BootError> {
    let Some(id) = &container.config.shares_vm_with else {
        return Ok(None);
    };
    let host = containers
        .find(id)
        .map_err(|_| BootError::HostGone(id[..12.min(id.len())].to_string()))?;
    if !host.state().is_running() {
        return Err(BootError::HostStopped(host.config.name.clone()));
    }
    Ok(Some(host))
}

/// Joins the container's network, runs the boot, and leaves the network.
pub(super) async fn run(
    shared: &Arc<Shared>,
    networks: hull_net::Networks,
    mode: Mode,
    host: Option<&Container>,
    pooled: Option<Pooled>,
) -> Outcome {
    let ready_tap = pooled.as_ref().and_then(|p| p.tap.as_deref());
    let joined = match network::join(networks, &shared.container.config, ready_tap).await {
        Ok(joined) => joined,
        Err(e) => {
            // The attached `run` is connecting right now: let it attach,
            // so it hears why instead of finding the socket gone.
            if mode.wait_attach {
                let _ = tokio::time::timeout(EARLY_FAILURE_ATTACH_WAIT, shared.attached.notified())
                    .await;
            }
            return BootError::Network(e).outcome(false);
        }
    };
    record_address(&shared.container, joined.as_ref(), host);
    let outcome = boot_and_run(shared, mode, joined.as_ref(), host, pooled).await;
    if let Some(joined) = joined {
        joined.leave();
    }
    outcome
}

/// The container's address: its own on its network, or its host's.
fn record_address(container: &Container, joined: Option<&Joined>, host: Option<&Container>) {
    if let Some(j) = joined {
        let ip = j.address().to_string();
        let _ = container.update(|s| s.ip_address = Some(ip));
    }
    if let Some(host) = host {
        let ip = host.state().ip_address;
        let _ = container.update(|s| s.ip_address = ip);
    }
}

/// Boots the VM, starts the main process, pumps its output and waits for
/// its end, then powers the VM off.
async fn boot_and_run(
    shared: &Arc<Shared>,
    mode: Mode,
    network: Option<&Joined>,
    host: Option<&Container>,
    pooled: Option<Pooled>,
) -> Outcome {
    let serials = Serials::new(&shared.container, host);
    let mut sandbox = match boot_vm(shared, &serials, network, host, pooled).await {
        Ok(sandbox) => sandbox,
        Err(e) => return e.outcome(false),
    };
    let go = wait_for_go(shared, mode).await;
    let main = match go.and_then(|()| MainIo::open(shared, &sandbox.client())) {
        Ok(main) => main,
        Err(e) => {
            sandbox.delete().await;
            return e.outcome(false);
        }
    };
    let share = match attach_shares(&mut sandbox, &shared.container).await {
        Ok(share) => share,
        Err(e) => {
            sandbox.delete().await;
            main.join().await;
            return BootError::Sandbox(e).outcome(false);
        }
    };
    let mut events = sandbox.take_events().expect("events are taken once");
    let client = sandbox.client();
    let started = match &shared.container.config.restored {
        // Restored from a checkpoint: the main process runs already.
        Some(restored) => {
            let pid = restored.info.pid;
            let unparked = async {
                sandbox
                    .unpark_restored(shared.container.config.agent_id())
                    .await
                    .map(|()| pid)
            };
            bounded_start(&shared.kill_vm, START_REPLY_TIMEOUT, unparked).await
        }
        None => {
            let mut request = run_request(&shared.container, serials, &main, network, host);
            request.share = share;
            bounded_start(
                &shared.kill_vm,
                START_REPLY_TIMEOUT,
                sandbox.start_main(request),
            )
            .await
        }
    };
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            // A violation is the reason, whatever the request saw.
            let e = client.violation().map_or(e, BootError::Agent);
            if matches!(e, BootError::Agent(_)) {
                // No clean power-off for an agent that broke the protocol.
                sandbox.destroy().await;
            } else {
                sandbox.delete().await;
            }
            main.join().await;
            return e.outcome(false);
        }
    };
    mark_running(shared, &sandbox.client(), &main, pid);
    let ending = watch_main(shared, &mut sandbox, &mut events).await;
    shared.client.send_replace(None);
    lock(&shared.stdin).take();
    let discard = shared.container.config.auto_remove;
    if shared.container.config.keep_vm_for_export {
        if let Ending::Exited { status, oom_killed } = ending {
            return keep_for_export(shared, sandbox, main, events, status, oom_killed).await;
        }
    }
    let outcome = end(sandbox, main, ending, discard).await;
    lock(&shared.exec_exits).clear();
    outcome
}

/// The serials of the image and scratch disks: fixed names in a VM of the
/// container's own, names of their own in another container's VM.
struct Serials {
    rootfs: String,
    scratch: String,
}

impl Serials {
    fn new(container: &Container, host: Option<&Container>) -> Self {
        match host {
            None => Self {
                rootfs: ROOTFS_SERIAL.to_string(),
                scratch: SCRATCH_SERIAL.to_string(),
            },
            Some(_) => Self {
                rootfs: format!("hr-{}", container.short_id()),
                scratch: format!("hs-{}", container.short_id()),
            },
        }
    }

    fn disks(&self, container: &Container) -> Vec<DiskSpec> {
        let config = &container.config;
        let disk = |path: &std::path::Path, read_only, serial: &str| DiskSpec {
            path: path.to_path_buf(),
            read_only,
            serial: serial.to_string(),
        };
        vec![
            disk(&config.rootfs_disk, true, &self.rootfs),
            disk(&config.scratch_disk, false, &self.scratch),
        ]
    }
}

/// Opens the sandbox unless a stop comes first; records the VM's pid.
async fn boot_vm(
    shared: &Arc<Shared>,
    serials: &Serials,
    network: Option<&Joined>,
    host: Option<&Container>,
    pooled: Option<Pooled>,
) -> Result<Sandbox, BootError> {
    let disks = serials.disks(&shared.container);
    let sandbox = tokio::select! {
        created = open_sandbox(&shared.container, disks, network, host, pooled) => created,
        _ = shared.kill_vm.notified() => return Err(BootError::StoppedBooting),
    }
    .map_err(BootError::Sandbox)?;
    let vm_pid = sandbox.vm_pid();
    let _ = shared
        .container
        .update(|s| s.vm_pid = vm_pid.map(|p| p as i32));
    Ok(sandbox)
}

/// Boots a VM of the container's own (a clone of a template where it
/// can), or joins the VM of `host`.
async fn open_sandbox(
    container: &Container,
    disks: Vec<DiskSpec>,
    network: Option<&Joined>,
    host: Option<&Container>,
    pooled: Option<Pooled>,
) -> Result<Sandbox, SandboxError> {
    let config = &container.config;
    if let Some(host) = host {
        return Sandbox::join(config.id.clone(), container.vm_dir(), &host.vm_dir(), disks).await;
    }
    if let Some(restored) = &config.restored {
        return restore(container, disks, network, restored).await;
    }
    if let Some(pooled) = pooled {
        let mac = network.map(|n| n.nic().mac);
        let finished = pooled
            .clone
            .finish(config.id.clone(), container.vm_dir(), disks.clone(), mac)
            .await;
        match finished {
            Ok(sandbox) => return Ok(sandbox),
            // Its tap is the container's now, free again: the VM starts
            // the usual way.
            Err(e) => warn(&format!(
                "the pooled clone failed ({}); starting another VM",
                one_line(&e)
            )),
        }
    }
    let hypervisor = hypervisor::select(&config.hypervisor)?;
    let assets = GuestAssets {
        kernel: config.kernel.clone(),
        initramfs: config.initramfs.clone(),
    };
    let sandbox_config = |template| SandboxConfig {
        id: config.id.clone(),
        dir: container.vm_dir(),
        assets: &assets,
        vcpus: config.vcpus,
        memory_mib: config.memory_mib,
        disks: disks.clone(),
        nic: network.map(Joined::nic),
        template,
    };
    let shape = config.template_shape();
    let template = match &config.templates {
        Some(dir) => find_template(hypervisor.as_ref(), &assets, shape, dir).await,
        None => None,
    };
    if let Some((template, templates)) = &template {
        match Sandbox::create(hypervisor.as_ref(), sandbox_config(Some(template))).await {
            // The template cannot be restored: it goes, the VM boots cold.
            Err(SandboxError::Restore(why)) => {
                warn(&format!(
                    "template {} removed ({why}); booting cold",
                    template.key
                ));
                let _ = templates.remove(&template.key);
                templates.mark_failed(&template.key);
            }
            created => return created,
        }
    }
    Sandbox::create(hypervisor.as_ref(), sandbox_config(None)).await
}

/// Brings back the VM of the checkpoint `restored`, its disks the
/// container's copies of the checkpoint's.
async fn restore(
    container: &Container,
    disks: Vec<DiskSpec>,
    network: Option<&Joined>,
    restored: &crate::checkpoint::Restored,
) -> Result<Sandbox, SandboxError> {
    let config = &container.config;
    let hypervisor = hypervisor::select(&config.hypervisor)?;
    let assets = GuestAssets {
        kernel: config.kernel.clone(),
        initramfs: config.initramfs.clone(),
    };
    let sandbox_config = SandboxConfig {
        id: config.id.clone(),
        dir: container.vm_dir(),
        assets: &assets,
        vcpus: restored.info.vcpus,
        memory_mib: restored.info.memory_mib,
        disks,
        nic: network.map(Joined::nic),
        template: None,
    };
    Sandbox::restore_checkpoint(
        hypervisor.as_ref(),
        sandbox_config,
        &restored.checkpoint,
        restored.info.method,
    )
    .await
}

/// Waits until the main process may start: once a client attached (or
/// after a while) with `wait_attach`, on `Start` in runc mode.
async fn wait_for_go(shared: &Shared, mode: Mode) -> Result<(), BootError> {
    if mode.wait_attach {
        tokio::select! {
            _ = shared.attached.notified() => {}
            _ = tokio::time::sleep(ATTACH_TIMEOUT) => {}
            _ = shared.kill_vm.notified() => return Err(BootError::StoppedBeforeStart),
        }
    }
    if mode.runc {
        tokio::select! {
            _ = shared.start_gate.notified() => {}
            _ = shared.kill_vm.notified() => return Err(BootError::StoppedBeforeStart),
        }
    }
    Ok(())
}

/// The main process's streams: its output pumped into the log and the
/// sinks, and its stdin with `-i`.
struct MainIo {
    pumps: Vec<JoinHandle<()>>,
    stdin: Option<Arc<InputStream>>,
}

impl MainIo {
    fn open(shared: &Shared, client: &AgentClient) -> Result<Self, BootError> {
        let log = LogWriter::open(&shared.container.log_path(), LOG_MAX_SIZE, LOG_MAX_FILES)
            .map_err(BootError::Log)?;
        let log = Arc::new(Mutex::new(log));
        let pump = |stream, which, sink: &pumps::Sink| {
            let output = client.open_output(stream);
            let log = Some((log.clone(), which));
            pumps::pump_output(shared.handle.clone(), output, log, sink.clone())
        };
        let pumps = vec![
            pump(MAIN_STDOUT, LogStream::Stdout, &shared.stdout),
            pump(MAIN_STDERR, LogStream::Stderr, &shared.stderr),
        ];
        let stdin =
            (shared.container.config.open_stdin).then(|| Arc::new(client.open_input(MAIN_STDIN)));
        Ok(Self { pumps, stdin })
    }

    /// Waits for the output to be written out.
    async fn join(self) {
        pumps::join(self.pumps).await;
    }
}

/// What the agent is asked to run.
fn run_request(
    container: &Container,
    serials: Serials,
    main: &MainIo,
    network: Option<&Joined>,
    host: Option<&Container>,
) -> RunContainer {
    let config = &container.config;
    RunContainer {
        container_id: config.id.clone(),
        rootfs: RootfsSource {
            disk_serial: serials.rootfs,
            fs_type: config.fs_type.clone(),
            scratch_serial: Some(serials.scratch),
        },
        spec: config.spec.clone(),
        user: config.user.clone(),
        stdio: Stdio {
            stdin: main.stdin.as_ref().map(|_| MAIN_STDIN),
            stdout: MAIN_STDOUT,
            stderr: MAIN_STDERR,
        },
        // A VM of its own ends with it; another's runs on, and so does
        // one kept for an export of the container's changes.
        shutdown_on_exit: host.is_none() && !config.keep_vm_for_export,
        network: network.map(Joined::guest),
        share: None,
    }
}

/// Starts the container's share server, if it has host files or volumes,
/// and gives its VM the stream to it (every start path comes here).
async fn attach_shares(
    sandbox: &mut Sandbox,
    container: &Container,
) -> Result<Option<ShareChannel>, SandboxError> {
    let config = &container.config;
    if config.shares.is_empty() {
        return Ok(None);
    }
    let spec = ShareSpec {
        sources: config
            .shares
            .iter()
            .map(|s| ShareSource {
                path: s.source.clone(),
                read_only: s.read_only,
            })
            .collect(),
        id_map: id_map(&config.spec),
    };
    sandbox.attach_shares(&spec).await.map(Some)
}

/// A user-namespaced container's maps, for the share server to show host
/// files with the ids the container expects.
fn id_map(spec: &oci_spec::runtime::Spec) -> IdMap {
    let ranges = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .map(|m| IdRange {
                container: m.container_id(),
                guest: m.host_id(),
                len: m.size(),
            })
            .collect()
    };
    let linux = spec.linux().as_ref();
    IdMap {
        uids: ranges(linux.and_then(|l| l.uid_mappings().as_ref())),
        gids: ranges(linux.and_then(|l| l.gid_mappings().as_ref())),
    }
}

/// Waits for `start`, the agent's answer to RunContainer, for at most
/// `timeout`, or until a stop.
async fn bounded_start(
    kill_vm: &Notify,
    timeout: Duration,
    start: impl Future<Output = Result<u32, SandboxError>>,
) -> Result<u32, BootError> {
    tokio::select! {
        started = tokio::time::timeout(timeout, start) => match started {
            Ok(Ok(pid)) => Ok(pid),
            Ok(Err(e)) => Err(BootError::Start(e)),
            Err(_) => Err(BootError::StartTimeout(timeout)),
        },
        _ = kill_vm.notified() => Err(BootError::StoppedBeforeStart),
    }
}

/// The main process runs: feed it an early stdin, record it, and let the
/// control connections reach the agent.
fn mark_running(shared: &Shared, client: &Arc<AgentClient>, main: &MainIo, pid: u32) {
    if let Some(stdin) = &main.stdin {
        *lock(&shared.stdin) = Some(stdin.clone());
        if let Some((fd, cancel)) = lock(&shared.early_stdin).take() {
            pumps::pump_input(shared.handle.clone(), fd, stdin.clone(), cancel, true);
        }
    }
    let _ = shared.container.update(|s| {
        s.status = Some(Status::Running);
        s.pid = Some(pid);
        s.started_at = Some(now_nanos());
        s.starts += 1;
    });
    shared.client.send_replace(Some(client.clone()));
    shared.started.send_replace(Some(pid));
    hull_sandbox::timings::mark("container_started");
}

/// How the main process's run ended.
enum Ending {
    Exited {
        status: ExitStatus,
        oom_killed: bool,
    },
    /// Powered off on purpose (`stop` ran out of patience, `rm -f`).
    PoweredOff,
    VmGone(String),
    /// The agent broke the protocol; its connection is gone.
    Violation(Violation),
    /// Saved by a checkpoint, which stops the container (its VM is
    /// stopped, to be killed).
    Checkpointed,
}

/// Passes exec exits on until the main process exits, the VM dies, or a
/// stop powers it off.
async fn watch_main(shared: &Shared, sandbox: &mut Sandbox, events: &mut Events) -> Ending {
    let mut checkpoints = shared.checkpoints.take();
    loop {
        let next_checkpoint = async {
            match checkpoints.as_mut() {
                Some(orders) => orders.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(order) = next_checkpoint => {
                if super::checkpoint::carry_out(shared, sandbox, order).await {
                    return Ending::Checkpointed;
                }
            }
            event = events.recv() => match event {
                Some(Event::ProcessExited { process, status, oom_killed }) => {
                    if process == hull_protocol::MAIN_PROCESS {
                        hull_sandbox::timings::mark("container_exited");
                        return Ending::Exited { status, oom_killed };
                    }
                    if let Some(tx) = lock(&shared.exec_exits).remove(&process) {
                        let _ = tx.send(status);
                    }
                }
                None => return match sandbox.client().violation() {
                    Some(violation) => Ending::Violation(violation),
                    None => Ending::VmGone(sandbox.vm_gone_reason(None)),
                },
            },
            status = sandbox.wait_vm() => return Ending::VmGone(sandbox.vm_gone_reason(status)),
            _ = shared.kill_vm.notified() => return Ending::PoweredOff,
        }
    }
}

/// The main process exited in a VM kept for exports: the exit is
/// recorded and told now (waiters and an attached `run` get it), while
/// the VM, its agent and the mounted writable layer stay until a stop
/// (`stop`, `rm`) or the VM's death; then it powers off.
async fn keep_for_export(
    shared: &Shared,
    mut sandbox: Sandbox,
    main: MainIo,
    mut events: Events,
    status: ExitStatus,
    oom_killed: bool,
) -> Outcome {
    let client = sandbox.client();
    client.close_output(MAIN_STDOUT);
    client.close_output(MAIN_STDERR);
    main.join().await;
    let outcome = Outcome {
        exit_code: status.shell_code(),
        oom_killed,
        error: None,
        started: true,
    };
    super::record_exit(&shared.container, &outcome);
    let vm_pid = sandbox.vm_pid();
    let _ = shared
        .container
        .update(|s| s.vm_pid = vm_pid.map(|p| p as i32));
    shared.kept.send_replace(Some(client.clone()));
    shared.outcome.send_replace(Some(outcome.clone()));
    let violation = loop {
        tokio::select! {
            event = events.recv() => match event {
                // Exec'd processes died with the container's namespaces.
                Some(_) => continue,
                None => break client.violation(),
            },
            _ = sandbox.wait_vm() => break None,
            _ = shared.kill_vm.notified() => break None,
        }
    };
    shared.kept.send_replace(None);
    match violation {
        Some(_) => sandbox.destroy().await,
        None => sandbox.delete().await,
    }
    outcome
}

/// Takes the VM down as the ending asks and waits for the output. With
/// `discard` (the container is removed with its writable layer when it
/// exits) nothing in the VM is worth a clean power-off: it is killed once
/// the output is in.
async fn end(sandbox: Sandbox, main: MainIo, ending: Ending, discard: bool) -> Outcome {
    match ending {
        Ending::Exited { status, oom_killed } => {
            // The agent closed the output streams before it reported the
            // exit, so the pumps are finishing. One that did not is
            // closed here: the host waits for no more of its output.
            let client = sandbox.client();
            client.close_output(MAIN_STDOUT);
            client.close_output(MAIN_STDERR);
            main.join().await;
            if discard {
                sandbox.destroy().await;
            } else {
                sandbox.delete().await;
            }
            Outcome {
                exit_code: status.shell_code(),
                oom_killed,
                error: None,
                started: true,
            }
        }
        Ending::PoweredOff | Ending::Checkpointed => {
            // As a SIGKILL would (runc's checkpoint kills the container).
            sandbox.destroy().await;
            main.join().await;
            Outcome {
                exit_code: 128 + libc::SIGKILL,
                oom_killed: false,
                error: None,
                started: true,
            }
        }
        Ending::Violation(violation) => {
            // Nothing the guest says is trusted any more: no clean
            // power-off.
            sandbox.destroy().await;
            main.join().await;
            BootError::Agent(violation).outcome(true)
        }
        Ending::VmGone(reason) => {
            sandbox.delete().await;
            main.join().await;
            // A failure of hull's, not the container's: docker's 125.
            BootError::VmDied(reason).outcome(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use hull_protocol::AgentError;

    use super::*;

    fn failed(e: BootError) -> (i32, String) {
        let outcome = e.outcome(false);
        (outcome.exit_code, outcome.error.unwrap_or_default())
    }

    #[test]
    fn boot_failures_keep_their_one_line_messages() {
        let in_use = io::Error::from_raw_os_error(libc::EADDRINUSE);
        let expected = format!("supervisor socket: {in_use}");
        assert_eq!(failed(BootError::Socket(in_use)), (125, expected));
        assert_eq!(
            failed(BootError::HostGone("0123456789ab".into())),
            (
                125,
                "container 0123456789ab (whose VM it joins) is gone".into()
            )
        );
        assert_eq!(
            failed(BootError::StoppedBooting),
            (137, "stopped while the VM booted".into())
        );
        assert_eq!(
            failed(BootError::VmDied("killed by signal 9".into())),
            (
                125,
                "the VM died while the container ran (killed by signal 9)".into()
            )
        );
    }

    /// A fake agent on a socket pair that says hello and then only what
    /// the test writes; the host's client of it.
    async fn fake_agent() -> (Arc<AgentClient>, Events, tokio::net::UnixStream) {
        use hull_protocol::{ControlMessage, PROTOCOL_VERSION};
        use tokio::io::AsyncWriteExt;
        let (host, mut agent) = tokio::net::UnixStream::pair().unwrap();
        let hello = ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: "hostile".into(),
        };
        agent.write_all(&hello.to_frame().encode()).await.unwrap();
        let (client, events) = AgentClient::start(host, Duration::from_secs(5))
            .await
            .unwrap();
        (Arc::new(client), events, agent)
    }

    /// The start request as `boot_and_run` makes it, to `client`.
    fn start(client: &Arc<AgentClient>) -> impl Future<Output = Result<u32, SandboxError>> {
        let client = client.clone();
        async move {
            client
                .request(hull_protocol::Request::Shutdown)
                .await
                .map(|_| 1)
                .map_err(SandboxError::Request)
        }
    }

    /// (d) An agent that never answers RunContainer cannot hold the boot.
    #[tokio::test]
    async fn a_start_never_answered_times_out() {
        let (client, _events, _agent) = fake_agent().await;
        let timeout = Duration::from_millis(200);
        let begun = std::time::Instant::now();
        let e = bounded_start(&Notify::new(), timeout, start(&client))
            .await
            .unwrap_err();
        assert!(begun.elapsed() < Duration::from_secs(5));
        assert_eq!(
            failed(e),
            (
                125,
                "the guest agent did not answer the start request within 200ms".into()
            )
        );
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_for_the_start() {
        let (client, _events, _agent) = fake_agent().await;
        let kill_vm = Notify::new();
        kill_vm.notify_one();
        let e = bounded_start(&kill_vm, START_REPLY_TIMEOUT, start(&client)).await;
        assert!(matches!(e, Err(BootError::StoppedBeforeStart)));
    }

    /// An agent that overruns a window while the start waits fails the
    /// container with the violation, on one line.
    #[tokio::test]
    async fn a_violation_is_the_containers_error() {
        use hull_protocol::{frame::MAX_DATA_CHUNK, Frame, INITIAL_WINDOW};
        use tokio::io::AsyncWriteExt;
        let (client, mut events, mut agent) = fake_agent().await;
        let _stdout = client.open_output(MAIN_STDOUT);
        let flood = tokio::spawn(async move {
            let frame = Frame::data(MAIN_STDOUT, vec![0; MAX_DATA_CHUNK]).encode();
            while agent.write_all(&frame).await.is_ok() {}
        });
        let e = bounded_start(&Notify::new(), START_REPLY_TIMEOUT, start(&client))
            .await
            .unwrap_err();
        let e = client.violation().map_or(e, BootError::Agent);
        let by = 9 * MAX_DATA_CHUNK as u64 - u64::from(INITIAL_WINDOW);
        assert_eq!(
            failed(e),
            (
                125,
                format!("the guest agent broke the protocol: it overran stream 1's window by {by} bytes")
            )
        );
        // The events end with the connection: watch_main sees the same.
        assert!(events.recv().await.is_none());
        flood.await.unwrap();
    }

    #[test]
    fn a_command_that_cannot_run_exits_as_a_shell_would() {
        let start = |kind| {
            let e = SandboxError::Start(AgentError::new(kind, "exec: nope"));
            failed(BootError::Start(e))
        };
        assert_eq!(
            start(ErrorKind::CommandNotFound),
            (127, "exec: nope".into())
        );
        assert_eq!(start(ErrorKind::CommandNotExecutable).0, 126);
        assert_eq!(start(ErrorKind::Setup).0, 125);
    }
}
