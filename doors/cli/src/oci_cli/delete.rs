//! `delete [--force]`: stops the container if asked (or if it never
//! started), waits for its supervisor to be gone, and removes everything
//! of it: record, rootfs disk, writable layer, sockets.

use anyhow::{anyhow, Result};
use hull_container::lifecycle;
use hull_container::Status;

use super::args::{DeleteArgs, RuncArgs};
use super::{find, run_hooks};
use hull_container::hooks::HostHook;
use hull_container::plan::BundleInfo;
use hull_container::Container;

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
    remove(args, &container).await;
    Ok(0)
}

/// Removes the container, then runs its `poststop` hooks, whose failures
/// are warnings only (the spec: the lifecycle goes on).
pub async fn remove(args: &RuncArgs, container: &Container) {
    // Read before the record goes.
    let info = BundleInfo::read(container);
    lifecycle::remove(&args.root, container).await;
    if let Err(e) = run_hooks(container, info.as_ref(), HostHook::Poststop, "stopped", 0) {
        tracing::warn!("{e:#}");
    }
}
