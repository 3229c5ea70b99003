//! The two kinds of data stream on the connection. An output stream (the
//! agent sends) buffers what arrived in one byte buffer, never more than
//! the credit the host granted; an input stream (the host sends) waits for
//! the agent's credit and for room in the outbox.

use std::sync::{Arc, Mutex};

use hull_protocol::frame::MAX_DATA_CHUNK;
use hull_protocol::{Frame, StreamId, INITIAL_WINDOW};
use tokio::sync::{mpsc, Notify};

use super::{lock, send_control, Outgoing, Shared};

/// What arrives on an output stream.
#[derive(Debug)]
pub enum Chunk {
    Data(Vec<u8>),
    Eof,
}

/// The reader's side of one output stream.
pub(super) struct Output {
    inner: Mutex<Buffer>,
    ready: Notify,
}

struct Buffer {
    /// Received, not yet taken by the stream's reader.
    data: Vec<u8>,
    /// Taken by the reader, not yet reported consumed.
    taken: u64,
    /// Bytes the agent may still send: `allowed + data + taken` is always
    /// [`INITIAL_WINDOW`].
    allowed: u64,
    /// The most ever buffered (`data + taken`), for tests and reports.
    peak: u64,
    end: Option<End>,
    reader_gone: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    /// The host closed the stream or lost the connection.
    Closed,
}

/// Why an output stream refused a Data frame.
pub(super) enum Refused {
    /// Beyond the credit, by this many bytes.
    Overrun(u64),
    /// Nobody reads the stream any more.
    Unread,
}

impl Output {
    pub(super) fn new() -> Self {
        Self {
            inner: Mutex::new(Buffer {
                data: Vec::new(),
                taken: 0,
                allowed: INITIAL_WINDOW.into(),
                peak: 0,
                end: None,
                reader_gone: false,
            }),
            ready: Notify::new(),
        }
    }

    /// Takes `bytes` from the agent, within its credit.
    pub(super) fn push(&self, bytes: &[u8]) -> Result<(), Refused> {
        let mut buf = lock(&self.inner);
        if buf.reader_gone || buf.end.is_some() {
            return Err(Refused::Unread);
        }
        let n = bytes.len() as u64;
        if n > buf.allowed {
            return Err(Refused::Overrun(n - buf.allowed));
        }
        buf.allowed -= n;
        buf.data.extend_from_slice(bytes);
        buf.peak = buf.peak.max(buf.data.len() as u64 + buf.taken);
        drop(buf);
        self.ready.notify_one();
        Ok(())
    }

    /// Ends the stream: with an Eof chunk, or (closed) with `None`, once
    /// what is buffered has been read.
    pub(super) fn finish(&self, eof: bool) {
        let mut buf = lock(&self.inner);
        buf.end
            .get_or_insert(if eof { End::Eof } else { End::Closed });
        drop(buf);
        self.ready.notify_one();
    }
}

/// Bytes the agent sends on one stream.
pub struct OutputStream {
    pub stream: StreamId,
    output: Arc<Output>,
    shared: Arc<Shared>,
}

impl OutputStream {
    pub(super) fn new(stream: StreamId, output: Arc<Output>, shared: Arc<Shared>) -> Self {
        Self {
            stream,
            output,
            shared,
        }
    }

    /// The next chunk (all that is buffered); `None` if the stream was
    /// closed, or the connection broke, before EOF.
    pub async fn next(&mut self) -> Option<Chunk> {
        loop {
            if let Some(next) = self.ready() {
                return next;
            }
            self.output.ready.notified().await;
        }
    }

    /// What [`Self::next`] returns if it need not wait; `None` if it must.
    pub(super) fn ready(&mut self) -> Option<Option<Chunk>> {
        let mut buf = lock(&self.output.inner);
        if !buf.data.is_empty() {
            let data = std::mem::take(&mut buf.data);
            buf.taken += data.len() as u64;
            return Some(Some(Chunk::Data(data)));
        }
        match buf.end {
            Some(End::Eof) => Some(Some(Chunk::Eof)),
            Some(End::Closed) => Some(None),
            None => None,
        }
    }

    /// Returns credit for `n` bytes that have been handed on (never more
    /// than were taken).
    pub fn consumed(&self, n: usize) {
        let n = {
            let mut buf = lock(&self.output.inner);
            let n = (n as u64).min(buf.taken);
            buf.taken -= n;
            // The credit counts before the agent can see the window.
            buf.allowed += n;
            n
        };
        if n > 0 {
            self.shared.return_credit(self.stream, n);
        }
    }

    /// Bytes received and not yet consumed: never more than
    /// [`INITIAL_WINDOW`].
    pub fn buffered(&self) -> u64 {
        let buf = lock(&self.output.inner);
        buf.data.len() as u64 + buf.taken
    }

    /// The most this stream ever buffered.
    pub fn peak_buffered(&self) -> u64 {
        lock(&self.output.inner).peak
    }
}

impl Drop for OutputStream {
    fn drop(&mut self) {
        let mut buf = lock(&self.output.inner);
        buf.reader_gone = true;
        // Nobody will take it: free it now.
        buf.data = Vec::new();
    }
}

/// Bytes the host sends on one stream, within the agent's window.
pub struct InputStream {
    stream: StreamId,
    credit: Arc<AsyncCredit>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

impl InputStream {
    pub(super) fn new(
        stream: StreamId,
        credit: Arc<AsyncCredit>,
        outbox: mpsc::UnboundedSender<Outgoing>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            stream,
            credit,
            outbox,
            shared,
        }
    }

    /// Sends all of `data`, waiting for credit and for room in the outbox
    /// as needed. False once the connection is gone.
    pub async fn send(&self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let Some(n) = self.credit.take(data.len().min(MAX_DATA_CHUNK)).await else {
                return false;
            };
            let Ok(room) = self
                .shared
                .data_room
                .clone()
                .acquire_many_owned(n as u32)
                .await
            else {
                return false;
            };
            let frame = Frame::data(self.stream, data[..n].to_vec());
            let outgoing = Outgoing {
                frame,
                room: Some(room),
                hold_after: false,
            };
            if self.outbox.send(outgoing).is_err() {
                return false;
            }
            data = &data[n..];
        }
        true
    }

    pub fn close(&self) {
        let _ = send_control(&self.shared, &self.outbox, Frame::eof(self.stream), false);
    }
}

/// The async twin of `hull_protocol::Credit`, for one waiting task.
pub(super) struct AsyncCredit {
    state: Mutex<(u64, bool)>,
    changed: Notify,
}

impl AsyncCredit {
    pub(super) fn new(initial: u32) -> Self {
        Self {
            state: Mutex::new((initial.into(), false)),
            changed: Notify::new(),
        }
    }

    /// Adds credit the agent granted; capped, so a hostile grant cannot
    /// overflow it.
    pub(super) fn grant(&self, n: u32) {
        let mut state = lock(&self.state);
        state.0 = (state.0 + u64::from(n)).min(u64::from(u32::MAX));
        self.changed.notify_one();
    }

    pub(super) fn close(&self) {
        lock(&self.state).1 = true;
        self.changed.notify_one();
    }

    async fn take(&self, want: usize) -> Option<usize> {
        loop {
            {
                let mut state = lock(&self.state);
                if state.1 {
                    return None;
                }
                if state.0 > 0 {
                    let n = state.0.min(want as u64);
                    state.0 -= n;
                    return Some(n as usize);
                }
            }
            self.changed.notified().await;
        }
    }
}
