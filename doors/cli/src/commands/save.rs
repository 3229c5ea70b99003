use anyhow::Result;

use crate::cli::{Cli, SaveArgs};
use hull_image::ImageStore;

pub fn save(cli: &Cli, args: &SaveArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    store.save(&args.images, &args.output)?;
    Ok(0)
}
