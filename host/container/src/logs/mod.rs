//! A container's log, kept the way Docker's `json-file` driver keeps it
//! (moby `daemon/logger/jsonfilelog`): one JSON object per line of output,
//!
//! ```text
//! {"log":"text\n","stream":"stdout","time":"2026-11-22T16:55:01.123456789Z"}
//! ```
//!
//! in `container.log`, rotated to `container.log.1`, `.2`, … by size
//! (Docker's `max-size` / `max-file`). The supervisor appends with
//! [`LogWriter`]; `hull logs` prints with [`read`], which can follow the log
//! across rotations while the container runs.
//!
//! Output that is not UTF-8 is stored lossily: each invalid sequence becomes
//! U+FFFD, as Docker's JSON encoding does. A line of output longer than
//! [`MAX_LINE`] bytes is stored as several entries, all but the last without
//! a trailing `"\n"`.
//!
//! Both sides speak `std::io::Error`: every failure here is an I/O failure
//! of the log files (a corrupt entry is skipped, not reported).

mod reader;
mod time;
mod writer;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use reader::{read, ReadOptions};
pub use time::{parse_rfc3339, rfc3339_nano, rfc3339_nano_fixed};
pub use writer::LogWriter;

/// The longest stretch of one output line kept in a single entry (Docker's
/// 16 KiB copy buffer); longer lines are split.
pub const MAX_LINE: usize = 16 * 1024;

/// Which of the container's output streams an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// All files of the log at `path`: `path` itself and its rotations
/// `path.1`, `path.2`, …, newest first, those that exist. For `rm`.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if path.exists() {
        found.push(path.to_path_buf());
    }
    found.extend(rotations(path).into_iter().map(|(_, p)| p));
    found
}

/// The rotations `path.N` that exist, as `(N, path.N)` in ascending `N`.
fn rotations(path: &Path) -> Vec<(u32, PathBuf)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let index = file_name
            .strip_prefix(&prefix)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n > 0);
        if let Some(index) = index {
            found.push((index, dir.join(file_name)));
        }
    }
    found.sort_by_key(|(index, _)| *index);
    found
}

/// `path.index`, the `index`th rotation of the log at `path`.
fn rotated(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_lists_the_log_and_its_rotations_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        assert!(files(&path).is_empty());
        for name in [
            "container.log",
            "container.log.2",
            "container.log.10",
            "container.log.1",
            "container.log.x",
            "container.log.",
            "container.log.0",
            "other.log.1",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(
            files(&path),
            vec![
                path.clone(),
                rotated(&path, 1),
                rotated(&path, 2),
                rotated(&path, 10)
            ]
        );
    }
}
