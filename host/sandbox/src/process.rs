//! Host processes named so that a recycled pid is never mistaken for
//! them (pid + start time, as in `/proc/PID/stat`), and the wall-clock
//! stamps records carry.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A host process, named so that a recycled pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessRef {
    pub fn of_self() -> Self {
        let pid = std::process::id() as i32;
        Self {
            pid,
            start_time: start_time(pid).unwrap_or(0),
        }
    }

    pub fn of(pid: i32) -> Option<Self> {
        Some(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether the process runs. A zombie does not: where nobody reaps
    /// orphans (PID 1 of some hosts), a killed supervisor stays one.
    pub fn is_alive(&self) -> bool {
        stat(self.pid)
            .is_some_and(|(state, start)| start == self.start_time && !matches!(state, 'Z' | 'X'))
    }
}

fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Field 3 (state) and field 22 (start time) of `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3; start time is field 22.
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// Unix time in nanoseconds, as records store times.
/// Makes `command` start its process in a session of its own: helpers
/// that outlive the `hull` command that started them (supervisors, name
/// servers, the pool) get no terminal signals meant for it.
pub fn in_new_session(command: &mut std::process::Command) {
    // SAFETY: setsid is async-signal-safe; the closure does nothing else.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, || {
            rustix::process::setsid()?;
            Ok(())
        });
    }
}

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_past_a_command_with_parentheses() {
        assert!(start_time(std::process::id() as i32).is_some_and(|t| t > 0));
        assert!(ProcessRef::of_self().is_alive());
    }
}
