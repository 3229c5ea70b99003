//! runc's `--console-socket` protocol: the runtime makes a pty, sends its
//! master to the caller over the given unix socket (one message whose
//! payload is the pty's name and whose SCM_RIGHTS carries the descriptor)
//! and gives the slave to the container. Here the slave becomes the stdio
//! of the process that owns the container's (or exec's) streams; the guest
//! has a terminal of its own, so the host side is put in raw mode and
//! carries bytes unchanged.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::{Mode, OFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::pty::OpenptFlags;

/// Makes a pty, sends its master over `socket`, and returns the slave.
pub fn send_pty(socket: &Path) -> Result<OwnedFd> {
    let (master, name, slave) = open_pty()?;
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connect to the console socket {}", socket.display()))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [rustix::fd::AsFd::as_fd(&master)];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        &stream,
        &[IoSlice::new(name.as_bytes())],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .with_context(|| format!("send the pty to {}", socket.display()))?;
    Ok(slave)
}

/// A new pty: its master, the slave's name, and the slave in raw mode (the
/// guest's own terminal does the line discipline).
pub fn open_pty() -> Result<(OwnedFd, std::ffi::CString, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .context("open a pty")?;
    rustix::pty::grantpt(&master).context("grantpt")?;
    rustix::pty::unlockpt(&master).context("unlockpt")?;
    let name = rustix::pty::ptsname(&master, Vec::new()).context("ptsname")?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {name:?}"))?;
    let mut termios = rustix::termios::tcgetattr(&slave).context("read the pty's mode")?;
    termios.make_raw();
    rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &termios)
        .context("set the pty raw")?;
    Ok((master, name, slave))
}
