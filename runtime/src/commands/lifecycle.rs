//! What the container commands share: finding containers and talking to
//! their supervisors.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::cli::Cli;
use crate::container::{Container, ContainerState, Containers, ProcessRef, Status};
use crate::supervisor::control::{self, ControlReply, ControlRequest};

pub fn containers(cli: &Cli) -> Containers {
    Containers::new(&cli.run_dir)
}

/// Runs `action` on each named container; like docker, prints a one-line
/// error for each that fails and exits 1 if any did.
pub async fn each<F, Fut>(cli: &Cli, names: &[String], mut action: F) -> Result<i32>
where
    F: FnMut(Container) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let all = containers(cli);
    let mut code = 0;
    for name in names {
        let result = match all.find(name) {
            Ok(c) => action(c).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            eprintln!("hull: {}", crate::supervisor::one_line(e.as_ref()));
            code = 1;
        }
    }
    Ok(code)
}

/// One request to a running container's supervisor.
pub async fn ask(container: &Container, request: &ControlRequest) -> Result<ControlReply> {
    let not_running = || anyhow!("container {} is not running", container.config.name);
    if !container.state().is_running() {
        return Err(not_running());
    }
    match control::call(&container.socket_path(), request).await {
        Ok(ControlReply::Error { message, .. }) => Err(anyhow!("{message}")),
        Ok(reply) => Ok(reply),
        // It stopped between the check and the call.
        Err(_) if !container.state().is_running() => Err(not_running()),
        Err(e) => Err(anyhow!(
            "container {}: its supervisor did not answer: {e}",
            container.config.name
        )),
    }
}

/// Stops a container with `grace` before SIGKILL, and waits until its
/// supervisor is gone. A supervisor that does not answer is killed (its
/// VM dies with it).
pub async fn stop(container: &Container, grace: Duration) -> Result<()> {
    let state = container.state();
    let Some(supervisor) = state.supervisor.filter(|s| s.is_alive()) else {
        return Ok(());
    };
    let socket = container.socket_path();
    let request = ControlRequest::Stop {
        timeout_secs: grace.as_secs(),
    };
    let asked = control::call(&socket, &request);
    let answered = tokio::time::timeout(grace + Duration::from_secs(30), asked).await;
    if !matches!(answered, Ok(Ok(_))) {
        // SAFETY: kill on a pid we just checked is this supervisor.
        unsafe { libc::kill(supervisor.pid, libc::SIGKILL) };
    }
    await_supervisor_exit(container, Some(supervisor), Duration::from_secs(15)).await;
    Ok(())
}

/// Waits for a container's supervisor to finish (it is cleaning up after
/// the container stopped); kills it if it takes longer than `patience`.
/// `supervisor` is taken from the state before anything was asked of it:
/// with `--rm` the record may be gone by now.
pub async fn await_supervisor_exit(
    container: &Container,
    supervisor: Option<ProcessRef>,
    patience: Duration,
) {
    let Some(supervisor) = supervisor else {
        return;
    };
    let deadline = Instant::now() + patience;
    while supervisor.is_alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if supervisor.is_alive() {
        // SAFETY: kill on a pid whose start time says it is this supervisor.
        unsafe { libc::kill(supervisor.pid, libc::SIGKILL) };
    }
    container.settle();
}

/// "Up 3 minutes", "Exited (0) 2 seconds ago", "Created", as docker
/// prints them.
pub fn status_line(state: &ContainerState, now: u64) -> String {
    let ago = |t: Option<u64>| human_duration(now.saturating_sub(t.unwrap_or(now)));
    match state.status() {
        Status::Created => "Created".into(),
        Status::Running if state.paused => format!("Up {} (Paused)", ago(state.started_at)),
        Status::Running => format!("Up {}", ago(state.started_at)),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            state.exit_code.unwrap_or(0),
            ago(state.finished_at)
        ),
    }
}

pub fn human_duration(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", secs / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// Parses "TERM", "SIGTERM", "15" into a signal number.
pub fn parse_signal(name: &str) -> Result<i32> {
    if let Ok(n) = name.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match bare {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(anyhow!("invalid signal {name:?}")),
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("TERM").unwrap(), 15);
        assert_eq!(parse_signal("sigkill").unwrap(), 9);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn durations_read_like_docker() {
        let s = 1_000_000_000u64;
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5 * s), "5 seconds");
        assert_eq!(human_duration(90 * s), "About a minute");
        assert_eq!(human_duration(600 * s), "10 minutes");
    }
}
