//! The agent's server: reads frames from the host, routes data to streams
//! and requests to thin handlers that call the domain modules. This file
//! alone owns and updates the connection's state (its container, its
//! processes): the domain modules take arguments and return values, and
//! report exits through [`ProcessEvents`], which [`Agent`] implements.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hull_protocol::{
    AgentError, ControlMessage, ErrorKind, ExecProcess, ExportChanges, FrameDecoder, FrameKind,
    GuestNetwork, Reply, Request, RunContainer, MAIN_PROCESS, PROTOCOL_VERSION,
};

use crate::container::io::{Link, ProcessEvents, Role};
use crate::container::{self, ContainerInfo, Layout, Started};
use crate::process::Reaper;
use crate::sys;
use crate::syscall::{Syscall, LINUX};
use crate::wire::{Streams, Wire};

/// How long a `--rm` VM waits for the host's shutdown after the exit was
/// reported, before powering off on its own.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long `RemoveContainer` waits for the killed main process to be
/// reaped before it unmounts anyway.
const REMOVE_WAIT: Duration = Duration::from_secs(5);

/// One connection from the host, serving one container. The VM's first
/// connection (`primary`) owns the VM: its end powers the VM off. A
/// container that joins the VM (a pod) comes with a connection of its
/// own, on a port the host hot-adds.
pub struct Agent {
    pub wire: Arc<Wire>,
    pub streams: Arc<Streams>,
    pub reaper: Arc<Reaper>,
    pub vm: Arc<Vm>,
    primary: bool,
    /// The kernel, as container set-up sees it.
    sys: &'static dyn Syscall,
    /// Where container set-up finds and keeps things.
    layout: Layout,
    state: Mutex<State>,
}

/// What the containers of one VM share.
#[derive(Default)]
pub struct Vm {
    /// Ids of the containers in the VM, on any connection.
    containers: Mutex<HashSet<String>>,
    /// The network as the first container set it up (`Some(None)`:
    /// loopback only); later containers share it.
    network: Mutex<Option<Option<GuestNetwork>>>,
}

impl Vm {
    /// The VM's network: set up from `requested` by the first container,
    /// shared as it is by the containers that join later.
    pub fn network(
        &self,
        requested: Option<&GuestNetwork>,
    ) -> Result<Option<GuestNetwork>, crate::net::NetError> {
        let mut network = self.network.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(configured) = network.as_ref() {
            return Ok(configured.clone());
        }
        crate::net::configure(requested)?;
        *network = Some(requested.cloned());
        Ok(requested.cloned())
    }

    fn containers(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct State {
    /// The id of this connection's container, once a `RunContainer` came.
    container_claimed: Option<String>,
    /// Set once the main process runs.
    container: Option<Arc<ContainerInfo>>,
    /// The main process has exited: the container is stopped for good.
    stopped: bool,
    /// The container's processes by id (the main one is [`MAIN_PROCESS`]),
    /// from the request that starts one until its exit.
    processes: HashMap<String, ProcessEntry>,
    /// Set between `Checkpoint` and `Unpark`: whether the container was
    /// frozen (paused) before, so `Unpark` leaves it so.
    parked: Option<bool>,
}

#[derive(Default)]
struct ProcessEntry {
    /// None while it is being started.
    pid: Option<i32>,
    /// The pty master, when it has a terminal.
    terminal: Option<OwnedFd>,
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::InvalidRequest, message)
}

impl Agent {
    /// The VM's first connection.
    pub fn new(wire: Wire, reaper: Arc<Reaper>) -> Arc<Self> {
        Self::session(wire, reaper, Arc::default(), true)
    }

    /// A connection for a container that joins the VM.
    pub fn joined(wire: Wire, reaper: Arc<Reaper>, vm: Arc<Vm>) -> Arc<Self> {
        Self::session(wire, reaper, vm, false)
    }

    fn session(wire: Wire, reaper: Arc<Reaper>, vm: Arc<Vm>, primary: bool) -> Arc<Self> {
        Arc::new(Self {
            wire: Arc::new(wire),
            streams: Arc::default(),
            reaper,
            vm,
            primary,
            sys: &LINUX,
            layout: Layout::default(),
            state: Mutex::default(),
        })
    }

    /// What a process's streams and exit report go through.
    fn link(&self) -> Link {
        Link {
            wire: self.wire.clone(),
            streams: self.streams.clone(),
            reaper: self.reaper.clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims this connection (one container each) and the VM-wide id.
    fn claim_container(&self, id: &str) -> Result<(), AgentError> {
        let mut state = self.state();
        if state.container_claimed.is_some() {
            return Err(invalid("this connection already runs a container"));
        }
        if !self.vm.containers().insert(id.to_string()) {
            return Err(invalid(format!("container {id:?} already runs in this VM")));
        }
        state.container_claimed = Some(id.to_string());
        Ok(())
    }

    /// Ends this connection's container, if it joined the VM: kills what is
    /// left of it, unmounts its root and frees its id, so its disks can go.
    pub fn remove_container(&self, id: &str) -> Result<Reply, AgentError> {
        if self.primary {
            return Err(invalid(
                "the VM's first container ends with the VM, not on its own",
            ));
        }
        if self.state().container_claimed.as_deref() != Some(id) {
            return Err(invalid(format!("no container {id:?} on this connection")));
        }
        self.release_container();
        Ok(Reply::Done)
    }

    /// What `remove_container` does, also when a joined container's
    /// connection ends without it.
    pub fn release_container(&self) {
        if self.primary {
            return;
        }
        let Some(id) = self.state().container_claimed.clone() else {
            return;
        };
        self.kill_all();
        let deadline = std::time::Instant::now() + REMOVE_WAIT;
        while !self.main_gone() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let container = self.state().container.take();
        if let Some(container) = container {
            container.cgroup.kill_all();
            container.cgroup.remove();
        }
        container::rootfs::release(self.sys, &self.layout, &id);
        self.vm.containers().remove(&id);
    }

    /// Whether this connection was asked for a container, or the VM ran
    /// one on any connection.
    pub fn ran_a_container(&self) -> bool {
        self.state().container_claimed.is_some() || !self.vm.containers().is_empty()
    }

    /// The main process has exited, or never ran.
    fn main_gone(&self) -> bool {
        let state = self.state();
        state.stopped || state.container.is_none()
    }

    /// The main process of `container` runs as `pid`.
    fn container_started(&self, container: Arc<ContainerInfo>, pid: i32) {
        let mut state = self.state();
        state.container = Some(container);
        state.processes.insert(
            MAIN_PROCESS.to_string(),
            ProcessEntry {
                pid: Some(pid),
                terminal: None,
            },
        );
    }

    /// The container `id`, if it is this VM's and still runs.
    fn running_container(&self, id: &str) -> Result<Arc<ContainerInfo>, AgentError> {
        Self::running(&self.state(), id)
    }

    fn running(state: &State, id: &str) -> Result<Arc<ContainerInfo>, AgentError> {
        match &state.container {
            Some(container) if container.id == id && state.stopped => Err(invalid(format!(
                "container {id:?} is not running: its main process has exited"
            ))),
            Some(container) if container.id == id => Ok(container.clone()),
            _ => Err(invalid(format!("no container {id:?} in this VM"))),
        }
    }

    /// Claims `process_id` for a new process of the running container.
    fn reserve_process(
        &self,
        container_id: &str,
        process_id: &str,
    ) -> Result<Arc<ContainerInfo>, AgentError> {
        let mut state = self.state();
        let container = Self::running(&state, container_id)?;
        if state.processes.contains_key(process_id) {
            return Err(invalid(format!(
                "process id {process_id:?} is already in use"
            )));
        }
        state
            .processes
            .insert(process_id.to_string(), ProcessEntry::default());
        Ok(container)
    }

    fn process_started(&self, process_id: &str, pid: i32) {
        if let Some(entry) = self.state().processes.get_mut(process_id) {
            entry.pid = Some(pid);
        }
    }

    fn set_terminal(&self, process_id: &str, master: OwnedFd) {
        if let Some(entry) = self.state().processes.get_mut(process_id) {
            entry.terminal = Some(master);
        }
    }

    /// Forgets a process that ended (or never started); the end of the
    /// main process stops the container.
    fn forget_process(&self, process_id: &str) {
        let mut state = self.state();
        state.processes.remove(process_id);
        if process_id == MAIN_PROCESS {
            state.stopped = true;
        }
    }

    /// `RunContainer`: checks the request, claims the container, sets up
    /// the VM's network (the first container) and creates it.
    fn run_container(self: &Arc<Self>, request: RunContainer) -> Result<Reply, AgentError> {
        crate::steps::begin();
        let plan = container::check_run(request, &self.streams, self.primary)?;
        self.claim_container(plan.id())?;
        crate::steps::mark("request");
        debug!("container {}: preparing the root", plan.id());
        let network = self
            .vm
            .network(plan.network())
            .map_err(|e| container::setup_error(&e))?;
        crate::steps::mark("network");
        let role = Role::Main {
            shutdown_on_exit: plan.shutdown_on_exit(),
        };
        let started =
            container::create(self.sys, &self.layout, plan, network.as_ref(), &self.reaper)?;
        self.container_started(started.container.clone(), started.pid);
        self.connect(MAIN_PROCESS, started, role)
    }

    /// `ExecProcess`: another process in the running container.
    fn exec_process(self: &Arc<Self>, request: ExecProcess) -> Result<Reply, AgentError> {
        let params = container::exec::check(&request, &self.streams)?;
        let container = self.reserve_process(&request.container_id, &request.process_id)?;
        let started = self.start_exec(container, &request, params);
        if started.is_err() {
            self.forget_process(&request.process_id);
        }
        started
    }

    fn start_exec(
        self: &Arc<Self>,
        container: Arc<ContainerInfo>,
        request: &ExecProcess,
        mut params: container::ProcessParams,
    ) -> Result<Reply, AgentError> {
        let opened = container::exec::open(&container, request, &mut params)?;
        // The main process may have ended while they were opened.
        self.running_container(&container.id)?;
        let started =
            container::exec::start(self.sys, container, request, params, opened, &self.reaper)?;
        self.process_started(&request.process_id, started.pid);
        self.connect(&request.process_id, started, Role::Exec)
    }

    /// Connects a process that runs to the host's streams and watches for
    /// its exit; one that cannot be connected is killed and forgotten (a
    /// main process takes its container's cgroup with it).
    fn connect(
        self: &Arc<Self>,
        process_id: &str,
        started: Started,
        role: Role,
    ) -> Result<Reply, AgentError> {
        let Started {
            container,
            pid,
            stdio,
            ends,
        } = started;
        let link = self.link();
        let attached = match container::io::attach(&link, stdio, ends) {
            Ok((attached, terminal)) => {
                if let Some(master) = terminal {
                    self.set_terminal(process_id, master);
                }
                attached
            }
            Err(err) => {
                container::io::abandon(&self.reaper, pid);
                self.forget_process(process_id);
                if matches!(role, Role::Main { .. }) {
                    container.cgroup.kill_all();
                    container.cgroup.remove();
                }
                return Err(err);
            }
        };
        let events: Arc<dyn ProcessEvents> = self.clone();
        container::io::supervise(
            link,
            events,
            container,
            process_id.to_string(),
            pid,
            attached,
            role,
        );
        crate::steps::mark("stdio");
        Ok(Reply::Started {
            pid: pid as u32,
            steps: crate::steps::take(),
        })
    }

    fn resize(&self, process: &str, rows: u16, cols: u16) -> Result<Reply, AgentError> {
        let state = self.state();
        let Some(master) = state
            .processes
            .get(process)
            .and_then(|entry| entry.terminal.as_ref())
        else {
            return Err(invalid(format!("no terminal for process {process:?}")));
        };
        sys::set_window_size(master.as_raw_fd(), rows, cols)
            .map(|_| Reply::Done)
            .map_err(|e| invalid(format!("resize: {e}")))
    }

    /// Serves the host until it goes away.
    pub fn serve(self: &Arc<Self>, mut input: File) -> io::Result<()> {
        self.wire.send_unheld(&ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: format!("hull-agent {}", env!("CARGO_PKG_VERSION")),
        })?;
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            decoder.feed(&buf[..n]);
            while let Some(frame) = decoder
                .next_frame()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                match frame.kind {
                    FrameKind::Control => {
                        self.on_control(ControlMessage::from_frame(&frame).map_err(|e| {
                            io::Error::new(io::ErrorKind::InvalidData, container::error_chain(&e))
                        })?)?
                    }
                    FrameKind::Data => self.streams.deliver(frame.stream, frame.payload),
                    FrameKind::Eof => self.streams.close_input(frame.stream),
                    FrameKind::Window => {
                        if let Some(credit) = frame.window_credit() {
                            self.streams.grant(frame.stream, credit);
                        }
                    }
                }
            }
        }
    }

    fn on_control(self: &Arc<Self>, message: ControlMessage) -> io::Result<()> {
        match message {
            ControlMessage::Hello { version, .. } if version != PROTOCOL_VERSION => {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("host speaks protocol {version}, agent speaks {PROTOCOL_VERSION}"),
                ))
            }
            ControlMessage::Hello { .. } => Ok(()),
            ControlMessage::Request { id, request } => {
                // Requests may block (mounts, exec); the reader must not.
                let agent = self.clone();
                std::thread::spawn(move || {
                    let shutdown = matches!(request, Request::Shutdown) && agent.primary;
                    let checkpoint = matches!(request, Request::Checkpoint { .. });
                    let result = agent.handle(request);
                    let response = ControlMessage::Response { id, result };
                    // A checkpoint's answer is the last frame before the
                    // host saves the VM.
                    let _ = match &response {
                        ControlMessage::Response { result: Ok(_), .. } if checkpoint => {
                            agent.wire.send_then_hold(&response)
                        }
                        _ => agent.wire.send_message(&response),
                    };
                    if shutdown {
                        crate::net::drain_tcp();
                        sys::power_off();
                    }
                });
                Ok(())
            }
            ControlMessage::Response { .. } | ControlMessage::Event { .. } => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "host sent an agent-only message",
            )),
        }
    }

    fn handle(self: &Arc<Self>, request: Request) -> Result<Reply, AgentError> {
        match request {
            Request::RunContainer(spec) => self.run_container(*spec),
            Request::ExecProcess(exec) => self.exec_process(*exec),
            Request::Signal { process, signal } => self.signal(&process, signal),
            Request::ResizeTerminal {
                process,
                rows,
                cols,
            } => self.resize(&process, rows, cols),
            Request::Stats { container_id } => {
                container::stats(&*self.running_container(&container_id)?)
            }
            Request::ListProcesses { container_id } => {
                container::list_processes(&*self.running_container(&container_id)?)
            }
            Request::SignalContainer {
                container_id,
                signal,
            } => {
                container::check_signal(signal)?;
                container::signal_all(&*self.running_container(&container_id)?, signal)
            }
            Request::Freeze {
                container_id,
                frozen,
            } => container::freeze(&*self.running_container(&container_id)?, frozen),
            Request::UpdateResources {
                container_id,
                resources,
            } => container::update_resources(
                self.sys,
                &*self.running_container(&container_id)?,
                &resources,
            ),
            Request::RemoveContainer { container_id } => self.remove_container(&container_id),
            Request::Shutdown if !self.primary => Err(invalid(
                "a container that joined the VM cannot power it off",
            )),
            Request::Shutdown => {
                self.kill_all();
                Ok(Reply::Done)
            }
            Request::Wake(wake) => self.wake(&wake),
            Request::ExportChanges(export) => self.export_changes(&export),
            Request::Checkpoint { container_id } => self.checkpoint(&container_id),
            Request::Unpark {
                container_id,
                restored,
            } => self.unpark(&container_id, restored.as_ref()),
        }
    }

    /// `Checkpoint`: freezes the container for the save; the caller holds
    /// the wire once the answer is out. Only a VM's own container with no
    /// other process: an exec's streams would not survive a restore.
    fn checkpoint(&self, id: &str) -> Result<Reply, AgentError> {
        if !self.primary {
            return Err(invalid(
                "a container that joined a VM cannot be checkpointed",
            ));
        }
        let container = self.running_container(id)?;
        if self.vm.containers().len() > 1 {
            return Err(invalid(
                "other containers run in this VM (a pod); a checkpoint takes one container's VM",
            ));
        }
        let mut state = self.state();
        if state.parked.is_some() {
            return Err(invalid(format!(
                "container {id:?} is already being checkpointed"
            )));
        }
        if state.processes.len() > 1 {
            return Err(invalid(format!(
                "container {id:?} has exec'd processes running; a checkpoint takes only the main process's"
            )));
        }
        let was_frozen = container::is_frozen(&container);
        if !was_frozen {
            container::freeze(&container, true)?;
        }
        state.parked = Some(was_frozen);
        Ok(Reply::Done)
    }

    /// `Unpark`: the save is done (the VM runs on, or this is a restore of
    /// it): the container carries on as it was.
    fn unpark(
        &self,
        id: &str,
        restored: Option<&hull_protocol::Wake>,
    ) -> Result<Reply, AgentError> {
        let container = self.running_container(id)?;
        let Some(was_frozen) = self.state().parked else {
            return Err(invalid(format!("container {id:?} is not checkpointed")));
        };
        if let Some(wake) = restored {
            crate::wake::wake(wake).map_err(|e| invalid(format!("wake the restored VM: {e}")))?;
            self.streams.reset_credit();
        }
        self.state().parked = None;
        self.wire.release();
        if !was_frozen {
            container::freeze(&container, false)?;
        }
        Ok(Reply::Done)
    }

    /// Whether the host saved this VM and has not said to carry on: a
    /// connection reset then is the restore's (hull-vmm), not the host's end.
    pub fn parked(&self) -> bool {
        self.state().parked.is_some()
    }

    /// `ExportChanges`: the container's writable layer as a layer tar on
    /// the host's stream, whether its main process runs (the host froze
    /// it) or has exited (its root stays mounted until the VM goes).
    fn export_changes(&self, request: &ExportChanges) -> Result<Reply, AgentError> {
        let id = &request.container_id;
        let known = matches!(&self.state().container, Some(c) if &c.id == id);
        if !known {
            return Err(invalid(format!("no container {id:?} in this VM")));
        }
        if request.stream == 0 || self.streams.contains(request.stream) {
            return Err(invalid(format!(
                "stream {} is not free for the export",
                request.stream
            )));
        }
        let credit = self.streams.add_output(request.stream);
        let state = self.layout.state.join(id);
        let result = crate::export::export(
            &state,
            request.source_date_epoch,
            request.stream,
            credit,
            self.wire.clone(),
        );
        self.streams.remove_output(request.stream);
        match result {
            Ok(written) => Ok(Reply::Exported {
                entries: written.entries,
                bytes: written.bytes,
            }),
            Err(e) => {
                // The host reads the stream to its end either way.
                let _ = self.wire.send(&hull_protocol::Frame::eof(request.stream));
                Err(AgentError::new(
                    ErrorKind::Setup,
                    format!("export the changes: {e}"),
                ))
            }
        }
    }

    /// A clone takes its own RNG state, clock and MAC address; only on the
    /// VM's own connection, and before any container ran in it.
    fn wake(&self, wake: &hull_protocol::Wake) -> Result<Reply, AgentError> {
        if !self.primary {
            return Err(invalid("a container that joined the VM cannot wake it"));
        }
        if !self.vm.containers().is_empty() {
            return Err(invalid("a VM wakes before its first container"));
        }
        crate::wake::wake(wake).map_err(|e| invalid(format!("wake the clone: {e}")))?;
        Ok(Reply::Done)
    }

    fn signal(&self, process: &str, signal: i32) -> Result<Reply, AgentError> {
        let Some(pid) = self.state().processes.get(process).and_then(|e| e.pid) else {
            return Err(invalid(format!("no running process {process:?}")));
        };
        sys::kill(pid, signal)
            .map(|_| Reply::Done)
            .map_err(|e| invalid(format!("signal {signal}: {e}")))
    }

    /// Kills every process of the container (the main one first: its PID
    /// namespace dies with it).
    pub fn kill_all(&self) {
        let state = self.state();
        let main = state.processes.get(MAIN_PROCESS).and_then(|e| e.pid);
        let others = state
            .processes
            .iter()
            .filter(|(id, _)| id.as_str() != MAIN_PROCESS)
            .filter_map(|(_, e)| e.pid);
        for pid in main.into_iter().chain(others) {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
    }
}

impl ProcessEvents for Agent {
    fn process_exited(&self, process_id: &str) {
        self.forget_process(process_id);
    }

    fn power_off_soon(&self) {
        std::thread::spawn(|| {
            std::thread::sleep(SHUTDOWN_GRACE);
            crate::net::drain_tcp();
            sys::power_off();
        });
    }
}
