//! The host end of the hybrid vsock: the unix socket listening at `<uds>`
//! where host processes connect and write `CONNECT <port>\n`, the
//! connections still owing that line, and non-blocking connects to
//! `<uds>_<port>` for streams the guest opens. Nothing here sees the
//! guest; the muxer turns a finished handshake into a connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use vmm_sys_util::epoll::EventSet;

use crate::devices::virtio::DeviceError;
use crate::event_loop::EventOps;

/// Longest `CONNECT <port>\n` line accepted from the host.
const MAX_CONNECT_LINE: usize = 32;

/// A host connection that has not yet sent its CONNECT line.
struct Pending {
    stream: UnixStream,
    line: Vec<u8>,
}

/// A host process that asked for guest port `port`.
pub struct HostConnect {
    /// The host's stream.
    pub stream: UnixStream,
    /// The guest port it wants.
    pub port: u32,
    /// Bytes it sent after its CONNECT line, for the guest.
    pub early: Vec<u8>,
}

/// The listening socket and the handshakes in progress.
pub struct HostListener {
    uds: PathBuf,
    /// The directory `uds` is in, held open: a pooled clone's directory is
    /// renamed to its container's after the VMM started, and the guest's
    /// connections must follow it (`/proc/self/fd/<dir>/<name>_<port>`).
    dir: Option<std::fs::File>,
    listener: UnixListener,
    pending: HashMap<RawFd, Pending>,
}

impl HostListener {
    /// Listens on `uds` (a stale socket file there is replaced).
    pub fn bind(uds: &Path) -> Result<Self, DeviceError> {
        if let Ok(meta) = std::fs::symlink_metadata(uds) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                let _ = std::fs::remove_file(uds);
            }
        }
        let listener = UnixListener::bind(uds).map_err(DeviceError::Socket)?;
        listener
            .set_nonblocking(true)
            .map_err(DeviceError::Socket)?;
        let dir = uds.parent().and_then(|parent| {
            use std::os::unix::fs::OpenOptionsExt;
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(parent)
                .ok()
        });
        Ok(Self {
            uds: uds.to_path_buf(),
            dir,
            listener,
            pending: HashMap::new(),
        })
    }

    /// Watches the listening socket.
    pub fn register(&self, ops: &mut EventOps<'_>) {
        if let Err(err) = ops.add(self.listener.as_raw_fd(), EventSet::IN) {
            crate::logger::warn(format_args!("vsock: cannot watch the listener: {err}"));
        }
    }

    /// Whether `fd` is the listening socket.
    pub fn is_listener(&self, fd: RawFd) -> bool {
        fd == self.listener.as_raw_fd()
    }

    /// Whether `fd` is a connection still owing its CONNECT line.
    pub fn is_pending(&self, fd: RawFd) -> bool {
        self.pending.contains_key(&fd)
    }

    /// How many handshakes are in progress.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Where a guest connecting to host port `port` is sent.
    pub fn port_path(&self, port: u32) -> PathBuf {
        let name = self.uds.file_name().map(|n| n.to_string_lossy());
        match (&self.dir, name) {
            (Some(dir), Some(name)) => {
                PathBuf::from(format!("/proc/self/fd/{}/{name}_{port}", dir.as_raw_fd()))
            }
            _ => PathBuf::from(format!("{}_{port}", self.uds.display())),
        }
    }

    /// Accepts every waiting host connection while `open + pending` stays
    /// under `max` (the rest are closed at once).
    pub fn accept(&mut self, open: usize, max: usize, ops: &mut EventOps<'_>) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    if open + self.pending.len() >= max || s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let fd = s.as_raw_fd();
                    if ops.add(fd, EventSet::IN).is_ok() {
                        self.pending.insert(
                            fd,
                            Pending {
                                stream: s,
                                line: Vec::new(),
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    /// Reads from handshake `fd`; returns the request once its line is
    /// complete and valid. A closed, overlong or malformed handshake is
    /// dropped (a malformed one is told `ERR`).
    pub fn readable(&mut self, fd: RawFd, ops: &mut EventOps<'_>) -> Option<HostConnect> {
        let p = self.pending.get_mut(&fd)?;
        let mut buf = [0u8; MAX_CONNECT_LINE];
        let n = match p.stream.read(&mut buf) {
            Ok(0) | Err(_) => {
                self.drop_pending(fd, ops);
                return None;
            }
            Ok(n) => n,
        };
        p.line.extend_from_slice(&buf[..n]);
        let Some(nl) = p.line.iter().position(|b| *b == b'\n') else {
            if p.line.len() >= MAX_CONNECT_LINE {
                self.drop_pending(fd, ops);
            }
            return None;
        };
        let _ = ops.remove(fd);
        let mut p = self.pending.remove(&fd)?;
        let early = p.line.split_off(nl + 1);
        let port = std::str::from_utf8(&p.line)
            .ok()
            .and_then(|l| l.trim_end().strip_prefix("CONNECT "))
            .and_then(|v| v.trim().parse::<u32>().ok());
        let Some(port) = port else {
            let _ = p.stream.write_all(b"ERR bad CONNECT line\n");
            return None;
        };
        Some(HostConnect {
            stream: p.stream,
            port,
            early,
        })
    }

    /// The connections still owing their CONNECT line.
    #[cfg(test)]
    pub(crate) fn pending_fds(&self) -> Vec<RawFd> {
        self.pending.keys().copied().collect()
    }

    fn drop_pending(&mut self, fd: RawFd, ops: &mut EventOps<'_>) {
        let _ = ops.remove(fd);
        self.pending.remove(&fd);
    }
}

impl AsRawFd for HostListener {
    /// The listening socket.
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        let uds = self.uds.clone();
        let _ = crate::hostfs::run(move || std::fs::remove_file(uds));
    }
}

/// Connects to the unix socket at `path` on the host-fs thread (the
/// event loop makes no sockets), without blocking.
pub fn connect_on_host_fs(path: PathBuf) -> io::Result<UnixStream> {
    crate::hostfs::run(move || connect_nonblocking(&path))
}

/// Connects to a unix socket without blocking: a listener whose backlog
/// is full refuses at once (EAGAIN) instead of stalling the event loop,
/// which also serves SIGTERM.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let stream = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes that
    // lives across the call; `stream` owns an open socket.
    let r = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            len as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::with_test_ops;

    #[test]
    fn a_listener_that_never_accepts_cannot_stall_us() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.sock");
        let l = UnixListener::bind(&p).unwrap();
        // SAFETY: shrinks the backlog of a listening socket we own.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 1) }, 0);
        let mut kept = Vec::new();
        let refused = (0..64).find_map(|_| match connect_nonblocking(&p) {
            Ok(s) => {
                kept.push(s);
                None
            }
            Err(e) => Some(e),
        });
        assert_eq!(refused.map(|e| e.kind()), Some(io::ErrorKind::WouldBlock));
        assert!(connect_nonblocking(&dir.path().join("none")).is_err());
    }

    #[test]
    fn handshakes_are_bounded_and_the_socket_file_goes_with_us() {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("h.sock");
        let mut l = HostListener::bind(&uds).unwrap();
        let path = l.port_path(52);
        assert!(path.starts_with("/proc/self/fd"), "{}", path.display());
        assert!(path.ends_with("h.sock_52"), "{}", path.display());
        // It names the file in the directory, under whatever name that has.
        let moved = dir.path().with_extension("moved");
        std::fs::rename(dir.path(), &moved).unwrap();
        std::fs::write(moved.join("h.sock_52"), b"").unwrap();
        assert!(path.exists());
        std::fs::rename(&moved, dir.path()).unwrap();
        let mut long = UnixStream::connect(&uds).unwrap();
        long.write_all(&[b'C'; MAX_CONNECT_LINE]).unwrap();
        let mut early = UnixStream::connect(&uds).unwrap();
        early.write_all(b"CONNECT 7\nhi").unwrap();
        let _over = UnixStream::connect(&uds).unwrap();
        with_test_ops(|ops| {
            // Room for two handshakes: the third connection is closed.
            l.accept(0, 2, ops);
            assert_eq!(l.pending_len(), 2);
            let fds: Vec<RawFd> = l.pending.keys().copied().collect();
            let got: Vec<HostConnect> = fds.iter().filter_map(|fd| l.readable(*fd, ops)).collect();
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].port, &got[0].early[..]), (7, &b"hi"[..]));
            assert!(l.readable(-1, ops).is_none());
        });
        assert_eq!(l.pending_len(), 0);
        drop(l);
        assert!(!uds.exists());
    }
}
