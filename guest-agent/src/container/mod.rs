//! One container per VM: its root, its main process, its stdio, its end.
//! `run` validates the request and turns the OCI spec into a `Launch`; the
//! domain modules do the work.

pub mod cgroup;
pub mod mounts;
pub mod rootfs;
pub mod user;

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use hull_protocol::{
    AgentError, ControlMessage, ErrorKind, Event, ExitStatus, Reply, RunContainer, MAIN_PROCESS,
};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};

use crate::agent::Agent;
use crate::process::{spawn, ChildStdio, Launch, SpawnError};
use crate::security::{capabilities::CapSets, seccomp};
use crate::stdio;
use crate::sys::{self, WaitStatus};
use cgroup::Cgroup;

impl From<SpawnError> for AgentError {
    fn from(err: SpawnError) -> Self {
        let kind = match err {
            SpawnError::NotFound(_) => ErrorKind::CommandNotFound,
            SpawnError::NotExecutable(_) => ErrorKind::CommandNotExecutable,
            SpawnError::EmptyCommand | SpawnError::NulByte => ErrorKind::InvalidRequest,
            SpawnError::Chdir { .. } => ErrorKind::InvalidProcess,
            SpawnError::Exec { .. } | SpawnError::Setup { .. } => ErrorKind::Setup,
        };
        AgentError::new(kind, error_chain(&err))
    }
}

/// "outer: inner: innermost", as one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::InvalidRequest, message)
}

fn setup_error(err: &dyn std::error::Error) -> AgentError {
    AgentError::new(ErrorKind::Setup, error_chain(err))
}

/// The agent's ends of the main process's standard streams.
#[derive(Default)]
struct ParentEnds {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    console_socket: Option<OwnedFd>,
}

/// Container ids name directories and cgroups: keep them plain.
fn check_container_id(id: &str) -> Result<(), AgentError> {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if id.is_empty() || id.len() > 128 || !plain || id.starts_with('.') {
        return Err(invalid(format!("invalid container id {id:?}")));
    }
    Ok(())
}

/// CLONE_NEW* flags for the spec's namespaces. Joining existing namespaces
/// (a `path`) and user namespaces are not supported yet.
fn namespace_flags(spec: &Spec) -> Result<u64, AgentError> {
    let mut flags = 0u64;
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        if ns.path().is_some() {
            return Err(invalid("joining an existing namespace is not supported"));
        }
        flags |= match ns.typ() {
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            other => return Err(invalid(format!("{other:?} namespaces are not supported"))),
        } as u64;
    }
    if flags & libc::CLONE_NEWNS as u64 == 0 {
        return Err(invalid("a container needs a mount namespace"));
    }
    Ok(flags)
}

fn rlimit_resource(typ: PosixRlimitType) -> u32 {
    use PosixRlimitType as R;
    match typ {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Creates the container and starts its main process.
pub fn run(agent: &Arc<Agent>, request: RunContainer) -> Result<Reply, AgentError> {
    let spec = &request.spec;
    let stdio = request.stdio;
    check_container_id(&request.container_id)?;
    let mut ids = vec![stdio.stdout, stdio.stderr];
    ids.extend(stdio.stdin);
    if ids
        .iter()
        .any(|&id| id == hull_protocol::CONTROL_STREAM || agent.streams.contains(id))
    {
        return Err(invalid("stream ids must be non-zero and unused"));
    }
    if ids.len() != ids.iter().collect::<std::collections::HashSet<_>>().len() {
        return Err(invalid("stream ids must be distinct"));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("the spec has no process"))?;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(invalid("no command given"));
    }
    let namespaces = namespace_flags(spec)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let capabilities = process
        .capabilities()
        .as_ref()
        .map(CapSets::from_oci)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    let seccomp = match linux.seccomp() {
        Some(section) => Some(
            seccomp::policy_from_oci(section)
                .and_then(|policy| seccomp::compile(&policy))
                .map_err(|e| invalid(e.to_string()))?,
        ),
        None => None,
    };
    agent.claim_container()?;
    debug!("container {}: preparing the root", request.container_id);

    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    let rootfs = rootfs::prepare(
        &request.rootfs.disk_serial,
        &request.rootfs.fs_type,
        request.rootfs.scratch_serial.as_deref(),
        hostname.as_deref().unwrap_or("localhost"),
    )
    .map_err(|e| setup_error(&e))?;
    debug!("root ready at {}", rootfs.display());
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let user_spec = if request.user.is_empty() {
        let user = process.user();
        format!("{}:{}", user.uid(), user.gid())
    } else {
        request.user.clone()
    };
    let mut credentials = user::resolve(&user_spec, &passwd, &group)
        .map_err(|e| AgentError::new(ErrorKind::InvalidProcess, e.to_string()))?;
    for gid in process.user().additional_gids().iter().flatten() {
        if !credentials.groups.contains(gid) {
            credentials.groups.push(*gid);
        }
    }
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        env.push(format!("HOME={}", credentials.home));
    }
    let cwd = process.cwd().to_string_lossy().into_owned();
    rootfs::ensure_workdir(&rootfs, &cwd);
    let mounts = mounts::plan(&rootfs, spec.mounts().as_deref().unwrap_or_default())
        .map_err(|e| setup_error(&e))?;
    let cgroup = Cgroup::create(&request.container_id, linux.resources().as_ref())
        .map_err(|e| setup_error(&e))?;

    let pipe = || sys::pipe().map_err(|e| setup_error(&e));
    let terminal = process.terminal().unwrap_or(false);
    let mut parent_ends = ParentEnds::default();
    let child_stdio = if terminal {
        let (rows, cols) = process
            .console_size()
            .as_ref()
            .map(|b| {
                (
                    b.height().min(u16::MAX as u64) as u16,
                    b.width().min(u16::MAX as u64) as u16,
                )
            })
            .unwrap_or((24, 80));
        let (agent_end, child_end) = sys::socketpair().map_err(|e| setup_error(&e))?;
        parent_ends.console_socket = Some(agent_end);
        ChildStdio::Terminal {
            socket: child_end,
            rows,
            cols,
        }
    } else {
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let stdin_child: OwnedFd = match stdio.stdin {
            Some(_) => {
                let (read, write) = pipe()?;
                parent_ends.stdin = Some(write);
                read
            }
            None => File::open("/dev/null").map_err(|e| setup_error(&e))?.into(),
        };
        parent_ends.stdout = Some(stdout_read);
        parent_ends.stderr = Some(stderr_read);
        ChildStdio::Pipes {
            stdin: stdin_child,
            stdout: stdout_write,
            stderr: stderr_write,
        }
    };

    let launch = Launch {
        rootfs,
        hostname: hostname.filter(|_| namespaces & libc::CLONE_NEWUTS as u64 != 0),
        args,
        env,
        cwd,
        credentials,
        stdio: child_stdio,
        namespaces,
        mounts,
        masked_paths: linux.masked_paths().clone().unwrap_or_default(),
        readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        rlimits: process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| (rlimit_resource(r.typ()), r.soft(), r.hard()))
            .collect(),
        capabilities,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        seccomp,
        cgroup_fd: Some(cgroup.fd()),
    };
    debug!("spawning {:?}", launch.args);
    let pid = match spawn(launch, &agent.reaper) {
        Ok(pid) => pid,
        Err(err) => {
            cgroup.remove();
            return Err(err.into());
        }
    };
    debug!("started pid {pid}");
    agent.set_main_process(MAIN_PROCESS, pid);

    let wire = agent.wire.clone();
    let mut pumps = Vec::new();
    let stdout_credit = agent.streams.add_output(stdio.stdout);
    if let Some(socket) = parent_ends.console_socket {
        // The child sent the pty master before it exec'd.
        let master = sys::recv_fd(&socket).map_err(|e| setup_error(&e))?;
        let reader = master.try_clone().map_err(|e| setup_error(&e))?;
        pumps.push(stdio::pump_output(
            reader.into(),
            stdio.stdout,
            stdout_credit,
            wire.clone(),
        ));
        // A terminal merges stderr into its output.
        let _ = wire.send(&hull_protocol::Frame::eof(stdio.stderr));
        if let Some(stream) = stdio.stdin {
            let writer = master.try_clone().map_err(|e| setup_error(&e))?;
            agent.streams.add_input(
                stream,
                stdio::pump_input(writer.into(), stream, wire.clone()),
            );
        }
        agent.set_terminal(master);
    } else {
        if let Some(out) = parent_ends.stdout {
            pumps.push(stdio::pump_output(
                out.into(),
                stdio.stdout,
                stdout_credit,
                wire.clone(),
            ));
        }
        if let Some(err) = parent_ends.stderr {
            let credit = agent.streams.add_output(stdio.stderr);
            pumps.push(stdio::pump_output(
                err.into(),
                stdio.stderr,
                credit,
                wire.clone(),
            ));
        }
        if let (Some(stream), Some(pipe)) = (stdio.stdin, parent_ends.stdin) {
            agent
                .streams
                .add_input(stream, stdio::pump_input(pipe.into(), stream, wire.clone()));
        }
    }

    let agent = agent.clone();
    let shutdown_on_exit = request.shutdown_on_exit;
    std::thread::spawn(move || {
        let status = match agent.reaper.wait_for(pid) {
            WaitStatus::Exited(code) => ExitStatus::Code(code),
            WaitStatus::Signaled(signal) => ExitStatus::Signal(signal),
        };
        // Output first: the host reports the exit only after all of it.
        for pump in pumps {
            let _ = pump.join();
        }
        agent.streams.remove_output(stdio.stdout);
        agent.streams.remove_output(stdio.stderr);
        if let Some(stream) = stdio.stdin {
            agent.streams.close_input(stream);
        }
        agent.clear_main_process();
        agent.clear_terminal();
        let oom_killed = cgroup.oom_kills() > 0;
        cgroup.remove();
        let event = Event::ProcessExited {
            process: MAIN_PROCESS.into(),
            status,
            oom_killed,
        };
        let _ = agent.wire.send_message(&ControlMessage::Event { event });
        if shutdown_on_exit {
            agent.power_off_soon();
        }
    });
    Ok(Reply::Started { pid: pid as u32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_plain() {
        assert!(check_container_id("0123abcdef").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(129)] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaces_map_to_clone_flags() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"mount"},{"type":"pid"},{"type":"cgroup"}]}}"#,
        )
        .unwrap();
        let flags = namespace_flags(&spec).unwrap();
        assert_eq!(
            flags,
            (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWCGROUP) as u64
        );
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"}]}}"#,
        )
        .unwrap();
        assert!(namespace_flags(&spec).is_err(), "no mount namespace");
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"mount"},{"type":"network","path":"/proc/1/ns/net"}]}}"#,
        )
        .unwrap();
        assert!(namespace_flags(&spec).is_err(), "joining");
    }
}
