use std::time::Duration;

use anyhow::{anyhow, Result};

use super::lifecycle::{ask, each, parse_signal, stop as stop_container};
use crate::cli::{Cli, ContainersArgs, KillArgs, StopArgs};
use hull_container::supervisor::control::{AgentRequest, ControlRequest};

pub async fn stop(cli: &Cli, args: &StopArgs) -> Result<i32> {
    let grace = Duration::from_secs(args.time);
    each(cli, &args.containers, |c| async move {
        stop_container(&c, grace).await;
        println!("{}", c.config.name);
        Ok(())
    })
    .await
}

/// `pause` (`frozen`) and `unpause`: the cgroup freezer in the guest.
pub async fn pause(cli: &Cli, args: &ContainersArgs, frozen: bool) -> Result<i32> {
    each(cli, &args.containers, |c| async move {
        let paused = c.state().paused;
        if frozen && paused {
            return Err(anyhow!("container {} is already paused", c.config.name));
        }
        if !frozen && !paused && c.state().is_running() {
            return Err(anyhow!("container {} is not paused", c.config.name));
        }
        let request = AgentRequest::Freeze {
            container_id: c.config.id.clone(),
            frozen,
        };
        ask(&c, &ControlRequest::Agent { request }).await?;
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
