use std::time::Duration;

use anyhow::Result;

use super::lifecycle::{await_supervisor_exit, containers};
use crate::cli::{Cli, ImagePruneArgs, SystemPruneArgs};
use hull_container::record::Status;

/// Removes stopped containers, then prunes images and leftovers.
pub async fn system_prune(cli: &Cli, args: &SystemPruneArgs) -> Result<i32> {
    let all = containers(cli);
    for c in all.list() {
        let state = c.settle();
        let stopped = state.status() == Status::Exited
            || (state.status() == Status::Created && !state.has_live_supervisor());
        if stopped {
            await_supervisor_exit(&c, state.supervisor, Duration::from_secs(15)).await;
            all.remove(&c);
            println!("Deleted container: {}", c.config.id);
        }
    }
    all.sweep(&cli.root, true);
    super::image_prune(cli, &ImagePruneArgs { all: args.all })
}
