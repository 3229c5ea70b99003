use anyhow::{anyhow, Result};

use super::attach;
use super::lifecycle::{containers, each};
use crate::cli::{Cli, StartArgs};
use hull_container::supervisor::control::{self, ControlReply, ControlRequest};
use hull_container::supervisor::launch;

/// Boots a fresh VM for each stopped container, on its own writable layer.
pub async fn start(cli: &Cli, args: &StartArgs) -> Result<i32> {
    if args.attach {
        if args.containers.len() != 1 {
            return Err(anyhow!("start -a takes one container"));
        }
        let container = containers(cli).find(&args.containers[0])?;
        if container.state().has_live_supervisor() {
            return Err(anyhow!(
                "container {} is already running",
                container.config.name
            ));
        }
        let mut supervisor = launch::spawn(&cli.root, &cli.run_dir, &container, true)?;
        let ended = attach::attach_and_wait(
            &container,
            container.config.open_stdin,
            container.config.tty,
        )
        .await;
        let _ = tokio::task::spawn_blocking(move || supervisor.wait()).await;
        return Ok(ended?.report());
    }
    each(cli, &args.containers, |c| async move {
        if c.state().has_live_supervisor() {
            // Docker: starting a running container is a no-op.
            println!("{}", c.config.name);
            return Ok(());
        }
        let mut supervisor = launch::spawn(&cli.root, &cli.run_dir, &c, false)?;
        match control::call(&c.socket_path(), &ControlRequest::Started).await {
            Ok(ControlReply::Started { .. }) => {
                println!("{}", c.config.name);
                Ok(())
            }
            Ok(ControlReply::Error { message, .. }) => {
                let _ = supervisor.wait();
                Err(anyhow!("container {}: {message}", c.config.name))
            }
            Ok(other) => Err(anyhow!("unexpected supervisor reply {other:?}")),
            Err(e) => Err(anyhow!("container {}: {e}", c.config.name)),
        }
    })
    .await
}
