use anyhow::{anyhow, Context, Result};

use super::lifecycle::containers;
use crate::cli::{Cli, LogsArgs};
use hull_container::logs::{self, ReadOptions};

pub fn logs(cli: &Cli, args: &LogsArgs) -> Result<i32> {
    let container = containers(cli).find(&args.container)?;
    let tail = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow!("invalid --tail {n:?} (a number or all)"))?,
        ),
    };
    let opts = ReadOptions {
        tail,
        timestamps: args.timestamps,
        follow: args.follow,
        since: None,
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut still_running = || container.state().has_live_supervisor();
    match logs::read(
        &container.log_path(),
        &opts,
        &mut out,
        &mut err,
        &mut still_running,
    ) {
        Ok(()) => Ok(0),
        // A container that never started has no log yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e).context("read the container log"),
    }
}
