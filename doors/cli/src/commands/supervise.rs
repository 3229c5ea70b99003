use anyhow::Result;

use super::lifecycle::containers;
use crate::cli::{Cli, SuperviseArgs};

/// The supervisor process of one container (spawned by `hull` itself).
pub async fn supervise(cli: &Cli, args: &SuperviseArgs) -> Result<i32> {
    let all = containers(cli);
    let container = all.find(&args.id)?;
    let mode = hull_container::supervisor::Mode {
        wait_attach: args.wait_attach,
        runc: args.runc,
    };
    Ok(hull_container::supervisor::supervise(&cli.root, &all, container, mode).await)
}
