//! A container's host files and directories: its share server (`hull
//! __share`, the `hull-share` crate: 9P2000.L, jailed to what is shared)
//! listens on a unix socket in the sandbox directory, and the VM gets a
//! stream to it — a virtio-serial port hot-added over QMP under QEMU (on
//! every start path: cold, template clone, pooled clone, pod), a vsock
//! port under hull-vmm (its hybrid vsock turns the guest's connection to
//! port P into one to `<sandbox>/vsock_P`). No guest RAM is shared, so a
//! clone whose RAM maps its template's privately serves them as well as a
//! cold VM (docs/ARCHITECTURE.md, "Host files in the guest").

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hull_protocol::{ShareChannel, SHARE_PORT_PREFIX};
pub use hull_share::{IdMap, IdRange, ShareSource, ShareSpec};

use super::{io_error, Sandbox, SandboxError};
use crate::hypervisor::hotplug;

/// The hidden `hull` verb that runs a share server.
pub const COMMAND: &str = "__share";
/// The fd the share server finds its listening socket on.
pub const LISTENER_FD: i32 = 3;
/// The fd it writes one byte to once its jail stands.
pub const READY_FD: i32 = 4;
/// How long a share server may take to build its jail.
const READY_TIMEOUT_MS: i32 = 10_000;
/// The vsock port the guest connects to for its shares under hull-vmm
/// (one container per hull-vmm VM: no pods there yet).
pub const SHARE_VSOCK_PORT: u32 = 1025;

/// A running share server and what was added to the VM for it.
pub(crate) struct ShareServer {
    child: Child,
    /// The VM directory whose QEMU got a port for it (`None`: vsock).
    port_in: Option<(PathBuf, String)>,
    socket: PathBuf,
    scratch: PathBuf,
}

impl ShareServer {
    /// Stops the server and takes its port out of a VM that runs on (a
    /// pod's). The VM's end of the stream closes with it.
    pub(crate) async fn stop(mut self) {
        self.kill();
        if let Some((vm_dir, tag)) = self.port_in.take() {
            hotplug::unplug_share(&vm_dir, &tag).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.scratch);
    }
}

impl Drop for ShareServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Sandbox {
    /// Starts the share server for `spec` and gives the VM a stream to it;
    /// the agent mounts what comes out of `RunContainer.share`. On failure
    /// nothing is left running.
    pub async fn attach_shares(&mut self, spec: &ShareSpec) -> Result<ShareChannel, SandboxError> {
        let tag = self.id[..12.min(self.id.len())].to_string();
        let vm_dir = match &self.guest {
            Some(guest) => guest.vm_dir.clone(),
            None => self.dir.clone(),
        };
        let qemu = hotplug::can_join(&vm_dir);
        let socket = if qemu {
            self.dir.join(format!("share-{tag}.sock"))
        } else {
            self.dir.join(format!("vsock_{SHARE_VSOCK_PORT}"))
        };
        let scratch = self.dir.join(format!("share-{tag}"));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(io_error(format!("listen on {}", socket.display())))?;
        std::fs::create_dir_all(&scratch)
            .map_err(io_error(format!("create {}", scratch.display())))?;
        let (child, ready) = spawn(spec, &scratch, &listener)?;
        drop(listener);
        let mut server = ShareServer {
            child,
            port_in: None,
            socket: socket.clone(),
            scratch,
        };
        let log = server.scratch.with_extension("log");
        tokio::task::spawn_blocking(move || wait_ready(ready, &log))
            .await
            .map_err(|e| SandboxError::Shares(e.to_string()))??;
        if !qemu {
            crate::timings::mark("share_started");
            self.shares = Some(server);
            return Ok(ShareChannel::Vsock(SHARE_VSOCK_PORT));
        }
        hotplug::plug_share(&vm_dir, &tag, &socket)
            .await
            .map_err(|e| SandboxError::Shares(e.to_string()))?;
        server.port_in = Some((vm_dir, tag.clone()));
        crate::timings::mark("share_plugged");
        self.shares = Some(server);
        Ok(ShareChannel::SerialPort(format!(
            "{SHARE_PORT_PREFIX}{tag}"
        )))
    }
}

/// Waits for the server's byte on its readiness pipe; without it, the last
/// line it logged is the error.
fn wait_ready(ready: OwnedFd, log: &Path) -> Result<(), SandboxError> {
    let arrived = hull_share::readable_within(ready.as_fd(), READY_TIMEOUT_MS);
    let mut byte = [0u8; 1];
    if arrived && std::fs::File::from(ready).read(&mut byte).unwrap_or(0) == 1 {
        return Ok(());
    }
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    let last = logged
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim_start_matches("hull: ").to_string());
    Err(SandboxError::Shares(last.unwrap_or_else(|| {
        if !arrived {
            "the share server did not start in time".to_string()
        } else {
            "the share server exited at start".to_string()
        }
    })))
}

/// Starts `hull __share` with `listener` as its fd 3 and the write end of a
/// readiness pipe as its fd 4, in a session of its own (no terminal
/// signals), its errors into `<scratch>.log`. Returns the pipe's read end.
fn spawn(
    spec: &ShareSpec,
    scratch: &Path,
    listener: &UnixListener,
) -> Result<(Child, OwnedFd), SandboxError> {
    let hull = std::env::current_exe().map_err(io_error("find the hull binary"))?;
    let log_path = scratch.with_extension("log");
    let log = std::fs::File::create(&log_path)
        .map_err(io_error(format!("create {}", log_path.display())))?;
    let encoded = serde_json::to_string(spec)
        .map_err(|e| io_error("encode the share spec")(std::io::Error::other(e)))?;
    let (ready_read, ready_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_error("make the share server's readiness pipe")(e.into()))?;
    let mut command = Command::new(hull);
    command
        .arg(COMMAND)
        .arg("--spec")
        .arg(encoded)
        .arg("--scratch")
        .arg(scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let listen_fd = listener.as_raw_fd();
    let ready_fd = ready_write.as_raw_fd();
    // SAFETY: fcntl, dup2 and setsid are async-signal-safe; nothing else
    // runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            // Out of the way first, so neither dup2 overwrites the other's
            // source; dup2 clears close-on-exec on the target.
            let high_listen = libc::fcntl(listen_fd, libc::F_DUPFD_CLOEXEC, 10);
            let high_ready = libc::fcntl(ready_fd, libc::F_DUPFD_CLOEXEC, 10);
            if high_listen < 0
                || high_ready < 0
                || libc::dup2(high_listen, LISTENER_FD) < 0
                || libc::dup2(high_ready, READY_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(io_error("start the share server (hull __share)"))?;
    // The child holds the write end now; ours would hide its exit.
    drop(ready_write);
    Ok((child, ready_read))
}
