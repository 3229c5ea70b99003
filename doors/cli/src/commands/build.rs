//! `hull build`: flags to [`hull_build::BuildOptions`], progress to
//! stderr in Docker's plain format, the image id to stdout. A failed
//! build is one line and exit status 1, as `docker build`. And `hull
//! builder prune`, which empties the build cache.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::{BuildArgs, Cli};
use hull_build::vm::{HullExport, VmRunner};
use hull_build::BuildOptions;
use hull_image::ImageStore;

/// Where `hull build` keeps its step cache.
fn cache_dir(cli: &Cli) -> std::path::PathBuf {
    cli.root.join("build-cache")
}

pub fn builder_prune(cli: &Cli) -> Result<i32> {
    let freed = hull_build::cache::Cache::open(&cache_dir(cli))?.prune()?;
    println!(
        "Total reclaimed space: {}",
        super::images::human_size(freed)
    );
    Ok(0)
}

pub async fn build(cli: &Cli, args: &BuildArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<u64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        ),
        _ => None,
    };
    let opts = BuildOptions {
        context: args.context.clone(),
        dockerfile: args.file.clone(),
        tags: args.tags.clone(),
        build_args: args
            .build_args
            .iter()
            .filter_map(|kv| match kv.split_once('=') {
                Some((k, v)) => Some((k.to_string(), v.to_string())),
                // `--build-arg K`: the value of K here, if it is set.
                None => std::env::var(kv).ok().map(|v| (kv.clone(), v)),
            })
            .collect(),
        target: args.target.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        labels: args
            .labels
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("--label {kv:?} is not K=V"))
            })
            .collect::<Result<_>>()?,
        platform: args.platform.clone(),
        cache_dir: cache_dir(cli),
        source_date_epoch,
        plain_http: args.plain_http,
    };
    let mut progress: Box<dyn Write + Send> = if args.quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stderr())
    };
    // RUN steps run in VMs of their own, their changes exported.
    let runner = VmRunner {
        root: cli.root.clone(),
        run_dir: cli.run_dir.clone(),
        network: args.network.clone(),
        hypervisor: std::env::var("HULL_HYPERVISOR").unwrap_or_else(|_| "auto".into()),
        source_date_epoch,
        exporter: HullExport,
    };
    match hull_build::build(&store, &opts, &runner, &mut progress).await {
        Ok(built) => {
            println!("{}", built.image.id);
            Ok(0)
        }
        Err(e) => {
            eprintln!("hull: build: {}", hull_build::error_line(&e));
            Ok(1)
        }
    }
}
