//! `exec`: a process in the running container. The process that owns it
//! (this command, or with `--detach` a helper that outlives it) passes
//! its stdio to the supervisor, forwards the signals it gets, follows a
//! terminal's size, and exits with the exec'd process's status, so a
//! caller that waits on the pid in `--pid-file` sees the exec end.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use super::args::{ExecArgs, ExecHelperArgs, RuncArgs};
use super::{close_inherited_fds, console, find, state, write_pid_file, RUNC_NAME};
use hull_container::record::Container;
use hull_container::supervisor::control::{
    ControlClient, ControlReply, ControlRequest, ExecRequest,
};
use hull_container::supervisor::runc::window_size;

/// What the helper writes on its ready descriptor once the process runs.
const READY: &str = "ok";
/// How often a terminal's size is checked.
const WINSIZE_POLL: Duration = Duration::from_millis(200);
/// Signals the owner of an exec passes on to the exec'd process.
const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

pub async fn exec(args: &RuncArgs, exec: &ExecArgs) -> Result<i32> {
    close_inherited_fds();
    let container = find(args, &exec.id)?;
    if state::status(&container) != "running" {
        return Err(anyhow!("cannot exec in a container that is not running"));
    }
    let request = exec_request(exec, &container)?;
    let slave = match &exec.console_socket {
        Some(socket) => Some(console::send_pty(socket)?),
        None => None,
    };
    if !exec.detach {
        let stdio = match &slave {
            Some(tty) => [tty.as_fd(), tty.as_fd(), tty.as_fd()],
            None => standard_fds(),
        };
        return run(&container, request, stdio, None).await;
    }
    let request_file = container
        .dir
        .join(format!("exec-{}.json", &hull_sandbox::new_id()?[..16]));
    std::fs::write(&request_file, serde_json::to_vec(&request)?)
        .context("write the exec request")?;
    let spawned = spawn_helper(args, exec, &request_file, slave);
    let (mut helper, mut ready) = match spawned {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&request_file);
            return Err(e);
        }
    };
    let mut answer = String::new();
    let _ = ready.read_to_string(&mut answer);
    if answer != READY {
        let _ = helper.wait();
        let _ = std::fs::remove_file(&request_file);
        let message = if answer.is_empty() {
            "the exec helper failed".to_string()
        } else {
            answer
        };
        return Err(anyhow!("{message}"));
    }
    if let Some(path) = &exec.pid_file {
        write_pid_file(path, helper.id())?;
    }
    // The helper outlives this command; the caller's subreaper reaps it.
    drop(helper);
    Ok(0)
}

/// The helper of a detached exec (`__exec`).
pub async fn helper(args: &RuncArgs, helper: &ExecHelperArgs) -> Result<i32> {
    let ready = match helper.ready_fd {
        Some(fd) if fd > 2 => {
            // SAFETY: `exec` passed this descriptor open, for this process
            // alone, and nothing else here uses that number.
            Some(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
        Some(fd) => return Err(anyhow!("invalid ready descriptor {fd}")),
        None => None,
    };
    let bytes = std::fs::read(&helper.request).context("read the exec request");
    let _ = std::fs::remove_file(&helper.request);
    let result = async {
        let request: ExecRequest = serde_json::from_slice(&bytes?)?;
        let container = find(args, &helper.id)?;
        Ok::<_, anyhow::Error>((request, container))
    }
    .await;
    match result {
        Ok((request, container)) => run(&container, request, standard_fds(), ready).await,
        Err(e) => {
            if let Some(mut ready) = ready {
                let _ = write!(ready, "{e:#}");
            }
            Err(e)
        }
    }
}

fn spawn_helper(
    args: &RuncArgs,
    exec: &ExecArgs,
    request_file: &std::path::Path,
    slave: Option<OwnedFd>,
) -> Result<(std::process::Child, std::io::PipeReader)> {
    let (reader, writer) = std::io::pipe().context("make a pipe")?;
    // The helper inherits the write end under its own number.
    rustix::io::fcntl_setfd(&writer, rustix::io::FdFlags::empty())
        .context("pass the ready pipe")?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&writer);
    let exe = std::env::current_exe().context("find the hull binary")?;
    let mut command = Command::new(exe);
    command
        .arg0(RUNC_NAME)
        .arg("--root")
        .arg(&args.root)
        .arg("__exec")
        .arg("--request")
        .arg(request_file)
        .arg("--ready-fd")
        .arg(fd.to_string())
        .arg(&exec.id);
    if let Some(tty) = slave {
        command
            .stdin(Stdio::from(tty.try_clone()?))
            .stdout(Stdio::from(tty.try_clone()?))
            .stderr(Stdio::from(tty));
    }
    hull_sandbox::process::in_new_session(&mut command);
    let child = command.spawn().context("start the exec helper")?;
    drop(writer);
    Ok((child, reader))
}

fn standard_fds() -> [BorrowedFd<'static>; 3] {
    // SAFETY: the standard descriptors stay open for the life of the
    // process (nothing here closes them).
    unsafe {
        [
            BorrowedFd::borrow_raw(0),
            BorrowedFd::borrow_raw(1),
            BorrowedFd::borrow_raw(2),
        ]
    }
}

/// The exec request from `--process FILE` (an OCI process) or the flags.
fn exec_request(exec: &ExecArgs, container: &Container) -> Result<ExecRequest> {
    let mut request = match &exec.process {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            let process: oci_spec::runtime::Process = serde_json::from_slice(&bytes)
                .with_context(|| format!("parse {}", path.display()))?;
            let user = process.user();
            ExecRequest {
                owned: true,
                process: Some(Box::new(process.clone())),
                args: process.args().clone().unwrap_or_default(),
                env: process.env().clone().unwrap_or_default(),
                workdir: Some(process.cwd().display().to_string()).filter(|c| !c.is_empty()),
                user: Some(format!("{}:{}", user.uid(), user.gid())),
                tty: process.terminal().unwrap_or(false) || exec.tty,
                stdin: true,
                size: process
                    .console_size()
                    .map(|b| (b.height() as u16, b.width() as u16)),
            }
        }
        None => ExecRequest {
            owned: true,
            process: flags_process(exec, container)?,
            args: exec.command.clone(),
            env: exec.env.clone(),
            workdir: exec.cwd.clone(),
            user: exec.user.clone(),
            tty: exec.tty,
            stdin: true,
            size: None,
        },
    };
    if request.args.is_empty() {
        return Err(anyhow!("exec needs a command"));
    }
    if request.size == Some((0, 0)) {
        request.size = None;
    }
    Ok(request)
}

/// The container's process with `--cap` added to every set and
/// `--no-new-privs`, as runc's exec builds it; `None` when neither is given.
fn flags_process(
    exec: &ExecArgs,
    container: &Container,
) -> Result<Option<Box<oci_spec::runtime::Process>>> {
    if exec.cap.is_empty() && !exec.no_new_privs {
        return Ok(None);
    }
    let mut process = container.config.spec.process().clone().unwrap_or_default();
    if exec.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !exec.cap.is_empty() {
        let mut added = Vec::new();
        for name in &exec.cap {
            let upper = name.to_ascii_uppercase();
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            let cap: oci_spec::runtime::Capability = full
                .parse()
                .map_err(|_| anyhow!("unknown capability {name:?}"))?;
            added.push(cap);
        }
        let mut caps = process.capabilities().clone().unwrap_or_default();
        let with = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.extend(added.iter().copied());
            Some(set)
        };
        caps.set_bounding(with(caps.bounding()));
        caps.set_effective(with(caps.effective()));
        caps.set_permitted(with(caps.permitted()));
        caps.set_inheritable(with(caps.inheritable()));
        caps.set_ambient(with(caps.ambient()));
        process.set_capabilities(Some(caps));
    }
    Ok(Some(Box::new(process)))
}

/// Runs the exec through the supervisor with `stdio` and returns its exit
/// status; `ready` hears "ok" once it runs, or the error.
async fn run(
    container: &Container,
    mut request: ExecRequest,
    stdio: [BorrowedFd<'_>; 3],
    ready: Option<File>,
) -> Result<i32> {
    let tty = request.tty.then_some(stdio[0]);
    if let Some(tty) = tty {
        request.size = request.size.or_else(|| window_size(tty));
    }
    let mut sent_size = request.size;
    let tell = |ready: Option<File>, what: &str| {
        if let Some(mut ready) = ready {
            let _ = ready.write_all(what.as_bytes());
        }
    };
    let connected = ControlClient::connect(
        &container.socket_path(),
        &ControlRequest::Exec(Box::new(request)),
        &stdio,
    )
    .await;
    let mut client = match connected {
        Ok(client) => client,
        Err(e) => {
            let message = format!("container {}: {e}", container.config.name);
            tell(ready, &message);
            return Err(anyhow!(message));
        }
    };
    match client.reply().await {
        Ok(ControlReply::Started { .. }) => tell(ready, READY),
        Ok(ControlReply::Error { message, code }) => {
            tell(ready, &message);
            eprintln!("{RUNC_NAME}: {message}");
            return Ok(code);
        }
        Ok(other) => {
            let message = format!("unexpected supervisor reply {other:?}");
            tell(ready, &message);
            return Err(anyhow!(message));
        }
        Err(e) => {
            tell(ready, &e.to_string());
            return Err(e.into());
        }
    }
    let mut signals = Vec::new();
    for number in FORWARDED {
        signals.push((number, signal(SignalKind::from_raw(number))?));
    }
    let mut poll = tokio::time::interval(WINSIZE_POLL);
    loop {
        let forward = async {
            let waits = signals
                .iter_mut()
                .map(|(n, s)| Box::pin(async move { s.recv().await.map(|_| *n) }));
            futures_util::future::select_all(waits).await.0
        };
        tokio::select! {
            reply = client.reply() => {
                return match reply? {
                    ControlReply::Exited { exit_code, .. } => Ok(exit_code),
                    ControlReply::Error { message, code } => {
                        eprintln!("{RUNC_NAME}: {message}");
                        Ok(code)
                    }
                    other => Err(anyhow!("unexpected supervisor reply {other:?}")),
                };
            }
            Some(number) = forward => {
                let _ = client.send(&ControlRequest::Signal { signal: number }).await;
            }
            _ = poll.tick(), if tty.is_some() => {
                let size = tty.and_then(window_size);
                if size.is_some() && size != sent_size {
                    let (rows, cols) = size.unwrap_or_default();
                    let _ = client.send(&ControlRequest::Resize { rows, cols }).await;
                    sent_size = size;
                }
            }
        }
    }
}
