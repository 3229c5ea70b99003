use anyhow::Result;

use crate::cli::{Cli, ImageInspectArgs};
use hull_image::ImageStore;

pub fn image_inspect(cli: &Cli, args: &ImageInspectArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    let all = args
        .images
        .iter()
        .map(|r| store.inspect(r))
        .collect::<Result<Vec<_>, _>>()?;
    println!("{}", serde_json::to_string_pretty(&all)?);
    Ok(0)
}
