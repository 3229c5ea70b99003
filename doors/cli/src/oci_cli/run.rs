//! `run`: `create` then `start`. With `--detach` it returns once the
//! process runs (the supervisor's pid in `--pid-file`, as `create` leaves
//! it); in the foreground it waits, passes the signals it gets on to the
//! container, exits with the container's status, and deletes the
//! container unless `--keep`. A process with a terminal and no
//! `--console-socket` gets a pty whose master this command carries to and
//! from its own stdio, as runc's foreground `run` does.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use anyhow::{anyhow, Result};
use tokio::signal::unix::{signal, SignalKind};

use super::args::{RunArgs, RuncArgs};
use super::create::create_container;
use super::{console, delete, start};
use crate::terminal::{self, RawMode};
use hull_container::supervisor::control::{self, ControlRequest};

/// Signals a foreground `run` passes on to the container's process.
const FORWARDED: [i32; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

pub async fn run(args: &RuncArgs, run: &RunArgs) -> Result<i32> {
    run_from(args, run, None).await
}

/// `run`, or with `checkpoint` runc's `restore`: the container's VM comes
/// back from the checkpoint and its process carries on.
pub async fn run_from(args: &RuncArgs, run: &RunArgs, checkpoint: Option<&Path>) -> Result<i32> {
    let wants_tty = hull_container::bundle::Bundle::load(&run.create.bundle)
        .ok()
        .and_then(|b| b.spec.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false);
    // Our own pty only for a foreground run with a terminal and no socket.
    let pty = if wants_tty && run.create.console_socket.is_none() && !run.detach {
        let (master, _, slave) = console::open_pty()?;
        let (rows, cols) = terminal::size();
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(&slave, size);
        Some((master, slave))
    } else {
        None
    };
    let (master, slave) = match pty {
        Some((m, s)) => (Some(m), Some(s)),
        None => (None, None),
    };
    let (container, mut supervisor) =
        create_container(args, &run.create, slave, checkpoint).await?;
    if let Err(e) = start::start(args, &run.create.id).await {
        delete::remove(args, &container).await;
        let _ = supervisor.wait();
        return Err(e);
    }
    if run.detach {
        // The caller's subreaper reaps the supervisor.
        drop(supervisor);
        return Ok(0);
    }
    let _raw = master.as_ref().and_then(|_| RawMode::enable());
    let output = master.map(carry_terminal).transpose()?;
    let socket = container.socket_path();
    let mut signals = Vec::new();
    for number in FORWARDED {
        signals.push((number, signal(SignalKind::from_raw(number))?));
    }
    let waiter = tokio::task::spawn_blocking(move || supervisor.wait());
    tokio::pin!(waiter);
    let status = loop {
        let forwarded = futures_util::future::select_all(
            signals
                .iter_mut()
                .map(|(number, s)| Box::pin(async move { s.recv().await.map(|_| *number) })),
        );
        tokio::select! {
            status = &mut waiter => break status??,
            (Some(number), _, _) = forwarded => {
                let request = match number {
                    libc::SIGWINCH => {
                        let (rows, cols) = terminal::size();
                        ControlRequest::Resize { rows, cols }
                    }
                    _ => ControlRequest::Signal { signal: number },
                };
                let _ = control::call(&socket, &request).await;
            }
        }
    };
    if let Some(output) = output {
        // The rest of the container's output, up to the pty's end.
        let _ = tokio::task::spawn_blocking(move || output.join()).await;
    }
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    if !run.keep {
        delete::remove(args, &container).await;
    }
    if code < 0 {
        return Err(anyhow!("the container ended without a status"));
    }
    Ok(code)
}

/// Copies our stdin to the pty's master and the master to our stdout, on
/// threads of their own (they end with the pty or with this process).
fn carry_terminal(master: OwnedFd) -> Result<std::thread::JoinHandle<()>> {
    let mut reader = File::from(master.try_clone()?);
    let mut writer = File::from(master);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || writer.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    Ok(std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let mut buf = [0u8; 4096];
        // EIO once the last slave closes: the container has ended.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0
                || stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
    }))
}
