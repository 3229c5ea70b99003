use anyhow::Result;

use crate::cli::{Cli, LoadArgs};
use hull_image::ImageStore;

pub fn load(cli: &Cli, args: &LoadArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    for image in store.load_archive(&args.input)? {
        println!("Loaded image: {}", image.name);
    }
    Ok(0)
}
