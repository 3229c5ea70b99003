use anyhow::Result;

use crate::cli::Cli;
use hull_image::ImageStore;

pub fn images(cli: &Cli) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    println!("{:<40} {:<14} {:>10}", "REPOSITORY:TAG", "IMAGE ID", "SIZE");
    for image in store.list()? {
        let id = image.id.trim_start_matches("sha256:");
        println!(
            "{:<40} {:<14} {:>10}",
            if image.name.is_empty() {
                "<none>"
            } else {
                &image.name
            },
            &id[..id.len().min(12)],
            human_size(image.size)
        );
    }
    Ok(0)
}

pub(super) fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1}kB", b as f64 / 1024.0),
    }
}
