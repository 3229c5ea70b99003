//! Relaying agent requests: a client's [`ControlRequest::Agent`] goes to
//! the agent as it is and the agent's reply comes back as it is, so a new
//! agent verb about a container needs no control request, no handler and
//! no reply of its own, only its line in [`check`] (the match is
//! exhaustive: the compiler asks for the decision).
//!
//! The supervisor relays only requests about its own container; the ones
//! that make or end containers and processes are its own work (boot,
//! exec, stop) and are refused.
//!
//! [`ControlRequest::Agent`]: super::control::ControlRequest::Agent

use hull_protocol::{Request, MAIN_PROCESS};
use thiserror::Error;

use super::agent::Agent;
use super::control::ControlReply;
use super::shared::Shared;

/// Why a relayed request was refused before it reached the agent.
#[derive(Debug, Error, PartialEq, Eq)]
pub(super) enum RelayError {
    #[error("the container is not running")]
    NotRunning,
    #[error("{0} is the supervisor's to ask, not a client's")]
    Reserved(&'static str),
    #[error("the request is about container {0}, not this one")]
    OtherContainer(String),
    #[error("the request is about process {0}, not the main process")]
    OtherProcess(String),
}

impl RelayError {
    fn reply(&self) -> ControlReply {
        ControlReply::Error {
            message: self.to_string(),
            code: 125,
        }
    }
}

/// Sends `request` to the agent of `shared`'s running container and
/// answers with the agent's reply; records what the request changed.
pub(super) async fn relay<A: Agent>(shared: &Shared<A>, request: Request) -> ControlReply {
    if let Err(e) = check(&request, &shared.container.config.id) {
        return e.reply();
    }
    let request = for_agent(request, shared.container.config.agent_id());
    let Some(agent) = shared.agent() else {
        return RelayError::NotRunning.reply();
    };
    let frozen = match &request {
        Request::Freeze { frozen, .. } => Some(*frozen),
        _ => None,
    };
    match agent.request(request).await {
        Ok(answer) => {
            if let Some(frozen) = frozen {
                let _ = shared.container.update(|s| s.paused = frozen);
            }
            ControlReply::Agent { answer }
        }
        Err(e) => ControlReply::Error {
            message: e.to_string(),
            code: 125,
        },
    }
}

/// `request` with the container named as the agent knows it (a restored
/// container's agent keeps the id of the one that was checkpointed).
fn for_agent(mut request: Request, agent_id: &str) -> Request {
    match &mut request {
        Request::Stats { container_id }
        | Request::ListProcesses { container_id }
        | Request::SignalContainer { container_id, .. }
        | Request::Freeze { container_id, .. }
        | Request::UpdateResources { container_id, .. } => *container_id = agent_id.to_string(),
        _ => {}
    }
    request
}

/// Whether a client may have `request` relayed to the agent of container
/// `own`.
fn check(request: &Request, own: &str) -> Result<(), RelayError> {
    let container = |id: &str| {
        if id == own {
            Ok(())
        } else {
            Err(RelayError::OtherContainer(id.into()))
        }
    };
    match request {
        Request::Stats { container_id }
        | Request::ListProcesses { container_id }
        | Request::SignalContainer { container_id, .. }
        | Request::Freeze { container_id, .. }
        | Request::UpdateResources { container_id, .. } => container(container_id),
        Request::Signal { process, .. } | Request::ResizeTerminal { process, .. } => {
            if process == MAIN_PROCESS {
                Ok(())
            } else {
                Err(RelayError::OtherProcess(process.clone()))
            }
        }
        Request::RunContainer(_) => Err(RelayError::Reserved("run_container")),
        Request::ExecProcess(_) => Err(RelayError::Reserved("exec_process")),
        Request::RemoveContainer { .. } => Err(RelayError::Reserved("remove_container")),
        Request::Shutdown => Err(RelayError::Reserved("shutdown")),
        Request::Wake(_) => Err(RelayError::Reserved("wake")),
        Request::ExportChanges(_) => Err(RelayError::Reserved("export_changes")),
        Request::Checkpoint { .. } => Err(RelayError::Reserved("checkpoint")),
        Request::Unpark { .. } => Err(RelayError::Reserved("unpark")),
    }
}

#[cfg(test)]
mod tests {
    use hull_protocol::Reply;

    use super::*;
    use crate::supervisor::test_utils::{self, agent, FakeAgent, ID};

    #[test]
    fn requests_about_this_container_pass() {
        let own = [
            Request::Stats {
                container_id: ID.into(),
            },
            Request::ListProcesses {
                container_id: ID.into(),
            },
            Request::SignalContainer {
                container_id: ID.into(),
                signal: 9,
            },
            Request::Freeze {
                container_id: ID.into(),
                frozen: true,
            },
            Request::UpdateResources {
                container_id: ID.into(),
                resources: Box::default(),
            },
            Request::Signal {
                process: MAIN_PROCESS.into(),
                signal: 15,
            },
        ];
        for request in own {
            assert_eq!(check(&request, ID), Ok(()), "{request:?}");
        }
    }

    #[test]
    fn requests_about_others_or_the_supervisors_own_work_are_refused() {
        let other = Request::Stats {
            container_id: "other".into(),
        };
        assert_eq!(
            check(&other, ID),
            Err(RelayError::OtherContainer("other".into()))
        );
        let exec = Request::Signal {
            process: "exec-0".into(),
            signal: 9,
        };
        assert_eq!(
            check(&exec, ID),
            Err(RelayError::OtherProcess("exec-0".into()))
        );
        assert_eq!(
            check(&Request::Shutdown, ID),
            Err(RelayError::Reserved("shutdown"))
        );
        let remove = Request::RemoveContainer {
            container_id: ID.into(),
        };
        assert_eq!(
            check(&remove, ID),
            Err(RelayError::Reserved("remove_container"))
        );
    }

    #[tokio::test]
    async fn a_refused_request_never_reaches_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, _taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        let reply = relay(&shared, Request::Shutdown).await;
        assert!(matches!(reply, ControlReply::Error { code: 125, .. }));
        assert!(agent(&shared).seen().is_empty());
    }
}
