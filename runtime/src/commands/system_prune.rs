use anyhow::Result;

use super::lifecycle::containers;
use crate::cli::{Cli, ImagePruneArgs, SystemPruneArgs};

/// Removes stopped containers, then prunes images and leftovers.
pub fn system_prune(cli: &Cli, args: &SystemPruneArgs) -> Result<i32> {
    let all = containers(cli);
    for c in all.list() {
        if !c.settle().has_live_supervisor() {
            all.remove(&c);
            println!("Deleted container: {}", c.config.id);
        }
    }
    all.sweep(&cli.root);
    super::image_prune(cli, &ImagePruneArgs { all: args.all })
}
