use anyhow::{anyhow, Result};

use super::lifecycle::{ask, containers};
use crate::cli::{Cli, TopArgs};
use hull_container::supervisor::control::{ControlReply, ControlRequest};

pub async fn top(cli: &Cli, args: &TopArgs) -> Result<i32> {
    let container = containers(cli).find(&args.container)?;
    let ControlReply::Processes { processes } = ask(&container, &ControlRequest::Top).await? else {
        return Err(anyhow!("unexpected supervisor reply"));
    };
    println!("{:<8}{:<8}{:<8}CMD", "UID", "PID", "PPID");
    for p in processes {
        println!("{:<8}{:<8}{:<8}{}", p.uid, p.pid, p.ppid, p.command);
    }
    Ok(0)
}
