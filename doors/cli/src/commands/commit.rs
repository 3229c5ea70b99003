//! `hull commit`: a container's changes as a new image.

use anyhow::Result;
use hull_container::changes;
use hull_image::commit::{CommitOptions, ConfigChange};

use super::lifecycle::containers;
use crate::cli::{Cli, CommitArgs};

pub async fn commit(cli: &Cli, args: &CommitArgs) -> Result<i32> {
    // Bad flags are refused before anything is exported.
    let changes = args
        .change
        .iter()
        .map(|c| ConfigChange::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    let container = containers(cli).find(&args.container)?;
    let opts = CommitOptions {
        name: args.name.clone(),
        author: args.author.clone(),
        comment: args.message.clone(),
        changes,
        ..Default::default()
    };
    let image = changes::commit(&cli.root, &container, opts).await?;
    println!("{}", image.id);
    Ok(0)
}
