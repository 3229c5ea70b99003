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

/// Spawns the supervisor of `container` and waits until its control
/// socket accepts connections.
pub fn spawn(
    root: &Path,
    run_dir: &Path,
    container: &Container,
    wait_attach: bool,
) -> Result<Child> {
    let log = std::fs::File::create(container.dir.join("supervisor.log"))
        .map_err(io_error("create the supervisor log"))?;
    let stdio = [Stdio::null(), Stdio::null(), Stdio::from(log)];
    let extra: &[&str] = if wait_attach { &["--wait-attach"] } else { &[] };
    let hull = std::env::current_exe().map_err(io_error("find the hull binary"))?;
    spawn_with(&hull, root, run_dir, container, extra, stdio)
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
    std::fs::File::create(container.dir.join("supervisor.log"))
        .map_err(io_error("create the supervisor log"))?;
    spawn_with(hull, root, run_dir, container, &["--runc"], stdio)
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
    // SAFETY: setsid is async-signal-safe; nothing else runs in pre_exec.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(io_error("start the supervisor"))?;
    let socket = container.socket_path();
    let deadline = Instant::now() + SOCKET_TIMEOUT;
    loop {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let why = hull_sandbox::vm::last_line(&container.dir.join("supervisor.log"), |_| true)
                .unwrap_or_else(|| format!("it exited with {status}"));
            return Err(Error::SupervisorFailed(why));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::SupervisorTimeout(SOCKET_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
