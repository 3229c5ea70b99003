//! The supervisor: one small process per started container, in the role
//! conmon plays for podman. It owns the hypervisor process and the agent
//! connection, writes the container's output to its log, serves the
//! control socket (attach, signals, stop, exec, stats, top, wait), records
//! the exit in the container's state and outlives the `hull` command that
//! started it. One supervisor serves one boot: `hull start` spawns a new
//! one on the same record.

pub mod control;
mod exec;
mod io;
pub mod launch;
mod network;
pub mod runc;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hull_protocol::{ErrorKind, Event, ExitStatus, Request, RootfsSource, RunContainer, Stdio};
use tokio::net::UnixListener;
use tokio::sync::{oneshot, watch, Notify};

use crate::logs::{LogStream, LogWriter};
use crate::record::{now_nanos, Container, Containers, ProcessRef, Status};
use control::{ControlConn, ControlReply, ControlRequest};
use hull_sandbox::agent_client::{AgentClient, InputStream};
use hull_sandbox::assets::GuestAssets;
use hull_sandbox::hypervisor::{self, DiskSpec};
use hull_sandbox::{
    scratch::SCRATCH_SERIAL, Sandbox, SandboxConfig, SandboxError, MAIN_STDERR, MAIN_STDIN,
    MAIN_STDOUT,
};
use io::Sink;

/// Serial of the image disk, which the agent looks for.
pub const ROOTFS_SERIAL: &str = "hull-rootfs";
/// The log's size cap per file and how many files are kept (Docker's
/// json-file max-size and max-file).
const LOG_MAX_SIZE: u64 = 20 << 20;
const LOG_MAX_FILES: u32 = 5;
/// How long an attached `run` may take to attach before the container
/// starts without it.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connections get to send their last reply before the
/// supervisor exits.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace after SIGKILL before the VM is powered off.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How one boot of the container ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Set when the container did not end by its main process exiting.
    pub error: Option<String>,
    /// Whether the main process ever started.
    pub started: bool,
}

impl Outcome {
    fn failed(exit_code: i32, error: String, started: bool) -> Self {
        Self {
            exit_code,
            oom_killed: false,
            error: Some(error),
            started,
        }
    }

    fn reply(&self) -> ControlReply {
        ControlReply::Exited {
            exit_code: self.exit_code,
            oom_killed: self.oom_killed,
            error: self.error.clone(),
        }
    }
}

/// How a supervisor was asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// Start the main process only once a client attached (or after a
    /// timeout), so an attached `run` misses no output.
    pub wait_attach: bool,
    /// runc mode (`hull-runc create`): the supervisor's own stdin, stdout
    /// and stderr, as the caller passed them, are the container's; the
    /// main process starts on a `Start` request; and the supervisor exits
    /// with the container's exit code, since the caller waits on its pid.
    pub runc: bool,
}

/// What the control connections and the main task share.
struct Shared {
    container: Container,
    handle: tokio::runtime::Handle,
    stdout: Sink,
    stderr: Sink,
    /// The main process's stdin, once it runs (with `-i`).
    stdin: Mutex<Option<Arc<InputStream>>>,
    /// A stdin that attached before the main process started.
    early_stdin: Mutex<Option<(OwnedFd, Arc<AtomicBool>)>>,
    attached: Notify,
    /// The agent, while the main process runs.
    client: watch::Sender<Option<Arc<AgentClient>>>,
    /// The main process's guest pid once started; 0 if it failed to.
    started: watch::Sender<Option<u32>>,
    /// Set once everything is cleaned up.
    outcome: watch::Sender<Option<Outcome>>,
    exec_exits: Mutex<HashMap<String, oneshot::Sender<ExitStatus>>>,
    next_exec: AtomicU32,
    /// Power the VM off now.
    kill_vm: Notify,
    /// Start the main process now (runc mode).
    start_gate: Notify,
    /// Open control connections, so the last replies go out before exit.
    connections: AtomicU32,
    connections_done: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one boot of `container` to its end; returns the supervisor's exit
/// status (the container's in runc mode).
pub async fn supervise(
    root: &std::path::Path,
    containers: &Containers,
    container: Container,
    mode: Mode,
) -> i32 {
    // In runc mode the caller's stdio becomes the container's before
    // anything else can write to it.
    let runc_stdio = if mode.runc {
        match runc::take_stdio(&container) {
            Ok(stdio) => Some(stdio),
            Err(e) => {
                tracing::error!("take over the caller's stdio: {e}");
                return 125;
            }
        }
    } else {
        None
    };
    // One supervisor per container: two `hull start`s racing must not
    // boot two VMs on one writable layer.
    let me = ProcessRef::of_self();
    let claimed = container.update(|s| match s.supervisor {
        Some(other) if other != me && other.is_alive() => false,
        _ => {
            s.supervisor = Some(me);
            // Booting: no longer the exited container of a past boot.
            s.status = Some(Status::Created);
            true
        }
    });
    if !matches!(claimed, Ok(true)) {
        tracing::error!("the container already has a supervisor");
        return 125;
    }
    let socket = container.socket_path();
    let _ = std::fs::remove_file(&socket);
    let listener = match UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("listen on {}: {e}", socket.display());
            record_exit(
                &container,
                &Outcome::failed(125, format!("supervisor socket: {e}"), false),
            );
            return if mode.runc { 125 } else { 1 };
        }
    };
    let _ = container.update(|s| {
        s.error = None;
        s.exit_code = None;
        s.oom_killed = false;
        s.finished_at = None;
    });
    let shared = Arc::new(Shared {
        container: container.clone(),
        handle: tokio::runtime::Handle::current(),
        stdout: Sink::default(),
        stderr: Sink::default(),
        stdin: Mutex::new(None),
        early_stdin: Mutex::new(None),
        attached: Notify::new(),
        client: watch::Sender::new(None),
        started: watch::Sender::new(None),
        outcome: watch::Sender::new(None),
        exec_exits: Mutex::new(HashMap::new()),
        next_exec: AtomicU32::new(0),
        kill_vm: Notify::new(),
        start_gate: Notify::new(),
        connections: AtomicU32::new(0),
        connections_done: Notify::new(),
    });
    if let Some(stdio) = runc_stdio {
        runc::attach_stdio(&shared, stdio);
    }
    let acceptor = tokio::spawn(accept_loop(listener, shared.clone()));

    let networks = hull_net::Networks::new(root, containers.run_dir());
    let host = match host_vm(containers, &container) {
        Ok(host) => host,
        Err(e) => {
            record_exit(&container, &Outcome::failed(125, e, false));
            let _ = std::fs::remove_file(&socket);
            acceptor.abort();
            return if mode.runc { 125 } else { 1 };
        }
    };
    let outcome = match network::join(networks, &container.config).await {
        Ok(joined) => {
            if let Some(j) = &joined {
                let ip = j.address().to_string();
                let _ = container.update(|s| s.ip_address = Some(ip));
            }
            if let Some(host) = &host {
                let ip = host.state().ip_address;
                let _ = container.update(|s| s.ip_address = ip);
            }
            let outcome = boot_and_run(&shared, mode, joined.as_ref(), host.as_ref()).await;
            if let Some(joined) = joined {
                joined.leave();
            }
            outcome
        }
        Err(e) => Outcome::failed(125, e, false),
    };
    let exit_code = outcome.exit_code;
    if shared.started.borrow().is_none() {
        shared.started.send_replace(Some(0));
    }
    hull_sandbox::timings::mark("vm_gone");
    record_exit(&container, &outcome);
    if container.config.auto_remove {
        containers.remove(&container);
    }
    hull_sandbox::timings::mark("cleaned_up");
    shared.outcome.send_replace(Some(outcome));
    // Let attached clients and waiters get their answer.
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        while shared.connections.load(Ordering::SeqCst) > 0 {
            shared.connections_done.notified().await;
        }
    })
    .await;
    acceptor.abort();
    let _ = std::fs::remove_file(&socket);
    if mode.runc {
        exit_code
    } else {
        0
    }
}

/// The running container whose VM `container` joins, if it joins one.
fn host_vm(containers: &Containers, container: &Container) -> Result<Option<Container>, String> {
    let Some(id) = &container.config.shares_vm_with else {
        return Ok(None);
    };
    let host = containers.find(id).map_err(|_| {
        format!(
            "container {} (whose VM it joins) is gone",
            &id[..12.min(id.len())]
        )
    })?;
    if !host.state().is_running() {
        return Err(format!(
            "container {} (whose VM it joins) is not running",
            host.config.name
        ));
    }
    Ok(Some(host))
}

fn record_exit(container: &Container, outcome: &Outcome) {
    let _ = container.update(|s| {
        s.status = Some(Status::Exited);
        s.exit_code = Some(outcome.exit_code);
        s.oom_killed = outcome.oom_killed;
        s.error = outcome.error.clone();
        s.finished_at = Some(now_nanos());
        s.pid = None;
        s.vm_pid = None;
        s.ip_address = None;
        s.paused = false;
    });
}

/// Boots the VM, starts the main process, pumps its output and waits for
/// its end, then powers the VM off.
async fn boot_and_run(
    shared: &Arc<Shared>,
    mode: Mode,
    network: Option<&network::Joined>,
    host: Option<&Container>,
) -> Outcome {
    let config = &shared.container.config;
    // In a VM of its own the disks have fixed names; in another
    // container's VM, names of their own.
    let (rootfs_serial, scratch_serial) = match host {
        None => (ROOTFS_SERIAL.to_string(), SCRATCH_SERIAL.to_string()),
        Some(_) => (
            format!("hr-{}", shared.container.short_id()),
            format!("hs-{}", shared.container.short_id()),
        ),
    };
    let disks = vec![
        DiskSpec {
            path: config.rootfs_disk.clone(),
            read_only: true,
            serial: rootfs_serial.clone(),
        },
        DiskSpec {
            path: config.scratch_disk.clone(),
            read_only: false,
            serial: scratch_serial.clone(),
        },
    ];
    let created = tokio::select! {
        created = open_sandbox(shared, disks, network, host) => created,
        _ = shared.kill_vm.notified() => {
            return Outcome::failed(137, "stopped while the VM booted".into(), false);
        }
    };
    let mut sandbox = match created {
        Ok(s) => s,
        Err(e) => return Outcome::failed(125, one_line(&e), false),
    };
    let vm_pid = sandbox.vm_pid();
    let _ = shared
        .container
        .update(|s| s.vm_pid = vm_pid.map(|p| p as i32));

    if mode.wait_attach {
        tokio::select! {
            _ = shared.attached.notified() => {}
            _ = tokio::time::sleep(ATTACH_TIMEOUT) => {}
            _ = shared.kill_vm.notified() => {
                sandbox.delete().await;
                return Outcome::failed(137, "stopped before it started".into(), false);
            }
        }
    }
    if mode.runc {
        tokio::select! {
            _ = shared.start_gate.notified() => {}
            _ = shared.kill_vm.notified() => {
                sandbox.delete().await;
                return Outcome::failed(137, "stopped before it started".into(), false);
            }
        }
    }

    let client = sandbox.client();
    let log = match LogWriter::open(&shared.container.log_path(), LOG_MAX_SIZE, LOG_MAX_FILES) {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(e) => {
            sandbox.delete().await;
            return Outcome::failed(125, format!("open the container log: {e}"), false);
        }
    };
    let pumps = vec![
        io::pump_output(
            shared.handle.clone(),
            client.open_output(MAIN_STDOUT),
            Some((log.clone(), LogStream::Stdout)),
            shared.stdout.clone(),
        ),
        io::pump_output(
            shared.handle.clone(),
            client.open_output(MAIN_STDERR),
            Some((log, LogStream::Stderr)),
            shared.stderr.clone(),
        ),
    ];
    let stdin = config
        .open_stdin
        .then(|| Arc::new(client.open_input(MAIN_STDIN)));
    let request = RunContainer {
        container_id: config.id.clone(),
        rootfs: RootfsSource {
            disk_serial: rootfs_serial,
            fs_type: config.fs_type.clone(),
            scratch_serial: Some(scratch_serial),
        },
        spec: config.spec.clone(),
        user: config.user.clone(),
        stdio: Stdio {
            stdin: stdin.as_ref().map(|_| MAIN_STDIN),
            stdout: MAIN_STDOUT,
            stderr: MAIN_STDERR,
        },
        // A VM of its own ends with it; another's runs on.
        shutdown_on_exit: host.is_none(),
        network: network.map(network::Joined::guest),
    };
    let mut events = sandbox.take_events().expect("events are taken once");
    let pid = match sandbox.start_main(request).await {
        Ok(pid) => pid,
        Err(e) => {
            let code = match &e {
                SandboxError::Start(err) => match err.kind {
                    ErrorKind::CommandNotFound => 127,
                    ErrorKind::CommandNotExecutable => 126,
                    _ => 125,
                },
                _ => 125,
            };
            sandbox.delete().await;
            io::join(pumps).await;
            return Outcome::failed(code, one_line(&e), false);
        }
    };
    if let Some(stdin) = &stdin {
        *lock(&shared.stdin) = Some(stdin.clone());
        if let Some((fd, cancel)) = lock(&shared.early_stdin).take() {
            io::pump_input(shared.handle.clone(), fd, stdin.clone(), cancel, true);
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

    let ending = loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::ProcessExited { process, status, oom_killed }) => {
                    if process == hull_protocol::MAIN_PROCESS {
                        hull_sandbox::timings::mark("container_exited");
                        break Ok((status, oom_killed));
                    }
                    if let Some(tx) = lock(&shared.exec_exits).remove(&process) {
                        let _ = tx.send(status);
                    }
                }
                None => break Err(Some(sandbox_gone(&sandbox))),
            },
            status = sandbox.wait_vm() => break Err(Some(sandbox.vm_gone_reason(status))),
            _ = shared.kill_vm.notified() => break Err(POWERED_OFF),
        }
    };
    shared.client.send_replace(None);
    lock(&shared.stdin).take();
    let outcome = match ending {
        Ok((status, oom_killed)) => {
            // The agent closed the output streams before it reported the
            // exit: the pumps are finishing.
            io::join(pumps).await;
            sandbox.delete().await;
            Outcome {
                exit_code: status.shell_code(),
                oom_killed,
                error: None,
                started: true,
            }
        }
        Err(POWERED_OFF) => {
            // `stop` ran out of patience, or `rm -f`: as a SIGKILL would.
            sandbox.destroy().await;
            io::join(pumps).await;
            Outcome {
                exit_code: 128 + libc::SIGKILL,
                oom_killed: false,
                error: None,
                started: true,
            }
        }
        Err(reason) => {
            let reason = reason.unwrap_or_else(|| sandbox_gone(&sandbox));
            sandbox.delete().await;
            io::join(pumps).await;
            // A failure of hull's, not the container's: docker's 125.
            Outcome::failed(
                125,
                format!("the VM died while the container ran ({reason})"),
                true,
            )
        }
    };
    lock(&shared.exec_exits).clear();
    outcome
}

/// Boots a VM of the container's own, or joins the VM of `host`.
async fn open_sandbox(
    shared: &Arc<Shared>,
    disks: Vec<DiskSpec>,
    network: Option<&network::Joined>,
    host: Option<&Container>,
) -> Result<Sandbox, SandboxError> {
    let config = &shared.container.config;
    if let Some(host) = host {
        return Sandbox::join(
            config.id.clone(),
            shared.container.vm_dir(),
            &host.vm_dir(),
            disks,
        )
        .await;
    }
    let hypervisor = hypervisor::select(&config.hypervisor)?;
    let assets = GuestAssets {
        kernel: config.kernel.clone(),
        initramfs: config.initramfs.clone(),
    };
    let sandbox_config = SandboxConfig {
        id: config.id.clone(),
        dir: shared.container.vm_dir(),
        assets: &assets,
        vcpus: config.vcpus,
        memory_mib: config.memory_mib,
        disks,
        nic: network.map(network::Joined::nic),
    };
    Sandbox::create(hypervisor.as_ref(), sandbox_config).await
}

/// The main task's ending when the VM is powered off on purpose.
const POWERED_OFF: Option<String> = None;

fn sandbox_gone(sandbox: &Sandbox) -> String {
    sandbox.vm_gone_reason(None)
}

/// "error: cause: cause" on one line.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        shared.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Ok((conn, request, fds)) = ControlConn::accept(stream).await {
                serve(&shared, conn, request, fds).await;
            }
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            shared.connections_done.notify_waiters();
        });
    }
}

async fn serve(
    shared: &Arc<Shared>,
    mut conn: ControlConn,
    request: ControlRequest,
    fds: Vec<OwnedFd>,
) {
    let reply = match request {
        ControlRequest::Attach { stdin } => return attach(shared, conn, stdin, fds).await,
        ControlRequest::Exec(request) => return exec::serve(shared, conn, *request, fds).await,
        ControlRequest::Wait => {
            let outcome = wait_outcome(shared).await;
            outcome.reply()
        }
        ControlRequest::Signal { signal } => match running_client(shared) {
            Some(client) => agent_reply(
                client
                    .request(Request::Signal {
                        process: hull_protocol::MAIN_PROCESS.into(),
                        signal,
                    })
                    .await
                    .map(|_| ControlReply::Ok),
            ),
            None => not_running(),
        },
        ControlRequest::Resize { rows, cols } => {
            resize(shared, hull_protocol::MAIN_PROCESS, rows, cols);
            ControlReply::Ok
        }
        ControlRequest::Stop { timeout_secs } => {
            stop(shared, Duration::from_secs(timeout_secs)).await;
            ControlReply::Ok
        }
        ControlRequest::Stats => match running_client(shared) {
            Some(client) => agent_reply(
                client
                    .request(Request::Stats {
                        container_id: shared.container.config.id.clone(),
                    })
                    .await
                    .map(|r| match r {
                        hull_protocol::Reply::Stats(stats) => ControlReply::Stats(stats),
                        _ => ControlReply::Stats(Default::default()),
                    }),
            ),
            None => not_running(),
        },
        ControlRequest::Top => match running_client(shared) {
            Some(client) => agent_reply(
                client
                    .request(Request::ListProcesses {
                        container_id: shared.container.config.id.clone(),
                    })
                    .await
                    .map(|r| match r {
                        hull_protocol::Reply::Processes { processes } => {
                            ControlReply::Processes { processes }
                        }
                        _ => ControlReply::Processes {
                            processes: Vec::new(),
                        },
                    }),
            ),
            None => not_running(),
        },
        ControlRequest::Start => {
            shared.start_gate.notify_one();
            ControlReply::Ok
        }
        ControlRequest::SignalAll { signal } => match running_client(shared) {
            Some(client) => agent_reply(
                client
                    .request(Request::SignalContainer {
                        container_id: shared.container.config.id.clone(),
                        signal,
                    })
                    .await
                    .map(|_| ControlReply::Ok),
            ),
            None => not_running(),
        },
        ControlRequest::Pause => freeze(shared, true).await,
        ControlRequest::Resume => freeze(shared, false).await,
        ControlRequest::Started => {
            let mut started = shared.started.subscribe();
            let pid = match started.wait_for(Option::is_some).await {
                Ok(pid) => pid.unwrap_or(0),
                Err(_) => 0,
            };
            if pid > 0 {
                ControlReply::Started { pid }
            } else {
                let outcome = wait_outcome(shared).await;
                ControlReply::Error {
                    message: outcome
                        .error
                        .unwrap_or_else(|| "the container did not start".into()),
                    code: outcome.exit_code,
                }
            }
        }
    };
    let _ = conn.reply(&reply).await;
}

/// Freezes or thaws the container's processes and records it.
async fn freeze(shared: &Shared, frozen: bool) -> ControlReply {
    let Some(client) = running_client(shared) else {
        return not_running();
    };
    let request = Request::Freeze {
        container_id: shared.container.config.id.clone(),
        frozen,
    };
    let reply = agent_reply(client.request(request).await.map(|_| ControlReply::Ok));
    if matches!(reply, ControlReply::Ok) {
        let _ = shared.container.update(|s| s.paused = frozen);
    }
    reply
}

fn agent_reply(
    result: Result<ControlReply, hull_sandbox::agent_client::RequestError>,
) -> ControlReply {
    result.unwrap_or_else(|e| ControlReply::Error {
        message: e.to_string(),
        code: 125,
    })
}

fn not_running() -> ControlReply {
    ControlReply::Error {
        message: "the container is not running".into(),
        code: 125,
    }
}

fn running_client(shared: &Shared) -> Option<Arc<AgentClient>> {
    shared.client.borrow().clone()
}

fn resize(shared: &Shared, process: &str, rows: u16, cols: u16) {
    if let Some(client) = running_client(shared) {
        client.notify(Request::ResizeTerminal {
            process: process.into(),
            rows,
            cols,
        });
    }
}

async fn wait_outcome(shared: &Shared) -> Outcome {
    let mut rx = shared.outcome.subscribe();
    let outcome = match rx.wait_for(Option::is_some).await {
        Ok(o) => o.clone(),
        Err(_) => None,
    };
    outcome.unwrap_or_else(|| Outcome::failed(125, "the supervisor is going away".into(), false))
}

/// SIGTERM, then SIGKILL after `grace`, then power off; returns when the
/// container has stopped.
async fn stop(shared: &Arc<Shared>, grace: Duration) {
    let mut outcome = shared.outcome.subscribe();
    let signal_main = |signal: i32| match running_client(shared) {
        Some(client) => {
            client.notify(Request::Signal {
                process: hull_protocol::MAIN_PROCESS.into(),
                signal,
            });
            true
        }
        None => false,
    };
    let done = |rx: &mut watch::Receiver<Option<Outcome>>, wait: Duration| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(wait, rx.wait_for(Option::is_some))
                .await
                .is_ok()
        }
    };
    if grace.is_zero() {
        // `rm -f`, `stop -t 0`: nothing in the VM needs to be asked.
        shared.kill_vm.notify_one();
        let _ = outcome.wait_for(Option::is_some).await;
        return;
    }
    let signalled = signal_main(libc::SIGTERM);
    if shared.container.state().paused {
        // A frozen process cannot act on SIGTERM: thaw it, as docker does.
        let _ = freeze(shared, false).await;
    }
    if signalled && done(&mut outcome, grace).await {
        return;
    }
    if signal_main(libc::SIGKILL) && done(&mut outcome, KILL_GRACE).await {
        return;
    }
    shared.kill_vm.notify_one();
    let _ = outcome.wait_for(Option::is_some).await;
}

async fn attach(shared: &Arc<Shared>, mut conn: ControlConn, stdin: bool, fds: Vec<OwnedFd>) {
    let mut fds = fds.into_iter();
    let stdin_fd = if stdin { fds.next() } else { None };
    let (Some(out), Some(err)) = (fds.next(), fds.next()) else {
        let _ = conn
            .reply(&ControlReply::Error {
                message: "attach needs stdout and stderr descriptors".into(),
                code: 125,
            })
            .await;
        return;
    };
    let finished = shared.outcome.borrow().clone();
    if let Some(outcome) = finished {
        let _ = conn.reply(&outcome.reply()).await;
        return;
    }
    shared.stdout.attach(out);
    shared.stderr.attach(err);
    let cancel = Arc::new(AtomicBool::new(false));
    if let Some(fd) = stdin_fd {
        let running = lock(&shared.stdin).clone();
        match running {
            Some(input) => {
                io::pump_input(shared.handle.clone(), fd, input, cancel.clone(), true);
            }
            None => *lock(&shared.early_stdin) = Some((fd, cancel.clone())),
        }
    }
    shared.attached.notify_one();
    let mut outcome = shared.outcome.subscribe();
    loop {
        tokio::select! {
            done = async { outcome.wait_for(Option::is_some).await.ok().and_then(|o| o.as_ref().map(Outcome::reply)) } => {
                let reply = done;
                shared.stdout.detach();
                shared.stderr.detach();
                if let Some(reply) = reply {
                    let _ = conn.reply(&reply).await;
                }
                return;
            }
            request = conn.next() => match request {
                Some(ControlRequest::Signal { signal }) => {
                    if let Some(client) = running_client(shared) {
                        client.notify(Request::Signal {
                            process: hull_protocol::MAIN_PROCESS.into(),
                            signal,
                        });
                    }
                }
                Some(ControlRequest::Resize { rows, cols }) => {
                    resize(shared, hull_protocol::MAIN_PROCESS, rows, cols);
                }
                Some(_) => {}
                None => {
                    // The client went away: the container runs on.
                    shared.stdout.detach();
                    shared.stderr.detach();
                    cancel.store(true, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
}
