//! `start`: lets the supervisor start the main process, and returns once
//! it runs (or with the reason it could not start), after the bundle's
//! `poststart` hooks.

use anyhow::{anyhow, Result};

use super::args::RuncArgs;
use super::{find, host_hooks, state};
use hull_container::hooks::HostHook;
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
        ControlReply::Started { .. } => {
            let pid = state::pid(&container);
            if let Err(e) = host_hooks(&container, HostHook::Poststart, "running", pid) {
                // runc: a failed poststart hook ends the container.
                let _ = control::call(&socket, &ControlRequest::Stop { timeout_secs: 0 }).await;
                return Err(e);
            }
            Ok(0)
        }
        ControlReply::Error { message, .. } => Err(anyhow!("container {id}: {message}")),
        other => Err(anyhow!("unexpected supervisor reply {other:?}")),
    }
}
