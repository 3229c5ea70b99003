//! The pool's callers: the launcher takes a clone, `hull pool` asks for
//! status and stops the server.

use std::io::{self, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{receive, send, socket_path, PoolReply, PoolRequest, PoolSpec};
use crate::record::Container;

/// How long a take may take: the server hands over a clone that is ready,
/// so only a stuck server reaches this.
const TAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A stop waits for the ready clones to go.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks the run directory's pool for a ready clone for `container`; the
/// pid of the pooled supervisor that now supervises it, or `None` (no
/// pool, no ready clone of its spec: the caller starts a supervisor).
pub fn take(root: &Path, run_dir: &Path, container: &Container, wait_attach: bool) -> Option<u32> {
    let socket = socket_path(run_dir);
    if !socket.exists() {
        return None;
    }
    let spec = PoolSpec::of(root, &container.config)?;
    let take = PoolRequest::Take {
        spec,
        container: container.config.id.clone(),
        wait_attach,
        timings: std::env::var_os(hull_sandbox::timings::TIMINGS_ENV).map(Into::into),
    };
    match request(run_dir, &take) {
        Ok(PoolReply::Taken { pid }) => Some(pid),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("warm pool: {e}");
            None
        }
    }
}

/// One request to the pool server and its reply.
pub fn request(run_dir: &Path, request: &PoolRequest) -> io::Result<PoolReply> {
    let mut stream = UnixStream::connect(socket_path(run_dir))?;
    let timeout = match request {
        PoolRequest::Stop => STOP_TIMEOUT,
        _ => TAKE_TIMEOUT,
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    send(&mut stream, request)?;
    receive(&mut BufReader::new(stream))?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the pool server hung up without a reply",
        )
    })
}
