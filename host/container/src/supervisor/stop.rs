//! Stopping the container as `docker stop` does: SIGTERM, SIGKILL once
//! the grace time is up, and the VM powered off if even that does not end
//! it (or at once with no grace: `rm -f`, `stop -t 0`).

use std::time::Duration;

use hull_protocol::{Request, MAIN_PROCESS};

use super::agent::Agent;
use super::relay::relay;
use super::shared::Shared;

/// Grace after SIGKILL before the VM is powered off.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long each step of a stop waits for the container to end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Escalation {
    /// After SIGTERM; zero powers the VM off at once.
    pub grace: Duration,
    /// After SIGKILL.
    pub kill_grace: Duration,
}

impl Escalation {
    /// SIGKILL after `grace`, power off after [`KILL_GRACE`] more.
    pub fn after(grace: Duration) -> Self {
        Self {
            grace,
            kill_grace: KILL_GRACE,
        }
    }
}

/// SIGTERM, then SIGKILL, then power off; returns when the container has
/// stopped.
pub(super) async fn stop<A: Agent>(shared: &Shared<A>, escalation: Escalation) {
    if escalation.grace.is_zero() {
        // Nothing in the VM needs to be asked.
        return power_off(shared).await;
    }
    let signalled = signal_main(shared, libc::SIGTERM);
    if shared.container.state().paused {
        // A frozen process cannot act on SIGTERM: thaw it, as docker does.
        let thaw = Request::Freeze {
            container_id: shared.container.config.id.clone(),
            frozen: false,
        };
        let _ = relay(shared, thaw).await;
    }
    if signalled && ended_within(shared, escalation.grace).await {
        return;
    }
    if signal_main(shared, libc::SIGKILL) && ended_within(shared, escalation.kill_grace).await {
        return;
    }
    power_off(shared).await;
}

/// Signals the main process; false if it does not run.
fn signal_main<A: Agent>(shared: &Shared<A>, signal: i32) -> bool {
    let Some(agent) = shared.agent() else {
        return false;
    };
    agent.notify(Request::Signal {
        process: MAIN_PROCESS.into(),
        signal,
    });
    true
}

async fn ended_within<A: Agent>(shared: &Shared<A>, wait: Duration) -> bool {
    let mut outcome = shared.outcome.subscribe();
    let ended = tokio::time::timeout(wait, outcome.wait_for(Option::is_some)).await;
    ended.is_ok()
}

/// Powers the VM off and waits for the boot's end.
async fn power_off<A: Agent>(shared: &Shared<A>) {
    shared.kill_vm.notify_one();
    let _ = shared.outcome.subscribe().wait_for(Option::is_some).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hull_protocol::Reply;
    use tokio::sync::mpsc;

    use super::*;
    use crate::supervisor::test_utils::{self, agent, FakeAgent, ID};
    use crate::supervisor::Outcome;

    const SHORT: Escalation = Escalation {
        grace: Duration::from_millis(30),
        kill_grace: Duration::from_millis(30),
    };

    fn signal(signal: i32) -> Request {
        Request::Signal {
            process: MAIN_PROCESS.into(),
            signal,
        }
    }

    fn ended() -> Option<Outcome> {
        Some(Outcome::failed(137, "gone".into(), true))
    }

    /// Ends the boot when the VM is powered off, as the main task does;
    /// the returned flag says whether it was.
    fn on_power_off(shared: &Arc<Shared<FakeAgent>>) -> tokio::task::JoinHandle<()> {
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.kill_vm.notified().await;
            shared.outcome.send_replace(ended());
        })
    }

    /// Ends the boot when the main process gets `on`.
    fn exit_on(
        shared: &Arc<Shared<FakeAgent>>,
        mut taps: mpsc::UnboundedReceiver<Request>,
        on: i32,
    ) {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(request) = taps.recv().await {
                if request == signal(on) {
                    shared.outcome.send_replace(ended());
                }
            }
        });
    }

    #[tokio::test]
    async fn a_process_that_ignores_everything_gets_term_kill_then_power_off() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, _taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        let powered_off = on_power_off(&shared);
        stop(&shared, SHORT).await;
        assert!(powered_off.is_finished());
        let sent = agent(&shared).seen();
        assert_eq!(sent, vec![signal(libc::SIGTERM), signal(libc::SIGKILL)]);
    }

    #[tokio::test]
    async fn a_process_that_ends_on_sigterm_gets_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        exit_on(&shared, taps, libc::SIGTERM);
        let powered_off = on_power_off(&shared);
        stop(&shared, Escalation::after(Duration::from_secs(30))).await;
        assert_eq!(agent(&shared).seen(), vec![signal(libc::SIGTERM)]);
        assert!(!powered_off.is_finished());
    }

    #[tokio::test]
    async fn a_process_that_ends_on_sigkill_is_not_powered_off() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        exit_on(&shared, taps, libc::SIGKILL);
        let powered_off = on_power_off(&shared);
        stop(&shared, SHORT).await;
        assert_eq!(agent(&shared).seen().len(), 2);
        assert!(!powered_off.is_finished());
    }

    #[tokio::test]
    async fn no_grace_powers_off_without_asking() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, _taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        let powered_off = on_power_off(&shared);
        stop(&shared, Escalation::after(Duration::ZERO)).await;
        assert!(powered_off.is_finished());
        assert!(agent(&shared).seen().is_empty());
    }

    #[tokio::test]
    async fn a_container_not_yet_running_is_powered_off_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let shared = test_utils::shared(dir.path(), None);
        let powered_off = on_power_off(&shared);
        // Long grace: only skipping it lets the test end.
        let patient = Escalation::after(Duration::from_secs(600));
        tokio::time::timeout(Duration::from_secs(5), stop(&shared, patient))
            .await
            .expect("no grace waited without a process to signal");
        assert!(powered_off.is_finished());
    }

    #[tokio::test]
    async fn a_paused_container_is_thawed_after_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let (fake, taps) = FakeAgent::new(Reply::Done);
        let shared = test_utils::shared(dir.path(), Some(fake));
        shared.container.update(|s| s.paused = true).unwrap();
        exit_on(&shared, taps, libc::SIGTERM);
        stop(&shared, Escalation::after(Duration::from_secs(30))).await;
        let thaw = Request::Freeze {
            container_id: ID.into(),
            frozen: false,
        };
        assert_eq!(agent(&shared).seen(), vec![signal(libc::SIGTERM), thaw]);
        assert!(!test_utils::paused(&shared.container));
    }
}
