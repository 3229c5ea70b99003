//! `GET /containers/{id}/logs`: the container's log through the library's
//! reader (`tail`, `timestamps`, `follow`, `since`), framed as Docker
//! frames it without a TTY and raw with one. A follow ends with the
//! container, or when the client goes away (the channel closes and the
//! reader's next write fails).

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hull_container::logs::{self, ReadOptions};
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::hijack::{frame, STDERR, STDOUT};
use crate::http::{streaming, Query};
use crate::state::App;

pub fn logs(app: &Arc<App>, id: &str, query: &Query) -> ApiResult {
    let c = app.container(id)?;
    let (want_out, want_err) = (query.flag("stdout"), query.flag("stderr"));
    if !want_out && !want_err {
        return Err(ApiError::bad_request("You must choose at least one stream"));
    }
    if query
        .get("until")
        .is_some_and(|u| !u.is_empty() && u != "0")
    {
        return Err(ApiError::not_implemented("logs with until"));
    }
    let tail = match query.get("tail").unwrap_or("all") {
        "all" | "" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail {n:?}")))?,
        ),
    };
    let since = query
        .number::<f64>("since")?
        .filter(|s| *s > 0.0)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s));
    let opts = ReadOptions {
        tail,
        timestamps: query.flag("timestamps"),
        follow: query.flag("follow"),
        since,
    };
    let tty = c.config.tty;
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let (tx, response) = streaming(content_type);
    tokio::task::spawn_blocking(move || {
        let mut out = Framed::new(tx.clone(), STDOUT, tty, want_out);
        let mut err = Framed::new(tx, STDERR, tty, want_err);
        let mut still_running = || c.state().has_live_supervisor();
        match logs::read(&c.log_path(), &opts, &mut out, &mut err, &mut still_running) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::BrokenPipe
                ) => {}
            Err(e) => tracing::warn!(container = %c.config.name, "read the log: {e}"),
        }
    });
    Ok(response)
}

/// One output stream of the answer: each write is a frame (or raw bytes
/// with a TTY); a stream not asked for is dropped.
struct Framed {
    tx: mpsc::Sender<Bytes>,
    stream: u8,
    tty: bool,
    wanted: bool,
}

impl Framed {
    fn new(tx: mpsc::Sender<Bytes>, stream: u8, tty: bool, wanted: bool) -> Self {
        Self {
            tx,
            stream,
            tty,
            wanted,
        }
    }
}

impl Write for Framed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.wanted || buf.is_empty() {
            return Ok(buf.len());
        }
        let chunk = if self.tty {
            Bytes::copy_from_slice(buf)
        } else {
            frame(self.stream, buf)
        };
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.tx.is_closed() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }
}
