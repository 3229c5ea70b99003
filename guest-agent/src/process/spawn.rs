//! Starts a container's process: clone into new mount, PID, UTS and IPC
//! namespaces, pivot into the container root, drop to the container user,
//! exec. The model is runc/youki's init, squeezed into one function because
//! between clone and exec the child of a multi-threaded agent may not
//! allocate: everything it needs is prepared here first.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use thiserror::Error;

use super::Reaper;
use crate::container::user::Credentials;
use crate::sys::{self, child};

/// PATH Docker uses when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to start one process.
pub struct Launch {
    pub rootfs: PathBuf,
    pub hostname: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub credentials: Credentials,
    /// The child's ends of its standard streams.
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
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
        stage: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Where the child failed; sent back over the error pipe with the errno.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Stage {
    PrivateMounts = 1,
    MountProc = 2,
    PivotRoot = 3,
    Hostname = 4,
    Stdio = 5,
    Credentials = 6,
    Chdir = 7,
    Exec = 8,
}

impl Stage {
    fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::PrivateMounts,
            2 => Self::MountProc,
            3 => Self::PivotRoot,
            4 => Self::Hostname,
            5 => Self::Stdio,
            6 => Self::Credentials,
            7 => Self::Chdir,
            8 => Self::Exec,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::PrivateMounts => "make mounts private",
            Self::MountProc => "mount /proc",
            Self::PivotRoot => "pivot_root",
            Self::Hostname => "sethostname",
            Self::Stdio => "set up stdio",
            Self::Credentials => "set user and groups",
            Self::Chdir => "chdir",
            Self::Exec => "exec",
        }
    }
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

/// What the child needs, prepared before clone.
struct Prepared {
    rootfs: CString,
    proc_dir: CString,
    hostname: CString,
    cwd: CString,
    candidates: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    stdio: [RawFd; 3],
}

/// Starts the process; returns its pid (in the agent's PID namespace) once
/// it has successfully exec'd.
pub fn spawn(launch: Launch, reaper: &Reaper) -> Result<i32, SpawnError> {
    let command = launch.args.first().ok_or(SpawnError::EmptyCommand)?.clone();
    let args = c_vec(&launch.args)?;
    let env = c_vec(&launch.env)?;
    let candidates = c_vec(&exec_candidates(&command, &launch.env))?;
    let prepared = Prepared {
        rootfs: c(&launch.rootfs.to_string_lossy())?,
        proc_dir: c(&launch.rootfs.join("proc").to_string_lossy())?,
        hostname: c(&launch.hostname)?,
        cwd: c(&launch.cwd)?,
        candidates,
        argv: pointers(&args),
        envp: pointers(&env),
        uid: launch.credentials.uid,
        gid: launch.credentials.gid,
        groups: launch.credentials.groups.clone(),
        stdio: [
            launch.stdin.as_raw_fd(),
            launch.stdout.as_raw_fd(),
            launch.stderr.as_raw_fd(),
        ],
    };
    let (error_read, error_write) = sys::pipe().map_err(|source| SpawnError::Setup {
        stage: "pipe",
        source,
    })?;

    // SAFETY: the child runs only `run_child`, which makes raw syscalls on
    // the data prepared above and never allocates or takes a lock.
    let pid = unsafe { sys::clone_into_namespaces() }.map_err(|source| SpawnError::Setup {
        stage: "clone",
        source,
    })?;
    if pid == 0 {
        run_child(&prepared, error_write.as_raw_fd());
    }
    reaper.child_spawned();
    drop(error_write);
    drop(launch);

    // The error pipe closes on a successful exec; anything in it is why not.
    let mut report = Vec::new();
    let _ = std::fs::File::from(error_read).read_to_end(&mut report);
    if report.len() < 8 {
        return Ok(pid);
    }
    reaper.wait_for(pid);
    let stage = Stage::from_u32(u32::from_le_bytes([
        report[0], report[1], report[2], report[3],
    ]));
    let errno = i32::from_le_bytes([report[4], report[5], report[6], report[7]]);
    let source = io::Error::from_raw_os_error(errno);
    Err(match stage {
        Some(Stage::Exec) if errno == libc::ENOENT || errno == libc::ENOTDIR => {
            SpawnError::NotFound(command)
        }
        Some(Stage::Exec) if errno == libc::EACCES => SpawnError::NotExecutable(command),
        Some(Stage::Exec) => SpawnError::Exec { command, source },
        Some(Stage::Chdir) => SpawnError::Chdir {
            cwd: prepared.cwd.to_string_lossy().into_owned(),
            source,
        },
        Some(stage) => SpawnError::Setup {
            stage: stage.name(),
            source,
        },
        None => SpawnError::Setup {
            stage: "unknown",
            source,
        },
    })
}

/// The child: never returns. Only async-signal-safe calls from here on.
fn run_child(p: &Prepared, error_fd: RawFd) -> ! {
    let fail = |stage: Stage, errno: i32| -> ! {
        let mut report = [0u8; 8];
        report[..4].copy_from_slice(&(stage as u32).to_le_bytes());
        report[4..].copy_from_slice(&errno.to_le_bytes());
        child::write_all(error_fd, &report);
        child::exit(match (stage, errno) {
            (Stage::Exec, libc::ENOENT) => 127,
            (Stage::Exec, libc::EACCES) => 126,
            _ => 125,
        })
    };
    child::reset_process_state();
    if let Err(e) = child::make_mounts_private() {
        fail(Stage::PrivateMounts, e)
    }
    if let Err(e) = child::mount_proc(&p.proc_dir) {
        fail(Stage::MountProc, e)
    }
    if let Err(e) = child::pivot_into(&p.rootfs) {
        fail(Stage::PivotRoot, e)
    }
    if let Err(e) = child::set_hostname(&p.hostname) {
        fail(Stage::Hostname, e)
    }
    for (target, fd) in p.stdio.iter().enumerate() {
        if let Err(e) = child::dup_onto(*fd, target as RawFd) {
            fail(Stage::Stdio, e)
        }
    }
    if let Err(e) = child::set_credentials(p.uid, p.gid, &p.groups) {
        fail(Stage::Credentials, e)
    }
    if let Err(e) = child::chdir(&p.cwd) {
        fail(Stage::Chdir, e)
    }
    let mut saw_eacces = false;
    for candidate in &p.candidates {
        match child::exec(candidate, &p.argv, &p.envp) {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => saw_eacces = true,
            other => fail(Stage::Exec, other),
        }
    }
    fail(
        Stage::Exec,
        if saw_eacces {
            libc::EACCES
        } else {
            libc::ENOENT
        },
    )
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
