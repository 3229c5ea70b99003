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
    // Reproducible commits, as reproducible builds ask for them.
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<i64>()
                .map_err(|_| anyhow::anyhow!("invalid SOURCE_DATE_EPOCH {v:?}: want seconds"))?,
        ),
        _ => None,
    };
    let container = containers(cli).find(&args.container)?;
    let opts = CommitOptions {
        name: args.name.clone(),
        author: args.author.clone(),
        comment: args.message.clone(),
        changes,
        ..Default::default()
    };
    let image = changes::commit(&cli.root, &container, opts, source_date_epoch).await?;
    println!("{}", image.id);
    Ok(0)
}
