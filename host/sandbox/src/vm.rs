//! The hypervisor process of one sandbox. It dies with its supervisor
//! (parent-death signal), lives in its own process group (terminal signals are not
//! for it) and writes its own diagnostics and the guest's serial console
//! into pipes whose logs in the sandbox directory are capped
//! ([`crate::capped_log`]): a guest cannot fill the host's memory through
//! them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use tokio::process::Child;

use crate::capped_log;
use crate::hypervisor::jail::LOCK_FD;
use crate::hypervisor::{CONSOLE_FD, CONSOLE_LOG, HYPERVISOR_LOG};

/// How much of a log's end [`last_line`] reads.
const TAIL_BYTES: u64 = 64 << 10;

pub struct VmProcess {
    child: Child,
    stderr_log: PathBuf,
}

impl VmProcess {
    /// Starts the hypervisor; inside the network namespace at `netns` if
    /// given (where its tap device is). Its stderr goes to
    /// [`HYPERVISOR_LOG`] and descriptor [`CONSOLE_FD`] (where the backends
    /// point the serial console) to [`CONSOLE_LOG`], both in `dir`.
    ///
    /// `jail_lock`, the lock of the VM's jail id, becomes its descriptor
    /// [`LOCK_FD`]: the id stays taken while the hypervisor lives.
    pub fn spawn(
        mut command: Command,
        jail_lock: Option<OwnedFd>,
        dir: &Path,
        netns: Option<&Path>,
    ) -> std::io::Result<Self> {
        let stderr = capped_log::spawn(dir, HYPERVISOR_LOG, capped_log::HYPERVISOR_LOG_LIMIT)?;
        let console = capped_log::spawn(dir, CONSOLE_LOG, capped_log::console_limit())?;
        let netns = netns.map(File::open).transpose()?;
        command.stderr(Stdio::from(stderr)).process_group(0);
        // SAFETY: the closure only makes async-signal-safe calls (prctl,
        // setns, dup2, fcntl) on descriptors opened before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(ns) = &netns {
                    if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // The lock out of the console's way first: dup2 onto
                // CONSOLE_FD would close it.
                let mut lock = jail_lock.as_ref().map(|fd| fd.as_raw_fd());
                if lock == Some(CONSOLE_FD) {
                    lock = Some(libc::fcntl(CONSOLE_FD, libc::F_DUPFD_CLOEXEC, 10));
                }
                // After setns: the namespace's descriptor may be the one
                // the console takes.
                keep_as(console.as_raw_fd(), CONSOLE_FD)?;
                if let Some(lock) = lock {
                    keep_as(lock, LOCK_FD)?;
                }
                Ok(())
            });
        }
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self {
            child,
            stderr_log: dir.join(HYPERVISOR_LOG),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kills the VM and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Kills and reaps without an executor (for `Drop`).
    pub fn kill_now(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = self.child.start_kill();
            let mut status = 0;
            // SAFETY: waiting on our own child; `status` is a valid out-pointer.
            unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        }
    }

    /// Its log moved with the sandbox directory to `dir`.
    pub(crate) fn moved_to(&mut self, dir: &Path) {
        if let Some(name) = self.stderr_log.file_name() {
            self.stderr_log = dir.join(name);
        }
    }

    /// The last line the hypervisor wrote to stderr, if any.
    pub fn last_error_line(&self) -> Option<String> {
        last_line(&self.stderr_log, |_| true)
    }
}

/// Makes `fd` the child's descriptor `target`, kept across exec (dup2
/// onto itself would keep close-on-exec). Async-signal-safe.
fn keep_as(fd: i32, target: i32) -> std::io::Result<()> {
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl and dup2 on descriptors of this process.
    let kept = unsafe {
        if fd == target {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, target)
        }
    };
    if kept < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The last non-empty line of a log that satisfies `pick`, among the
/// lines of its last 64 KiB (a guest can write the log; it is never read
/// whole).
pub fn last_line(path: &Path, pick: impl Fn(&str) -> bool) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .ok()?;
    let mut text = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut text).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && pick(line))
        .last()
        .map(str::to_string)
}
