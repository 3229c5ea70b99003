//! `hull-api`: the Docker Engine API on hull's library, so the `docker`
//! CLI, docker-compose and the Docker SDKs run containers in microVMs.
//! A front door like the CLI: it turns HTTP requests into library calls
//! and the answers into Docker's JSON. Containers it starts are ordinary
//! hull containers with their own supervisors (`hull ps` shows them, and
//! restarting this server loses none). `hull system service` runs it.

#![recursion_limit = "256"]

mod containers;
mod error;
mod exec;
mod hijack;
mod http;
mod images;
mod listen;
mod networks;
mod response;
mod router;
mod state;
mod system;
mod volumes;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Serve the Docker Engine API on hull.
#[derive(Debug, Parser)]
#[command(name = "hull-api", version, about)]
struct Args {
    /// Where images and disks are kept.
    #[arg(long, env = "HULL_ROOT", default_value = "/var/lib/hull")]
    root: PathBuf,
    /// Where running sandboxes keep their sockets and logs.
    #[arg(long, env = "HULL_RUN_DIR", default_value = "/run/hull")]
    run_dir: PathBuf,
    /// The unix socket to listen on (mode 0660); ignored when systemd
    /// passes sockets (LISTEN_FDS).
    #[arg(long, default_value = "/run/hull/docker.sock")]
    socket: PathBuf,
    /// Also listen on this TCP address (plain HTTP: keep it on loopback).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<std::net::SocketAddr>,
    /// The `hull` binary that runs supervisors (default: the one next to
    /// this binary).
    #[arg(long, env = "HULL_API_HULL_BIN")]
    hull: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HULL_LOG")
                .unwrap_or_else(|_| "hull_api=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let hull = args.hull.clone().unwrap_or_else(hull_binary);
    let app = state::App::new(args.root, args.run_dir, hull);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listeners = listen::open(&args.socket, args.tcp)?;
        listen::serve(app, listeners).await
    })
}

/// `hull` installed next to this binary, else `hull` on the PATH.
fn hull_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("hull")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("hull"))
}
