//! `kill ID SIGNAL`: the signal goes to the main process in the guest (to
//! all the container's processes with `--all`); a container whose process
//! has not started yet is stopped (its VM powered off), as runc's kill
//! ends a created container's init. `pause`/`resume` are here too: they
//! are one request to the supervisor as well.

use anyhow::{anyhow, Result};

use super::args::{KillArgs, RuncArgs};
use super::find;
use crate::commands::parse_signal;
use hull_container::record::Status;
use hull_container::supervisor::control::{self, AgentRequest, ControlReply, ControlRequest};

pub async fn kill(args: &RuncArgs, kill: &KillArgs) -> Result<i32> {
    let signal = parse_signal(&kill.signal)?;
    let container = find(args, &kill.id)?;
    if container.live_supervisor().is_none() {
        return Err(anyhow!("container not running"));
    }
    let request = match container.recorded_state().status() {
        Status::Running if kill.all => ControlRequest::Agent {
            request: AgentRequest::SignalContainer {
                container_id: container.config.id.clone(),
                signal,
            },
        },
        Status::Running => ControlRequest::Signal { signal },
        Status::Created => ControlRequest::Stop { timeout_secs: 0 },
        Status::Exited => return Err(anyhow!("container not running")),
    };
    match control::call(&container.socket_path(), &request).await {
        Ok(ControlReply::Error { message, .. }) => Err(anyhow!("{message}")),
        Ok(_) => Ok(0),
        Err(e) if container.live_supervisor().is_none() => {
            tracing::debug!("the container stopped while signalled: {e}");
            Err(anyhow!("container not running"))
        }
        Err(e) => Err(anyhow!(
            "container {}: its supervisor did not answer: {e}",
            kill.id
        )),
    }
}

/// `pause` (`frozen`) / `resume`: the guest's cgroup freezer.
pub async fn freeze(args: &RuncArgs, id: &str, frozen: bool) -> Result<i32> {
    let container = find(args, id)?;
    if container.live_supervisor().is_none()
        || container.recorded_state().status() != Status::Running
    {
        return Err(anyhow!("container not running"));
    }
    let request = ControlRequest::Agent {
        request: AgentRequest::Freeze {
            container_id: container.config.id.clone(),
            frozen,
        },
    };
    match control::call(&container.socket_path(), &request).await {
        Ok(ControlReply::Error { message, .. }) => Err(anyhow!("{message}")),
        Ok(_) => Ok(0),
        Err(e) => Err(anyhow!(
            "container {id}: its supervisor did not answer: {e}"
        )),
    }
}
