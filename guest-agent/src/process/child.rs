//! The child between clone and exec. It only replays what `spawn` prepared,
//! with raw syscalls: no allocation, no locks (the agent is multi-threaded).
//! A main process builds the container's root first; main and exec'd
//! processes then share one sequence from stdio to exec.
//! On failure it writes (stage, errno, index) to the error pipe and exits.

use std::ffi::CString;
use std::os::fd::RawFd;

use super::attrs::SchedAttr;
use super::hooks::PreparedHook;
use super::mount_op::MountOp;
use super::userns::ChildUserns;
use crate::security::capabilities::{CapSets, LAST_CAP};
use crate::security::seccomp::SockFilter;
use crate::sys::child as sys;
use crate::syscall::{ChildSyscall, Linux};

/// Bytes of a failure report: stage, errno, index (all u32 LE).
pub const REPORT_LEN: usize = 12;

/// What `child::run` needs, all allocated before the clone.
pub struct Prepared<'a> {
    /// The container's root: for the main process, which builds it. An
    /// exec'd process finds it in the namespaces it joins.
    pub root: Option<RootSetup<'a>>,
    pub process: ProcessSetup<'a>,
    /// With hooks: the container's state JSON around its pid, which the
    /// agent sends (u32 LE) on `pid_fd` once it knows it.
    pub hook_state: Option<HookState<'a>>,
}

/// The state JSON of a container's hooks, split around its pid.
pub struct HookState<'a> {
    pub pid_fd: RawFd,
    pub creating: &'a [u8],
    pub created: &'a [u8],
    pub after_pid: &'a [u8],
}

/// The state JSON's parts once the pid is known (on the child's stack).
#[derive(Clone, Copy)]
pub struct HookContext<'a> {
    /// Up to `"pid":`, status "creating" and "created".
    pub creating: &'a [u8],
    pub created: &'a [u8],
    pub pid: &'a [u8],
    pub after_pid: &'a [u8],
}

/// A node of `linux.devices`, ready for the child.
pub struct PreparedDevice {
    /// Under the root, as the agent sees it.
    pub path: CString,
    /// Its missing parents, outermost first.
    pub parents: Vec<CString>,
    pub mode: libc::mode_t,
    pub dev: libc::dev_t,
    pub uid: u32,
    pub gid: u32,
    /// In a user namespace the VM's node of the same path is bound.
    pub vm_source: CString,
}

/// Mounts, /dev and the pivot of a new container.
pub struct RootSetup<'a> {
    pub rootfs: CString,
    pub hostname: Option<CString>,
    pub mounts: &'a [MountOp],
    pub devices: Vec<(CString, libc::mode_t, libc::dev_t)>,
    pub dev_links: Vec<(CString, CString)>,
    pub dev_null: CString,
    pub masked: Vec<CString>,
    pub readonly: Vec<CString>,
    pub readonly_root: bool,
    /// In a new user namespace: wait for its maps; bind device nodes.
    pub user_namespace: Option<ChildUserns>,
    /// `linux.sysctl`: (/proc/sys path, value), written through the
    /// agent's /proc, which shows the child's own namespaces' values.
    pub sysctls: Vec<(CString, CString)>,
    pub domainname: Option<CString>,
    pub extra_devices: Vec<PreparedDevice>,
    pub create_hooks: Vec<PreparedHook>,
}

/// What every process gets, main or exec'd: stdio, limits, confinement,
/// user, working directory, the command.
pub struct ProcessSetup<'a> {
    pub cwd: CString,
    pub candidates: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub stdio: PreparedStdio,
    pub rlimits: Vec<(u32, u64, u64)>,
    pub capabilities: Option<CapSets>,
    pub no_new_privileges: bool,
    pub seccomp: Option<&'a [SockFilter]>,
    pub umask: u32,
    /// Its decimal text, for /proc/self/oom_score_adj.
    pub oom_score_adj: Option<CString>,
    pub io_priority: Option<u16>,
    pub scheduler: Option<SchedAttr>,
    /// The main process's startContainer hooks (none for an exec).
    pub start_hooks: Vec<PreparedHook>,
}

/// The standard streams, as the child sees them.
pub enum PreparedStdio {
    Pipes([RawFd; 3]),
    Terminal {
        socket: RawFd,
        ptmx: CString,
        pts_prefix: CString,
        rows: u16,
        cols: u16,
    },
}

/// Where the child failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    PrivateMounts = 1,
    Mount = 2,
    Devices = 3,
    MaskPaths = 4,
    ReadonlyPaths = 5,
    ReadonlyRoot = 6,
    PivotRoot = 7,
    Hostname = 8,
    Stdio = 9,
    Rlimits = 10,
    Capabilities = 11,
    Seccomp = 12,
    Credentials = 13,
    NoNewPrivileges = 14,
    Chdir = 15,
    Exec = 16,
    Terminal = 17,
    JoinNamespaces = 18,
    CloneProcess = 19,
    UserNamespace = 20,
    Sysctl = 21,
    Domainname = 22,
    ExtraDevices = 23,
    CreateContainerHook = 24,
    StartContainerHook = 25,
    OomScoreAdj = 26,
    IoPriority = 27,
    Scheduler = 28,
    HookState = 29,
}

impl Stage {
    pub fn from_u32(value: u32) -> Option<Self> {
        use Stage::*;
        [
            PrivateMounts,
            Mount,
            Devices,
            MaskPaths,
            ReadonlyPaths,
            ReadonlyRoot,
            PivotRoot,
            Hostname,
            Stdio,
            Rlimits,
            Capabilities,
            Seccomp,
            Credentials,
            NoNewPrivileges,
            Chdir,
            Exec,
            Terminal,
            JoinNamespaces,
            CloneProcess,
            UserNamespace,
            Sysctl,
            Domainname,
            ExtraDevices,
            CreateContainerHook,
            StartContainerHook,
            OomScoreAdj,
            IoPriority,
            Scheduler,
            HookState,
        ]
        .into_iter()
        .find(|s| *s as u32 == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::PrivateMounts => "make mounts private",
            Self::Mount => "mount",
            Self::Devices => "populate /dev",
            Self::MaskPaths => "mask paths",
            Self::ReadonlyPaths => "make paths read-only",
            Self::ReadonlyRoot => "make the root read-only",
            Self::PivotRoot => "pivot_root",
            Self::Hostname => "sethostname",
            Self::Stdio => "set up stdio",
            Self::Rlimits => "set rlimits",
            Self::Capabilities => "set capabilities",
            Self::Seccomp => "load the seccomp filter",
            Self::Credentials => "set user and groups",
            Self::NoNewPrivileges => "set no_new_privileges",
            Self::Chdir => "chdir",
            Self::Exec => "exec",
            Self::Terminal => "open the terminal",
            Self::JoinNamespaces => "join the container's namespaces",
            Self::CloneProcess => "start the process in the container",
            Self::UserNamespace => "become root of the user namespace",
            Self::Sysctl => "write linux.sysctl",
            Self::Domainname => "set domainname",
            Self::ExtraDevices => "create linux.devices",
            Self::CreateContainerHook => "run the createContainer hook",
            Self::StartContainerHook => "run the startContainer hook",
            Self::OomScoreAdj => "write process.oomScoreAdj",
            Self::IoPriority => "set process.ioPriority",
            Self::Scheduler => "set process.scheduler",
            Self::HookState => "learn the pid for the hooks' state",
        }
    }
}

/// Writes failure reports to the error pipe.
#[derive(Clone, Copy)]
struct Reporter(RawFd);

impl Reporter {
    fn fail(self, stage: Stage, errno: i32, index: usize) -> ! {
        let mut report = [0u8; REPORT_LEN];
        report[..4].copy_from_slice(&(stage as u32).to_le_bytes());
        report[4..8].copy_from_slice(&errno.to_le_bytes());
        report[8..].copy_from_slice(&(index as u32).to_le_bytes());
        sys::write_all(self.0, &report);
        sys::exit(match (stage, errno) {
            (Stage::Exec, libc::ENOENT) => 127,
            (Stage::Exec, libc::EACCES) => 126,
            _ => 125,
        })
    }

    fn check(self, stage: Stage, result: Result<(), i32>) {
        if let Err(errno) = result {
            self.fail(stage, errno, 0)
        }
    }
}

/// Where and why the child failed: what the error pipe carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub errno: i32,
    /// Which mount, mask, … of its list (0 when there is one).
    pub index: usize,
}

fn at(stage: Stage, index: usize) -> impl Fn(i32) -> Failure {
    move |errno| Failure {
        stage,
        errno,
        index,
    }
}

/// Never returns: execs the process or exits after reporting why not.
/// With `p.root` this is a new container's init and builds its root
/// first; without, the caller already joined a container's namespaces.
pub fn run(p: &Prepared, error_fd: RawFd) -> ! {
    let report = Reporter(error_fd);
    sys::reset_process_state();
    if p.root.is_some() {
        // Through the agent's /proc, before any namespace hides it (an
        // exec'd process's middle child did this before joining).
        set_oom_score_adj(&p.process, report);
    }
    // The hooks' state needs our pid as the agent sees it.
    let pid = match &p.hook_state {
        Some(state) => match sys::read_u32(state.pid_fd) {
            Ok(pid) => pid,
            Err(errno) => report.fail(Stage::HookState, errno, 0),
        },
        None => 0,
    };
    let (digits, len) = super::hooks::pid_digits(pid);
    let hooks = p.hook_state.as_ref().map(|state| HookContext {
        creating: state.creating,
        created: state.created,
        pid: &digits[..len],
        after_pid: state.after_pid,
    });
    // The root's steps go through the ChildSyscall seam with static
    // dispatch (no trait object, no allocation); `Linux` forwards to the
    // raw `sys::child` calls.
    let terminal = match &p.root {
        Some(root) => build_root(&Linux, root, &p.process.stdio, hooks),
        None => open_terminal(&Linux, &p.process.stdio),
    };
    let terminal = terminal.unwrap_or_else(|f| report.fail(f.stage, f.errno, f.index));
    exec_process(&p.process, terminal, report, hooks)
}

fn set_oom_score_adj(p: &ProcessSetup, report: Reporter) {
    if let Some(text) = &p.oom_score_adj {
        report.check(
            Stage::OomScoreAdj,
            sys::write_file(c"/proc/self/oom_score_adj", text.as_bytes()),
        );
    }
}

/// The middle child of an exec (runc's nsenter): joins the running
/// container's namespaces (`setns(CLONE_NEWPID)` only moves children, and
/// a multi-threaded agent cannot join a mount namespace, hence this
/// single-threaded step), clones the process as the agent's own child
/// (CLONE_PARENT, so the agent's reaper collects it), writes its pid (u32
/// LE) to `pid_fd` and exits. The process itself then goes through
/// [`run`] without a root to build.
pub fn enter(p: &Prepared, namespaces: &[RawFd], error_fd: RawFd, pid_fd: RawFd) -> ! {
    let report = Reporter(error_fd);
    // Inherited by the process; /proc of the container may not be there.
    set_oom_score_adj(&p.process, report);
    // Raised before joining: in a user namespace it could not raise a hard
    // limit (the process sets them again, lowering only).
    for (resource, soft, hard) in &p.process.rlimits {
        report.check(Stage::Rlimits, sys::set_rlimit(*resource, *soft, *hard));
    }
    for (i, fd) in namespaces.iter().enumerate() {
        if let Err(errno) = sys::set_namespace(*fd) {
            report.fail(Stage::JoinNamespaces, errno, i);
        }
    }
    match sys::clone_sibling() {
        Ok(0) => run(p, error_fd),
        Ok(pid) => {
            sys::write_all(pid_fd, &(pid as u32).to_le_bytes());
            sys::exit(0)
        }
        Err(errno) => report.fail(Stage::CloneProcess, errno, 0),
    }
}

/// Mounts, /dev and `linux.devices`, sysctls, createContainer hooks,
/// masks, the terminal (from the container's own devpts, so `tty` names
/// it there), read-only root, pivot, hostname and domain name. Returns
/// the terminal's slave, or -1 without a terminal. Stops at the first
/// failure. Allocation-free as long as `sys` is.
pub fn build_root<S: ChildSyscall>(
    sys: &S,
    root: &RootSetup,
    stdio: &PreparedStdio,
    hooks: Option<HookContext>,
) -> Result<RawFd, Failure> {
    if let Some(ns) = &root.user_namespace {
        sys.enter_user_namespace(ns.sync_fd)
            .map_err(at(Stage::UserNamespace, 0))?;
    }
    sys.make_mounts_private()
        .map_err(at(Stage::PrivateMounts, 0))?;
    if root.user_namespace.is_some() {
        // The root came from the VM's mount namespace, so it is locked
        // here and pivot_root refuses it; a bind of it made here is not.
        sys.mount(
            &root.rootfs,
            &root.rootfs,
            c"",
            libc::MS_BIND | libc::MS_REC,
            c"",
        )
        .map_err(at(Stage::UserNamespace, 0))?;
    }
    for (i, m) in root.mounts.iter().enumerate() {
        make_target(sys, m)
            .and_then(|_| sys.mount(&m.source, &m.target, &m.fstype, m.flags, &m.data))
            .and_then(|_| match m.remount_flags {
                Some(flags) => sys.mount(&m.source, &m.target, c"", flags, c""),
                None => Ok(()),
            })
            .or_else(|errno| match (&root.user_namespace, errno) {
                (Some(_), libc::EPERM) if m.fstype.as_c_str() == c"sysfs" => {
                    sys.bind_sysfs(&m.target, m.flags)
                }
                (Some(_), libc::EBUSY) if m.fstype.as_c_str() == c"cgroup2" => {
                    sys.mount_over_vm_cgroup(&m.source, &m.target, &m.fstype, m.flags, &m.data)
                }
                _ => Err(errno),
            })
            .map_err(at(Stage::Mount, i))?;
        if m.populate_dev {
            populate_dev(sys, root).map_err(at(Stage::Devices, i))?;
        }
    }
    for (i, device) in root.extra_devices.iter().enumerate() {
        make_device(sys, root, device).map_err(at(Stage::ExtraDevices, i))?;
    }
    for (i, (path, value)) in root.sysctls.iter().enumerate() {
        sys.write_file(path, value.as_bytes())
            .map_err(at(Stage::Sysctl, i))?;
    }
    if let Some(state) = hooks {
        for (i, hook) in root.create_hooks.iter().enumerate() {
            sys.run_hook(
                hook,
                Some(&root.rootfs),
                [state.creating, state.pid, state.after_pid],
            )
            .map_err(at(Stage::CreateContainerHook, i))?;
        }
    }
    for (i, path) in root.masked.iter().enumerate() {
        match sys.is_dir(path) {
            Err(libc::ENOENT) => Ok(()),
            Err(errno) => Err(errno),
            Ok(true) => sys.mount(c"tmpfs", path, c"tmpfs", libc::MS_RDONLY, c""),
            Ok(false) => sys.mount(&root.dev_null, path, c"", libc::MS_BIND, c""),
        }
        .map_err(at(Stage::MaskPaths, i))?;
    }
    for (i, path) in root.readonly.iter().enumerate() {
        match sys.is_dir(path) {
            Err(libc::ENOENT) => Ok(()),
            Err(errno) => Err(errno),
            Ok(_) => sys
                .mount(path, path, c"", libc::MS_BIND | libc::MS_REC, c"")
                .and_then(|_| {
                    sys.mount(
                        path,
                        path,
                        c"",
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                        c"",
                    )
                }),
        }
        .map_err(at(Stage::ReadonlyPaths, i))?;
    }
    let terminal = open_terminal(sys, stdio)?;
    if root.readonly_root {
        sys.mount(
            &root.rootfs,
            &root.rootfs,
            c"",
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            c"",
        )
        .map_err(at(Stage::ReadonlyRoot, 0))?;
    }
    sys.pivot_into(&root.rootfs)
        .map_err(at(Stage::PivotRoot, 0))?;
    if let Some(hostname) = &root.hostname {
        sys.set_hostname(hostname).map_err(at(Stage::Hostname, 0))?;
    }
    if let Some(domainname) = &root.domainname {
        sys.set_domainname(domainname)
            .map_err(at(Stage::Domainname, 0))?;
    }
    Ok(terminal)
}

/// With a terminal: opens a pty, sends its master to the agent and
/// returns the slave. Without: -1.
fn open_terminal<S: ChildSyscall>(sys: &S, stdio: &PreparedStdio) -> Result<RawFd, Failure> {
    let PreparedStdio::Terminal {
        socket,
        ptmx,
        pts_prefix,
        rows,
        cols,
    } = stdio
    else {
        return Ok(-1);
    };
    let (master, slave) = sys
        .open_pty(ptmx, pts_prefix, *rows, *cols)
        .map_err(at(Stage::Terminal, 0))?;
    sys.send_fd(*socket, master)
        .map_err(at(Stage::Terminal, 0))?;
    Ok(slave)
}

/// The steps every process takes, in runc's order: stdio, rlimits, I/O
/// priority and scheduler (while we may still raise them), capabilities,
/// seccomp, user, working directory, umask, startContainer hooks,
/// no_new_privileges, exec.
fn exec_process(
    p: &ProcessSetup,
    terminal: RawFd,
    report: Reporter,
    hooks: Option<HookContext>,
) -> ! {
    match &p.stdio {
        PreparedStdio::Pipes(fds) => {
            for (target, fd) in fds.iter().enumerate() {
                report.check(Stage::Stdio, sys::dup_onto(*fd, target as RawFd));
            }
        }
        PreparedStdio::Terminal { .. } => {
            report.check(Stage::Stdio, sys::attach_terminal(terminal))
        }
    }
    for (resource, soft, hard) in &p.rlimits {
        report.check(Stage::Rlimits, sys::set_rlimit(*resource, *soft, *hard));
    }
    if let Some(value) = p.io_priority {
        report.check(Stage::IoPriority, sys::set_io_priority(value));
    }
    if let Some(attr) = &p.scheduler {
        report.check(Stage::Scheduler, sys::set_scheduler(attr));
    }
    if let Some(caps) = &p.capabilities {
        report.check(
            Stage::Capabilities,
            sys::limit_bounding_set(caps.bounding, LAST_CAP),
        );
    }
    // Without no_new_privileges the filter needs CAP_SYS_ADMIN, which we
    // still hold now (runc's order).
    if let (Some(program), false) = (p.seccomp, p.no_new_privileges) {
        report.check(Stage::Seccomp, sys::load_seccomp(program));
    }
    report.check(
        Stage::Credentials,
        sys::set_credentials(p.uid, p.gid, &p.groups),
    );
    if let Some(caps) = &p.capabilities {
        report.check(
            Stage::Capabilities,
            sys::set_capabilities(
                caps.effective,
                caps.permitted,
                caps.inheritable,
                caps.ambient,
                LAST_CAP,
            ),
        );
    }
    report.check(Stage::Chdir, sys::chdir(&p.cwd));
    sys::set_umask(p.umask);
    // runc runs them here: as the process's user, in its root.
    if let Some(state) = hooks {
        for (i, hook) in p.start_hooks.iter().enumerate() {
            if let Err(code) =
                sys::run_hook(hook, None, [state.created, state.pid, state.after_pid])
            {
                report.fail(Stage::StartContainerHook, code, i);
            }
        }
    }
    if p.no_new_privileges {
        report.check(Stage::NoNewPrivileges, sys::set_no_new_privileges());
        if let Some(program) = p.seccomp {
            report.check(Stage::Seccomp, sys::load_seccomp(program));
        }
    }
    let mut saw_eacces = false;
    for candidate in &p.candidates {
        match sys::exec(candidate, &p.argv, &p.envp) {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => saw_eacces = true,
            other => report.fail(Stage::Exec, other, 0),
        }
    }
    report.fail(
        Stage::Exec,
        if saw_eacces {
            libc::EACCES
        } else {
            libc::ENOENT
        },
        0,
    )
}

/// The mount point of `m`: a directory, or a file for a bind of a file
/// (kept if it is there).
fn make_target<S: ChildSyscall>(sys: &S, m: &MountOp) -> Result<(), i32> {
    if !m.file_target {
        return sys.mkdir(&m.target, 0o755);
    }
    match sys.mknod(&m.target, libc::S_IFREG | 0o644, 0) {
        Err(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// A node of `linux.devices`: its parents, then the node with its mode
/// and owner (in a user namespace: the VM's node, bound).
fn make_device<S: ChildSyscall>(
    sys: &S,
    root: &RootSetup,
    device: &PreparedDevice,
) -> Result<(), i32> {
    for parent in &device.parents {
        sys.mkdir(parent, 0o755)?;
    }
    if root.user_namespace.is_some() {
        return sys.bind_device(&device.vm_source, &device.path);
    }
    sys.mknod(&device.path, device.mode, device.dev)?;
    sys.chown(&device.path, device.uid, device.gid)
}

fn populate_dev<S: ChildSyscall>(sys: &S, root: &RootSetup) -> Result<(), i32> {
    for (i, (path, mode, dev)) in root.devices.iter().enumerate() {
        match &root.user_namespace {
            Some(ns) => match ns.device_sources.get(i) {
                Some(source) => sys.bind_device(source, path)?,
                None => return Err(libc::EINVAL),
            },
            None => sys.mknod(path, *mode, *dev)?,
        }
    }
    for (target, link) in &root.dev_links {
        sys.symlink(target, link)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::mount_op::{DEFAULT_DEVICES, DEFAULT_DEV_LINKS};
    use crate::process::spawn::{prepare_root, NewContainer};
    use crate::process::userns::UserNamespace;
    use crate::syscall::test::{mount, Call, Recording};
    use crate::test_utils::TempDir;

    /// runc's default mounts, in runc's order, as the container's mount
    /// plan makes them from its spec.
    fn runc_mounts(root: &TempDir) -> Vec<MountOp> {
        let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let op = |source: &str, rel: &str, fstype: &str, flags, data: &str| MountOp {
            source: CString::new(source).unwrap(),
            target: CString::new(root.str(rel)).unwrap(),
            fstype: CString::new(fstype).unwrap(),
            flags,
            data: CString::new(data).unwrap(),
            remount_flags: None,
            populate_dev: rel == "dev",
            file_target: false,
        };
        vec![
            op("proc", "proc", "proc", 0, ""),
            op(
                "tmpfs",
                "dev",
                "tmpfs",
                libc::MS_NOSUID | libc::MS_STRICTATIME,
                "mode=755,size=65536k",
            ),
            op(
                "devpts",
                "dev/pts",
                "devpts",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620",
            ),
            op(
                "sysfs",
                "sys",
                "sysfs",
                nosuid_nodev_noexec | libc::MS_RDONLY,
                "",
            ),
            op(
                "cgroup",
                "sys/fs/cgroup",
                "cgroup2",
                nosuid_nodev_noexec | libc::MS_RELATIME | libc::MS_RDONLY,
                "",
            ),
        ]
    }

    fn new_container(root: &TempDir, user_namespace: bool) -> NewContainer {
        let rootfs = root.path().to_path_buf();
        NewContainer {
            mounts: runc_mounts(root),
            rootfs,
            hostname: Some("box".into()),
            namespaces: libc::CLONE_NEWNS as u64,
            user_namespace: user_namespace.then(|| UserNamespace {
                uid_map: "0 100000 65536\n".into(),
                gid_map: "0 100000 65536\n".into(),
                root_uid: 100_000,
                root_gid: 100_000,
            }),
            masked_paths: vec!["/proc/kcore".into(), "/proc/acpi".into(), "/gone".into()],
            readonly_paths: vec!["/proc/sys".into()],
            readonly_root: true,
            sysctls: Vec::new(),
            domainname: None,
            devices: Vec::new(),
            hooks: Default::default(),
        }
    }

    fn pipes() -> PreparedStdio {
        PreparedStdio::Pipes([0, 1, 2])
    }

    /// `rel` under the root; "" for the root itself.
    fn at(root: &TempDir) -> impl Fn(&str) -> String + '_ {
        move |rel| match rel {
            "" => root.path().display().to_string(),
            rel => root.str(rel),
        }
    }

    #[test]
    fn a_new_root_is_built_in_runcs_order() {
        let root = TempDir::new("child-root");
        let new = new_container(&root, false);
        let setup = prepare_root(&new, None).unwrap();
        let sys = Recording::new();
        let p = at(&root);
        sys.add_file(&p("proc/kcore"));
        sys.add_dir(&p("proc/acpi"));
        sys.add_dir(&p("proc/sys"));
        assert_eq!(build_root(&sys, &setup, &pipes(), None), Ok(-1));

        let calls = sys.calls();
        let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let mut expected = vec![
            Call::MakeMountsPrivate,
            Call::Mkdir(p("proc")),
            mount("proc", &p("proc"), "proc", 0, ""),
            Call::Mkdir(p("dev")),
            mount(
                "tmpfs",
                &p("dev"),
                "tmpfs",
                libc::MS_NOSUID | libc::MS_STRICTATIME,
                "mode=755,size=65536k",
            ),
        ];
        for (name, major, minor) in DEFAULT_DEVICES {
            expected.push(Call::Mknod {
                path: p(&format!("dev/{name}")),
                mode: libc::S_IFCHR | 0o666,
                dev: libc::makedev(*major, *minor),
            });
        }
        for (name, target) in DEFAULT_DEV_LINKS {
            expected.push(Call::Symlink {
                target: target.to_string(),
                link: p(&format!("dev/{name}")),
            });
        }
        expected.extend([
            Call::Mkdir(p("dev/pts")),
            mount(
                "devpts",
                &p("dev/pts"),
                "devpts",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620",
            ),
            Call::Mkdir(p("sys")),
            mount(
                "sysfs",
                &p("sys"),
                "sysfs",
                nosuid_nodev_noexec | libc::MS_RDONLY,
                "",
            ),
            Call::Mkdir(p("sys/fs/cgroup")),
            mount(
                "cgroup",
                &p("sys/fs/cgroup"),
                "cgroup2",
                nosuid_nodev_noexec | libc::MS_RELATIME | libc::MS_RDONLY,
                "",
            ),
            // Masks: a file gets /dev/null, a directory a read-only
            // tmpfs, a missing path nothing.
            mount(&p("dev/null"), &p("proc/kcore"), "", libc::MS_BIND, ""),
            mount("tmpfs", &p("proc/acpi"), "tmpfs", libc::MS_RDONLY, ""),
            // Read-only paths: a bind, then its read-only remount.
            mount(
                &p("proc/sys"),
                &p("proc/sys"),
                "",
                libc::MS_BIND | libc::MS_REC,
                "",
            ),
            mount(
                &p("proc/sys"),
                &p("proc/sys"),
                "",
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                "",
            ),
            mount(
                &p(""),
                &p(""),
                "",
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                "",
            ),
            Call::PivotInto(p("")),
            Call::SetHostname("box".into()),
        ]);
        assert_eq!(calls, expected);
    }

    #[test]
    fn a_failed_mount_names_its_stage_and_index_and_stops() {
        let root = TempDir::new("child-fail");
        let new = new_container(&root, false);
        let setup = prepare_root(&new, None).unwrap();
        let sys = Recording::new();
        let pts = at(&root)("dev/pts");
        sys.fail_when(move |call| match call {
            Call::Mount { target, .. } if *target == pts => Some(libc::ENODEV),
            _ => None,
        });
        assert_eq!(
            build_root(&sys, &setup, &pipes(), None),
            Err(Failure {
                stage: Stage::Mount,
                errno: libc::ENODEV,
                index: 2,
            })
        );
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| matches!(c, Call::PivotInto(_))));
        assert!(!calls
            .iter()
            .any(|c| matches!(c, Call::Mkdir(p) if p.ends_with("/sys"))));
    }

    #[test]
    fn in_a_user_namespace_nodes_are_bound_and_sysfs_and_cgroup_fall_back() {
        let root = TempDir::new("child-userns");
        let new = new_container(&root, true);
        let setup = prepare_root(&new, Some(7)).unwrap();
        let sys = Recording::new();
        sys.fail_when(|call| match call {
            Call::Mount { fstype, .. } if fstype == "sysfs" => Some(libc::EPERM),
            Call::Mount { fstype, .. } if fstype == "cgroup2" => Some(libc::EBUSY),
            _ => None,
        });
        let p = at(&root);
        assert_eq!(build_root(&sys, &setup, &pipes(), None), Ok(-1));
        let calls = sys.calls();
        assert_eq!(
            calls[..3],
            [
                Call::EnterUserNamespace,
                Call::MakeMountsPrivate,
                mount(&p(""), &p(""), "", libc::MS_BIND | libc::MS_REC, ""),
            ]
        );
        assert!(!calls.iter().any(|c| matches!(c, Call::Mknod { .. })));
        assert!(calls.contains(&Call::BindDevice {
            source: "/dev/null".into(),
            target: p("dev/null"),
        }));
        let sysfs = calls
            .iter()
            .position(|c| matches!(c, Call::BindSysfs { target, .. } if *target == p("sys")))
            .expect("sysfs refused: the VM's is bound");
        let cgroup = calls
            .iter()
            .position(|c| {
                *c == Call::MountOverVmCgroup {
                    target: p("sys/fs/cgroup"),
                }
            })
            .expect("cgroup2 busy: mounted over the VM's");
        assert!(sysfs < cgroup);
        assert_eq!(calls.last(), Some(&Call::SetHostname("box".into())));
    }

    #[test]
    fn a_terminal_is_opened_from_the_containers_devpts_before_the_pivot() {
        let root = TempDir::new("child-tty");
        let new = new_container(&root, false);
        let mut setup = prepare_root(&new, None).unwrap();
        setup.readonly_root = false;
        let stdio = PreparedStdio::Terminal {
            socket: 9,
            ptmx: std::ffi::CString::new(root.str("dev/pts/ptmx")).unwrap(),
            pts_prefix: std::ffi::CString::new(root.str("dev/pts/")).unwrap(),
            rows: 24,
            cols: 80,
        };
        let sys = Recording::new();
        build_root(&sys, &setup, &stdio, None).unwrap();
        let calls = sys.calls();
        let tail: Vec<_> = calls[calls.len() - 4..].to_vec();
        assert_eq!(
            tail,
            vec![
                Call::OpenPty,
                Call::SendFd,
                Call::PivotInto(at(&root)("")),
                Call::SetHostname("box".into()),
            ]
        );
    }

    /// The container's own config: its nodes after the mounts, then its
    /// sysctls, then the createContainer hooks (chrooted, with the state
    /// on stdin) before masks and pivot; the domain name last.
    #[test]
    fn devices_sysctls_hooks_and_domainname_in_runcs_order() {
        use crate::process::attrs::DeviceNode;
        use crate::process::hooks::HookSpec;
        let root = TempDir::new("child-extras");
        let mut new = new_container(&root, false);
        new.readonly_root = false;
        new.masked_paths.clear();
        new.readonly_paths.clear();
        new.domainname = Some("example.org".into());
        new.sysctls = vec![("kernel.shmmax".into(), "65536".into())];
        new.devices = vec![
            DeviceNode {
                path: "/dev/net/tun".into(),
                mode: libc::S_IFCHR | 0o600,
                major: 10,
                minor: 200,
                uid: 5,
                gid: 6,
            },
            DeviceNode {
                path: "/dev/null".into(),
                mode: libc::S_IFCHR | 0o640,
                major: 1,
                minor: 3,
                uid: 0,
                gid: 0,
            },
        ];
        new.hooks.create_container = vec![HookSpec {
            path: "/bin/hook".into(),
            args: vec![],
            env: vec![],
            timeout: None,
        }];
        let setup = prepare_root(&new, None).unwrap();
        let sys = Recording::new();
        let p = at(&root);
        let state = HookContext {
            creating: b"{\"pid\":",
            created: b"",
            pid: b"42",
            after_pid: b"}",
        };
        assert_eq!(build_root(&sys, &setup, &pipes(), Some(state)), Ok(-1));
        let calls = sys.calls();
        let pos = |wanted: &Call| {
            calls
                .iter()
                .position(|c| c == wanted)
                .unwrap_or_else(|| panic!("{wanted:?} in {calls:#?}"))
        };
        let last_mount = calls
            .iter()
            .rposition(|c| matches!(c, Call::Mount { .. }))
            .unwrap();
        // /dev/null of linux.devices replaces the default one.
        let nulls = calls
            .iter()
            .filter(|c| matches!(c, Call::Mknod { path, .. } if *path == p("dev/null")))
            .count();
        assert_eq!(nulls, 1);
        let steps = [
            Call::Mkdir(p("dev/net")),
            Call::Mknod {
                path: p("dev/net/tun"),
                mode: libc::S_IFCHR | 0o600,
                dev: libc::makedev(10, 200),
            },
            Call::Chown {
                path: p("dev/net/tun"),
                uid: 5,
                gid: 6,
            },
            Call::Mknod {
                path: p("dev/null"),
                mode: libc::S_IFCHR | 0o640,
                dev: libc::makedev(1, 3),
            },
            Call::WriteSysctl {
                path: "/proc/sys/kernel/shmmax".into(),
                value: "65536".into(),
            },
            Call::RunHook {
                path: "/bin/hook".into(),
                root: Some(p("")),
                state: "{\"pid\":42}".into(),
            },
            Call::PivotInto(p("")),
            Call::SetHostname("box".into()),
            Call::SetDomainname("example.org".into()),
        ];
        let positions: Vec<usize> = steps.iter().map(pos).collect();
        assert!(positions[0] > last_mount, "{calls:#?}");
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{calls:#?}");
        assert_eq!(calls.last(), steps.last());
    }

    #[test]
    fn a_failing_sysctl_or_hook_stops_before_the_pivot() {
        use crate::process::hooks::{HookOutcome, HookSpec};
        let root = TempDir::new("child-extras-fail");
        let mut new = new_container(&root, false);
        new.sysctls = vec![
            ("kernel.shmmax".into(), "1".into()),
            ("kernel.shmall".into(), "x".into()),
        ];
        let setup = prepare_root(&new, None).unwrap();
        let sys = Recording::new();
        sys.fail_when(|call| match call {
            Call::WriteSysctl { value, .. } if value == "x" => Some(libc::EINVAL),
            _ => None,
        });
        assert_eq!(
            build_root(&sys, &setup, &pipes(), None),
            Err(Failure {
                stage: Stage::Sysctl,
                errno: libc::EINVAL,
                index: 1,
            })
        );
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::PivotInto(_))));

        let mut new = new_container(&root, false);
        new.hooks.create_container = vec![HookSpec {
            path: "/bin/false".into(),
            args: vec![],
            env: vec![],
            timeout: None,
        }];
        let setup = prepare_root(&new, None).unwrap();
        let sys = Recording::new();
        let code = HookOutcome::Exited(1).code();
        sys.fail_when(move |call| matches!(call, Call::RunHook { .. }).then_some(code));
        let state = HookContext {
            creating: b"",
            created: b"",
            pid: b"1",
            after_pid: b"",
        };
        let failure = build_root(&sys, &setup, &pipes(), Some(state)).unwrap_err();
        assert_eq!(failure.stage, Stage::CreateContainerHook);
        assert_eq!(
            HookOutcome::from_code(failure.errno),
            HookOutcome::Exited(1)
        );
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::PivotInto(_))));
    }
}
