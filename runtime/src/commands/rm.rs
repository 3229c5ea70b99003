use std::time::Duration;

use anyhow::{anyhow, Result};

use super::lifecycle::{containers, each, stop};
use crate::cli::{Cli, RmArgs};

pub async fn rm(cli: &Cli, args: &RmArgs) -> Result<i32> {
    let all = containers(cli);
    let all = &all;
    let force = args.force;
    each(cli, &args.containers, |c| async move {
        if c.state().has_live_supervisor() {
            if !force {
                return Err(anyhow!(
                    "container {} is running: stop it first or use rm -f",
                    c.config.name
                ));
            }
            stop(&c, Duration::ZERO).await?;
        }
        all.remove(&c);
        println!("{}", c.config.name);
        Ok(())
    })
    .await
}
