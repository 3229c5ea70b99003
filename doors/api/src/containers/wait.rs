//! `POST /containers/{id}/wait?condition=not-running|next-exit|removed`.
//! Docker answers the headers at once and the body when the condition
//! holds: `docker run` asks for the wait before it starts the container
//! and only starts it once the headers came.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hull_container::supervisor::control::{self, ControlReply, ControlRequest};
use hull_container::{Containers, Status};
use tokio::sync::broadcast;

use crate::error::{ApiError, ApiResult};
use crate::http::{streaming, Query};
use crate::state::App;

/// How often a container's record is looked at while nothing else tells.
const POLL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    NotRunning,
    NextExit,
    Removed,
}

pub fn wait(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let condition = match query.get("condition").unwrap_or("") {
        "" | "not-running" => Condition::NotRunning,
        "next-exit" => Condition::NextExit,
        "removed" => Condition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: {other:?}"
            )))
        }
    };
    // Subscribed before the container is looked at: a start from now on
    // is heard.
    let started = app.started();
    let c = app.container(id)?;
    let (tx, response) = streaming("application/json");
    let containers = app.containers();
    let id = c.config.id.clone();
    tokio::spawn(async move {
        let ended = tokio::select! {
            ended = until(&containers, &id, condition, started) => ended,
            // The client went away: nobody to tell.
            () = tx.closed() => return,
        };
        let body = match ended {
            Ok(code) => serde_json::json!({"StatusCode": code, "Error": null}),
            Err(message) => serde_json::json!({"StatusCode": -1, "Error": {"Message": message}}),
        };
        let mut line = serde_json::to_vec(&body).unwrap_or_default();
        line.push(b'\n');
        let _ = tx.send(Bytes::from(line)).await;
    });
    Ok(response)
}

/// Waits until `condition` holds for container `id`; its exit code. The
/// supervisor tells the exit (its `Wait`); a container not started yet
/// is watched until this server starts it (`started`) or, started by
/// another door, until its record says so.
async fn until(
    containers: &Containers,
    id: &str,
    condition: Condition,
    mut started: broadcast::Receiver<String>,
) -> Result<i64, String> {
    // A container stopped when asked, for `next-exit`, must exit again.
    let first_finish = containers.find(id).ok().and_then(|c| {
        let s = c.settle();
        (s.status() == Status::Exited).then_some(s.finished_at)
    });
    let mut last_code: Option<i64> = None;
    loop {
        let Ok(c) = containers.find(id) else {
            // Gone: removed (by `--rm` or a DELETE).
            return match condition {
                Condition::Removed => Ok(last_code.unwrap_or(0)),
                _ => last_code.ok_or_else(|| format!("No such container: {id}")),
            };
        };
        let state = c.settle();
        let old_exit = state.status() == Status::Exited
            && first_finish.is_some_and(|f| f == state.finished_at);
        if state.has_live_supervisor() && !old_exit {
            if let Ok(ControlReply::Exited { exit_code, .. }) =
                control::call(&c.socket_path(), &ControlRequest::Wait).await
            {
                last_code = Some(exit_code.into());
                if condition != Condition::Removed {
                    return Ok(exit_code.into());
                }
                continue;
            }
        }
        match state.status() {
            Status::Exited => {
                let code = state.exit_code.unwrap_or(0).into();
                last_code = Some(code);
                match condition {
                    Condition::NotRunning => return Ok(code),
                    Condition::NextExit if !old_exit => return Ok(code),
                    _ => {}
                }
            }
            Status::Created if condition == Condition::NotRunning => return Ok(0),
            _ => {}
        }
        tokio::select! {
            _ = announced(&mut started, id) => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Returns once `id`'s start is announced (or announcements were missed).
async fn announced(started: &mut broadcast::Receiver<String>, id: &str) {
    loop {
        match started.recv().await {
            Ok(started_id) if started_id == id => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
