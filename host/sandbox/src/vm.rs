//! The hypervisor process of one sandbox. It dies with its supervisor
//! (parent-death signal), lives in its own process group (terminal signals are not
//! for it) and writes its own
//! diagnostics to a log in the sandbox directory.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use tokio::process::Child;

pub struct VmProcess {
    child: Child,
    stderr_log: PathBuf,
}

impl VmProcess {
    /// Starts the hypervisor; inside the network namespace at `netns` if
    /// given (where its tap device is).
    pub fn spawn(
        mut command: Command,
        stderr_log: &Path,
        netns: Option<&Path>,
    ) -> std::io::Result<Self> {
        let log = File::create(stderr_log)?;
        let netns = netns.map(File::open).transpose()?;
        command.stderr(Stdio::from(log)).process_group(0);
        // SAFETY: the closure only makes async-signal-safe calls (prctl,
        // setns) on a descriptor opened before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(ns) = &netns {
                    use std::os::fd::AsRawFd;
                    if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self {
            child,
            stderr_log: stderr_log.to_path_buf(),
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

/// The last non-empty line of a log that satisfies `pick`.
pub fn last_line(path: &Path, pick: impl Fn(&str) -> bool) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && pick(line))
        .last()
        .map(str::to_string)
}
