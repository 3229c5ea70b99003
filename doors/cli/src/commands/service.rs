//! `hull system service`: the Engine API server is its own door
//! (`hull-api`, installed next to `hull`); this execs it with hull's
//! root and run dir, a process boundary as the shim's is.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, Result};

use crate::cli::{Cli, ServiceArgs};

/// The API server's binary name.
const API_BINARY: &str = "hull-api";

pub fn service(cli: &Cli, args: &ServiceArgs) -> Result<i32> {
    let api = api_binary()?;
    let hull = std::env::current_exe().map_err(|e| anyhow!("find the hull binary: {e}"))?;
    let mut command = Command::new(&api);
    command
        .arg("--root")
        .arg(&cli.root)
        .arg("--run-dir")
        .arg(&cli.run_dir)
        .arg("--socket")
        .arg(&args.socket)
        .arg("--hull")
        .arg(hull);
    if let Some(tcp) = &args.tcp {
        command.arg("--tcp").arg(tcp);
    }
    // Only returns on failure.
    let e = command.exec();
    Err(anyhow!("run {}: {e}", api.display()))
}

/// `hull-api` next to this binary, else on the PATH.
fn api_binary() -> Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(API_BINARY)))
        .filter(|p| p.exists());
    Ok(beside.unwrap_or_else(|| PathBuf::from(API_BINARY)))
}
