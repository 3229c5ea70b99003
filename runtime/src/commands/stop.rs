use std::time::Duration;

use anyhow::Result;

use super::lifecycle::{ask, each, parse_signal, stop as stop_container};
use crate::cli::{Cli, KillArgs, StopArgs};
use crate::supervisor::control::ControlRequest;

pub async fn stop(cli: &Cli, args: &StopArgs) -> Result<i32> {
    let grace = Duration::from_secs(args.time);
    each(cli, &args.containers, |c| async move {
        stop_container(&c, grace).await?;
        println!("{}", c.config.name);
        Ok(())
    })
    .await
}

pub async fn kill(cli: &Cli, args: &KillArgs) -> Result<i32> {
    let signal = parse_signal(&args.signal)?;
    each(cli, &args.containers, |c| async move {
        ask(&c, &ControlRequest::Signal { signal }).await?;
        println!("{}", c.config.name);
        Ok(())
    })
    .await
}
