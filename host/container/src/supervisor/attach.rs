//! `hull attach` (and an attached `run`): the client's stdout and stderr
//! receive the main process's output, its stdin feeds the main process,
//! and the conversation carries signals and terminal sizes until the
//! container ends (answered with `Exited`) or the client leaves (the
//! container runs on).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hull_protocol::{Request, MAIN_PROCESS};
use tokio::sync::watch;

use super::agent::Agent;
use super::control::{ControlConn, ControlReply, ControlRequest};
use super::io;
use super::shared::{lock, Shared};
use super::Outcome;

/// Serves one attach conversation; `stdin` says whether the first of
/// `fds` is a stdin.
pub(super) async fn serve<A: Agent>(
    shared: &Arc<Shared<A>>,
    mut conn: ControlConn,
    stdin: bool,
    fds: Vec<OwnedFd>,
) {
    let mut fds = fds.into_iter();
    let stdin_fd = if stdin { fds.next() } else { None };
    let (Some(out), Some(err)) = (fds.next(), fds.next()) else {
        let refusal = ControlReply::Error {
            message: "attach needs stdout and stderr descriptors".into(),
            code: 125,
        };
        let _ = conn.reply(&refusal).await;
        return;
    };
    let finished = shared.outcome.borrow().clone();
    if let Some(outcome) = finished {
        let _ = conn.reply(&outcome.reply()).await;
        return;
    }
    shared.stdout.attach(out);
    shared.stderr.attach(err);
    let cancel = Arc::new(AtomicBool::new(false));
    if let Some(fd) = stdin_fd {
        attach_stdin(shared, fd, cancel.clone());
    }
    shared.attached.notify_one();
    converse(shared, conn, &cancel).await;
}

/// Feeds `fd` to the main process: now if it runs, else once it starts.
fn attach_stdin<A: Agent>(shared: &Shared<A>, fd: OwnedFd, cancel: Arc<AtomicBool>) {
    let running = lock(&shared.stdin).clone();
    match running {
        Some(input) => {
            io::pump_input(shared.handle.clone(), fd, input, cancel, true);
        }
        None => *lock(&shared.early_stdin) = Some((fd, cancel)),
    }
}

/// The reply for the client once the container has ended.
async fn ended(outcome: &mut watch::Receiver<Option<Outcome>>) -> Option<ControlReply> {
    let ended = outcome.wait_for(Option::is_some).await.ok()?;
    ended.as_ref().map(Outcome::reply)
}

/// Passes the client's signals and sizes on until the container ends or
/// the client leaves.
async fn converse<A: Agent>(shared: &Shared<A>, mut conn: ControlConn, cancel: &AtomicBool) {
    let mut outcome = shared.outcome.subscribe();
    loop {
        tokio::select! {
            reply = ended(&mut outcome) => {
                shared.stdout.detach();
                shared.stderr.detach();
                if let Some(reply) = reply {
                    let _ = conn.reply(&reply).await;
                }
                return;
            }
            request = conn.next() => match request {
                Some(ControlRequest::Signal { signal }) => {
                    if let Some(agent) = shared.agent() {
                        agent.notify(Request::Signal { process: MAIN_PROCESS.into(), signal });
                    }
                }
                Some(ControlRequest::Resize { rows, cols }) => {
                    shared.resize(MAIN_PROCESS, rows, cols);
                }
                Some(_) => {}
                None => {
                    // The client went away: the container runs on.
                    shared.stdout.detach();
                    shared.stderr.detach();
                    cancel.store(true, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
}
