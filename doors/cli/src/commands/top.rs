use anyhow::{anyhow, Result};

use super::lifecycle::{ask, containers};
use crate::cli::{Cli, TopArgs};
use hull_container::supervisor::control::{AgentReply, AgentRequest, ControlReply, ControlRequest};

pub async fn top(cli: &Cli, args: &TopArgs) -> Result<i32> {
    let container = containers(cli).find(&args.container)?;
    let request = ControlRequest::Agent {
        request: AgentRequest::ListProcesses {
            container_id: container.config.id.clone(),
        },
    };
    let ControlReply::Agent {
        answer: AgentReply::Processes { processes },
    } = ask(&container, &request).await?
    else {
        return Err(anyhow!("unexpected supervisor reply"));
    };
    println!("{:<8}{:<8}{:<8}CMD", "UID", "PID", "PPID");
    for p in processes {
        println!("{:<8}{:<8}{:<8}{}", p.uid, p.pid, p.ppid, p.command);
    }
    Ok(0)
}
