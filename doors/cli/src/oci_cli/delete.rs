//! `delete [--force]`: stops the container if asked (or if it never
//! started), waits for its supervisor to be gone, and removes everything
//! of it: record, rootfs disk, writable layer, sockets.

use anyhow::{anyhow, Result};
use hull_container::lifecycle;
use hull_container::Status;

use super::args::{DeleteArgs, RuncArgs};
use super::find;

pub async fn delete(args: &RuncArgs, delete: &DeleteArgs) -> Result<i32> {
    let container = match find(args, &delete.id) {
        Ok(c) => c,
        // runc: deleting what is not there is fine with --force.
        Err(_) if delete.force => return Ok(0),
        Err(e) => return Err(e),
    };
    let running = container.recorded_state().status() == Status::Running;
    if running && container.live_supervisor().is_some() && !delete.force {
        return Err(anyhow!(
            "cannot delete container {} that is not stopped: running",
            delete.id
        ));
    }
    lifecycle::remove(&args.root, &container).await;
    Ok(0)
}
