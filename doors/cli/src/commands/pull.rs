use std::io::IsTerminal;

use anyhow::Result;

use crate::cli::{Cli, PullArgs};
use hull_image::progress::PullProgress;
use hull_image::registry::{self, PullOptions};
use hull_image::{ImageStore, Limits};

pub async fn pull(cli: &Cli, args: &PullArgs) -> Result<i32> {
    let mut limits = Limits::from_env()?;
    if let Some(max) = args.max_layer_size {
        limits.max_layer_size = max;
    }
    let store = ImageStore::open(&cli.root)?.with_limits(limits);
    let progress = PullProgress::new(!args.quiet && std::io::stdout().is_terminal());
    let pulled = registry::pull(
        &store,
        &args.image,
        PullOptions {
            plain_http: args.plain_http,
            progress,
        },
    )
    .await?;
    let name = match pulled.image.name.as_str() {
        "" => args.image.as_str(),
        n => n,
    };
    println!("Digest: {}", pulled.manifest_digest);
    if pulled.up_to_date {
        println!("Status: Image is up to date for {name}");
    } else {
        println!("Status: Downloaded newer image for {name}");
    }
    Ok(0)
}
