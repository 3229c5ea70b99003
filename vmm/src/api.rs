//! The control API: a unix stream socket (`--api-socket PATH`) on which
//! the host sends one command per line and reads one line back. It is the
//! smallest interface hull's host library needs to make templates and
//! clones (Firecracker's is HTTP on a unix socket; this has five verbs):
//!
//! ```text
//! pause            ok              every vCPU parked out of KVM_RUN
//! resume           ok              running again
//! status           ok running | ok paused
//! snapshot DIR     ok              DIR/state and DIR/memory written; the VM
//!                                  is paused for it and left as it was
//! attach-disk ID PATH  ok          the placeholder block device ID stands
//!                                  on PATH now (a clone that waited in a
//!                                  pool for its container's disks)
//! anything else    error: <one line saying why>
//! ```
//!
//! Served on the event loop thread; connections are few and bounded, lines
//! are bounded, and a client that does not read its replies is dropped.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use vmm_sys_util::epoll::EventSet;

use crate::event_loop::{EventOps, Subscriber};

/// Longest command line accepted.
const MAX_LINE: usize = 4096;
/// Most clients at once.
const MAX_CLIENTS: usize = 8;

/// Why the API socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Something that is not a socket is in the way.
    #[error("API socket path {0} exists and is not a socket")]
    NotSocket(PathBuf),
    /// bind or listen failed.
    #[error("cannot listen on API socket {0}")]
    Bind(PathBuf, #[source] io::Error),
}

/// The bound socket, before the VM it controls exists.
pub struct ApiListener(UnixListener);

impl ApiListener {
    /// Listens on `path` (replacing a stale socket file there).
    pub fn bind(path: &Path) -> Result<Self, ApiError> {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(ApiError::NotSocket(path.into()));
            }
            let _ = std::fs::remove_file(path);
        }
        let l = UnixListener::bind(path).map_err(|e| ApiError::Bind(path.into(), e))?;
        l.set_nonblocking(true)
            .map_err(|e| ApiError::Bind(path.into(), e))?;
        Ok(Self(l))
    }
}

/// What the control API can ask of a VM (`controller::VmController`).
pub trait VmControl {
    /// Why a request failed.
    type Error: std::error::Error;
    /// Stops every vCPU (idempotent).
    fn pause(&mut self) -> Result<(), Self::Error>;
    /// Lets every vCPU run again (idempotent).
    fn resume(&mut self);
    /// Whether the vCPUs are paused.
    fn is_paused(&self) -> bool;
    /// Writes a snapshot to `dir`, pausing for it if the VM runs (and
    /// running it again after).
    fn snapshot(&mut self, dir: &Path) -> Result<(), Self::Error>;
    /// Gives the placeholder block device `id` the file at `path`.
    fn attach_disk(&mut self, id: &str, path: &Path) -> Result<(), Self::Error>;
}

/// Joins an error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s.replace('\n', " ")
}

/// Runs one command line against `vm`; returns the reply line.
pub fn handle<C: VmControl>(vm: &mut C, line: &str) -> String {
    let line = line.trim();
    let (verb, arg) = match line.split_once(char::is_whitespace) {
        Some((v, a)) => (v, a.trim()),
        None => (line, ""),
    };
    let result = match (verb, arg) {
        ("pause", "") => vm.pause().map(|_| "ok".to_string()),
        ("resume", "") => {
            vm.resume();
            Ok("ok".into())
        }
        ("status", "") => Ok(if vm.is_paused() {
            "ok paused"
        } else {
            "ok running"
        }
        .into()),
        ("snapshot", "") => return "error: snapshot needs a directory".into(),
        ("snapshot", dir) => vm.snapshot(Path::new(dir)).map(|_| "ok".to_string()),
        ("attach-disk", arg) => match arg.split_once(char::is_whitespace) {
            Some((id, path)) if !path.trim().is_empty() => vm
                .attach_disk(id, Path::new(path.trim()))
                .map(|_| "ok".to_string()),
            _ => return "error: attach-disk needs an id and a path".into(),
        },
        ("pause" | "resume" | "status", _) => return format!("error: {verb} takes no argument"),
        _ => {
            let shown: String = verb.chars().take(32).collect();
            return format!(
                "error: unknown command {shown:?} (known: pause, resume, status, snapshot DIR, attach-disk ID PATH)"
            );
        }
    };
    match result {
        Ok(reply) => reply,
        Err(e) => format!("error: {}", one_line(&e)),
    }
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// The API on the event loop: the listener, its clients, the VM.
pub struct ApiServer<C> {
    listener: UnixListener,
    clients: HashMap<RawFd, Client>,
    vm: C,
}

impl<C: VmControl> ApiServer<C> {
    /// Serves `listener` for `vm`.
    pub fn new(listener: ApiListener, vm: C) -> Self {
        Self {
            listener: listener.0,
            clients: HashMap::new(),
            vm,
        }
    }

    fn accept(&mut self, ops: &mut EventOps<'_>) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                continue;
            }
            let fd = stream.as_raw_fd();
            if ops.add(fd, EventSet::IN).is_ok() {
                self.clients.insert(
                    fd,
                    Client {
                        stream,
                        buf: Vec::new(),
                    },
                );
            }
        }
    }

    /// Reads from client `fd` and answers its complete lines; false when
    /// the client is done (EOF, error, overlong line, unread replies).
    fn serve(&mut self, fd: RawFd) -> bool {
        let Some(c) = self.clients.get_mut(&fd) else {
            return false;
        };
        let mut chunk = [0u8; 512];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
            if c.buf.len() > MAX_LINE && !c.buf.contains(&b'\n') {
                let _ = c.stream.write_all(b"error: command line too long\n");
                return false;
            }
        }
        while let Some(end) = c.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = c.buf.drain(..=end).collect();
            let reply = match std::str::from_utf8(&line) {
                Ok(text) => handle(&mut self.vm, text),
                Err(_) => "error: command is not UTF-8".into(),
            };
            if c.stream.write_all(format!("{reply}\n").as_bytes()).is_err() {
                return false;
            }
        }
        true
    }
}

impl<C: VmControl + Send> Subscriber for ApiServer<C> {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        if let Err(e) = ops.add(self.listener.as_raw_fd(), EventSet::IN) {
            crate::logger::warn(format_args!("cannot watch the API socket: {e}"));
        }
    }

    fn process(&mut self, fd: RawFd, _events: EventSet, ops: &mut EventOps<'_>) {
        if fd == self.listener.as_raw_fd() {
            self.accept(ops);
            return;
        }
        if !self.serve(fd) {
            let _ = ops.remove(fd);
            self.clients.remove(&fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::with_test_ops;
    use crate::vstate::vcpu_control::ControlError;
    use std::io::{BufRead, BufReader};

    #[derive(Default)]
    struct FakeVm {
        paused: bool,
        snapshots: Vec<PathBuf>,
        attached: Vec<(String, PathBuf)>,
        fail: bool,
    }

    impl VmControl for FakeVm {
        type Error = ControlError;

        fn pause(&mut self) -> Result<(), ControlError> {
            if self.fail {
                return Err(ControlError::PauseTimeout(1));
            }
            self.paused = true;
            Ok(())
        }
        fn resume(&mut self) {
            self.paused = false;
        }
        fn is_paused(&self) -> bool {
            self.paused
        }
        fn snapshot(&mut self, dir: &Path) -> Result<(), ControlError> {
            self.snapshots.push(dir.into());
            Ok(())
        }
        fn attach_disk(&mut self, id: &str, path: &Path) -> Result<(), ControlError> {
            self.attached.push((id.into(), path.into()));
            Ok(())
        }
    }

    #[test]
    fn commands_and_their_replies() {
        let mut vm = FakeVm::default();
        assert_eq!(handle(&mut vm, "status\n"), "ok running");
        assert_eq!(handle(&mut vm, "pause"), "ok");
        assert_eq!(handle(&mut vm, "  status  "), "ok paused");
        assert_eq!(handle(&mut vm, "snapshot /tmp/a b"), "ok");
        assert_eq!(vm.snapshots, vec![PathBuf::from("/tmp/a b")]);
        assert_eq!(handle(&mut vm, "resume"), "ok");
        assert!(!vm.paused);
        assert_eq!(
            handle(&mut vm, "attach-disk hull-rootfs /run/a b.img"),
            "ok"
        );
        assert_eq!(
            vm.attached,
            vec![("hull-rootfs".to_string(), PathBuf::from("/run/a b.img"))]
        );
        for (line, want) in [
            ("snapshot", "needs a directory"),
            ("attach-disk", "needs an id and a path"),
            ("attach-disk hull-rootfs", "needs an id and a path"),
            ("pause now", "takes no argument"),
            ("", "unknown command"),
            ("reboot", "unknown command \"reboot\""),
        ] {
            let r = handle(&mut vm, line);
            assert!(
                r.starts_with("error: ") && r.contains(want),
                "{line:?}: {r}"
            );
        }
        vm.fail = true;
        assert_eq!(handle(&mut vm, "pause"), "error: vCPU 1 did not pause");
    }

    #[test]
    fn the_socket_serves_lines_and_drops_bad_clients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        std::fs::write(&path, b"not a socket").unwrap();
        assert!(matches!(
            ApiListener::bind(&path),
            Err(ApiError::NotSocket(_))
        ));
        std::fs::remove_file(&path).unwrap();
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        let mut server = ApiServer::new(ApiListener::bind(&path).unwrap(), FakeVm::default());
        let mut c = UnixStream::connect(&path).unwrap();
        let lfd = server.listener.as_raw_fd();
        with_test_ops(|ops| server.process(lfd, EventSet::IN, ops));
        assert_eq!(server.clients.len(), 1);
        let cfd = *server.clients.keys().next().unwrap();
        c.write_all(b"pause\nstat").unwrap();
        with_test_ops(|ops| server.process(cfd, EventSet::IN, ops));
        c.write_all(b"us\n").unwrap();
        with_test_ops(|ops| server.process(cfd, EventSet::IN, ops));
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "ok\n");
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "ok paused\n");
        c.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        with_test_ops(|ops| server.process(cfd, EventSet::IN, ops));
        assert!(
            server.clients.is_empty(),
            "an endless line drops the client"
        );
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "error: command line too long\n");
    }
}
