use anyhow::Result;

use super::lifecycle::each;
use crate::cli::{Cli, ContainersArgs};
use hull_container::supervisor::control::{self, ControlReply, ControlRequest};

/// Prints each container's exit code once it has stopped.
pub async fn wait(cli: &Cli, args: &ContainersArgs) -> Result<i32> {
    each(cli, &args.containers, |c| async move {
        if c.state().has_live_supervisor() {
            if let Ok(ControlReply::Exited { exit_code, .. }) =
                control::call(&c.socket_path(), &ControlRequest::Wait).await
            {
                println!("{exit_code}");
                return Ok(());
            }
        }
        // Not running, or the supervisor went away meanwhile.
        let state = c.settle();
        println!("{}", state.exit_code.unwrap_or(0));
        Ok(())
    })
    .await
}
