//! The control server: accepts connections on the container's socket and
//! answers each first request. Attach and exec become conversations of
//! their own (`attach.rs`, `exec.rs`); agent requests are relayed
//! (`relay.rs`); the rest is answered here.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hull_protocol::{Request, MAIN_PROCESS};
use tokio::net::UnixListener;

use super::agent::Agent;
use super::control::{ControlConn, ControlReply, ControlRequest};
use super::relay::relay;
use super::shared::Shared;
use super::stop::{stop, Escalation};
use super::{attach, exec, export};

/// Listens on `socket`, replacing a stale one.
pub(super) fn listen(socket: &Path) -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(socket);
    UnixListener::bind(socket)
}

/// Serves every connection, each in a task of its own, counted in
/// `shared.connections`.
pub(super) async fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        shared.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Ok((conn, request, fds)) = ControlConn::accept(stream).await {
                serve(&shared, conn, request, fds).await;
            }
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            shared.connections_done.notify_waiters();
        });
    }
}

async fn serve(
    shared: &Arc<Shared>,
    mut conn: ControlConn,
    request: ControlRequest,
    fds: Vec<OwnedFd>,
) {
    match request {
        ControlRequest::Attach { stdin } => attach::serve(shared, conn, stdin, fds).await,
        ControlRequest::Exec(request) => exec::serve(shared, conn, *request, fds).await,
        ControlRequest::ExportChanges { source_date_epoch } => {
            export::serve(shared, conn, source_date_epoch, fds).await
        }
        request => {
            let reply = answer(shared, request).await;
            let _ = conn.reply(&reply).await;
        }
    }
}

/// The one reply to a request that is not a conversation.
pub(super) async fn answer<A: Agent>(shared: &Shared<A>, request: ControlRequest) -> ControlReply {
    match request {
        ControlRequest::Wait => shared.wait_outcome().await.reply(),
        ControlRequest::Started => started(shared).await,
        ControlRequest::Start => {
            shared.start_gate.notify_one();
            ControlReply::Ok
        }
        ControlRequest::Stop { timeout_secs } => {
            stop(shared, Escalation::after(Duration::from_secs(timeout_secs))).await;
            ControlReply::Ok
        }
        ControlRequest::Signal { signal } => {
            let process = MAIN_PROCESS.into();
            relay(shared, Request::Signal { process, signal }).await
        }
        ControlRequest::Resize { rows, cols } => {
            shared.resize(MAIN_PROCESS, rows, cols);
            ControlReply::Ok
        }
        ControlRequest::Agent { request } => relay(shared, request).await,
        ControlRequest::Checkpoint {
            image_path,
            leave_running,
        } => super::checkpoint::order(shared, image_path, leave_running).await,
        ControlRequest::Attach { .. }
        | ControlRequest::Exec(_)
        | ControlRequest::ExportChanges { .. } => ControlReply::Error {
            message: "attach, exec and export open a connection of their own".into(),
            code: 125,
        },
    }
}

/// `Started` once the main process runs, or why it did not start.
async fn started<A: Agent>(shared: &Shared<A>) -> ControlReply {
    let mut started = shared.started.subscribe();
    let pid = match started.wait_for(Option::is_some).await {
        Ok(pid) => pid.unwrap_or(0),
        Err(_) => 0,
    };
    if pid > 0 {
        return ControlReply::Started { pid };
    }
    let outcome = shared.wait_outcome().await;
    ControlReply::Error {
        message: outcome
            .error
            .unwrap_or_else(|| "the container did not start".into()),
        code: outcome.exit_code,
    }
}

#[cfg(test)]
mod tests {
    use hull_protocol::{ContainerStats, Reply};

    use super::*;
    use crate::supervisor::test_utils::{self, agent, paused, FakeAgent, ID};
    use crate::supervisor::Outcome;

    fn stats_request(container_id: &str) -> ControlRequest {
        ControlRequest::Agent {
            request: Request::Stats {
                container_id: container_id.into(),
            },
        }
    }

    #[tokio::test]
    async fn agent_requests_are_relayed_and_answered_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let stats = ContainerStats {
            pids: 3,
            ..Default::default()
        };
        let (fake, _taps) = FakeAgent::new(Reply::Stats(stats));
        let shared = test_utils::shared(dir.path(), Some(fake));
        let reply = answer(&shared, stats_request(ID)).await;
        assert!(matches!(
            reply,
            ControlReply::Agent { answer: Reply::Stats(s) } if s.pids == 3
        ));
        let seen = agent(&shared).seen();
        assert_eq!(
            seen,
            vec![Request::Stats {
                container_id: ID.into()
            }]
        );
    }

    #[tokio::test]
    async fn signal_goes_to_the_main_process() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, _taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        let reply = answer(&shared, ControlRequest::Signal { signal: 10 }).await;
        assert!(matches!(
            reply,
            ControlReply::Agent {
                answer: Reply::Done
            }
        ));
        let expected = Request::Signal {
            process: MAIN_PROCESS.into(),
            signal: 10,
        };
        assert_eq!(agent(&shared).seen(), vec![expected]);
    }

    #[tokio::test]
    async fn a_stopped_container_refuses_relays_but_takes_resizes() {
        let dir = tempfile::tempdir().unwrap();
        let shared = test_utils::shared(dir.path(), None);
        let ControlReply::Error { message, code } = answer(&shared, stats_request(ID)).await else {
            panic!("relayed without an agent");
        };
        assert_eq!(
            (message.as_str(), code),
            ("the container is not running", 125)
        );
        let resize = ControlRequest::Resize { rows: 1, cols: 2 };
        assert!(matches!(answer(&shared, resize).await, ControlReply::Ok));
    }

    #[tokio::test]
    async fn an_agent_refusal_is_an_error_reply_with_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let (mut fake, _taps) = FakeAgent::new(Reply::Done);
        fake.refusal = Some("no cgroup".into());
        let shared = test_utils::shared(dir.path(), Some(fake));
        let ControlReply::Error { message, code } = answer(&shared, stats_request(ID)).await else {
            panic!("the refusal was lost");
        };
        assert_eq!((message.as_str(), code), ("no cgroup", 125));
    }

    #[tokio::test]
    async fn freeze_is_relayed_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, _taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        let freeze = |frozen| ControlRequest::Agent {
            request: Request::Freeze {
                container_id: ID.into(),
                frozen,
            },
        };
        answer(&shared, freeze(true)).await;
        assert!(paused(&shared.container));
        answer(&shared, freeze(false)).await;
        assert!(!paused(&shared.container));
        assert_eq!(agent(&shared).seen().len(), 2);
    }

    #[tokio::test]
    async fn resize_is_sent_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, _taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        let reply = answer(&shared, ControlRequest::Resize { rows: 24, cols: 80 }).await;
        assert!(matches!(reply, ControlReply::Ok));
        let expected = Request::ResizeTerminal {
            process: MAIN_PROCESS.into(),
            rows: 24,
            cols: 80,
        };
        assert_eq!(agent(&shared).seen(), vec![expected]);
    }

    #[tokio::test]
    async fn started_answers_the_pid_or_why_it_did_not_start() {
        let dir = tempfile::tempdir().unwrap();
        let shared = test_utils::shared(dir.path(), None);
        shared.started.send_replace(Some(42));
        let reply = answer(&shared, ControlRequest::Started).await;
        assert!(matches!(reply, ControlReply::Started { pid: 42 }));

        shared.started.send_replace(Some(0));
        let failed = Outcome::failed(127, "exec: nope".into(), false);
        shared.outcome.send_replace(Some(failed));
        let ControlReply::Error { message, code } = answer(&shared, ControlRequest::Started).await
        else {
            panic!("a failed start answered as started");
        };
        assert_eq!((message.as_str(), code), ("exec: nope", 127));
    }

    #[tokio::test]
    async fn wait_answers_once_the_container_has_ended() {
        let dir = tempfile::tempdir().unwrap();
        let shared = test_utils::shared(dir.path(), None);
        let waiter = {
            let shared = shared.clone();
            tokio::spawn(async move { answer(&shared, ControlRequest::Wait).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let ended = Outcome {
            exit_code: 3,
            oom_killed: true,
            error: None,
            started: true,
        };
        shared.outcome.send_replace(Some(ended));
        let reply = waiter.await.unwrap();
        assert!(matches!(
            reply,
            ControlReply::Exited {
                exit_code: 3,
                oom_killed: true,
                error: None
            }
        ));
    }

    #[tokio::test]
    async fn start_opens_the_gate() {
        let dir = tempfile::tempdir().unwrap();
        let shared = test_utils::shared(dir.path(), None);
        assert!(matches!(
            answer(&shared, ControlRequest::Start).await,
            ControlReply::Ok
        ));
        // The permit waits for the boot to ask for it.
        let gate = tokio::time::timeout(Duration::from_secs(1), shared.start_gate.notified());
        assert!(gate.await.is_ok());
    }
}
