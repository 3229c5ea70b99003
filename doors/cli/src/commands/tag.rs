use anyhow::Result;

use crate::cli::{Cli, TagArgs};
use hull_image::ImageStore;

pub fn tag(cli: &Cli, args: &TagArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    store.tag(&args.source, &args.target)?;
    Ok(0)
}
