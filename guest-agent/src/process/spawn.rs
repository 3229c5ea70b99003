//! Starts a container's process: clone into its namespaces (and cgroup),
//! set up its mounts and /dev, pivot into its root, confine it (rlimits,
//! capabilities, seccomp), drop to its user, exec. The model is runc's and
//! youki's init. Between clone and exec the child of a multi-threaded agent
//! may not allocate, so everything it needs is prepared here first and
//! [`super::child`] only replays it.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use thiserror::Error;

use super::child::{self, Prepared, PreparedStdio, Stage};
use super::Reaper;
use crate::container::mounts::{MountOp, DEFAULT_DEVICES, DEFAULT_DEV_LINKS};
use crate::container::user::Credentials;
use crate::security::capabilities::CapSets;
use crate::security::seccomp::SockFilter;
use crate::sys;

/// PATH Docker uses when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to start one process.
pub struct Launch {
    pub rootfs: PathBuf,
    pub hostname: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub credentials: Credentials,
    pub stdio: ChildStdio,
    /// CLONE_NEW* flags.
    pub namespaces: u64,
    pub mounts: Vec<MountOp>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub readonly_root: bool,
    /// (resource, soft, hard)
    pub rlimits: Vec<(u32, u64, u64)>,
    pub capabilities: Option<CapSets>,
    pub no_new_privileges: bool,
    pub seccomp: Option<Vec<SockFilter>>,
    pub cgroup_fd: Option<RawFd>,
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

fn under_root(launch: &Launch, path: &str) -> Result<CString, SpawnError> {
    c(&launch
        .rootfs
        .join(path.trim_start_matches('/'))
        .to_string_lossy())
}

/// Starts the process; returns its pid (in the agent's PID namespace) once
/// it has successfully exec'd.
pub fn spawn(launch: Launch, reaper: &Reaper) -> Result<i32, SpawnError> {
    let command = launch.args.first().ok_or(SpawnError::EmptyCommand)?.clone();
    let args = c_vec(&launch.args)?;
    let env = c_vec(&launch.env)?;
    let dev_dir = launch.rootfs.join("dev");
    let devices = DEFAULT_DEVICES
        .iter()
        .map(|(name, major, minor)| {
            Ok((
                c(&dev_dir.join(name).to_string_lossy())?,
                libc::S_IFCHR | 0o666,
                libc::makedev(*major, *minor),
            ))
        })
        .collect::<Result<Vec<_>, SpawnError>>()?;
    let dev_links = DEFAULT_DEV_LINKS
        .iter()
        .map(|(name, target)| Ok((c(target)?, c(&dev_dir.join(name).to_string_lossy())?)))
        .collect::<Result<Vec<_>, SpawnError>>()?;
    let prepared = Prepared {
        rootfs: c(&launch.rootfs.to_string_lossy())?,
        hostname: launch.hostname.as_deref().map(c).transpose()?,
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
            } => PreparedStdio::Pipes([stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()]),
            ChildStdio::Terminal { socket, rows, cols } => PreparedStdio::Terminal {
                socket: socket.as_raw_fd(),
                ptmx: c(&dev_dir.join("pts/ptmx").to_string_lossy())?,
                pts_prefix: c(&format!("{}/", dev_dir.join("pts").to_string_lossy()))?,
                rows: *rows,
                cols: *cols,
            },
        },
        mounts: &launch.mounts,
        devices,
        dev_links,
        dev_null: c(&dev_dir.join("null").to_string_lossy())?,
        masked: launch
            .masked_paths
            .iter()
            .map(|p| under_root(&launch, p))
            .collect::<Result<_, _>>()?,
        readonly: launch
            .readonly_paths
            .iter()
            .map(|p| under_root(&launch, p))
            .collect::<Result<_, _>>()?,
        readonly_root: launch.readonly_root,
        rlimits: launch.rlimits.clone(),
        capabilities: launch.capabilities,
        no_new_privileges: launch.no_new_privileges,
        seccomp: launch.seccomp.as_deref(),
    };
    let (error_read, error_write) = sys::pipe().map_err(|source| SpawnError::Setup {
        stage: "pipe".into(),
        source,
    })?;

    // SAFETY: the child runs only `child::run`, which makes raw syscalls on
    // the data prepared above and never allocates or takes a lock.
    let pid = unsafe { sys::clone_into_namespaces(launch.namespaces, launch.cgroup_fd) }.map_err(
        |source| SpawnError::Setup {
            stage: "clone".into(),
            source,
        },
    )?;
    if pid == 0 {
        child::run(&prepared, error_write.as_raw_fd());
    }
    reaper.child_spawned();
    drop(error_write);

    // The error pipe closes on a successful exec; anything in it is why not.
    let mut report = Vec::new();
    let _ = std::fs::File::from(error_read).read_to_end(&mut report);
    if report.len() < child::REPORT_LEN {
        return Ok(pid);
    }
    reaper.wait_for(pid);
    let word = |i: usize| [report[i], report[i + 1], report[i + 2], report[i + 3]];
    let stage = Stage::from_u32(u32::from_le_bytes(word(0)));
    let errno = i32::from_le_bytes(word(4));
    let index = u32::from_le_bytes(word(8)) as usize;
    let source = io::Error::from_raw_os_error(errno);
    Err(match stage {
        Some(Stage::Exec) if errno == libc::ENOENT || errno == libc::ENOTDIR => {
            SpawnError::NotFound(command)
        }
        Some(Stage::Exec) if errno == libc::EACCES => SpawnError::NotExecutable(command),
        Some(Stage::Exec) => SpawnError::Exec { command, source },
        Some(Stage::Chdir) => SpawnError::Chdir {
            cwd: launch.cwd.clone(),
            source,
        },
        Some(Stage::Mount) => {
            let target = launch
                .mounts
                .get(index)
                .map(|m| m.target.to_string_lossy().into_owned())
                .unwrap_or_default();
            let inside = target
                .strip_prefix(&*launch.rootfs.to_string_lossy())
                .unwrap_or(&target)
                .to_string();
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
