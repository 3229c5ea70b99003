//! The FIFOs containerd names for a process's stdio, opened so that the
//! supervisor can read and write them directly (no copy through the shim).
//!
//! - stdin is opened for reading without waiting for containerd's writer
//!   (non-blocking open, then blocking again): the supervisor polls before
//!   it reads, so a writer that shows up later is not mistaken for EOF;
//! - stdout and stderr are opened read-write, which never blocks; the
//!   reader sees EOF when the supervisor, the last holder, exits.
//!
//! A missing path means /dev/null.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};

pub struct Fifos {
    /// `None` when the process has no stdin.
    pub stdin: Option<File>,
    pub stdout: File,
    pub stderr: File,
}

impl Fifos {
    pub fn open(stdin: &str, stdout: &str, stderr: &str) -> Result<Self> {
        let stdin = if stdin.is_empty() {
            None
        } else {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(stdin)
                .with_context(|| format!("open {stdin}"))?;
            let mut flags = rustix::fs::fcntl_getfl(&file).context("stdin flags")?;
            flags.remove(rustix::fs::OFlags::NONBLOCK);
            rustix::fs::fcntl_setfl(&file, flags).context("stdin flags")?;
            Some(file)
        };
        Ok(Self {
            stdin,
            stdout: output(stdout)?,
            stderr: output(stderr)?,
        })
    }
}

fn output(path: &str) -> Result<File> {
    let path = if path.is_empty() { "/dev/null" } else { path };
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("open {path}"))
}
