//! `delete [--force]`: stops the container if asked (or if it never
//! started), waits for its supervisor to be gone, and removes everything
//! of it: record, rootfs disk, writable layer, sockets.

use std::time::Duration;

use anyhow::{anyhow, Result};

use super::args::{DeleteArgs, RuncArgs};
use super::{await_gone, containers, find, live_supervisor};
use crate::container::Status;
use crate::supervisor::control::{self, ControlRequest};

/// How long a supervisor gets to power its VM off and record the exit.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

pub async fn delete(args: &RuncArgs, delete: &DeleteArgs) -> Result<i32> {
    let container = match find(args, &delete.id) {
        Ok(c) => c,
        // runc: deleting what is not there is fine with --force.
        Err(_) if delete.force => return Ok(0),
        Err(e) => return Err(e),
    };
    if let Some(supervisor) = live_supervisor(&container) {
        let running = container.recorded_state().status() == Status::Running;
        if running && !delete.force {
            return Err(anyhow!(
                "cannot delete container {} that is not stopped: running",
                delete.id
            ));
        }
        let socket = container.socket_path();
        let stop = control::call(&socket, &ControlRequest::Stop { timeout_secs: 0 });
        if let Err(e) = tokio::time::timeout(STOP_PATIENCE, stop).await {
            tracing::warn!("container {}: stop: {e}", delete.id);
        }
        await_gone(supervisor, Duration::from_secs(5)).await;
    }
    containers(args).remove(&container);
    Ok(0)
}
