//! Starting a supervisor from a `hull` command: the same binary, in a
//! session of its own (terminal signals are for the container, forwarded
//! by `hull`), with no inherited stdio (whoever reads `hull`'s output must
//! see it end when `hull` does) and its own diagnostics in a log.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io_error, Error};
use crate::record::Container;

type Result<T> = std::result::Result<T, Error>;

/// The hidden subcommand that runs a supervisor.
pub const SUPERVISE_COMMAND: &str = "__supervise";
/// How long a supervisor may take to open its control socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(20);

/// A container's supervisor as its launcher holds it: a child of its
/// own, or a pooled clone's supervisor (a child of the pool server).
pub enum Supervisor {
    Spawned(Child),
    Pooled(Pooled),
}

/// A process that is not our child: watched through a pidfd.
pub struct Pooled {
    pid: u32,
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl Pooled {
    fn new(pid: u32) -> Self {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: a descriptor the kernel just gave us.
            unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }
        });
        Self { pid, pidfd }
    }

    /// Whether it exited, waiting up to `timeout_ms` (-1: forever).
    fn exited(&self, timeout_ms: i32) -> bool {
        let Some(fd) = &self.pidfd else {
            return true;
        };
        let mut poll = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(fd),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
        ready != 0
    }
}

impl Supervisor {
    pub fn id(&self) -> u32 {
        match self {
            Self::Spawned(child) => child.id(),
            Self::Pooled(pooled) => pooled.pid,
        }
    }

    /// Waits for it to end.
    pub fn wait(&mut self) -> std::io::Result<()> {
        match self {
            Self::Spawned(child) => child.wait().map(|_| ()),
            Self::Pooled(pooled) => {
                while !pooled.exited(-1) {}
                Ok(())
            }
        }
    }

    pub fn kill(&mut self) -> std::io::Result<()> {
        match self {
            Self::Spawned(child) => child.kill(),
            Self::Pooled(pooled) => {
                if !pooled.exited(0) {
                    // SAFETY: the pidfd says this pid is still the process.
                    unsafe { libc::kill(pooled.pid as i32, libc::SIGKILL) };
                }
                Ok(())
            }
        }
    }

    /// Why it ended, if it did.
    fn ended(&mut self) -> Option<String> {
        match self {
            Self::Spawned(child) => match child.try_wait() {
                Ok(Some(status)) => Some(format!("it exited with {status}")),
                _ => None,
            },
            Self::Pooled(pooled) => pooled.exited(0).then(|| "it exited".to_string()),
        }
    }
}

/// Hands `container` to a supervisor, a ready clone of the warm pool's
/// if the run directory has a pool with one, else a new one, and waits
/// until its control socket accepts connections. The new one runs this
/// very binary (`hull`); a door that is another binary names `hull` with
/// [`spawn_using`].
pub fn spawn(
    root: &Path,
    run_dir: &Path,
    container: &Container,
    wait_attach: bool,
) -> Result<Supervisor> {
    let hull = std::env::current_exe().map_err(io_error("find the hull binary"))?;
    spawn_using(&hull, root, run_dir, container, wait_attach)
}

/// [`spawn`], with `hull` as the binary that runs a new supervisor (the
/// Engine API server is not `hull` itself).
pub fn spawn_using(
    hull: &Path,
    root: &Path,
    run_dir: &Path,
    container: &Container,
    wait_attach: bool,
) -> Result<Supervisor> {
    let log = crate::private::create_file(&container.dir.join("supervisor.log"))
        .map_err(io_error("create the supervisor log"))?;
    if let Some(pid) = crate::pool::client::take(root, run_dir, container, wait_attach) {
        hull_sandbox::timings::mark("pool_taken");
        return await_socket(Supervisor::Pooled(Pooled::new(pid)), container);
    }
    let stdio = [Stdio::null(), Stdio::null(), Stdio::from(log)];
    let extra: &[&str] = if wait_attach { &["--wait-attach"] } else { &[] };
    let child = spawn_with(hull, root, run_dir, container, extra, stdio)?;
    await_socket(Supervisor::Spawned(child), container)
}

/// Spawns the supervisor of `container` in runc mode with `stdio` (stdin,
/// stdout, stderr) as the container's, and waits until its control socket
/// accepts connections. `hull` is the binary to run (the containerd shim
/// is another one). The supervisor outlives a `hull-runc` caller, which
/// leaves it to the nearest subreaper.
pub fn spawn_runc(
    hull: &Path,
    root: &Path,
    run_dir: &Path,
    container: &Container,
    stdio: [Stdio; 3],
) -> Result<Child> {
    crate::private::create_file(&container.dir.join("supervisor.log"))
        .map_err(io_error("create the supervisor log"))?;
    let child = spawn_with(hull, root, run_dir, container, &["--runc"], stdio)?;
    match await_socket(Supervisor::Spawned(child), container)? {
        Supervisor::Spawned(child) => Ok(child),
        Supervisor::Pooled(_) => unreachable!("a spawned supervisor stays spawned"),
    }
}

fn spawn_with(
    hull: &Path,
    root: &Path,
    run_dir: &Path,
    container: &Container,
    extra: &[&str],
    stdio: [Stdio; 3],
) -> Result<Child> {
    let mut command = Command::new(hull);
    // The same binary may also be installed as `hull-runc`, which picks
    // its command line by its name.
    command.arg0("hull");
    command
        .arg("--root")
        .arg(root)
        .arg("--run-dir")
        .arg(run_dir)
        .arg(SUPERVISE_COMMAND)
        .arg(container.short_id())
        .args(extra);
    let [stdin, stdout, stderr] = stdio;
    command.stdin(stdin).stdout(stdout).stderr(stderr);
    hull_sandbox::process::in_new_session(&mut command);
    command.spawn().map_err(io_error("start the supervisor"))
}

/// Waits until the supervisor's control socket accepts connections.
fn await_socket(mut supervisor: Supervisor, container: &Container) -> Result<Supervisor> {
    let socket = container.socket_path();
    let deadline = Instant::now() + SOCKET_TIMEOUT;
    loop {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(supervisor);
        }
        if let Some(ended) = supervisor.ended() {
            let why = hull_sandbox::vm::last_line(&container.dir.join("supervisor.log"), |_| true)
                .unwrap_or(ended);
            return Err(Error::SupervisorFailed(why));
        }
        if Instant::now() > deadline {
            let _ = supervisor.kill();
            let _ = supervisor.wait();
            return Err(Error::SupervisorTimeout(SOCKET_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
