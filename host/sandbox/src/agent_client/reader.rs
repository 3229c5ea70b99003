//! The reader task: decodes the agent's frames and hands each on, within
//! the bounds of the connection. A frame that breaks them is a
//! [`Violation`], and the connection goes. Log lines the agent can trigger
//! without breaking the protocol are rate-limited ([`GuestLog`], after
//! Firecracker's `logger/rate_limited.rs`), so `supervisor.log` does not
//! take a line per frame.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_protocol::{ControlMessage, Event, Frame, FrameDecoder, FrameKind, StreamId};
use tokio::io::AsyncReadExt;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::streams::Refused;
use super::{lock, Shared, Violation, UNREAD_BUDGET};

/// Agent-triggered log lines per connection and period, at most.
pub(super) const LOG_BURST: u32 = 10;
pub(super) const LOG_PERIOD: Duration = Duration::from_secs(60);

/// Reads frames until the agent goes, the host closes, or a violation.
pub(super) async fn read_loop(
    mut input: OwnedReadHalf,
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
    hello: oneshot::Sender<(u32, String)>,
) {
    let mut reader = Reader::new(shared.clone(), events, hello);
    let mut closed = shared.closed.subscribe();
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = tokio::select! {
            read = input.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = super::wait_closed(&mut closed) => break,
        };
        decoder.feed(&buf[..n]);
        while let Some(taken) = reader.take_frame(&mut decoder) {
            if let Err(violation) = taken {
                shared.fail(violation);
                break 'read;
            }
        }
    }
    reader.log.flush();
    // Disconnected: fail whatever waits on the agent; the writer stops.
    shared.shut_down();
}

pub(super) struct Reader {
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
    hello: Option<oneshot::Sender<(u32, String)>>,
    /// Bytes received on streams the host does not read.
    unread: u64,
    log: GuestLog,
}

impl Reader {
    pub(super) fn new(
        shared: Arc<Shared>,
        events: mpsc::Sender<Event>,
        hello: oneshot::Sender<(u32, String)>,
    ) -> Self {
        Self {
            shared,
            events,
            hello: Some(hello),
            unread: 0,
            log: GuestLog::new(),
        }
    }

    /// Bytes dropped so far because nobody reads their stream.
    pub(super) fn unread(&self) -> u64 {
        self.unread
    }

    /// Hands on the next complete frame of `decoder`: `None` when it
    /// needs more bytes, the violation if the frame breaks the connection.
    pub(super) fn take_frame(
        &mut self,
        decoder: &mut FrameDecoder,
    ) -> Option<Result<(), Violation>> {
        match decoder.next_frame() {
            Ok(Some(frame)) => Some(self.on_frame(frame)),
            Ok(None) => None,
            Err(err) => Some(Err(Violation::Malformed(err.to_string()))),
        }
    }

    pub(super) fn on_frame(&mut self, frame: Frame) -> Result<(), Violation> {
        match frame.kind {
            FrameKind::Control => match ControlMessage::from_frame(&frame) {
                Ok(message) => self.on_control(message)?,
                Err(err) => return Err(Violation::BadControl(err.to_string())),
            },
            FrameKind::Data => self.on_data(frame.stream, &frame.payload)?,
            FrameKind::Eof => {
                if let Some(output) = lock(&self.shared.outputs).remove(&frame.stream) {
                    output.finish(true);
                }
            }
            FrameKind::Window => {
                if let (Some(credit), Some(n)) = (
                    lock(&self.shared.inputs).get(&frame.stream),
                    frame.window_credit(),
                ) {
                    credit.grant(n);
                }
            }
        }
        Ok(())
    }

    fn on_control(&mut self, message: ControlMessage) -> Result<(), Violation> {
        match message {
            ControlMessage::Hello { version, software } => match self.hello.take() {
                Some(tx) => {
                    let _ = tx.send((version, software));
                }
                None => {
                    self.log
                        .warn(format_args!("agent said hello again; ignoring it"));
                }
            },
            ControlMessage::Response { id, result } => {
                let waiter = lock(&self.shared.pending).waiting.remove(&id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(result);
                    }
                    None => {
                        self.log.warn(format_args!(
                            "agent answered request {id}, which nobody waits for; ignoring it"
                        ));
                    }
                }
            }
            ControlMessage::Event { event } => match self.events.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => return Err(Violation::EventFlood),
            },
            ControlMessage::Request { .. } => {
                self.log
                    .warn(format_args!("agent sent a request; ignoring it"));
            }
        }
        Ok(())
    }

    fn on_data(&mut self, stream: StreamId, bytes: &[u8]) -> Result<(), Violation> {
        if bytes.is_empty() {
            return Ok(());
        }
        let output = lock(&self.shared.outputs).get(&stream).cloned();
        let refused = match output {
            Some(output) => match output.push(bytes) {
                Ok(()) => return Ok(()),
                Err(refused) => refused,
            },
            None => Refused::Unread,
        };
        match refused {
            Refused::Overrun(by) => Err(Violation::Overrun { stream, by }),
            Refused::Unread => {
                // Dropped without credit: an honest agent never gets here.
                self.unread += bytes.len() as u64;
                if self.unread > UNREAD_BUDGET {
                    return Err(Violation::Unread { bytes: self.unread });
                }
                self.log.warn(format_args!(
                    "agent sent {} bytes on stream {stream}, which the host does not read; dropped",
                    bytes.len()
                ));
                Ok(())
            }
        }
    }
}

/// At most [`LOG_BURST`] lines per [`LOG_PERIOD`]; the rest are counted
/// and summarised in the next period's first line.
pub(super) struct GuestLog {
    period_start: Instant,
    lines: u32,
    suppressed: u64,
}

impl GuestLog {
    pub(super) fn new() -> Self {
        Self {
            period_start: Instant::now(),
            lines: 0,
            suppressed: 0,
        }
    }

    /// Logs `args` unless the period's lines are used up; true if logged.
    pub(super) fn warn(&mut self, args: fmt::Arguments<'_>) -> bool {
        self.warn_at(Instant::now(), args)
    }

    pub(super) fn warn_at(&mut self, now: Instant, args: fmt::Arguments<'_>) -> bool {
        if now.duration_since(self.period_start) >= LOG_PERIOD {
            self.flush();
            self.period_start = now;
            self.lines = 0;
        }
        if self.lines < LOG_BURST {
            self.lines += 1;
            tracing::warn!("{args}");
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Says how many lines were suppressed, if any were.
    pub(super) fn flush(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(
                "{} more agent-triggered log lines suppressed",
                self.suppressed
            );
            self.suppressed = 0;
        }
    }

    #[cfg(test)]
    pub(super) fn suppressed(&self) -> u64 {
        self.suppressed
    }
}
