//! `checkpoint` and `restore`. CRIU cannot reach into a VM, so the whole
//! VM is the checkpoint: its state, memory and disks, saved while it is
//! stopped (`hull_container::checkpoint`). `restore` is `run` whose VM
//! comes back from the checkpoint instead of booting, its processes
//! carrying on where they were.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use super::args::{CheckpointArgs, CreateArgs, RestoreArgs, RunArgs, RuncArgs};
use super::{find, run};

pub async fn checkpoint(args: &RuncArgs, checkpoint: &CheckpointArgs) -> Result<i32> {
    let container = find(args, &checkpoint.id)?;
    if checkpoint.pre_dump
        || checkpoint.parent_path.is_some()
        || checkpoint.page_server.is_some()
        || checkpoint.criu.lazy_pages
    {
        return Err(anyhow!(
            "--pre-dump, --parent-path, --page-server and --lazy-pages are CRIU's incremental \
             and remote dumps; a VM is saved whole"
        ));
    }
    let image_path = image_path(checkpoint.image_path.as_deref())?;
    hull_container::checkpoint::checkpoint(&container, &image_path, checkpoint.leave_running)
        .await?;
    Ok(0)
}

pub async fn restore(args: &RuncArgs, restore: &RestoreArgs) -> Result<i32> {
    let image_path = image_path(restore.image_path.as_deref())?;
    let run = RunArgs {
        create: CreateArgs {
            bundle: restore.bundle.clone(),
            pid_file: restore.pid_file.clone(),
            console_socket: restore.console_socket.clone(),
            no_pivot: restore.no_pivot,
            no_new_keyring: false,
            preserve_fds: None,
            pidfd_socket: None,
            id: restore.id.clone(),
        },
        detach: restore.detach,
        keep: false,
    };
    run::run_from(args, &run, Some(&image_path)).await
}

/// `--image-path`, absolute; runc's default is `checkpoint` in the
/// working directory.
fn image_path(given: Option<&Path>) -> Result<PathBuf> {
    let given = given.unwrap_or(Path::new("checkpoint"));
    std::path::absolute(given).with_context(|| format!("find {}", given.display()))
}
