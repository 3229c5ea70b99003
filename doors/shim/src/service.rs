//! The `containerd.task.v2.Task` service over hull's library: a task is a
//! container record with a supervisor in runc mode (the VM boots at
//! Create, the process starts at Start), its stdio the FIFOs containerd
//! names, opened here and handed to the supervisor. An exec is a control
//! connection to that supervisor, held by a task of this shim.
//!
//! Pids: a task's pid is its supervisor's (the host process that stands
//! for the VM); an exec's is its pid in the guest, which containerd only
//! shows. Pods: a task whose CRI annotations name its pod's sandbox
//! (`io.kubernetes.cri.container-type=container`, `…sandbox-id`) runs
//! inside the sandbox task's VM (see `hull_container::plan`); each task still
//! has a shim and a supervisor of its own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, TtrpcContext, TtrpcResult};
use containerd_shim_protos::api::{self, Status};
use containerd_shim_protos::cgroups_v2::metrics::{
    CPUStat, IOEntry, IOStat, MemoryStat, Metrics, PidsStat,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim_async::Task;
use hull_container::plan::create_from_bundle;
use hull_container::supervisor::control::{
    self, AgentReply, AgentRequest, ControlClient, ControlReply, ControlRequest, ExecRequest,
};
use hull_container::supervisor::launch;
use hull_container::{lifecycle, Container, Containers};
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::stdio::Fifos;

/// How long Delete waits for the exit of a task it stopped to be known.
const EXIT_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Exit {
    status: u32,
    at: Timestamp,
}

impl Exit {
    fn now(status: i32) -> Self {
        Self {
            status: status as u32,
            at: Timestamp::now(),
        }
    }
}

/// Where a process's stdio goes, as containerd named it.
#[derive(Clone, Default)]
struct IoPaths {
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
}

/// One task: a container and its VM.
struct TaskEntry {
    id: String,
    bundle: String,
    container: Container,
    io: IoPaths,
    /// The supervisor's pid.
    pid: u32,
    started: AtomicBool,
    exit: watch::Sender<Option<Exit>>,
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
}

/// One process exec'd in a task.
struct ExecEntry {
    io: IoPaths,
    request: ExecRequest,
    /// Its pid in the guest, once started.
    pid: AtomicU32,
    exit: watch::Sender<Option<Exit>>,
    /// Signals and resizes for the connection that owns the process.
    control: Mutex<Option<mpsc::UnboundedSender<ControlRequest>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    namespace: String,
    /// The hull run dir of this namespace.
    root: PathBuf,
    /// The `hull` binary that supervises.
    hull: PathBuf,
    publisher: RemotePublisher,
    exit: Arc<ExitSignal>,
    tasks: Mutex<HashMap<String, Arc<TaskEntry>>>,
}

#[derive(Clone)]
pub struct TaskService(Arc<Inner>);

impl TaskService {
    pub fn new(
        namespace: String,
        root: PathBuf,
        publisher: RemotePublisher,
        exit: Arc<ExitSignal>,
    ) -> Self {
        Self(Arc::new(Inner {
            namespace,
            root,
            hull: hull_binary(),
            publisher,
            exit,
            tasks: Mutex::new(HashMap::new()),
        }))
    }
}

/// `hull` next to this binary, else on PATH.
fn hull_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("hull")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("hull"))
}

impl Inner {
    fn task(&self, id: &str) -> Result<Arc<TaskEntry>> {
        lock(&self.tasks)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::TaskNotFound(id.to_string()))
    }

    fn find_exec(&self, task: &TaskEntry, exec_id: &str) -> Result<Arc<ExecEntry>> {
        lock(&task.execs)
            .get(exec_id)
            .cloned()
            .ok_or_else(|| Error::ExecNotFound {
                task: task.id.clone(),
                exec: exec_id.to_string(),
            })
    }

    async fn publish(&self, event: impl Event + 'static) {
        let topic = event.topic();
        if let Err(e) = self
            .publisher
            .publish(Context::default(), &topic, &self.namespace, Box::new(event))
            .await
        {
            log::warn!("publish {topic}: {e}");
        }
    }

    async fn create(
        self: &Arc<Self>,
        req: api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse> {
        if lock(&self.tasks).contains_key(&req.id) {
            return Err(Error::AlreadyExists(req.id));
        }
        let bundle = PathBuf::from(&req.bundle);
        let mounted = crate::rootfs::mount_all(&req.rootfs, &bundle.join("rootfs"))
            .map_err(Error::host("mount the rootfs"))?;
        let (root, id, dir) = (self.root.clone(), req.id.clone(), bundle.clone());
        let prepared =
            tokio::task::spawn_blocking(move || create_from_bundle(&root, &dir, &id)).await;
        // The VM gets a disk built from the tree; the tree is not needed.
        crate::rootfs::unmount_all(&mounted);
        let container = prepared
            .map_err(Error::host("prepare the container"))?
            .map_err(Error::library("prepare the container"))?;
        let io = IoPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let spawned = self.spawn_supervisor(&container, &io).await;
        let pid = match spawned {
            Ok(pid) => pid,
            Err(e) => {
                Containers::new(&self.root).remove(&container);
                return Err(e);
            }
        };
        let task = Arc::new(TaskEntry {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            container,
            io,
            pid,
            started: AtomicBool::new(false),
            exit: watch::Sender::new(None),
            execs: Mutex::new(HashMap::new()),
        });
        lock(&self.tasks).insert(req.id.clone(), task.clone());
        tokio::spawn(self.clone().await_main_exit(task));
        self.publish(TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        })
        .await;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Starts the supervisor with the task's FIFOs as its stdio; returns
    /// its pid. A thread waits for it (this shim reaps its own children).
    async fn spawn_supervisor(&self, container: &Container, io: &IoPaths) -> Result<u32> {
        let fifos = Fifos::open(&io.stdin, &io.stdout, &io.stderr)
            .map_err(Error::host("open the task's stdio"))?;
        let stdio = [
            fifos.stdin.map_or_else(Stdio::null, Stdio::from),
            Stdio::from(fifos.stdout),
            Stdio::from(fifos.stderr),
        ];
        let (hull, root, container) = (self.hull.clone(), self.root.clone(), container.clone());
        let mut child = tokio::task::spawn_blocking(move || {
            launch::spawn_runc(&hull, &root, &root, &container, stdio)
        })
        .await
        .map_err(Error::host("start the supervisor"))?
        .map_err(Error::library("start the supervisor"))?;
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(pid)
    }

    /// Learns the main process's exit from the supervisor and tells
    /// containerd.
    async fn await_main_exit(self: Arc<Self>, task: Arc<TaskEntry>) {
        let reply = control::call(&task.container.socket_path(), &ControlRequest::Wait).await;
        let status = match reply {
            Ok(ControlReply::Exited { exit_code, .. }) => exit_code,
            Ok(ControlReply::Error { code, .. }) => code,
            // The supervisor died: as if the VM had been killed.
            _ => 128 + libc::SIGKILL,
        };
        let exit = Exit::now(status);
        task.exit.send_replace(Some(exit.clone()));
        self.publish(TaskExit {
            container_id: task.id.clone(),
            id: task.id.clone(),
            pid: task.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
        .await;
    }

    async fn start(self: &Arc<Self>, req: api::StartRequest) -> Result<api::StartResponse> {
        let task = self.task(&req.id)?;
        if !req.exec_id.is_empty() {
            let pid = self.start_exec(&task, &req.exec_id).await?;
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }
        if task.started.swap(true, Ordering::SeqCst) {
            return Err(Error::FailedPrecondition(format!(
                "task {} was already started",
                req.id
            )));
        }
        let started = async {
            lifecycle::call(&task.container, &ControlRequest::Start).await?;
            lifecycle::call(&task.container, &ControlRequest::Started).await
        }
        .await
        .map_err(Error::library("start the task"))?;
        if !matches!(started, ControlReply::Started { .. }) {
            return Err(Error::FailedPrecondition(format!(
                "unexpected supervisor reply {started:?}"
            )));
        }
        self.publish(TaskStart {
            container_id: task.id.clone(),
            pid: task.pid,
            ..Default::default()
        })
        .await;
        Ok(api::StartResponse {
            pid: task.pid,
            ..Default::default()
        })
    }

    async fn start_exec(self: &Arc<Self>, task: &Arc<TaskEntry>, exec_id: &str) -> Result<u32> {
        let exec = self.find_exec(task, exec_id)?;
        let fifos = Fifos::open(&exec.io.stdin, &exec.io.stdout, &exec.io.stderr)
            .map_err(Error::host("open the exec's stdio"))?;
        let mut request = exec.request.clone();
        request.stdin = fifos.stdin.is_some();
        let mut fds = Vec::new();
        if let Some(stdin) = &fifos.stdin {
            fds.push(std::os::fd::AsFd::as_fd(stdin));
        }
        fds.push(std::os::fd::AsFd::as_fd(&fifos.stdout));
        fds.push(std::os::fd::AsFd::as_fd(&fifos.stderr));
        let mut client = ControlClient::connect(
            &task.container.socket_path(),
            &ControlRequest::Exec(Box::new(request)),
            &fds,
        )
        .await
        .map_err(Error::host("exec"))?;
        let pid = match client.reply().await {
            Ok(ControlReply::Started { pid }) => pid,
            Ok(ControlReply::Error { message, .. }) => {
                return Err(Error::FailedPrecondition(message))
            }
            Ok(other) => {
                return Err(Error::FailedPrecondition(format!(
                    "unexpected supervisor reply {other:?}"
                )))
            }
            Err(e) => return Err(Error::host("exec")(e)),
        };
        exec.pid.store(pid, Ordering::SeqCst);
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&exec.control) = Some(tx);
        tokio::spawn(self.clone().own_exec(
            task.id.clone(),
            exec_id.to_string(),
            exec.clone(),
            client,
            rx,
        ));
        self.publish(TaskExecStarted {
            container_id: task.id.clone(),
            exec_id: exec_id.to_string(),
            pid,
            ..Default::default()
        })
        .await;
        Ok(pid)
    }

    /// Holds an exec's control connection: passes signals and resizes on,
    /// and reports its exit.
    async fn own_exec(
        self: Arc<Self>,
        task_id: String,
        exec_id: String,
        exec: Arc<ExecEntry>,
        mut client: ControlClient,
        mut requests: mpsc::UnboundedReceiver<ControlRequest>,
    ) {
        let status = loop {
            tokio::select! {
                reply = client.reply() => break match reply {
                    Ok(ControlReply::Exited { exit_code, .. }) => exit_code,
                    Ok(ControlReply::Error { code, .. }) => code,
                    Ok(_) => continue,
                    Err(_) => 128 + libc::SIGKILL,
                },
                Some(request) = requests.recv() => {
                    let _ = client.send(&request).await;
                }
            }
        };
        lock(&exec.control).take();
        let exit = Exit::now(status);
        exec.exit.send_replace(Some(exit.clone()));
        self.publish(TaskExit {
            container_id: task_id,
            id: exec_id,
            pid: exec.pid.load(Ordering::SeqCst),
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
        .await;
    }

    async fn exec(self: &Arc<Self>, req: api::ExecProcessRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        if task.exit.borrow().is_some() {
            return Err(Error::FailedPrecondition(format!(
                "task {} has stopped",
                req.id
            )));
        }
        let process: oci_spec::runtime::Process = serde_json::from_slice(&req.spec.value)
            .map_err(|e| Error::InvalidArgument(format!("the exec's process spec: {e}")))?;
        let user = process.user();
        let request = ExecRequest {
            owned: true,
            process: Some(Box::new(process.clone())),
            args: process.args().clone().unwrap_or_default(),
            env: process.env().clone().unwrap_or_default(),
            workdir: Some(process.cwd().display().to_string()).filter(|c| !c.is_empty()),
            user: Some(format!("{}:{}", user.uid(), user.gid())),
            tty: req.terminal,
            stdin: !req.stdin.is_empty(),
            size: process
                .console_size()
                .map(|b| (b.height() as u16, b.width() as u16))
                .filter(|s| *s != (0, 0)),
        };
        if request.args.is_empty() {
            return Err(Error::InvalidArgument("the exec has no args".into()));
        }
        let exec = Arc::new(ExecEntry {
            io: IoPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            request,
            pid: AtomicU32::new(0),
            exit: watch::Sender::new(None),
            control: Mutex::new(None),
        });
        {
            let mut execs = lock(&task.execs);
            if execs.contains_key(&req.exec_id) {
                return Err(Error::AlreadyExists(format!("{}/{}", req.id, req.exec_id)));
            }
            execs.insert(req.exec_id.clone(), exec);
        }
        self.publish(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
        .await;
        Ok(())
    }

    async fn kill(&self, req: api::KillRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        let signal = i32::try_from(req.signal)
            .map_err(|_| Error::InvalidArgument(format!("signal {}", req.signal)))?;
        if !req.exec_id.is_empty() {
            let exec = self.find_exec(&task, &req.exec_id)?;
            let control = lock(&exec.control).clone();
            return match control {
                Some(tx) if tx.send(ControlRequest::Signal { signal }).is_ok() => Ok(()),
                _ => Err(Error::ExecNotFound {
                    task: req.id,
                    exec: req.exec_id,
                }),
            };
        }
        if task.exit.borrow().is_some() {
            return Err(Error::TaskNotFound(format!(
                "{} (its process has exited)",
                req.id
            )));
        }
        let request = if !task.started.load(Ordering::SeqCst) {
            ControlRequest::Stop { timeout_secs: 0 }
        } else if req.all {
            ControlRequest::Agent {
                request: AgentRequest::SignalContainer {
                    container_id: task.container.config.id.clone(),
                    signal,
                },
            }
        } else {
            ControlRequest::Signal { signal }
        };
        lifecycle::call(&task.container, &request)
            .await
            .map(drop)
            .map_err(Error::library("signal the task"))
    }

    /// Pause (`frozen`) or resume a started task: the guest's cgroup
    /// freezer, then the event containerd expects.
    async fn freeze(&self, id: &str, frozen: bool) -> Result<()> {
        let task = self.task(id)?;
        if !task.started.load(Ordering::SeqCst) || task.exit.borrow().is_some() {
            return Err(Error::FailedPrecondition(format!(
                "task {id} is not running"
            )));
        }
        let request = ControlRequest::Agent {
            request: AgentRequest::Freeze {
                container_id: task.container.config.id.clone(),
                frozen,
            },
        };
        lifecycle::call(&task.container, &request)
            .await
            .map_err(Error::library("pause or resume the task"))?;
        let container_id = id.to_string();
        if frozen {
            self.publish(TaskPaused {
                container_id,
                ..Default::default()
            })
            .await;
        } else {
            self.publish(TaskResumed {
                container_id,
                ..Default::default()
            })
            .await;
        }
        Ok(())
    }

    async fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        let task = self.task(&req.id)?;
        if !req.exec_id.is_empty() {
            let exec = self.find_exec(&task, &req.exec_id)?;
            let exit = exec.exit.borrow().clone();
            let Some(exit) = exit else {
                return Err(Error::FailedPrecondition(format!(
                    "exec {} is still running",
                    req.exec_id
                )));
            };
            lock(&task.execs).remove(&req.exec_id);
            return Ok(api::DeleteResponse {
                pid: exec.pid.load(Ordering::SeqCst),
                exit_status: exit.status,
                exited_at: MessageField::some(exit.at),
                ..Default::default()
            });
        }
        lifecycle::remove(&self.root, &task.container).await;
        let mut exits = task.exit.subscribe();
        let known = tokio::time::timeout(EXIT_PATIENCE, async {
            exits
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|e| e.clone())
        })
        .await;
        let exit = known
            .ok()
            .flatten()
            .unwrap_or_else(|| Exit::now(128 + libc::SIGKILL));
        lock(&self.tasks).remove(&req.id);
        self.publish(TaskDelete {
            container_id: task.id.clone(),
            pid: task.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at.clone()),
            id: task.id.clone(),
            ..Default::default()
        })
        .await;
        Ok(api::DeleteResponse {
            pid: task.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        let task = self.task(&req.id)?;
        let mut exits = if req.exec_id.is_empty() {
            task.exit.subscribe()
        } else {
            self.find_exec(&task, &req.exec_id)?.exit.subscribe()
        };
        let exit = exits
            .wait_for(Option::is_some)
            .await
            .map(|e| e.clone())
            .ok()
            .flatten()
            .unwrap_or_else(|| Exit::now(128 + libc::SIGKILL));
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    fn state(&self, req: api::StateRequest) -> Result<api::StateResponse> {
        let task = self.task(&req.id)?;
        let (io, pid, exit, started) = if req.exec_id.is_empty() {
            let started = task.started.load(Ordering::SeqCst);
            (
                task.io.clone(),
                task.pid,
                task.exit.borrow().clone(),
                started,
            )
        } else {
            let exec = self.find_exec(&task, &req.exec_id)?;
            let pid = exec.pid.load(Ordering::SeqCst);
            let exit = exec.exit.borrow().clone();
            (exec.io.clone(), pid, exit, pid > 0)
        };
        let status = match (&exit, started) {
            (Some(_), _) => Status::STOPPED,
            (None, true) if task.container.state().paused => Status::PAUSED,
            (None, true) => Status::RUNNING,
            (None, false) => Status::CREATED,
        };
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle: task.bundle.clone(),
            pid,
            status: status.into(),
            stdin: io.stdin,
            stdout: io.stdout,
            stderr: io.stderr,
            terminal: io.terminal,
            exit_status: exit.as_ref().map_or(0, |e| e.status),
            exited_at: exit.map_or_else(MessageField::none, |e| MessageField::some(e.at)),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    fn pids(&self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let task = self.task(&req.id)?;
        let mut processes = vec![api::ProcessInfo {
            pid: task.pid,
            ..Default::default()
        }];
        for exec in lock(&task.execs).values() {
            let pid = exec.pid.load(Ordering::SeqCst);
            if pid > 0 && exec.exit.borrow().is_none() {
                processes.push(api::ProcessInfo {
                    pid,
                    ..Default::default()
                });
            }
        }
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn resize_pty(&self, req: api::ResizePtyRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        let resize = ControlRequest::Resize {
            rows: u16::try_from(req.height).unwrap_or(u16::MAX),
            cols: u16::try_from(req.width).unwrap_or(u16::MAX),
        };
        if req.exec_id.is_empty() {
            lifecycle::call(&task.container, &resize)
                .await
                .map_err(Error::library("resize"))?;
            return Ok(());
        }
        let exec = self.find_exec(&task, &req.exec_id)?;
        if let Some(tx) = lock(&exec.control).as_ref() {
            let _ = tx.send(resize);
        }
        Ok(())
    }

    async fn stats(&self, req: api::StatsRequest) -> Result<api::StatsResponse> {
        let task = self.task(&req.id)?;
        let request = ControlRequest::Agent {
            request: AgentRequest::Stats {
                container_id: task.container.config.id.clone(),
            },
        };
        let reply = lifecycle::call(&task.container, &request)
            .await
            .map_err(Error::library("stats"))?;
        let stats = match reply {
            ControlReply::Agent {
                answer: AgentReply::Stats(stats),
            } => stats,
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "unexpected supervisor reply {other:?}"
                )))
            }
        };
        let metrics = Metrics {
            pids: MessageField::some(PidsStat {
                current: stats.pids,
                ..Default::default()
            }),
            cpu: MessageField::some(CPUStat {
                usage_usec: stats.cpu_usage_usec,
                ..Default::default()
            }),
            memory: MessageField::some(MemoryStat {
                usage: stats.memory_bytes,
                usage_limit: stats.memory_limit_bytes,
                ..Default::default()
            }),
            io: MessageField::some(IOStat {
                usage: vec![IOEntry {
                    rbytes: stats.io_read_bytes,
                    wbytes: stats.io_write_bytes,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = metrics
            .write_to_bytes()
            .map_err(Error::host("encode the stats"))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(Any {
                type_url: "io.containerd.cgroups.v2.Metrics".into(),
                value,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        Ok(self.0.create(req).await?)
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        Ok(self.0.start(req).await?)
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        Ok(self.0.state(req)?)
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        Ok(self.0.pids(req)?)
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        self.0.exec(req).await?;
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        self.0.resize_pty(req).await?;
        Ok(api::Empty::new())
    }

    /// The supervisor reads the stdin FIFO itself and sees EOF when
    /// containerd closes its end: nothing to do here.
    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        self.0.task(&req.id)?;
        Ok(api::Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        self.0.kill(req).await?;
        Ok(api::Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        Ok(self.0.wait(req).await?)
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        Ok(self.0.stats(req).await?)
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        Ok(self.0.delete(req).await?)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.0.freeze(&req.id, true).await?;
        Ok(api::Empty::new())
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        self.0.freeze(&req.id, false).await?;
        Ok(api::Empty::new())
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.0.task(&req.id).map(|t| t.pid).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    /// The daemon serves one task: once it is deleted, the daemon exits.
    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        if lock(&self.0.tasks).is_empty() {
            self.0.exit.signal();
        }
        Ok(api::Empty::new())
    }
}
