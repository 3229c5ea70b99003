//! `exec`: another process in the running container, as runc's `exec`
//! (nsenter) starts one. It joins the namespaces of the container's main
//! process and its cgroup, gets the container's seccomp filter, and its
//! own user, environment, working directory, rlimits, capabilities,
//! no_new_privileges, umask, oom_score_adj, I/O priority, scheduler and
//! additional groups; its stdio and exit report work as the main
//! process's do. `check`, `open` and `start` are the steps; `agent.rs`
//! claims the process id and rechecks the container between them.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use hull_protocol::{AgentError, ExecProcess, MAIN_PROCESS};

use super::{
    check_process, invalid, io, resolve_user, setup_error, ContainerInfo, ProcessParams, Started,
};
use crate::process::{spawn, Credentials, Launch, Place, Reaper};
use crate::syscall::Syscall;
use crate::wire::Streams;

/// The namespaces an exec'd process joins, in the order it joins them
/// (the mount namespace last: it moves the root under the others' paths).
const JOINED: &[(libc::c_int, &str)] = &[
    (libc::CLONE_NEWUSER, "user"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
    (libc::CLONE_NEWNS, "mnt"),
];

/// Process ids name a process in requests and events.
fn check_process_id(id: &str) -> Result<(), AgentError> {
    if id.is_empty() || id.len() > 256 {
        return Err(invalid(format!("invalid process id {id:?}")));
    }
    if id == MAIN_PROCESS {
        return Err(invalid(format!(
            "process id {MAIN_PROCESS:?} is the container's main process"
        )));
    }
    Ok(())
}

/// Checks an exec request; returns its process's settings. `streams` are
/// the connection's (the new ones must be unused).
pub fn check(request: &ExecProcess, streams: &Streams) -> Result<ProcessParams, AgentError> {
    check_process_id(&request.process_id)?;
    io::check_stream_ids(streams, &request.stdio)?;
    check_process(&request.process)
}

/// What an exec'd process joins, opened while the container ran.
pub struct Opened {
    credentials: Credentials,
    namespaces: Vec<OwnedFd>,
}

/// Resolves the process's user in the container and opens the container's
/// namespaces. The caller must check that the container still runs once
/// this returns: its main process may have ended meanwhile, and its pid
/// been reused; only namespaces opened while it still ran are its own.
pub fn open(
    container: &ContainerInfo,
    request: &ExecProcess,
    params: &mut ProcessParams,
) -> Result<Opened, AgentError> {
    let credentials = resolve_user(
        &container.rootfs,
        &request.user,
        &request.process,
        &mut params.env,
    )?;
    let namespaces = open_namespaces(container)?;
    Ok(Opened {
        credentials,
        namespaces,
    })
}

/// Starts the process in the namespaces `opened`; returns once it runs.
pub fn start(
    sys: &dyn Syscall,
    container: Arc<ContainerInfo>,
    request: &ExecProcess,
    mut params: ProcessParams,
    opened: Opened,
    reaper: &Reaper,
) -> Result<Started, AgentError> {
    let (child_stdio, ends) = io::prepare(&request.stdio, params.terminal)?;
    let launch = Launch {
        args: std::mem::take(&mut params.args),
        env: std::mem::take(&mut params.env),
        cwd: params.cwd.clone(),
        credentials: opened.credentials,
        stdio: child_stdio,
        rlimits: params.rlimits.clone(),
        capabilities: params.capabilities,
        no_new_privileges: params.no_new_privileges,
        seccomp: container.seccomp.clone(),
        attrs: params.attrs,
        cgroup_fd: Some(container.cgroup.fd()),
        place: Place::Join(opened.namespaces),
    };
    debug!("exec {:?} in {}", launch.args, container.id);
    let pid = spawn(sys, launch, reaper)?;
    debug!("exec {} started as pid {pid}", request.process_id);
    Ok(Started {
        container,
        pid,
        stdio: request.stdio,
        ends,
    })
}

/// Opens the namespaces the container was created with, from its main
/// process (its user namespace first: the others are owned by it).
fn open_namespaces(container: &ContainerInfo) -> Result<Vec<OwnedFd>, AgentError> {
    JOINED
        .iter()
        .filter(|(flag, _)| container.namespaces & *flag as u64 != 0)
        .map(|(_, name)| {
            let path = format!("/proc/{}/ns/{name}", container.init_pid);
            File::open(&path).map(OwnedFd::from).map_err(|e| {
                setup_error(&std::io::Error::new(e.kind(), format!("open {path}: {e}")))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ids_are_checked() {
        assert!(check_process_id("exec-1").is_ok());
        for bad in ["", MAIN_PROCESS, &"x".repeat(257)] {
            let err = check_process_id(bad).unwrap_err();
            assert_eq!(err.kind, hull_protocol::ErrorKind::InvalidRequest, "{bad}");
        }
    }
}
