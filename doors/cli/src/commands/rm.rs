use std::time::Duration;

use anyhow::{anyhow, Result};

use super::lifecycle::{await_supervisor_exit, containers, each, stop};
use crate::cli::{Cli, RmArgs};
use hull_container::record::Status;

pub async fn rm(cli: &Cli, args: &RmArgs) -> Result<i32> {
    let all = containers(cli);
    let all = &all;
    let force = args.force;
    let volumes = args.volumes;
    each(cli, &args.containers, |c| async move {
        let state = c.state();
        if state.has_live_supervisor() && state.status() != Status::Exited {
            if !force {
                return Err(anyhow!(
                    "container {} is running: stop it first or use rm -f",
                    c.config.name
                ));
            }
            stop(&c, Duration::ZERO).await;
        } else {
            // Stopped, its supervisor may still be tidying up.
            await_supervisor_exit(&c, state.supervisor, Duration::from_secs(15)).await;
        }
        all.remove(&c);
        if volumes {
            hull_container::volume::remove_anonymous(&cli.root, all, &c.config);
        }
        println!("{}", c.config.name);
        Ok(())
    })
    .await
}
