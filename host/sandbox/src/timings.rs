//! Phase timestamps for benchmarks: when `HULL_TIMINGS` names a file, the
//! `hull` command and the supervisor it starts (which inherits the
//! variable) append `PHASE UNIX_MICROS` lines to it. Costs nothing when
//! unset.

use std::io::Write;

pub const TIMINGS_ENV: &str = "HULL_TIMINGS";

/// A phase log given other than through the environment (a pooled
/// supervisor learns its caller's when it is taken).
static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Records phases in `path` from now on, as if `HULL_TIMINGS` named it.
pub fn record_to(path: std::path::PathBuf) {
    let _ = PATH.set(path);
}

/// Records that `phase` was reached now.
pub fn mark(phase: &str) {
    mark_at(phase, now_micros());
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// Records that `phase` was reached at `micros` (since the epoch).
pub fn mark_at(phase: &str, micros: u128) {
    let Some(path) = PATH
        .get()
        .map(|p| p.as_os_str().to_owned())
        .or_else(|| std::env::var_os(TIMINGS_ENV))
    else {
        return;
    };
    // One write per line with O_APPEND: lines from two processes never mix.
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(format!("{phase} {micros}\n").as_bytes());
    }
}
