//! The standard streams of a container process, main or exec'd: pipes or a
//! pty for the child, pumps to the host's data streams once it runs, and
//! the exit report, sent only after all its output (runc's console socket
//! for the pty; Docker's rule that output precedes the exit).

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use hull_protocol::{AgentError, ControlMessage, Event, ExitStatus, Frame, Stdio, CONTROL_STREAM};

use super::{invalid, setup_error, ContainerInfo};
use crate::process::{ChildStdio, Reaper};
use crate::stdio;
use crate::sys::{self, WaitStatus};
use crate::wire::{Streams, Wire};

/// What a supervised process reports to the owner of the agent's state
/// (`agent.rs` implements it); container code holds no state of its own
/// beyond the process it watches.
pub trait ProcessEvents: Send + Sync {
    /// The process `process_id` exited: forget it (the end of the main
    /// process stops the container). Called before its output drained.
    fn process_exited(&self, process_id: &str);
    /// The main process of a container run with `shutdown_on_exit` exited
    /// and its exit was reported: the VM goes.
    fn power_off_soon(&self);
}

/// The connection a process's streams and exit report go through: the
/// host's wire, its data streams, the reaper that collects the process.
#[derive(Clone)]
pub struct Link {
    pub wire: Arc<Wire>,
    pub streams: Arc<Streams>,
    pub reaper: Arc<Reaper>,
}

/// The agent's ends of a process's standard streams, before it runs.
#[derive(Default)]
pub struct ParentEnds {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    console_socket: Option<OwnedFd>,
}

/// A running process's pumps, and the streams to close after it.
pub struct Attached {
    pumps: Vec<JoinHandle<()>>,
    stdio: Stdio,
}

/// What the exit of a process means beyond its own event.
pub enum Role {
    /// The container's main process: the container stops with it.
    Main {
        shutdown_on_exit: bool,
    },
    Exec,
}

/// The host's stream ids must be non-zero, unused and distinct.
pub fn check_stream_ids(streams: &Streams, stdio: &Stdio) -> Result<(), AgentError> {
    let mut ids = vec![stdio.stdout, stdio.stderr];
    ids.extend(stdio.stdin);
    if ids
        .iter()
        .any(|&id| id == CONTROL_STREAM || streams.contains(id))
    {
        return Err(invalid("stream ids must be non-zero and unused"));
    }
    if ids.len() != ids.iter().collect::<HashSet<_>>().len() {
        return Err(invalid("stream ids must be distinct"));
    }
    Ok(())
}

/// The child's streams and ours: a console socket for a pty of
/// `terminal` = (rows, cols), else three pipes (stdin from /dev/null when
/// the host sends none).
pub fn prepare(
    stdio: &Stdio,
    terminal: Option<(u16, u16)>,
) -> Result<(ChildStdio, ParentEnds), AgentError> {
    let pipe = || sys::pipe().map_err(|e| setup_error(&e));
    let mut parent = ParentEnds::default();
    if let Some((rows, cols)) = terminal {
        let (agent_end, child_end) = sys::socketpair().map_err(|e| setup_error(&e))?;
        parent.console_socket = Some(agent_end);
        let child = ChildStdio::Terminal {
            socket: child_end,
            rows,
            cols,
        };
        return Ok((child, parent));
    }
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let stdin_child: OwnedFd = match stdio.stdin {
        Some(_) => {
            let (read, write) = pipe()?;
            parent.stdin = Some(write);
            read
        }
        None => File::open("/dev/null").map_err(|e| setup_error(&e))?.into(),
    };
    parent.stdout = Some(stdout_read);
    parent.stderr = Some(stderr_read);
    let child = ChildStdio::Pipes {
        stdin: stdin_child,
        stdout: stdout_write,
        stderr: stderr_write,
    };
    Ok((child, parent))
}

/// Connects a process that now runs to the host's streams. Returns its
/// pumps and, with a terminal, the pty master (for resizing).
pub fn attach(
    link: &Link,
    stdio: Stdio,
    parent: ParentEnds,
) -> Result<(Attached, Option<OwnedFd>), AgentError> {
    let wire = &link.wire;
    let mut pumps = Vec::new();
    let stdout_credit = link.streams.add_output(stdio.stdout);
    let mut terminal = None;
    if let Some(socket) = parent.console_socket {
        // The child sent the pty master before it exec'd.
        let master = sys::recv_fd(&socket).map_err(|e| setup_error(&e))?;
        let reader = master.try_clone().map_err(|e| setup_error(&e))?;
        pumps.push(stdio::pump_output(
            reader.into(),
            stdio.stdout,
            stdout_credit,
            wire.clone(),
        ));
        // A terminal merges stderr into its output.
        let _ = wire.send(&Frame::eof(stdio.stderr));
        if let Some(stream) = stdio.stdin {
            let writer = master.try_clone().map_err(|e| setup_error(&e))?;
            link.streams.add_input(
                stream,
                stdio::pump_input(writer.into(), stream, wire.clone()),
            );
        }
        terminal = Some(master);
    } else {
        if let Some(out) = parent.stdout {
            pumps.push(stdio::pump_output(
                out.into(),
                stdio.stdout,
                stdout_credit,
                wire.clone(),
            ));
        }
        if let Some(err) = parent.stderr {
            let credit = link.streams.add_output(stdio.stderr);
            pumps.push(stdio::pump_output(
                err.into(),
                stdio.stderr,
                credit,
                wire.clone(),
            ));
        }
        if let (Some(stream), Some(pipe)) = (stdio.stdin, parent.stdin) {
            link.streams
                .add_input(stream, stdio::pump_input(pipe.into(), stream, wire.clone()));
        }
    }
    Ok((Attached { pumps, stdio }, terminal))
}

/// Gives up on a process that runs but could not be connected: kills it
/// and collects its exit, so that no status waits forever in the reaper.
pub fn abandon(reaper: &Reaper, pid: i32) {
    let _ = sys::kill(pid, libc::SIGKILL);
    reaper.wait_for(pid);
}

/// Waits (on a thread of its own) for `pid` to exit, lets its output
/// drain, then reports [`Event::ProcessExited`] for `process_id`.
/// `events` hears of the exit first, and of a wanted power-off last.
pub fn supervise(
    link: Link,
    events: Arc<dyn ProcessEvents>,
    container: Arc<ContainerInfo>,
    process_id: String,
    pid: i32,
    attached: Attached,
    role: Role,
) {
    std::thread::spawn(move || {
        let status = match link.reaper.wait_for(pid) {
            WaitStatus::Exited(code) => ExitStatus::Code(code),
            WaitStatus::Signaled(signal) => ExitStatus::Signal(signal),
        };
        events.process_exited(&process_id);
        if matches!(role, Role::Main { .. }) {
            // The container stops with its main process: nothing of it may
            // keep the output streams open (without a PID namespace, the
            // kernel would not kill the rest).
            container.cgroup.kill_all();
        }
        // Output first: the host reports the exit only after all of it.
        for pump in attached.pumps {
            let _ = pump.join();
        }
        let stdio = attached.stdio;
        link.streams.remove_output(stdio.stdout);
        link.streams.remove_output(stdio.stderr);
        if let Some(stream) = stdio.stdin {
            link.streams.close_input(stream);
        }
        let oom_killed = container.cgroup.oom_kills() > 0;
        if matches!(role, Role::Main { .. }) {
            container.cgroup.remove();
        }
        let event = Event::ProcessExited {
            process: process_id,
            status,
            oom_killed,
        };
        let _ = link.wire.send_message(&ControlMessage::Event { event });
        if let Role::Main {
            shutdown_on_exit: true,
        } = role
        {
            events.power_off_soon();
        }
    });
}
