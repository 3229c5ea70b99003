//! The child between clone and exec. It only replays what `spawn` prepared,
//! with raw syscalls: no allocation, no locks (the agent is multi-threaded).
//! A main process builds the container's root first; main and exec'd
//! processes then share one sequence from stdio to exec.
//! On failure it writes (stage, errno, index) to the error pipe and exits.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::container::mounts::MountOp;
use crate::container::userns::{self, ChildUserns};
use crate::security::capabilities::{CapSets, LAST_CAP};
use crate::security::seccomp::SockFilter;
use crate::sys::child as sys;

/// Bytes of a failure report: stage, errno, index (all u32 LE).
pub const REPORT_LEN: usize = 12;

/// What `child::run` needs, all allocated before the clone.
pub struct Prepared<'a> {
    /// The container's root: for the main process, which builds it. An
    /// exec'd process finds it in the namespaces it joins.
    pub root: Option<RootSetup<'a>>,
    pub process: ProcessSetup<'a>,
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

/// Never returns: execs the process or exits after reporting why not.
/// With `p.root` this is a new container's init and builds its root
/// first; without, the caller already joined a container's namespaces.
pub fn run(p: &Prepared, error_fd: RawFd) -> ! {
    let report = Reporter(error_fd);
    sys::reset_process_state();
    let terminal = match &p.root {
        Some(root) => build_root(root, &p.process.stdio, report),
        None => open_terminal(&p.process.stdio, report),
    };
    exec_process(&p.process, terminal, report)
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

/// Mounts, /dev, masks, the terminal (from the container's own devpts, so
/// `tty` names it there), read-only root, pivot, hostname. Returns the
/// terminal's slave, or -1 without a terminal.
fn build_root(root: &RootSetup, stdio: &PreparedStdio, report: Reporter) -> RawFd {
    if let Some(ns) = &root.user_namespace {
        report.check(Stage::UserNamespace, userns::child::enter(ns.sync_fd));
    }
    report.check(Stage::PrivateMounts, sys::make_mounts_private());
    if root.user_namespace.is_some() {
        // The root came from the VM's mount namespace, so it is locked
        // here and pivot_root refuses it; a bind of it made here is not.
        report.check(
            Stage::UserNamespace,
            sys::mount(
                &root.rootfs,
                &root.rootfs,
                c"",
                libc::MS_BIND | libc::MS_REC,
                c"",
            ),
        );
    }
    for (i, m) in root.mounts.iter().enumerate() {
        let mounted = sys::mkdir(&m.target, 0o755)
            .and_then(|_| sys::mount(&m.source, &m.target, &m.fstype, m.flags, &m.data))
            .and_then(|_| match m.remount_flags {
                Some(flags) => sys::mount(&m.source, &m.target, c"", flags, c""),
                None => Ok(()),
            })
            .or_else(|errno| match (&root.user_namespace, errno) {
                (Some(_), libc::EPERM) if m.fstype.as_c_str() == c"sysfs" => {
                    userns::child::bind_sysfs(&m.target, m.flags)
                }
                (Some(_), libc::EBUSY) if m.fstype.as_c_str() == c"cgroup2" => {
                    userns::child::mount_over_vm_cgroup(m)
                }
                _ => Err(errno),
            });
        if let Err(errno) = mounted {
            report.fail(Stage::Mount, errno, i);
        }
        if m.populate_dev {
            populate_dev(root).unwrap_or_else(|errno| report.fail(Stage::Devices, errno, i));
        }
    }
    for (i, path) in root.masked.iter().enumerate() {
        let masked = match sys::is_dir(path) {
            Err(libc::ENOENT) => Ok(()),
            Err(errno) => Err(errno),
            Ok(true) => sys::mount(c"tmpfs", path, c"tmpfs", libc::MS_RDONLY, c""),
            Ok(false) => sys::mount(&root.dev_null, path, c"", libc::MS_BIND, c""),
        };
        if let Err(errno) = masked {
            report.fail(Stage::MaskPaths, errno, i);
        }
    }
    for (i, path) in root.readonly.iter().enumerate() {
        let done = match sys::is_dir(path) {
            Err(libc::ENOENT) => Ok(()),
            Err(errno) => Err(errno),
            Ok(_) => {
                sys::mount(path, path, c"", libc::MS_BIND | libc::MS_REC, c"").and_then(|_| {
                    sys::mount(
                        path,
                        path,
                        c"",
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                        c"",
                    )
                })
            }
        };
        if let Err(errno) = done {
            report.fail(Stage::ReadonlyPaths, errno, i);
        }
    }
    let terminal = open_terminal(stdio, report);
    if root.readonly_root {
        report.check(
            Stage::ReadonlyRoot,
            sys::mount(
                &root.rootfs,
                &root.rootfs,
                c"",
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                c"",
            ),
        );
    }
    report.check(Stage::PivotRoot, sys::pivot_into(&root.rootfs));
    if let Some(hostname) = &root.hostname {
        report.check(Stage::Hostname, sys::set_hostname(hostname));
    }
    terminal
}

/// With a terminal: opens a pty, sends its master to the agent and
/// returns the slave. Without: -1.
fn open_terminal(stdio: &PreparedStdio, report: Reporter) -> RawFd {
    let PreparedStdio::Terminal {
        socket,
        ptmx,
        pts_prefix,
        rows,
        cols,
    } = stdio
    else {
        return -1;
    };
    match sys::open_pty(ptmx, pts_prefix, *rows, *cols) {
        Ok((master, slave)) => {
            report.check(Stage::Terminal, sys::send_fd(*socket, master));
            slave
        }
        Err(errno) => report.fail(Stage::Terminal, errno, 0),
    }
}

/// The steps every process takes, in runc's order: stdio, rlimits,
/// capabilities, seccomp, user, working directory, no_new_privileges,
/// exec.
fn exec_process(p: &ProcessSetup, terminal: RawFd, report: Reporter) -> ! {
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

fn populate_dev(root: &RootSetup) -> Result<(), i32> {
    for (i, (path, mode, dev)) in root.devices.iter().enumerate() {
        match &root.user_namespace {
            Some(ns) => match ns.device_sources.get(i) {
                Some(source) => userns::child::bind_device(source, path)?,
                None => return Err(libc::EINVAL),
            },
            None => sys::mknod(path, *mode, *dev)?,
        }
    }
    for (target, link) in &root.dev_links {
        sys::symlink(target, link)?;
    }
    Ok(())
}
