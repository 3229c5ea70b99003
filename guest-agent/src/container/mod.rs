//! A container of the VM: its root, its main process, its stdio, its end;
//! then `exec`, `stats` and `top` against it. The VM's first container
//! sets up the VM's network; containers that join later (a pod) share it.
//! `check_run` validates a request into a `RunPlan`; `create` turns it
//! into a running main process (a `Started`), with the domain modules
//! doing the work. Domain code here takes plain arguments and returns
//! values: it never sees the agent. `agent.rs` owns the state (which
//! container, which processes), updates it between these steps, and hears
//! of exits through [`io::ProcessEvents`]. Kernel calls of set-up go
//! through the `crate::syscall` seam.

pub mod blkio;
pub mod cgroup;
pub mod devices;
pub mod exec;
pub mod hooks;
pub mod io;
mod join;
pub mod mounts;
pub mod process_attrs;
pub mod rootfs;
mod shares;
mod stats;
pub mod sysctl;
mod top;
pub mod user;
pub mod userns;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hull_protocol::{AgentError, ErrorKind, GuestNetwork, Reply, RunContainer, Stdio};
use oci_spec::runtime::{Linux, LinuxNamespaceType, PosixRlimitType, Process, Spec};

use crate::process::{
    spawn, ContainerHooks, Credentials, DeviceNode, Launch, NewContainer, Place, ProcessAttrs,
    Reaper, SpawnError,
};
use crate::security::seccomp::SockFilter;
use crate::security::{capabilities::CapSets, seccomp};
use crate::syscall::Syscall;
use crate::wire::Streams;
use cgroup::Cgroup;

/// A container whose main process was started: what `exec`, `stats` and
/// `top` need of it.
pub struct ContainerInfo {
    pub id: String,
    /// The main process, in the agent's PID namespace.
    pub init_pid: i32,
    /// The CLONE_NEW* flags it was created with.
    pub namespaces: u64,
    pub rootfs: PathBuf,
    pub cgroup: Cgroup,
    /// Compiled once from the spec, for the main process and every exec.
    pub seccomp: Option<Vec<SockFilter>>,
}

impl From<SpawnError> for AgentError {
    fn from(err: SpawnError) -> Self {
        let kind = match err {
            SpawnError::NotFound(_) => ErrorKind::CommandNotFound,
            SpawnError::NotExecutable(_) => ErrorKind::CommandNotExecutable,
            SpawnError::EmptyCommand | SpawnError::NulByte => ErrorKind::InvalidRequest,
            SpawnError::Chdir { .. } => ErrorKind::InvalidProcess,
            SpawnError::Exec { .. } | SpawnError::Setup { .. } | SpawnError::Hook { .. } => {
                ErrorKind::Setup
            }
        };
        AgentError::new(kind, error_chain(&err))
    }
}

/// "outer: inner: innermost", as one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::InvalidRequest, message)
}

/// A set-up step failed: the error with its causes, as one line.
pub fn setup_error(err: &dyn std::error::Error) -> AgentError {
    AgentError::new(ErrorKind::Setup, error_chain(err))
}

/// Container ids name directories and cgroups: keep them plain.
fn check_container_id(id: &str) -> Result<(), AgentError> {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if id.is_empty() || id.len() > 128 || !plain || id.starts_with('.') {
        return Err(invalid(format!("invalid container id {id:?}")));
    }
    Ok(())
}

/// CLONE_NEW* flags for the namespaces the spec has created (those with a
/// `path` are joined instead, see `join`).
fn namespace_flags(spec: &Spec) -> Result<u64, AgentError> {
    let mut flags = 0u64;
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        if ns.path().is_some() {
            // Joined, not created: see `join`.
            continue;
        }
        flags |= match ns.typ() {
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            LinuxNamespaceType::User => libc::CLONE_NEWUSER,
            other => return Err(invalid(format!("{other:?} namespaces are not supported"))),
        } as u64;
    }
    if flags & libc::CLONE_NEWNS as u64 == 0 {
        return Err(invalid("a container needs a mount namespace"));
    }
    Ok(flags)
}

fn rlimit_resource(typ: PosixRlimitType) -> u32 {
    use PosixRlimitType as R;
    match typ {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// A process's settings from its OCI `process`, checked.
pub struct ProcessParams {
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    /// (rows, cols) of its pty, when it has one.
    terminal: Option<(u16, u16)>,
    rlimits: Vec<(u32, u64, u64)>,
    capabilities: Option<CapSets>,
    no_new_privileges: bool,
    /// umask, oomScoreAdj, ioPriority, scheduler.
    attrs: ProcessAttrs,
}

/// Checks what the kernel would otherwise refuse later and less clearly:
/// a command, `KEY=value` environment entries, an absolute working
/// directory, known capabilities.
fn check_process(process: &Process) -> Result<ProcessParams, AgentError> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(invalid("no command given"));
    }
    let env = process.env().clone().unwrap_or_default();
    if let Some(bad) = env.iter().find(|kv| kv.find('=').is_none_or(|i| i == 0)) {
        return Err(invalid(format!(
            "environment entry {bad:?} is not KEY=value"
        )));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(format!(
            "the working directory {:?} is not an absolute path",
            process.cwd()
        )));
    }
    let terminal = process.terminal().unwrap_or(false).then(|| {
        process
            .console_size()
            .as_ref()
            .map(|b| {
                (
                    b.height().min(u16::MAX as u64) as u16,
                    b.width().min(u16::MAX as u64) as u16,
                )
            })
            .unwrap_or((24, 80))
    });
    let capabilities = process
        .capabilities()
        .as_ref()
        .map(CapSets::from_oci)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(ProcessParams {
        args,
        env,
        cwd: process.cwd().to_string_lossy().into_owned(),
        terminal,
        rlimits: process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| (rlimit_resource(r.typ()), r.soft(), r.hard()))
            .collect(),
        capabilities,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        attrs: process_attrs::from_oci(process).map_err(|e| invalid(e.to_string()))?,
    })
}

/// Resolves the image-style `user` (or, when empty, the spec's numeric
/// user) against the container's /etc/passwd and /etc/group, adds the
/// spec's additional groups, and sets HOME in `env` when it is missing.
/// The spec's numeric user with `additionalGids` gets those as its
/// supplementary groups and no others, as runc gives them (its callers,
/// podman and containerd, list the groups of /etc/group there
/// themselves); without `additionalGids` the groups of /etc/group that
/// list the user stay (what `hull run` of an image without a USER relies
/// on).
fn resolve_user(
    rootfs: &Path,
    user: &str,
    process: &Process,
    env: &mut Vec<String>,
) -> Result<Credentials, AgentError> {
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let user_spec = if user.is_empty() {
        let user = process.user();
        format!("{}:{}", user.uid(), user.gid())
    } else {
        user.to_string()
    };
    let mut credentials = user::resolve(&user_spec, &passwd, &group)
        .map_err(|e| AgentError::new(ErrorKind::InvalidProcess, e.to_string()))?;
    if user.is_empty() && process.user().additional_gids().is_some() {
        credentials.groups = vec![credentials.gid];
    }
    for gid in process.user().additional_gids().iter().flatten() {
        if !credentials.groups.contains(gid) {
            credentials.groups.push(*gid);
        }
    }
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        env.push(format!("HOME={}", credentials.home));
    }
    Ok(credentials)
}

/// Where container set-up finds and keeps things in the VM. Tests point
/// it at a temporary directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The agent's directory per container: its image, writable layer and
    /// root mounts.
    pub state: PathBuf,
    /// Where the kernel lists block devices (their serials).
    pub sys_block: PathBuf,
    /// Where their nodes are.
    pub dev: PathBuf,
    /// The cgroup2 hierarchy.
    pub cgroup: PathBuf,
    /// How long to wait for a disk to appear.
    pub disk_wait: Duration,
}

impl Default for Layout {
    /// The VM's own.
    fn default() -> Self {
        Self {
            state: PathBuf::from("/run/hull"),
            sys_block: PathBuf::from("/sys/block"),
            dev: PathBuf::from("/dev"),
            cgroup: PathBuf::from(cgroup::ROOT),
            disk_wait: Duration::from_secs(5),
        }
    }
}

/// A `RunContainer` request, checked: everything decided before anything
/// is mounted or claimed.
pub struct RunPlan {
    request: RunContainer,
    params: ProcessParams,
    namespaces: u64,
    joined: join::Joined,
    linux: Linux,
    seccomp: Option<Vec<SockFilter>>,
    /// The container's own config beyond its process, checked.
    extras: Extras,
}

/// What `check_run` reads of the spec besides the process: sysctls, the
/// domain name, device nodes and rules, the guest's hooks.
struct Extras {
    sysctls: Vec<(String, String)>,
    domainname: Option<String>,
    devices: Vec<DeviceNode>,
    /// The cgroup device program, when the spec lists device rules.
    device_filter: Option<Vec<u64>>,
    hooks: ContainerHooks,
}

fn check_extras(
    spec: &Spec,
    linux: &Linux,
    id: &str,
    namespaces: u64,
) -> Result<Extras, AgentError> {
    let domainname = spec.domainname().clone().filter(|d| !d.is_empty());
    if domainname.is_some() && namespaces & libc::CLONE_NEWUTS as u64 == 0 {
        return Err(invalid(
            "domainname: the container has no UTS namespace of its own",
        ));
    }
    let sysctls = sysctl::check(&linux.sysctl().clone().unwrap_or_default(), namespaces)
        .map_err(|e| invalid(e.to_string()))?;
    let devices = devices::nodes(linux.devices().as_deref().unwrap_or_default())
        .map_err(|e| invalid(e.to_string()))?;
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let device_filter = devices::filter(&rules).map_err(|e| invalid(e.to_string()))?;
    let hooks = hooks::from_spec(spec, id).map_err(|e| invalid(e.to_string()))?;
    Ok(Extras {
        sysctls,
        domainname,
        devices,
        device_filter,
        hooks,
    })
}

impl RunPlan {
    /// The container's id (checked to be plain).
    pub fn id(&self) -> &str {
        &self.request.container_id
    }

    /// The network the request asks for.
    pub fn network(&self) -> Option<&GuestNetwork> {
        self.request.network.as_ref()
    }

    pub fn shutdown_on_exit(&self) -> bool {
        self.request.shutdown_on_exit
    }
}

/// A process that runs (it has exec'd) and is not yet connected to the
/// host's streams.
pub struct Started {
    pub container: Arc<ContainerInfo>,
    pub pid: i32,
    pub stdio: Stdio,
    pub ends: io::ParentEnds,
}

/// Checks a `RunContainer` request: ids, the process, namespaces, the
/// seccomp policy; `streams` are the connection's (the new ones must be
/// unused) and `primary` whether it owns the VM.
pub fn check_run(
    request: RunContainer,
    streams: &Streams,
    primary: bool,
) -> Result<RunPlan, AgentError> {
    let spec = &request.spec;
    check_container_id(&request.container_id)?;
    io::check_stream_ids(streams, &request.stdio)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("the spec has no process"))?;
    let params = check_process(process)?;
    let namespaces = namespace_flags(spec)?;
    let joined = join::from_spec(spec).map_err(|e| invalid(error_chain(&e)))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let seccomp = match linux.seccomp() {
        Some(section) => Some(
            seccomp::policy_from_oci(section)
                .and_then(|policy| seccomp::compile(&policy))
                .map_err(|e| invalid(e.to_string()))?,
        ),
        None => None,
    };
    if request.shutdown_on_exit && !primary {
        return Err(invalid(
            "a container that joined the VM cannot power it off on exit",
        ));
    }
    let extras = check_extras(
        spec,
        &linux,
        &request.container_id,
        namespaces | joined.flags(),
    )?;
    Ok(RunPlan {
        request,
        params,
        namespaces,
        joined,
        linux,
        seccomp,
        extras,
    })
}

/// Creates the container of `plan` (its id claimed by the caller) on the
/// VM's `network`: its root, cgroup and main process. On failure what was
/// made of its cgroup is removed; its mounts stay until
/// [`rootfs::release`].
pub fn create(
    sys: &dyn Syscall,
    layout: &Layout,
    plan: RunPlan,
    network: Option<&GuestNetwork>,
    reaper: &Reaper,
) -> Result<Started, AgentError> {
    let RunPlan {
        request,
        mut params,
        namespaces,
        joined,
        linux,
        seccomp,
        extras,
    } = plan;
    let spec = &request.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("the spec has no process"))?;
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    let rootfs = rootfs::prepare(
        sys,
        layout,
        &request.container_id,
        &request.rootfs,
        hostname.as_deref().unwrap_or("localhost"),
        network,
    )
    .map_err(|e| setup_error(&e))?;
    debug!("root ready at {}", rootfs.display());
    let credentials = resolve_user(&rootfs, &request.user, process, &mut params.env)?;
    rootfs::ensure_workdir(&rootfs, &params.cwd);
    let shares = match &request.share {
        Some(channel) => {
            let tree = shares::mount(sys, layout, &request.container_id, channel)
                .map_err(|e| setup_error(&e))?;
            crate::steps::mark("shares");
            Some(tree)
        }
        None => None,
    };
    let mounts = mounts::plan(
        &rootfs,
        spec.mounts().as_deref().unwrap_or_default(),
        shares.as_deref(),
    )
    .map_err(|e| setup_error(&e))?;
    crate::steps::mark("identity");
    let user_namespace =
        userns::from_spec(&linux, namespaces).map_err(|e| invalid(e.to_string()))?;
    if let Some(ns) = &user_namespace {
        userns::idmap_rootfs(sys, &rootfs, ns, || {
            userns::helper_namespace(sys, ns, reaper)
        })
        .map_err(|e| setup_error(&e))?;
    }
    let resources = blkio::resolve_for_root(sys, linux.resources().as_ref(), &rootfs)
        .map_err(|e| setup_error(&e))?;
    let cgroup = Cgroup::create(
        sys,
        &layout.cgroup,
        &request.container_id,
        resources.as_ref(),
    )
    .map_err(|e| setup_error(&e))?;
    if let Some(program) = &extras.device_filter {
        if let Err(e) = sys.attach_device_program(cgroup.fd(), program) {
            cgroup.remove();
            return Err(AgentError::new(
                ErrorKind::Setup,
                format!("linux.resources.devices: attach the device filter: {e}"),
            ));
        }
    }
    crate::steps::mark("cgroup");
    let (child_stdio, ends) = match io::prepare(&request.stdio, params.terminal) {
        Ok(ends) => ends,
        Err(err) => {
            cgroup.remove();
            return Err(err);
        }
    };

    let launch = Launch {
        args: params.args,
        env: params.env,
        cwd: params.cwd,
        credentials,
        stdio: child_stdio,
        rlimits: params.rlimits,
        capabilities: params.capabilities,
        no_new_privileges: params.no_new_privileges,
        seccomp: seccomp.clone(),
        attrs: params.attrs,
        cgroup_fd: Some(cgroup.fd()),
        place: Place::NewContainer(Box::new(NewContainer {
            rootfs: rootfs.clone(),
            hostname: hostname.filter(|_| namespaces & libc::CLONE_NEWUTS as u64 != 0),
            namespaces,
            user_namespace,
            mounts,
            masked_paths: linux.masked_paths().clone().unwrap_or_default(),
            readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            sysctls: extras.sysctls,
            domainname: extras.domainname,
            devices: extras.devices,
            hooks: extras.hooks,
        })),
    };
    debug!("spawning {:?}", launch.args);
    let spawned = joined
        .run_inside(sys, || spawn(sys, launch, reaper))
        .unwrap_or_else(|source| {
            Err(SpawnError::Setup {
                stage: "join the pod's namespaces".into(),
                source,
            })
        });
    let pid = match spawned {
        Ok(pid) => pid,
        Err(err) => {
            cgroup.remove();
            return Err(err.into());
        }
    };
    debug!("started pid {pid}");
    crate::steps::mark("spawn");
    let container = Arc::new(ContainerInfo {
        id: request.container_id.clone(),
        init_pid: pid,
        namespaces: namespaces | joined.flags(),
        rootfs,
        cgroup,
        seccomp,
    });
    Ok(Started {
        container,
        pid,
        stdio: request.stdio,
        ends,
    })
}

/// `hull stats`: the container's cgroup usage.
pub fn stats(container: &ContainerInfo) -> Result<Reply, AgentError> {
    stats::read(container.cgroup.path(), stats::mem_total())
        .map(Reply::Stats)
        .map_err(|e| setup_error(&e))
}

/// `runc update`: the limits `resources` sets, written into the running
/// container's cgroup (its disks resolved as at create).
pub fn update_resources(
    sys: &dyn Syscall,
    container: &ContainerInfo,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<Reply, AgentError> {
    let resources = blkio::resolve_for_root(sys, Some(resources), &container.rootfs)
        .map_err(|e| invalid(error_chain(&e)))?
        .unwrap_or_default();
    container
        .cgroup
        .update(sys, &resources)
        .map(|()| Reply::Done)
        .map_err(|e| invalid(error_chain(&e)))
}

/// `kill --all` takes signals 1 to 64.
pub fn check_signal(signal: i32) -> Result<(), AgentError> {
    if !(1..=64).contains(&signal) {
        return Err(invalid(format!("invalid signal {signal}")));
    }
    Ok(())
}

/// `kill --all`: `signal` (checked with [`check_signal`]) to every process
/// in the container's cgroup.
pub fn signal_all(container: &ContainerInfo, signal: i32) -> Result<Reply, AgentError> {
    let procs = fs::read_to_string(container.cgroup.path().join("cgroup.procs"))
        .map_err(|e| setup_error(&e))?;
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = crate::sys::kill(pid, signal);
    }
    Ok(Reply::Done)
}

/// How long the freezer may take to stop every process of a container.
const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `pause`/`resume`: the cgroup v2 freezer stops or thaws every process
/// of the container; answers once the kernel reports it done.
/// Whether the container's cgroup is frozen (paused) now.
pub fn is_frozen(container: &ContainerInfo) -> bool {
    let freeze = fs::read_to_string(container.cgroup.path().join("cgroup.freeze"));
    freeze.is_ok_and(|value| value.trim() == "1")
}

pub fn freeze(container: &ContainerInfo, frozen: bool) -> Result<Reply, AgentError> {
    let dir = container.cgroup.path();
    let want = if frozen { "1" } else { "0" };
    fs::write(dir.join("cgroup.freeze"), want).map_err(|e| setup_error(&e))?;
    let deadline = std::time::Instant::now() + FREEZE_TIMEOUT;
    loop {
        let events = fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        if events
            .lines()
            .any(|line| line.strip_prefix("frozen ") == Some(want))
        {
            return Ok(Reply::Done);
        }
        if std::time::Instant::now() >= deadline {
            return Err(AgentError::new(
                ErrorKind::Setup,
                format!(
                    "the container's processes did not {} in time",
                    if frozen { "freeze" } else { "thaw" }
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `hull top`: the processes in the container's cgroup.
pub fn list_processes(container: &ContainerInfo) -> Result<Reply, AgentError> {
    top::list(container.cgroup.path(), Path::new("/proc"))
        .map(|processes| Reply::Processes { processes })
        .map_err(|e| setup_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_plain() {
        assert!(check_container_id("0123abcdef").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(129)] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaces_map_to_clone_flags() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"mount"},{"type":"pid"},{"type":"cgroup"}]}}"#,
        )
        .unwrap();
        let flags = namespace_flags(&spec).unwrap();
        assert_eq!(
            flags,
            (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWCGROUP) as u64
        );
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"}]}}"#,
        )
        .unwrap();
        assert!(namespace_flags(&spec).is_err(), "no mount namespace");
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"mount"},{"type":"network","path":"/proc/1/ns/net"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            namespace_flags(&spec).unwrap(),
            libc::CLONE_NEWNS as u64,
            "a joined namespace is not created"
        );
    }

    fn process(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn processes_are_checked() {
        let ok = check_process(&process(
            r#"{"args":["sh"],"env":["A=1","B="],"cwd":"/w","terminal":true,
                "consoleSize":{"height":30,"width":100},"user":{"uid":0,"gid":0},
                "rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":20}]}"#,
        ))
        .unwrap();
        assert_eq!(ok.terminal, Some((30, 100)));
        assert_eq!(ok.rlimits, vec![(libc::RLIMIT_NOFILE, 10, 20)]);
        let bad = [
            r#"{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}"#,
            r#"{"args":["sh"],"env":["NOVALUE"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
            r#"{"args":["sh"],"env":["=x"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
            r#"{"args":["sh"],"cwd":"relative","user":{"uid":0,"gid":0}}"#,
        ];
        for json in bad {
            let err = check_process(&process(json)).err().expect(json);
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{json}");
        }
    }
}
