//! `start`, `stop`, `restart`, `kill`, `pause`/`unpause` and `DELETE`:
//! the library's lifecycle calls, answered with Docker's statuses (204
//! done, 304 nothing to do, 409 not in a state for it).

use std::sync::Arc;
use std::time::Duration;

use hull_container::lifecycle;
use hull_container::supervisor::control::{self, AgentRequest, ControlReply, ControlRequest};
use hull_container::supervisor::launch;
use hull_container::{Container, Status};
use hyper::StatusCode;

use crate::error::{ApiError, ApiResult};
use crate::http::{empty, Query};
use crate::state::App;

/// Docker's default grace time for `stop`.
const DEFAULT_STOP_SECS: u64 = 10;
/// How long a started main process may take to report that it runs.
const START_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn start(app: &Arc<App>, id: &str) -> ApiResult {
    let c = app.container(id)?;
    if c.state().has_live_supervisor() {
        return Ok(empty(StatusCode::NOT_MODIFIED));
    }
    launch_supervisor(app, &c).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Starts `c`'s supervisor: held for an attach if one waits, announced to
/// the waiting attaches; answers once the main process runs (or, when an
/// attach holds it, once the supervisor is up).
pub async fn launch_supervisor(app: &Arc<App>, c: &Container) -> ApiResult<()> {
    let wait_attach = app.has_waiting_attach(&c.config.id);
    let (hull, root, run_dir, container) = (
        app.hull.clone(),
        app.root.clone(),
        app.run_dir.clone(),
        c.clone(),
    );
    let supervisor = tokio::task::spawn_blocking(move || {
        launch::spawn_using(&hull, &root, &run_dir, &container, wait_attach)
    })
    .await
    .map_err(|e| ApiError::internal(format!("start: {e}")))??;
    // The supervisor lives on its own; our handle only reaps it.
    reap(supervisor);
    app.announce_start(&c.config.id);
    let socket = c.socket_path();
    let asked = control::call(&socket, &ControlRequest::Started);
    match tokio::time::timeout(START_TIMEOUT, asked).await {
        Ok(Ok(ControlReply::Started { .. })) => Ok(()),
        Ok(Ok(ControlReply::Error { message, .. })) => Err(ApiError::internal(message)),
        Ok(Ok(other)) => Err(ApiError::internal(format!(
            "unexpected supervisor reply {other:?}"
        ))),
        // A start that failed at once ends the supervisor: its record says why.
        Ok(Err(e)) => {
            Err(ApiError::internal(c.settle().error.unwrap_or_else(|| {
                format!("the container's supervisor: {e}")
            })))
        }
        Err(_) => Err(ApiError::internal("the container did not start in time")),
    }
}

/// Waits for a supervisor we spawned, so it leaves no zombie.
fn reap(mut supervisor: launch::Supervisor) {
    std::thread::spawn(move || {
        let _ = supervisor.wait();
    });
}

pub async fn stop(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let c = app.container(id)?;
    if !c.state().has_live_supervisor() {
        return Ok(empty(StatusCode::NOT_MODIFIED));
    }
    let secs: u64 = query.number("t")?.unwrap_or(DEFAULT_STOP_SECS);
    lifecycle::stop(&c, Duration::from_secs(secs)).await;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn restart(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let c = app.container(id)?;
    let secs: u64 = query.number("t")?.unwrap_or(DEFAULT_STOP_SECS);
    lifecycle::stop(&c, Duration::from_secs(secs)).await;
    // With AutoRemove the stop removed it.
    let c = app.container(&c.config.id)?;
    launch_supervisor(app, &c).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn kill(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let c = app.container(id)?;
    let signal = match query.get("signal").filter(|s| !s.is_empty()) {
        Some(s) => {
            parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?
        }
        None => libc::SIGKILL,
    };
    if !c.state().is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.config.id
        )));
    }
    lifecycle::ask(&c, &ControlRequest::Signal { signal }).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn pause(app: &Arc<App>, id: &str, frozen: bool) -> ApiResult {
    let c = app.container(id)?;
    let state = c.state();
    if !state.is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.config.id
        )));
    }
    if state.paused == frozen {
        let what = if frozen {
            "already paused"
        } else {
            "not paused"
        };
        return Err(ApiError::conflict(format!(
            "Container {} is {what}",
            c.config.id
        )));
    }
    let request = AgentRequest::Freeze {
        container_id: c.config.id.clone(),
        frozen,
    };
    lifecycle::ask(&c, &ControlRequest::Agent { request }).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `DELETE /containers/{id}`: `force` stops a running one first, `v`
/// takes its anonymous volumes.
pub async fn remove(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let c = app.container(id)?;
    let state = c.state();
    if state.has_live_supervisor() && state.status() != Status::Exited {
        if !query.flag("force") {
            return Err(ApiError::conflict(format!(
                "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                c.config.id
            )));
        }
        lifecycle::stop(&c, Duration::ZERO).await;
    } else {
        lifecycle::await_supervisor_exit(&c, state.supervisor, Duration::from_secs(15)).await;
    }
    let containers = app.containers();
    containers.remove(&c);
    if query.flag("v") {
        hull_container::volume::remove_anonymous(&app.root, &containers, &c.config);
    }
    app.forget_execs(&c.config.id);
    Ok(empty(StatusCode::NO_CONTENT))
}

/// A signal by number or name (`KILL`, `SIGTERM`).
pub fn parse_signal(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: [(&str, i32); 15] = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ABRT", libc::SIGABRT),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("WINCH", libc::SIGWINCH),
    ];
    NAMES.iter().find(|(n, _)| *n == bare).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("kill"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("15"), Some(15));
        assert_eq!(parse_signal("99"), None);
        assert_eq!(parse_signal("NOPE"), None);
    }
}
