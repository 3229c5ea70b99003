//! A checkpoint of the running container: the control server takes the
//! order, the boot (which holds the VM) carries it out between two agent
//! events, and the answer goes back to the caller. See
//! [`crate::checkpoint`] for what a checkpoint holds.

use std::path::{Path, PathBuf};

use hull_sandbox::{Sandbox, CHECKPOINT_ROOTFS, CHECKPOINT_SCRATCH};
use tokio::sync::oneshot;

use super::agent::Agent;
use super::control::ControlReply;
use super::one_line;
use super::shared::{lock, CheckpointOrder as Order, Shared};
use crate::checkpoint::{copy_sparse, CheckpointInfo};

/// The control server's side: hands the order to the boot and waits for
/// its answer.
pub(super) async fn order<A: Agent>(
    shared: &Shared<A>,
    image_path: PathBuf,
    leave_running: bool,
) -> ControlReply {
    let refuse = |message: &str| ControlReply::Error {
        message: message.to_string(),
        code: 1,
    };
    if shared.agent().is_none() {
        return refuse("the container is not running");
    }
    if !image_path.is_absolute() {
        return refuse("the checkpoint's image path must be absolute");
    }
    let (done, answer) = oneshot::channel();
    let order = Order {
        image_path,
        leave_running,
        done,
    };
    if shared.checkpoints.tx.try_send(order).is_err() {
        return refuse("a checkpoint of the container is already under way");
    }
    match answer.await {
        Ok(Ok(())) => ControlReply::Ok,
        Ok(Err(message)) => ControlReply::Error { message, code: 1 },
        Err(_) => refuse("the container stopped before its checkpoint was taken"),
    }
}

/// The boot's side: saves the VM as `order` asks and answers. Returns
/// whether the container is now stopped (saved, not left running): the
/// VM is stopped and its agent parked, and the boot kills it.
pub(super) async fn carry_out(shared: &Shared, sandbox: &mut Sandbox, order: Order) -> bool {
    let saved = save(shared, sandbox, &order.image_path, order.leave_running).await;
    let stopped = saved.is_ok() && !order.leave_running;
    if let Err(e) = &saved {
        tracing::warn!("checkpoint into {}: {e}", order.image_path.display());
    }
    let _ = order.done.send(saved);
    stopped
}

async fn save(
    shared: &Shared,
    sandbox: &mut Sandbox,
    dir: &Path,
    leave_running: bool,
) -> Result<(), String> {
    let config = &shared.container.config;
    if config.network.is_some() {
        return Err(
            "checkpoint: the container is on a network, whose address a restored VM cannot take back yet"
                .into(),
        );
    }
    if !lock(&shared.exec_exits).is_empty() {
        return Err("checkpoint: exec'd processes run in the container; a checkpoint takes only its main process".into());
    }
    let pid = shared.container.state().pid.unwrap_or(0);
    let agent_id = config.agent_id().to_string();
    let method = sandbox
        .save_checkpoint(&agent_id, dir, config.memory_mib)
        .await
        .map_err(|e| one_line(&e))?;
    // The VM is stopped: its disks hold still while they are copied.
    let kept = (|| {
        copy_sparse(&config.rootfs_disk, &dir.join(CHECKPOINT_ROOTFS))?;
        copy_sparse(&config.scratch_disk, &dir.join(CHECKPOINT_SCRATCH))?;
        CheckpointInfo::new(config, method, pid).write(dir)
    })();
    if let Err(e) = kept {
        let _ = sandbox.carry_on(&agent_id).await;
        return Err(format!(
            "checkpoint: keep the disks in {}: {e}",
            dir.display()
        ));
    }
    if leave_running {
        sandbox
            .carry_on(&agent_id)
            .await
            .map_err(|e| one_line(&e))?;
    }
    Ok(())
}
