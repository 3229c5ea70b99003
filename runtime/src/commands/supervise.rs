use anyhow::Result;

use super::lifecycle::containers;
use crate::cli::{Cli, SuperviseArgs};

/// The supervisor process of one container (spawned by `hull` itself).
pub async fn supervise(cli: &Cli, args: &SuperviseArgs) -> Result<i32> {
    let all = containers(cli);
    let container = all.find(&args.id)?;
    Ok(crate::supervisor::supervise(&all, container, args.wait_attach).await)
}
