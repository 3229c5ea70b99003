//! What the container commands share: finding containers and talking to
//! their supervisors.

use anyhow::{anyhow, Result};
use hull_container::lifecycle;
pub use hull_container::lifecycle::{await_supervisor_exit, stop};
use hull_container::record::{Container, ContainerState, Containers, Status};
use hull_container::supervisor::control::{ControlReply, ControlRequest};

use crate::cli::Cli;

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
            eprintln!("hull: {}", hull_container::supervisor::one_line(e.as_ref()));
            code = 1;
        }
    }
    Ok(code)
}

/// One request to a running container's supervisor.
pub async fn ask(container: &Container, request: &ControlRequest) -> Result<ControlReply> {
    Ok(lifecycle::ask(container, request).await?)
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
