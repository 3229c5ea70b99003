//! `delete [--force]`: stops the container if asked (or if it never
//! started), waits for its supervisor to be gone, and removes everything
//! of it: record, rootfs disk, writable layer, sockets.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::args::{DeleteArgs, RuncArgs};
use super::{await_gone, find, live_supervisor};
use crate::container::{Container, Containers, Status};
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
    let running = container.recorded_state().status() == Status::Running;
    if running && live_supervisor(&container).is_some() && !delete.force {
        return Err(anyhow!(
            "cannot delete container {} that is not stopped: running",
            delete.id
        ));
    }
    remove(&args.root, &container).await;
    Ok(0)
}

/// Stops the container if its supervisor is alive, waits for that to be
/// gone, and removes everything of it.
pub async fn remove(root: &Path, container: &Container) {
    if let Some(supervisor) = live_supervisor(container) {
        let socket = container.socket_path();
        let stop = control::call(&socket, &ControlRequest::Stop { timeout_secs: 0 });
        if let Err(e) = tokio::time::timeout(STOP_PATIENCE, stop).await {
            tracing::warn!("container {}: stop: {e}", container.config.name);
        }
        await_gone(supervisor, Duration::from_secs(5)).await;
    }
    Containers::new(root).remove(container);
}
