//! `start`: lets the supervisor start the main process, and returns once
//! it runs (or with the reason it could not start).

use anyhow::{anyhow, Result};

use super::args::RuncArgs;
use super::find;
use hull_container::record::Status;
use hull_container::supervisor::control::{self, ControlReply, ControlRequest};

pub async fn start(args: &RuncArgs, id: &str) -> Result<i32> {
    let container = find(args, id)?;
    let state = container.recorded_state();
    match state.status() {
        Status::Created if container.live_supervisor().is_some() => {}
        Status::Running => return Err(anyhow!("container {id} is already running")),
        _ => return Err(anyhow!("cannot start a container that has stopped")),
    }
    let socket = container.socket_path();
    let ask = |request| {
        let socket = socket.clone();
        async move {
            control::call(&socket, &request)
                .await
                .map_err(|e| anyhow!("container {id}: its supervisor did not answer: {e}"))
        }
    };
    ask(ControlRequest::Start).await?;
    match ask(ControlRequest::Started).await? {
        ControlReply::Started { .. } => Ok(0),
        ControlReply::Error { message, .. } => Err(anyhow!("container {id}: {message}")),
        other => Err(anyhow!("unexpected supervisor reply {other:?}")),
    }
}
