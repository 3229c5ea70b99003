use anyhow::Result;

use super::images_in_use;
use crate::cli::{Cli, ImagePruneArgs};
use hull_image::ImageStore;

pub fn image_prune(cli: &Cli, args: &ImagePruneArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    let report = store.prune(args.all, &images_in_use(cli))?;
    for id in &report.images {
        println!("Deleted: {id}");
    }
    println!(
        "Total reclaimed space: {}",
        super::images::human_size(report.reclaimed)
    );
    Ok(0)
}
