use anyhow::Result;

use crate::cli::{Cli, PushArgs};
use hull_image::registry::{self, BlobOutcome, PushEvent, PushOptions};
use hull_image::ImageStore;

/// `hull push`: docker's lines, one per blob as it is done, then the
/// tag's digest and size.
pub async fn push(cli: &Cli, args: &PushArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    let quiet = args.quiet;
    let mut progress = |event: PushEvent<'_>| match event {
        PushEvent::Repository(repo) => println!("The push refers to repository [{repo}]"),
        PushEvent::Blob { .. } if quiet => {}
        PushEvent::Blob { digest, outcome } => {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            let short = &hex[..hex.len().min(12)];
            match outcome {
                BlobOutcome::Pushed => println!("{short}: Pushed"),
                BlobOutcome::Exists => println!("{short}: Layer already exists"),
                BlobOutcome::Mounted { from } => println!("{short}: Mounted from {from}"),
            }
        }
    };
    let pushed = registry::push(
        &store,
        &args.image,
        args.remote.as_deref(),
        PushOptions {
            plain_http: args.plain_http,
            chunk_size: PushOptions::chunk_size_from_env(),
            progress: &mut progress,
        },
    )
    .await?;
    println!(
        "{}: digest: {} size: {}",
        pushed.tag, pushed.digest, pushed.size
    );
    Ok(0)
}
