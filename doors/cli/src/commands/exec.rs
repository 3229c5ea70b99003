use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{anyhow, Result};
use tokio::signal::unix::{signal, SignalKind};

use super::lifecycle::containers;
use crate::cli::{Cli, ExecArgs};
use hull_container::supervisor::control::{
    ControlClient, ControlReply, ControlRequest, ExecRequest,
};

pub async fn exec(cli: &Cli, args: &ExecArgs) -> Result<i32> {
    let container = containers(cli).find(&args.container)?;
    if !container.state().is_running() {
        return Err(anyhow!(
            "container {} is not running",
            container.config.name
        ));
    }
    if container.state().paused {
        // Its cgroup is frozen: the new process would freeze on arrival.
        return Err(anyhow!(
            "container {} is paused, unpause it first",
            container.config.name
        ));
    }
    let mut env = Vec::new();
    for entry in &args.process.env {
        match entry.split_once('=') {
            Some(_) => env.push(entry.clone()),
            None => {
                if let Ok(value) = std::env::var(entry) {
                    env.push(format!("{entry}={value}"));
                }
            }
        }
    }
    let request = ExecRequest {
        process: None,
        owned: false,
        args: args.command.clone(),
        env,
        workdir: args.process.workdir.clone(),
        user: args.process.user.clone(),
        tty: args.process.tty,
        stdin: args.process.interactive,
        size: args.process.tty.then(crate::terminal::size),
    };
    let (input, out, err) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    if args.process.interactive {
        fds.push(input.as_fd());
    }
    fds.push(out.as_fd());
    fds.push(err.as_fd());
    let mut client = ControlClient::connect(
        &container.socket_path(),
        &ControlRequest::Exec(Box::new(request)),
        &fds,
    )
    .await
    .map_err(|e| anyhow!("container {}: {e}", container.config.name))?;
    match client.reply().await? {
        ControlReply::Started { .. } => {}
        ControlReply::Error { message, code } => {
            eprintln!("hull: {message}");
            return Ok(code);
        }
        other => return Err(anyhow!("unexpected supervisor reply {other:?}")),
    }
    let _raw_mode = (args.process.tty && args.process.interactive)
        .then(crate::terminal::RawMode::enable)
        .flatten();
    let mut winch = if args.process.tty {
        signal(SignalKind::window_change()).ok()
    } else {
        None
    };
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            reply = client.reply() => {
                return match reply? {
                    ControlReply::Exited { exit_code, error, .. } => {
                        if let Some(error) = error {
                            eprintln!("hull: {error}");
                        }
                        Ok(exit_code)
                    }
                    ControlReply::Error { message, code } => {
                        eprintln!("hull: {message}");
                        Ok(code)
                    }
                    other => Err(anyhow!("unexpected supervisor reply {other:?}")),
                };
            }
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                let (rows, cols) = crate::terminal::size();
                let _ = client.send(&ControlRequest::Resize { rows, cols }).await;
            }
            Some(()) = interrupt.recv() => {
                let _ = client.send(&ControlRequest::Signal { signal: libc::SIGINT }).await;
            }
            Some(()) = terminate.recv() => {
                let _ = client.send(&ControlRequest::Signal { signal: libc::SIGTERM }).await;
            }
        }
    }
}
