use anyhow::Result;

use crate::cli::{Cli, RmiArgs};
use crate::image::ImageStore;

pub fn rmi(cli: &Cli, args: &RmiArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    for reference in &args.images {
        store.remove(reference)?;
        println!("Untagged: {reference}");
    }
    Ok(0)
}
