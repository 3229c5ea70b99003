//! `update [flags] ID`: new limits for a running container, written into
//! its cgroup in the guest by the agent. The flags (or `-r FILE`) are
//! parsed by the library (`hull_container::oci::resources`); this is one
//! request to the supervisor, relayed to the agent as `pause` is.

use std::fs::File;

use anyhow::{anyhow, Context, Result};

use super::args::{RuncArgs, UpdateArgs};
use super::{find, RUNC_NAME};
use hull_container::oci::resources::{self, Update, UpdateFlags};
use hull_container::record::Status;
use hull_container::supervisor::control::{self, AgentRequest, ControlReply, ControlRequest};

pub async fn update(args: &RuncArgs, update: &UpdateArgs) -> Result<i32> {
    let Update { resources, ignored } = parse(update)?;
    let container = find(args, &update.id)?;
    if container.live_supervisor().is_none()
        || container.recorded_state().status() != Status::Running
    {
        return Err(anyhow!("container {} is not running", update.id));
    }
    for warning in ignored {
        eprintln!("{RUNC_NAME}: warning: {warning}");
    }
    let request = ControlRequest::Agent {
        request: AgentRequest::UpdateResources {
            container_id: container.config.id.clone(),
            resources: Box::new(resources),
        },
    };
    match control::call(&container.socket_path(), &request).await {
        Ok(ControlReply::Error { message, .. }) => Err(anyhow!("{message}")),
        Ok(_) => Ok(0),
        Err(_) if container.live_supervisor().is_none() => {
            Err(anyhow!("container {} is not running", update.id))
        }
        Err(e) => Err(anyhow!(
            "container {}: its supervisor did not answer: {e}",
            update.id
        )),
    }
}

/// The resources `-r` names, or else the flags'.
fn parse(update: &UpdateArgs) -> Result<Update> {
    match update.resources.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            Ok(resources::from_reader(std::io::stdin().lock())?)
        }
        Some(path) => {
            let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
            resources::from_reader(file).with_context(|| path.display().to_string())
        }
        None => Ok(resources::from_flags(&UpdateFlags {
            memory: update.memory.as_deref(),
            memory_reservation: update.memory_reservation.as_deref(),
            memory_swap: update.memory_swap.as_deref(),
            kernel_memory: update.kernel_memory.as_deref(),
            kernel_memory_tcp: update.kernel_memory_tcp.as_deref(),
            cpu_shares: update.cpu_share.as_deref(),
            cpu_quota: update.cpu_quota.as_deref(),
            cpu_period: update.cpu_period.as_deref(),
            cpu_rt_period: update.cpu_rt_period.as_deref(),
            cpu_rt_runtime: update.cpu_rt_runtime.as_deref(),
            cpuset_cpus: update.cpuset_cpus.as_deref(),
            cpuset_mems: update.cpuset_mems.as_deref(),
            pids_limit: update.pids_limit,
            blkio_weight: update.blkio_weight,
            l3_cache_schema: update.l3_cache_schema.as_deref(),
            mem_bw_schema: update.mem_bw_schema.as_deref(),
        })?),
    }
}
