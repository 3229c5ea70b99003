use anyhow::Result;

use super::images_in_use;
use crate::cli::{Cli, RmiArgs};
use hull_image::ImageStore;

pub fn rmi(cli: &Cli, args: &RmiArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    let in_use = images_in_use(cli);
    for reference in &args.images {
        store.remove_unless_used(reference, &in_use, args.force)?;
        println!("Untagged: {reference}");
    }
    Ok(0)
}
