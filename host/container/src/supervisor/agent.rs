//! The supervisor's seam over the agent connection: the two calls the
//! control server, stop and attach make (a request with its answer, and a
//! request sent without waiting), so they can be tested against a fake.
//! Exec and boot use the concrete client, whose streams they need.

use std::future::Future;

use hull_protocol::{Reply, Request};
use hull_sandbox::agent_client::{AgentClient, RequestError};

/// What the supervisor asks of the agent outside of stream set-up.
pub(super) trait Agent: Send + Sync + 'static {
    /// Sends `request` and waits for its answer.
    fn request(&self, request: Request)
        -> impl Future<Output = Result<Reply, RequestError>> + Send;

    /// Sends `request` without waiting for the answer.
    fn notify(&self, request: Request);
}

impl Agent for AgentClient {
    fn request(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Reply, RequestError>> + Send {
        AgentClient::request(self, request)
    }

    fn notify(&self, request: Request) {
        AgentClient::notify(self, request);
    }
}
