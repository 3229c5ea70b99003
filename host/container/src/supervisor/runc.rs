//! The supervisor in runc mode (`hull-runc create`): the caller — the
//! containerd runc shim, or conmon for podman — hands the container's stdio
//! to `create` as that process's own stdin, stdout and stderr (pipes,
//! FIFOs, or a pty slave with `--console-socket`) and reads the output from
//! them. The supervisor inherits them, keeps them for the container, and
//! points its own descriptors 0/1/2 elsewhere, so that nothing of hull's
//! own reaches the container's streams and the VM process does not hold
//! them open.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::shared::{lock, Shared};
use crate::record::Container;

/// How often the size of a terminal handed to us is checked: a pty slave
/// gets no SIGWINCH of ours, so its size is polled.
const WINSIZE_POLL: Duration = Duration::from_millis(200);

/// The container's stdio, as the caller passed it.
pub(super) struct RuncStdio {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Takes descriptors 0, 1 and 2 for the container and replaces them with
/// /dev/null (stdin) and the supervisor's log (stdout, stderr).
pub(super) fn take_stdio(container: &Container) -> io::Result<RuncStdio> {
    let dup = |fd: i32| {
        // SAFETY: 0, 1 and 2 are open for the life of the process (the
        // caller passed them); the borrow ends before they are replaced.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(io::Error::from)
    };
    let stdio = RuncStdio {
        stdin: dup(0)?,
        stdout: dup(1)?,
        stderr: dup(2)?,
    };
    let null = OpenOptions::new().read(true).open("/dev/null")?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(container.dir.join("supervisor.log"))?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 between descriptors this process owns; the targets
        // are the standard descriptors, whose copies were taken above.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(stdio)
}

/// Makes the taken stdio the container's: output to stdout and stderr,
/// stdin into the main process once it runs, and the terminal's size
/// followed when the container has one.
pub(super) fn attach_stdio(shared: &Arc<Shared>, stdio: RuncStdio) {
    if shared.container.config.tty {
        match stdio.stdout.try_clone() {
            Ok(tty) => {
                tokio::spawn(follow_size(shared.clone(), tty));
            }
            Err(e) => tracing::warn!("follow the terminal's size: {e}"),
        }
    }
    shared.stdout.attach(stdio.stdout);
    shared.stderr.attach(stdio.stderr);
    *lock(&shared.early_stdin) = Some((stdio.stdin, Arc::new(AtomicBool::new(false))));
}

/// Passes size changes of the terminal `tty` to the main process until
/// the container has stopped.
async fn follow_size(shared: Arc<Shared>, tty: OwnedFd) {
    let mut sent = None;
    while shared.outcome.borrow().is_none() {
        if let Some(size) = window_size(tty.as_fd()) {
            if sent != Some(size) && shared.agent().is_some() {
                shared.resize(hull_protocol::MAIN_PROCESS, size.0, size.1);
                sent = Some(size);
            }
        }
        tokio::time::sleep(WINSIZE_POLL).await;
    }
}

/// Rows and columns of the terminal `fd`, if it is one with a size.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(fd).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}
