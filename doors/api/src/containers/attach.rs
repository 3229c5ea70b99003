//! `POST /containers/{id}/attach` (hijacked): the main process's output,
//! and its stdin with `stdin=1`, over the upgraded connection. Docker's
//! CLI attaches before it starts the container; such an attach waits for
//! the start, and the start holds the main process until it is attached,
//! so no output is lost.

use std::sync::Arc;

use hull_container::supervisor::control::{ControlClient, ControlReply, ControlRequest};
use hull_container::Container;
use std::os::fd::AsFd;

use crate::error::{ApiError, ApiResult};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use crate::hijack::{self, EarlyInput, Pipes, Replies};
use crate::http::{Query, Request};
use crate::state::App;

/// Most stdin kept for a container that has not started yet.
const MAX_EARLY_INPUT: usize = 64 * 1024;

pub async fn attach(app: &Arc<App>, id: &str, query: &Query, mut req: Request) -> ApiResult {
    let c = app.container(id)?;
    if !hijack::wants_upgrade(&req) {
        return Err(ApiError::bad_request(
            "attach needs a hijacked connection (Connection: Upgrade, Upgrade: tcp)",
        ));
    }
    if query.flag("logs") {
        return Err(ApiError::not_implemented("attach with logs=1"));
    }
    if !query.flag("stream") {
        return Err(ApiError::not_implemented("attach without stream=1"));
    }
    let stdin = query.flag("stdin") && c.config.open_stdin;
    let tty = c.config.tty;
    let running = c.state().has_live_supervisor();
    let waiting = (!running).then(|| app.wait_for_start(&c.config.id));
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        let mut early = EarlyInput::default();
        if let Some((guard, mut started)) = waiting {
            if !until_started(&mut io, &c, stdin, &mut started, &mut early).await {
                return;
            }
            drop(guard);
        }
        if let Err(e) = converse(io, &c, stdin, tty, early).await {
            tracing::debug!(container = %c.config.name, "attach: {e}");
        }
    });
    Ok(hijack::switching(tty))
}

/// Waits for the container's start, keeping what the client sends
/// meanwhile (its stdin, up to [`MAX_EARLY_INPUT`]); false when the
/// client's connection failed first.
async fn until_started(
    io: &mut TokioIo<hyper::upgrade::Upgraded>,
    c: &Container,
    stdin: bool,
    started: &mut broadcast::Receiver<String>,
    early: &mut EarlyInput,
) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let reading = !early.ended && early.bytes.len() < MAX_EARLY_INPUT;
        tokio::select! {
            announced = started.recv() => match announced {
                Ok(id) if id == c.config.id => return true,
                Ok(_) => {}
                // Lagged: it may have been ours; the socket tells.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if c.socket_path().exists() {
                        return true;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return false,
            },
            read = io.read(&mut buf), if reading => match read {
                // The end of the client's input: it may still read (the
                // docker CLI half-closes when it sends no stdin).
                Ok(0) => early.ended = true,
                Ok(n) if stdin => early.bytes.extend_from_slice(&buf[..n]),
                Ok(_) => {}
                Err(_) => return false,
            },
        }
    }
}

/// Attaches pipes to the main process and relays until it ends or the
/// client leaves.
async fn converse(
    io: TokioIo<hyper::upgrade::Upgraded>,
    c: &Container,
    stdin: bool,
    tty: bool,
    early: EarlyInput,
) -> std::io::Result<()> {
    let pipes = Pipes::new(stdin, tty)?;
    let client = {
        let fds: Vec<_> = pipes.theirs.iter().map(|fd| fd.as_fd()).collect();
        ControlClient::connect(&c.socket_path(), &ControlRequest::Attach { stdin }, &fds).await?
    };
    let mut pipes = pipes;
    // The supervisor holds its own copies now: ours must not keep the
    // output open.
    pipes.theirs.clear();
    hijack::relay(io, client, pipes, None, &mut MainEnds, early).await;
    Ok(())
}

/// The attach conversation ends with the main process.
struct MainEnds;

impl Replies for MainEnds {
    fn reply(&mut self, reply: &ControlReply) -> bool {
        matches!(
            reply,
            ControlReply::Exited { .. } | ControlReply::Error { .. }
        )
    }
}
