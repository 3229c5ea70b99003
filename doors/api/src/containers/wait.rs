//! `POST /containers/{id}/wait?condition=not-running|next-exit|removed`.
//! Docker answers the headers at once and the body when the condition
//! holds: `docker run` asks for the wait before it starts the container
//! and only starts it once the headers came.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hull_container::supervisor::control::{self, ControlReply, ControlRequest};
use hull_container::{Containers, Status};

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
    let c = app.container(id)?;
    let (tx, response) = streaming("application/json");
    let containers = app.containers();
    let id = c.config.id.clone();
    tokio::spawn(async move {
        let ended = tokio::select! {
            ended = until(&containers, &id, condition) => ended,
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

/// Waits until `condition` holds for container `id`; its exit code.
async fn until(containers: &Containers, id: &str, condition: Condition) -> Result<i64, String> {
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
        match state.status() {
            Status::Running => {
                if let Ok(ControlReply::Exited { exit_code, .. }) =
                    control::call(&c.socket_path(), &ControlRequest::Wait).await
                {
                    last_code = Some(exit_code.into());
                    if condition == Condition::NextExit || condition == Condition::NotRunning {
                        return Ok(exit_code.into());
                    }
                    continue;
                }
                // Not answering yet (starting) or gone meanwhile.
            }
            Status::Exited => {
                let code = state.exit_code.unwrap_or(0).into();
                last_code = Some(code);
                let again = first_finish.is_none_or(|f| f != state.finished_at);
                match condition {
                    Condition::NotRunning => return Ok(code),
                    Condition::NextExit if again => return Ok(code),
                    _ => {}
                }
            }
            Status::Created => {
                if condition == Condition::NotRunning {
                    return Ok(0);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
