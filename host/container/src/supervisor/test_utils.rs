//! Fixtures for the supervisor's unit tests: a container record in a
//! temporary directory, and a fake agent that records what it is asked
//! and answers from a script.

use std::future::Future;
use std::sync::{Arc, Mutex};

use hull_protocol::{AgentError, ErrorKind, Reply, Request};
use hull_sandbox::agent_client::RequestError;
use tokio::sync::mpsc;

use super::agent::Agent;
use super::shared::{lock, Shared};
use crate::record::{Container, ContainerConfig, Containers};

/// The fake's id of the container.
pub const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// An agent that records every request (answered or not) and answers
/// `request`s with `answer`, or refuses them with `refusal`.
pub struct FakeAgent {
    pub seen: Mutex<Vec<Request>>,
    pub answer: Reply,
    pub refusal: Option<String>,
    /// Each request as it comes, for tests that act on it.
    pub tap: mpsc::UnboundedSender<Request>,
}

impl FakeAgent {
    pub fn new(answer: Reply) -> (Self, mpsc::UnboundedReceiver<Request>) {
        let (tap, taps) = mpsc::unbounded_channel();
        let fake = Self {
            seen: Mutex::new(Vec::new()),
            answer,
            refusal: None,
            tap,
        };
        (fake, taps)
    }

    pub fn seen(&self) -> Vec<Request> {
        lock(&self.seen).clone()
    }

    fn record(&self, request: Request) {
        lock(&self.seen).push(request.clone());
        let _ = self.tap.send(request);
    }
}

impl Agent for FakeAgent {
    fn request(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Reply, RequestError>> + Send {
        self.record(request);
        let result = match &self.refusal {
            Some(message) => Err(RequestError::Agent(AgentError::new(
                ErrorKind::InvalidRequest,
                message.clone(),
            ))),
            None => Ok(self.answer.clone()),
        };
        std::future::ready(result)
    }

    fn notify(&self, request: Request) {
        self.record(request);
    }
}

/// A supervisor's state for a fresh container record under `dir`, with
/// `agent` as its running agent (none: not running).
pub fn shared(dir: &std::path::Path, agent: Option<FakeAgent>) -> Arc<Shared<FakeAgent>> {
    let container = Containers::new(dir).create(config()).expect("record");
    let shared = Shared::new(container, tokio::runtime::Handle::current());
    shared.client.send_replace(agent.map(Arc::new));
    Arc::new(shared)
}

/// The fake agent of `shared`.
pub fn agent(shared: &Shared<FakeAgent>) -> Arc<FakeAgent> {
    shared.agent().expect("a running agent")
}

fn config() -> ContainerConfig {
    crate::record::test_config(ID, "box")
}

/// `container`'s recorded `paused`.
pub fn paused(container: &Container) -> bool {
    container.recorded_state().paused
}
