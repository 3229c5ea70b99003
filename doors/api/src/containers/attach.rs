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
use crate::hijack::{self, Pipes, Replies};
use crate::http::{Query, Request};
use crate::state::App;

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
        if let Some((guard, mut started)) = waiting {
            loop {
                match started.recv().await {
                    Ok(started_id) if started_id == c.config.id => break,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Lagged: it may have been ours; the socket tells.
                        if c.socket_path().exists() {
                            break;
                        }
                    }
                    Err(_) => return,
                }
            }
            drop(guard);
        }
        if let Err(e) = converse(upgraded, &c, stdin, tty).await {
            tracing::debug!(container = %c.config.name, "attach: {e}");
        }
    });
    Ok(hijack::switching(tty))
}

/// Attaches pipes to the main process and relays until it ends or the
/// client leaves.
async fn converse(
    upgraded: hyper::upgrade::Upgraded,
    c: &Container,
    stdin: bool,
    tty: bool,
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
    hijack::relay(upgraded, client, pipes, None, &mut MainEnds).await;
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
