//! Starts a container's process: clone into its namespaces (and cgroup),
//! set up its mounts and /dev, pivot into its root, confine it (rlimits,
//! capabilities, seccomp), drop to its user, exec. The model is runc's and
//! youki's init. An exec'd process instead joins a running container
//! through a single-threaded middle child (runc's nsenter) and skips the
//! root setup. Between clone and exec the child of a multi-threaded agent
//! may not allocate, so everything it needs is prepared here first and
//! [`super::child`] only replays it.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::attrs::{DeviceNode, ProcessAttrs};
use super::child::{
    self, HookState, Prepared, PreparedDevice, PreparedStdio, ProcessSetup, RootSetup, Stage,
};
use super::hooks::{self, ContainerHooks, HookOutcome, PreparedHook};
use super::mount_op::{MountOp, DEFAULT_DEVICES, DEFAULT_DEV_LINKS};
use super::userns::{self, ChildUserns, UserNamespace};
use super::Reaper;
use crate::security::capabilities::CapSets;
use crate::security::seccomp::SockFilter;
use crate::sys;
use crate::syscall::Syscall;

/// PATH Docker uses when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Who the process runs as: the container set-up resolves it from the
/// image's user and the container's /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (those of /etc/group that list the user).
    pub groups: Vec<u32>,
    pub home: String,
}

/// Everything needed to start one process.
pub struct Launch {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub credentials: Credentials,
    pub stdio: ChildStdio,
    /// (resource, soft, hard)
    pub rlimits: Vec<(u32, u64, u64)>,
    pub capabilities: Option<CapSets>,
    pub no_new_privileges: bool,
    pub seccomp: Option<Vec<SockFilter>>,
    /// umask, oom_score_adj, I/O priority, scheduler.
    pub attrs: ProcessAttrs,
    pub cgroup_fd: Option<RawFd>,
    pub place: Place,
}

/// Where the process runs.
pub enum Place {
    /// A new container, whose init it is.
    NewContainer(Box<NewContainer>),
    /// A running container (`exec`): the namespaces to join, open.
    Join(Vec<OwnedFd>),
}

/// The namespaces and root of a new container.
pub struct NewContainer {
    pub rootfs: PathBuf,
    pub hostname: Option<String>,
    /// CLONE_NEW* flags.
    pub namespaces: u64,
    /// With CLONE_NEWUSER: its maps.
    pub user_namespace: Option<UserNamespace>,
    pub mounts: Vec<MountOp>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub readonly_root: bool,
    /// `linux.sysctl` (key, value), checked to be the container's own.
    pub sysctls: Vec<(String, String)>,
    /// With CLONE_NEWUTS.
    pub domainname: Option<String>,
    /// `linux.devices`.
    pub devices: Vec<DeviceNode>,
    /// createContainer and startContainer.
    pub hooks: ContainerHooks,
}

/// The standard streams of the new process.
pub enum ChildStdio {
    /// The child's ends of three pipes.
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pty from the container's own devpts: the child opens it and sends
    /// the master back over `socket` (runc's console socket).
    Terminal {
        socket: OwnedFd,
        rows: u16,
        cols: u16,
    },
}

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("no command given")]
    EmptyCommand,
    #[error("argument, environment or path contains a NUL byte")]
    NulByte,
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: {0:?}: permission denied")]
    NotExecutable(String),
    #[error("exec: {command:?}")]
    Exec {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("chdir to {cwd}")]
    Chdir {
        cwd: String,
        #[source]
        source: io::Error,
    },
    #[error("{kind} hook {index} ({path}) {outcome}")]
    Hook {
        kind: &'static str,
        index: usize,
        path: String,
        outcome: HookOutcome,
    },
    #[error("container setup ({stage})")]
    Setup {
        stage: String,
        #[source]
        source: io::Error,
    },
}

/// The paths `execve` should try for `command`, in order: the command
/// itself if it has a slash, else each `$PATH` entry (empty entries mean
/// the working directory, as in execvp).
pub fn exec_candidates(command: &str, env: &[String]) -> Vec<String> {
    if command.contains('/') {
        return vec![command.to_string()];
    }
    let path = env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| format!("{}/{command}", dir.trim_end_matches('/')))
        .collect()
}

fn c(s: &str) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::NulByte)
}

fn c_vec(items: &[String]) -> Result<Vec<CString>, SpawnError> {
    items.iter().map(|s| c(s)).collect()
}

fn pointers(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn under_root(rootfs: &Path, path: &str) -> Result<CString, SpawnError> {
    c(&rootfs.join(path.trim_start_matches('/')).to_string_lossy())
}

fn path_c(path: &Path) -> Result<CString, SpawnError> {
    c(&path.to_string_lossy())
}

/// The C strings of a new container's root, under `rootfs` as the agent
/// sees it (the child builds the root before pivoting into it).
pub(super) fn prepare_root(
    new: &NewContainer,
    userns_sync: Option<RawFd>,
) -> Result<RootSetup<'_>, SpawnError> {
    let dev_dir = new.rootfs.join("dev");
    // A node of `linux.devices` replaces the default of its path.
    let defaults = || {
        DEFAULT_DEVICES.iter().filter(|(name, _, _)| {
            let path = format!("/dev/{name}");
            !new.devices.iter().any(|d| d.path == path)
        })
    };
    let devices = defaults()
        .map(|(name, major, minor)| {
            Ok((
                path_c(&dev_dir.join(name))?,
                libc::S_IFCHR | 0o666,
                libc::makedev(*major, *minor),
            ))
        })
        .collect::<Result<Vec<_>, SpawnError>>()?;
    let dev_links = DEFAULT_DEV_LINKS
        .iter()
        .map(|(name, target)| Ok((c(target)?, path_c(&dev_dir.join(name))?)))
        .collect::<Result<Vec<_>, SpawnError>>()?;
    let under = |paths: &[String]| -> Result<Vec<CString>, SpawnError> {
        paths.iter().map(|p| under_root(&new.rootfs, p)).collect()
    };
    Ok(RootSetup {
        rootfs: path_c(&new.rootfs)?,
        hostname: new.hostname.as_deref().map(c).transpose()?,
        mounts: &new.mounts,
        devices,
        dev_links,
        dev_null: path_c(&dev_dir.join("null"))?,
        masked: under(&new.masked_paths)?,
        readonly: under(&new.readonly_paths)?,
        readonly_root: new.readonly_root,
        user_namespace: match userns_sync {
            Some(sync_fd) => Some(ChildUserns {
                sync_fd,
                device_sources: defaults()
                    .map(|(name, _, _)| path_c(&Path::new("/dev").join(name)))
                    .collect::<Result<_, _>>()?,
            }),
            None => None,
        },
        sysctls: new
            .sysctls
            .iter()
            .map(|(key, value)| Ok((c(&sysctl_path(key))?, c(value)?)))
            .collect::<Result<_, SpawnError>>()?,
        domainname: new.domainname.as_deref().map(c).transpose()?,
        extra_devices: new
            .devices
            .iter()
            .map(|d| prepare_device(&new.rootfs, d))
            .collect::<Result<_, _>>()?,
        create_hooks: prepare_hooks(&new.hooks.create_container)?,
    })
}

/// Where a sysctl's key is under /proc/sys (`net.ipv4.ip_forward` or
/// `net/ipv4/ip_forward`).
pub fn sysctl_path(key: &str) -> String {
    if key.contains('/') {
        format!("/proc/sys/{}", key.trim_start_matches('/'))
    } else {
        format!("/proc/sys/{}", key.replace('.', "/"))
    }
}

fn prepare_device(rootfs: &Path, d: &DeviceNode) -> Result<PreparedDevice, SpawnError> {
    let inside = Path::new(&d.path);
    let mut parents: Vec<CString> = inside
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty() && *p != Path::new("/"))
        .map(|p| under_root(rootfs, &p.to_string_lossy()))
        .collect::<Result<_, _>>()?;
    parents.reverse();
    Ok(PreparedDevice {
        path: under_root(rootfs, &d.path)?,
        parents,
        mode: d.mode,
        dev: libc::makedev(d.major, d.minor),
        uid: d.uid,
        gid: d.gid,
        vm_source: c(&d.path)?,
    })
}

fn prepare_hooks(hooks: &[hooks::HookSpec]) -> Result<Vec<PreparedHook>, SpawnError> {
    hooks
        .iter()
        .map(|h| PreparedHook::new(h).ok_or(SpawnError::NulByte))
        .collect()
}

/// Clones a child, optionally into `cgroup_fd`; registers it with the
/// reaper in the parent. Ok(0) in the child, which must go straight into
/// `child::run` or `child::enter`.
fn clone_child(flags: u64, cgroup_fd: Option<RawFd>, reaper: &Reaper) -> Result<i32, SpawnError> {
    // SAFETY: both callers run only `child::run` or `child::enter` in the
    // child, which make raw syscalls on data prepared before the clone and
    // never allocate or take a lock.
    let pid = unsafe { sys::clone_into_namespaces(flags, cgroup_fd) }.map_err(|source| {
        SpawnError::Setup {
            stage: "clone".into(),
            source,
        }
    })?;
    if pid != 0 {
        reaper.child_spawned();
    }
    Ok(pid)
}

/// Starts the process; returns its pid (in the agent's PID namespace) once
/// it has successfully exec'd.
/// Kernel calls of the agent's side go through `sys`; the child's use the
/// raw, allocation-free ones (see `child`).
pub fn spawn(sys: &dyn Syscall, launch: Launch, reaper: &Reaper) -> Result<i32, SpawnError> {
    let command = launch.args.first().ok_or(SpawnError::EmptyCommand)?.clone();
    let args = c_vec(&launch.args)?;
    let env = c_vec(&launch.env)?;
    // An exec'd process is already in the container's mount namespace when
    // it opens its pty.
    // A new user namespace: the child waits on this until its maps are written.
    let userns_sync = match &launch.place {
        Place::NewContainer(new) if new.user_namespace.is_some() => {
            Some(sys::pipe().map_err(|source| SpawnError::Setup {
                stage: "pipe".into(),
                source,
            })?)
        }
        _ => None,
    };
    let dev_dir = match &launch.place {
        Place::NewContainer(new) => new.rootfs.join("dev"),
        Place::Join(_) => PathBuf::from("/dev"),
    };
    // With hooks, the child learns its pid (as we see it) on this pipe.
    let mut hook_pid = match &launch.place {
        Place::NewContainer(new) if !new.hooks.is_empty() => {
            let state = &new.hooks;
            if state.creating.len().max(state.created.len()) + state.after_pid.len() + 10
                > hooks::MAX_STATE
            {
                return Err(SpawnError::Setup {
                    stage: "prepare the hooks' state".into(),
                    source: io::Error::other("the container's state is too large"),
                });
            }
            Some(sys::pipe().map_err(|source| SpawnError::Setup {
                stage: "pipe".into(),
                source,
            })?)
        }
        _ => None,
    };
    let (start_hooks, hook_state) = match (&launch.place, &hook_pid) {
        (Place::NewContainer(new), Some((read, _))) => (
            prepare_hooks(&new.hooks.start_container)?,
            Some(HookState {
                pid_fd: read.as_raw_fd(),
                creating: new.hooks.creating.as_bytes(),
                created: new.hooks.created.as_bytes(),
                after_pid: new.hooks.after_pid.as_bytes(),
            }),
        ),
        _ => (Vec::new(), None),
    };
    let prepared = Prepared {
        hook_state,
        root: match &launch.place {
            Place::NewContainer(new) => Some(prepare_root(
                new,
                userns_sync.as_ref().map(|(read, _)| read.as_raw_fd()),
            )?),
            Place::Join(_) => None,
        },
        process: ProcessSetup {
            cwd: c(&launch.cwd)?,
            candidates: c_vec(&exec_candidates(&command, &launch.env))?,
            argv: pointers(&args),
            envp: pointers(&env),
            uid: launch.credentials.uid,
            gid: launch.credentials.gid,
            groups: launch.credentials.groups.clone(),
            stdio: match &launch.stdio {
                ChildStdio::Pipes {
                    stdin,
                    stdout,
                    stderr,
                } => PreparedStdio::Pipes([
                    stdin.as_raw_fd(),
                    stdout.as_raw_fd(),
                    stderr.as_raw_fd(),
                ]),
                ChildStdio::Terminal { socket, rows, cols } => PreparedStdio::Terminal {
                    socket: socket.as_raw_fd(),
                    ptmx: path_c(&dev_dir.join("pts/ptmx"))?,
                    pts_prefix: c(&format!("{}/", dev_dir.join("pts").to_string_lossy()))?,
                    rows: *rows,
                    cols: *cols,
                },
            },
            rlimits: launch.rlimits.clone(),
            capabilities: launch.capabilities,
            no_new_privileges: launch.no_new_privileges,
            seccomp: launch.seccomp.as_deref(),
            umask: launch.attrs.umask,
            oom_score_adj: launch
                .attrs
                .oom_score_adj
                .map(|v| c(&v.to_string()))
                .transpose()?,
            io_priority: launch.attrs.io_priority,
            scheduler: launch.attrs.scheduler,
            start_hooks,
        },
    };
    let setup = |stage: &str| {
        let stage = stage.to_string();
        move |source| SpawnError::Setup { stage, source }
    };
    let (error_read, error_write) = sys::pipe().map_err(setup("pipe"))?;
    let error_fd = error_write.as_raw_fd();

    let pid = match &launch.place {
        Place::NewContainer(new) => {
            let pid = clone_child(new.namespaces, launch.cgroup_fd, reaper)?;
            if pid == 0 {
                child::run(&prepared, error_fd);
            }
            if let Some((_, write)) = hook_pid.take() {
                // Fits the pipe's buffer: cannot block. A failure closes the
                // pipe, and the child reports that it never learnt it.
                let _ = std::io::Write::write_all(
                    &mut std::fs::File::from(write),
                    &(pid as u32).to_le_bytes(),
                );
            }
            if let (Some(ns), Some((_, sync))) = (&new.user_namespace, userns_sync) {
                if let Err(source) = userns::release_child(sys, pid, ns, &launch.rlimits, sync) {
                    // release_child killed the child.
                    reaper.wait_for(pid);
                    return Err(SpawnError::Setup {
                        stage: "write the user namespace's maps".into(),
                        source,
                    });
                }
            }
            Some(pid)
        }
        Place::Join(namespaces) => {
            let fds: Vec<RawFd> = namespaces.iter().map(|fd| fd.as_raw_fd()).collect();
            let (pid_read, pid_write) = sys::pipe().map_err(setup("pipe"))?;
            let pid_fd = pid_write.as_raw_fd();
            // The middle child starts in the container's cgroup: once in
            // the container's cgroup namespace it could not move there.
            let middle = clone_child(0, launch.cgroup_fd, reaper)?;
            if middle == 0 {
                child::enter(&prepared, &fds, error_fd, pid_fd);
            }
            drop(pid_write);
            let mut word = [0u8; 4];
            let pid = std::fs::File::from(pid_read)
                .read_exact(&mut word)
                .ok()
                .map(|_| u32::from_le_bytes(word) as i32);
            if pid.is_some() {
                // The process is our child too (CLONE_PARENT). If it already
                // exited, its status waits in the reaper until collected.
                reaper.child_spawned();
            }
            reaper.wait_for(middle);
            pid
        }
    };
    drop(error_write);

    // The error pipe closes on a successful exec; anything in it is why not.
    let mut report = Vec::new();
    let _ = std::fs::File::from(error_read).read_to_end(&mut report);
    if report.len() < child::REPORT_LEN {
        return pid.ok_or_else(|| SpawnError::Setup {
            stage: "start".into(),
            source: io::Error::other("the process was not started"),
        });
    }
    if let Some(pid) = pid {
        reaper.wait_for(pid);
    }
    Err(decode_report(&report, &launch, command))
}

/// Turns the child's (stage, errno, index) report into an error.
fn decode_report(report: &[u8], launch: &Launch, command: String) -> SpawnError {
    let word = |i: usize| [report[i], report[i + 1], report[i + 2], report[i + 3]];
    let stage = Stage::from_u32(u32::from_le_bytes(word(0)));
    let errno = i32::from_le_bytes(word(4));
    let index = u32::from_le_bytes(word(8)) as usize;
    let source = io::Error::from_raw_os_error(errno);
    match stage {
        Some(Stage::Exec) if errno == libc::ENOENT || errno == libc::ENOTDIR => {
            SpawnError::NotFound(command)
        }
        Some(Stage::Exec) if errno == libc::EACCES => SpawnError::NotExecutable(command),
        Some(Stage::Exec) => SpawnError::Exec { command, source },
        Some(stage @ (Stage::CreateContainerHook | Stage::StartContainerHook)) => {
            let (kind, list) = match (&launch.place, stage) {
                (Place::NewContainer(new), Stage::CreateContainerHook) => {
                    ("createContainer", &new.hooks.create_container[..])
                }
                (Place::NewContainer(new), _) => ("startContainer", &new.hooks.start_container[..]),
                (Place::Join(_), _) => ("startContainer", &[][..]),
            };
            SpawnError::Hook {
                kind,
                index,
                path: list.get(index).map(|h| h.path.clone()).unwrap_or_default(),
                outcome: HookOutcome::from_code(errno),
            }
        }
        Some(Stage::Sysctl) => SpawnError::Setup {
            stage: match &launch.place {
                Place::NewContainer(new) => match new.sysctls.get(index) {
                    Some((key, _)) => format!("write linux.sysctl {key}"),
                    None => Stage::Sysctl.name().into(),
                },
                Place::Join(_) => Stage::Sysctl.name().into(),
            },
            source,
        },
        Some(Stage::ExtraDevices) => SpawnError::Setup {
            stage: match &launch.place {
                Place::NewContainer(new) => match new.devices.get(index) {
                    Some(d) => format!("create linux.devices {}", d.path),
                    None => Stage::ExtraDevices.name().into(),
                },
                Place::Join(_) => Stage::ExtraDevices.name().into(),
            },
            source,
        },
        Some(Stage::Chdir) => SpawnError::Chdir {
            cwd: launch.cwd.clone(),
            source,
        },
        Some(Stage::Mount) => {
            let (target, rootfs) = match &launch.place {
                Place::NewContainer(new) => (
                    new.mounts
                        .get(index)
                        .map(|m| m.target.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    new.rootfs.to_string_lossy().into_owned(),
                ),
                Place::Join(_) => Default::default(),
            };
            let inside = target.strip_prefix(&*rootfs).unwrap_or(&target).to_string();
            SpawnError::Setup {
                stage: format!("mount {inside}"),
                source,
            }
        }
        Some(stage) => SpawnError::Setup {
            stage: stage.name().into(),
            source,
        },
        None => SpawnError::Setup {
            stage: "unknown".into(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::LINUX;

    #[test]
    fn commands_with_slashes_are_used_as_is() {
        assert_eq!(exec_candidates("/bin/sh", &[]), vec!["/bin/sh"]);
        assert_eq!(exec_candidates("./run", &["PATH=/x".into()]), vec!["./run"]);
    }

    #[test]
    fn path_lookup_uses_the_container_path() {
        let env = vec!["PATH=/a:/b/".to_string(), "X=1".to_string()];
        assert_eq!(exec_candidates("ls", &env), vec!["/a/ls", "/b/ls"]);
        let env = vec!["PATH=/a".to_string(), "PATH=/c::".to_string()];
        assert_eq!(exec_candidates("ls", &env), vec!["/c/ls", "./ls", "./ls"]);
    }

    #[test]
    fn default_path_when_unset() {
        assert_eq!(
            exec_candidates("ls", &[]).len(),
            DEFAULT_PATH.split(':').count()
        );
        assert_eq!(exec_candidates("ls", &[])[0], "/usr/local/sbin/ls");
    }

    /// A stand-in container made by unshare(1): its init is `sleep`, in
    /// its own PID, mount, UTS and IPC namespaces. None when this host
    /// cannot make one (not root, no unshare).
    fn stand_in_container() -> Option<StandIn> {
        let child = std::process::Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--mount",
                "--uts",
                "--ipc",
            ])
            .args(["sh", "-c", "hostname hull-exec-test && exec sleep 1000"])
            .spawn()
            .ok()?;
        let children = format!("/proc/{}/task/{}/children", child.id(), child.id());
        for _ in 0..500 {
            let init = std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<i32>().ok());
            if let Some(init) = init {
                let cmdline = std::fs::read(format!("/proc/{init}/cmdline")).unwrap_or_default();
                if cmdline.starts_with(b"sleep\0") {
                    return Some(StandIn { child, init });
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        None
    }

    struct StandIn {
        child: std::process::Child,
        init: i32,
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            // Its init ignores everything else.
            let _ = sys::kill(self.init, libc::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn join_launch(init: i32, args: &[&str], stdio: ChildStdio) -> Launch {
        let namespaces = ["ipc", "uts", "pid", "mnt"]
            .iter()
            .map(|ns| {
                std::fs::File::open(format!("/proc/{init}/ns/{ns}"))
                    .unwrap()
                    .into()
            })
            .collect();
        Launch {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: "/".into(),
            credentials: Credentials {
                uid: 0,
                gid: 0,
                groups: vec![0],
                home: "/root".into(),
            },
            stdio,
            rlimits: vec![(libc::RLIMIT_NOFILE, 512, 512)],
            capabilities: None,
            no_new_privileges: false,
            seccomp: None,
            attrs: ProcessAttrs::default(),
            cgroup_fd: None,
            place: Place::Join(namespaces),
        }
    }

    fn pipes() -> (ChildStdio, std::fs::File) {
        let (_, stdin) = sys::pipe().unwrap();
        let (out_read, out_write) = sys::pipe().unwrap();
        let (_, stderr) = sys::pipe().unwrap();
        let stdio = ChildStdio::Pipes {
            stdin,
            stdout: out_write,
            stderr,
        };
        (stdio, out_read.into())
    }

    /// exec as runc does it, against real namespaces: the process sees the
    /// container's init as its PID 1, its hostname, its own rlimits; a
    /// missing command is NotFound; a process that exits before `spawn`
    /// returns is still reaped.
    #[test]
    fn exec_joins_a_running_container() {
        let _children = crate::children_lock();
        let container = stand_in_container().expect("unshare(1) runs a stand-in container");
        let init = container.init;
        let reaper = Reaper::start();
        let script = "tr '\\0' ' ' </proc/1/cmdline; echo; hostname; echo $$; ulimit -n";
        let (stdio, mut out) = pipes();
        let pid = spawn(
            &LINUX,
            join_launch(init, &["sh", "-c", script], stdio),
            &reaper,
        )
        .unwrap();
        let mut output = String::new();
        out.read_to_string(&mut output).unwrap();
        assert_eq!(reaper.wait_for(pid), sys::WaitStatus::Exited(0));
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines[0].trim_end(), "sleep 1000", "{output}");
        assert_eq!(lines[1], "hull-exec-test");
        let inner_pid: i32 = lines[2].parse().unwrap();
        assert!(inner_pid > 1 && inner_pid != pid, "{output}");
        assert_eq!(lines[3], "512");

        let (stdio, _out) = pipes();
        let err = spawn(
            &LINUX,
            join_launch(init, &["no-such-command"], stdio),
            &reaper,
        )
        .unwrap_err();
        assert!(matches!(err, SpawnError::NotFound(_)), "{err}");

        let (stdio, _out) = pipes();
        let pid = spawn(&LINUX, join_launch(init, &["true"], stdio), &reaper).unwrap();
        assert_eq!(reaper.wait_for(pid), sys::WaitStatus::Exited(0));

        let (agent_end, child_end) = sys::socketpair().unwrap();
        let stdio = ChildStdio::Terminal {
            socket: child_end,
            rows: 33,
            cols: 99,
        };
        let pid = spawn(
            &LINUX,
            join_launch(init, &["sh", "-c", "stty size; tty"], stdio),
            &reaper,
        )
        .unwrap();
        let mut master = std::fs::File::from(sys::recv_fd(&agent_end).unwrap());
        let mut output = Vec::new();
        // EIO once the process is gone and the slave closed.
        let _ = master.read_to_end(&mut output);
        assert_eq!(reaper.wait_for(pid), sys::WaitStatus::Exited(0));
        let output = String::from_utf8_lossy(&output);
        assert!(output.starts_with("33 99\r\n/dev/pts/"), "{output}");
    }
}
