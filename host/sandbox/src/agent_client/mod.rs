//! The host end of the agent connection: one reader task demultiplexes
//! frames into request replies, events and per-stream queues; one writer
//! task owns the write half. Output streams are acknowledged with window
//! credit only once their bytes have been handed on.
//!
//! The agent is root in a VM the host does not trust, so nothing it sends
//! is buffered without a bound (the model is HTTP/2's flow-control errors,
//! RFC 9113 §6.9.1, with Firecracker's rate-limited guest logs):
//!
//! * each output stream holds at most the credit the host granted
//!   ([`INITIAL_WINDOW`] plus the windows it returned); a Data frame beyond
//!   it is a [`Violation::Overrun`];
//! * bytes on streams the host does not read are dropped, never answered
//!   with credit, and limited to [`UNREAD_BUDGET`] per connection;
//! * at most [`EVENTS_CAPACITY`] events wait for the supervisor;
//! * what the host queues for an agent that stops reading is bounded:
//!   returned credit is coalesced per stream, input data waits for
//!   [`OUTBOX_DATA_BYTES`] of room, and control frames past
//!   [`OUTBOX_CONTROL_BYTES`] mean the agent is not reading;
//! * log lines the agent can trigger are rate-limited ([`reader`]).
//!
//! A violation drops the connection: replies, events and streams end, and
//! [`AgentClient::violation`] says why, for the container's error.

#[doc(hidden)]
pub mod fuzzing;
mod reader;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hull_protocol::frame::HEADER_LEN;
use hull_protocol::{
    AgentError, ControlMessage, Event, Frame, Reply, Request, StreamId, INITIAL_WINDOW,
    PROTOCOL_VERSION,
};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};

use streams::{AsyncCredit, Output};
pub use streams::{Chunk, InputStream, OutputStream};

/// Bytes an agent may send per connection on streams the host does not
/// read (never opened, or closed by the host). An honest agent sends
/// none: the host opens a stream before naming it, and the agent closes
/// every output before it reports the process's exit.
pub const UNREAD_BUDGET: u64 = 1 << 20;

/// Events that may wait for the supervisor; legitimate ones are a few
/// exits (the main process's, exec'd processes').
pub const EVENTS_CAPACITY: usize = 64;

/// Input bytes (the container's stdin) queued for the agent at most; the
/// sender waits for room.
pub const OUTBOX_DATA_BYTES: usize = 1 << 20;

/// Control frames queued for the agent at most. Only an agent that stopped
/// reading its connection lets them pile up this far.
pub const OUTBOX_CONTROL_BYTES: usize = 4 << 20;

/// How long a request waits for its answer by default: long past what an
/// honest agent under a slow emulator needs, short enough that an agent
/// that keeps quiet holds no `hull exec`, `stats` or `stop` for ever.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// How long starting the container may take at most (mounting the image,
/// running its hooks): the supervisor bounds it tighter and says why.
pub const RUN_CONTAINER_DEADLINE: Duration = Duration::from_secs(330);

/// How long exporting a container's changes may take at most: the answer
/// comes after the whole layer, and the stream's own bound (no byte for a
/// minute, the supervisor's) is what ends a quiet export.
pub const EXPORT_DEADLINE: Duration = Duration::from_secs(3600);

/// The deadline of a request of this kind.
pub fn request_deadline(request: &Request) -> Duration {
    match request {
        Request::RunContainer(_) => RUN_CONTAINER_DEADLINE,
        Request::ExportChanges(_) => EXPORT_DEADLINE,
        _ => REQUEST_DEADLINE,
    }
}

/// The request's name in an error.
fn request_name(request: &Request) -> &'static str {
    match request {
        Request::RunContainer(_) => "run_container",
        Request::Signal { .. } => "signal",
        Request::ResizeTerminal { .. } => "resize_terminal",
        Request::ExecProcess(_) => "exec_process",
        Request::Stats { .. } => "stats",
        Request::ListProcesses { .. } => "list_processes",
        Request::SignalContainer { .. } => "signal_container",
        Request::Freeze { .. } => "freeze",
        Request::UpdateResources { .. } => "update_resources",
        Request::RemoveContainer { .. } => "remove_container",
        Request::Shutdown => "shutdown",
        Request::Wake(_) => "wake",
        Request::ExportChanges(_) => "export_changes",
        Request::Checkpoint { .. } => "checkpoint",
        Request::Unpark { .. } => "unpark",
    }
}

/// The agent's events, as the supervisor takes them.
pub type Events = mpsc::Receiver<Event>;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("the agent did not say hello within {0:?}")]
    HelloTimeout(Duration),
    #[error("the agent closed the connection")]
    Disconnected,
    #[error("the agent speaks protocol {0}, this hull speaks {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("agent connection")]
    Io(#[source] std::io::Error),
    #[error("the guest agent broke the protocol")]
    Violation(#[source] Violation),
    #[error("the agent did not answer {op} within {after:?}")]
    NoAnswer { op: &'static str, after: Duration },
}

/// How an agent broke the protocol; the host dropped its connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Violation {
    #[error("it overran stream {stream}'s window by {by} bytes")]
    Overrun { stream: StreamId, by: u64 },
    #[error("it sent {bytes} bytes on streams the host does not read (at most {UNREAD_BUDGET})")]
    Unread { bytes: u64 },
    #[error("it sent more than {EVENTS_CAPACITY} events the host had not taken yet")]
    EventFlood,
    #[error("it stopped reading its connection ({bytes} bytes queued for it)")]
    NotReading { bytes: usize },
    #[error("it sent a malformed frame ({0})")]
    Malformed(String),
    #[error("it sent a bad control message ({0})")]
    BadControl(String),
}

/// A request failed: the agent refused it, or the connection broke.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl RequestError {
    /// The protocol violation that broke the connection, if one did.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Self::Client(ClientError::Violation(v)) => Some(v),
            _ => None,
        }
    }
}

type Waiter = oneshot::Sender<Result<Reply, AgentError>>;

/// Requests waiting for their answers; once `closed`, none are taken.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, Waiter>,
    closed: bool,
}

/// One frame for the writer; input data holds its room in the outbox
/// until written.
struct Outgoing {
    frame: Frame,
    room: Option<OwnedSemaphorePermit>,
    /// The last frame before the VM is saved: the writer holds everything
    /// after it (returned credit too) until [`AgentClient::release`].
    hold_after: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    outputs: Mutex<HashMap<StreamId, Arc<Output>>>,
    inputs: Mutex<HashMap<StreamId, Arc<AsyncCredit>>>,
    /// Credit to return per stream, coalesced: one Window frame per
    /// stream however many chunks were consumed.
    windows: Mutex<HashMap<StreamId, u64>>,
    windows_ready: Notify,
    /// Bytes of control frames not yet written.
    control_queued: AtomicUsize,
    /// Room for input data in the outbox.
    data_room: Arc<Semaphore>,
    /// Set once the connection is to be dropped.
    closed: watch::Sender<bool>,
    /// Set while the writer holds its frames (a checkpoint's save).
    held: watch::Sender<bool>,
    violation: Mutex<Option<Violation>>,
}

impl Shared {
    fn new() -> Self {
        Self {
            pending: Mutex::default(),
            outputs: Mutex::default(),
            inputs: Mutex::default(),
            windows: Mutex::default(),
            windows_ready: Notify::new(),
            control_queued: AtomicUsize::new(0),
            data_room: Arc::new(Semaphore::new(OUTBOX_DATA_BYTES)),
            closed: watch::Sender::new(false),
            held: watch::Sender::new(false),
            violation: Mutex::new(None),
        }
    }

    /// Drops the connection for `violation` (the first one is kept).
    fn fail(&self, violation: Violation) {
        let mut first = lock(&self.violation);
        if first.is_none() {
            tracing::warn!("dropping the agent's connection: {violation}");
            *first = Some(violation);
        }
        drop(first);
        self.close();
    }

    fn close(&self) {
        self.closed.send_replace(true);
        self.data_room.close();
    }

    /// Why requests and streams end: the violation, else a disconnect.
    fn lost(&self) -> ClientError {
        match lock(&self.violation).clone() {
            Some(v) => ClientError::Violation(v),
            None => ClientError::Disconnected,
        }
    }

    /// Queues credit for `n` consumed bytes of `stream`.
    fn return_credit(&self, stream: StreamId, n: u64) {
        *lock(&self.windows).entry(stream).or_default() += n;
        self.windows_ready.notify_one();
    }

    /// The connection ended: everything waiting on the agent fails.
    fn shut_down(&self) {
        self.close();
        {
            let mut pending = lock(&self.pending);
            pending.closed = true;
            pending.waiting.clear();
        }
        for (_, output) in lock(&self.outputs).drain() {
            output.finish(false);
        }
        lock(&self.windows).clear();
        for (_, credit) in lock(&self.inputs).drain() {
            credit.close();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct AgentClient {
    outbox: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    /// The agent's software string from its hello.
    pub agent_software: String,
}

impl AgentClient {
    /// Takes over a connected stream, waits for the agent's hello and
    /// answers it. Returns the client and the stream of agent events, which
    /// ends when the connection does.
    pub async fn start(
        stream: UnixStream,
        hello_timeout: Duration,
    ) -> Result<(Self, Events), ClientError> {
        let (mut client, events, hello_rx) = Self::take_over(stream);
        let (version, software) = tokio::time::timeout(hello_timeout, hello_rx)
            .await
            .map_err(|_| ClientError::HelloTimeout(hello_timeout))?
            .map_err(|_| client.shared.lost())?;
        if version != PROTOCOL_VERSION {
            return Err(ClientError::Version(version));
        }
        let hello = ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: format!("hull {}", env!("CARGO_PKG_VERSION")),
        };
        client.send_control(hello.to_frame())?;
        client.agent_software = software;
        Ok((client, events))
    }

    /// Takes over the connection of an agent that said hello before: that
    /// of a VM restored from a template, whose agent carries on the
    /// template's session. The first request is its sign of life.
    pub fn resume(stream: UnixStream) -> (Self, Events) {
        let (client, events, _hello) = Self::take_over(stream);
        (client, events)
    }

    fn take_over(stream: UnixStream) -> (Self, Events, oneshot::Receiver<(u32, String)>) {
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared::new());
        let (outbox, outgoing) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(write_half, shared.clone(), outgoing));
        let (events_tx, events) = mpsc::channel(EVENTS_CAPACITY);
        let (hello_tx, hello_rx) = oneshot::channel();
        tokio::spawn(reader::read_loop(
            read_half,
            shared.clone(),
            events_tx,
            hello_tx,
        ));
        let client = Self {
            outbox,
            shared,
            next_id: AtomicU64::new(1),
            agent_software: String::new(),
        };
        (client, events, hello_rx)
    }

    /// Sends a request and waits for its response, at most
    /// [`request_deadline`] for its kind.
    pub async fn request(&self, request: Request) -> Result<Reply, RequestError> {
        let deadline = request_deadline(&request);
        self.request_within(request, deadline).await
    }

    /// Sends a request and waits at most `deadline` for its response. An
    /// answer that comes later is dropped as one nobody waits for.
    pub async fn request_within(
        &self,
        request: Request,
        deadline: Duration,
    ) -> Result<Reply, RequestError> {
        self.ask(request, deadline, false).await
    }

    async fn ask(
        &self,
        request: Request,
        deadline: Duration,
        hold_after: bool,
    ) -> Result<Reply, RequestError> {
        let op = request_name(&request);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.shared.pending);
            if pending.closed {
                return Err(self.shared.lost().into());
            }
            pending.waiting.insert(id, tx);
        }
        let message = ControlMessage::Request { id, request };
        if let Err(e) = send_control(&self.shared, &self.outbox, message.to_frame(), hold_after) {
            lock(&self.shared.pending).waiting.remove(&id);
            return Err(e.into());
        }
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(_)) => Err(self.shared.lost().into()),
            Err(_) => {
                lock(&self.shared.pending).waiting.remove(&id);
                Err(ClientError::NoAnswer {
                    op,
                    after: deadline,
                }
                .into())
            }
        }
    }

    /// Sends `request` as the last frame before the VM is saved and waits
    /// for its answer: after it the writer sends nothing (not even
    /// returned credit, which it keeps) until [`Self::release`], so no
    /// frame is half-way into a VM when it stops.
    pub async fn request_then_hold(&self, request: Request) -> Result<Reply, RequestError> {
        self.ask(request, REQUEST_DEADLINE, true).await
    }

    /// Lets the writer send again after [`Self::request_then_hold`].
    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    /// Sends a request without waiting for the answer.
    pub fn notify(&self, request: Request) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.send_control(ControlMessage::Request { id, request }.to_frame());
    }

    /// Queues a frame that waits for no credit. Their count is the host's
    /// doing, so they are not refused one by one; but if the agent lets
    /// them pile up past [`OUTBOX_CONTROL_BYTES`] it is not reading, and
    /// the connection goes.
    fn send_control(&self, frame: Frame) -> Result<(), ClientError> {
        send_control(&self.shared, &self.outbox, frame, false)
    }

    /// Registers a stream the agent will send on; call before naming it in
    /// a request.
    pub fn open_output(&self, stream: StreamId) -> OutputStream {
        let output = Arc::new(Output::new());
        lock(&self.shared.outputs).insert(stream, output.clone());
        OutputStream::new(stream, output, self.shared.clone())
    }

    /// Ends an output stream the host no longer reads (its request failed,
    /// or its process exited): what is queued is still delivered, and
    /// whatever the agent sends on it after is unread.
    pub fn close_output(&self, stream: StreamId) {
        if let Some(output) = lock(&self.shared.outputs).remove(&stream) {
            output.finish(false);
        }
    }

    /// Registers a stream the host sends on.
    pub fn open_input(&self, stream: StreamId) -> InputStream {
        let credit = Arc::new(AsyncCredit::new(INITIAL_WINDOW));
        lock(&self.shared.inputs).insert(stream, credit.clone());
        InputStream::new(stream, credit, self.outbox.clone(), self.shared.clone())
    }

    /// Bytes queued for the agent and not yet written: control frames,
    /// input data, and the Window frames owed (one per stream).
    pub fn queued_for_agent(&self) -> usize {
        let shared = &self.shared;
        let data = OUTBOX_DATA_BYTES.saturating_sub(shared.data_room.available_permits());
        let windows = lock(&shared.windows).len() * (HEADER_LEN + 4);
        shared.control_queued.load(Ordering::SeqCst) + data + windows
    }

    /// The protocol violation that made the host drop the connection, if
    /// one did.
    pub fn violation(&self) -> Option<Violation> {
        lock(&self.shared.violation).clone()
    }
}

/// See [`AgentClient::send_control`].
fn send_control(
    shared: &Shared,
    outbox: &mpsc::UnboundedSender<Outgoing>,
    frame: Frame,
    hold_after: bool,
) -> Result<(), ClientError> {
    let len = HEADER_LEN + frame.payload.len();
    let queued = shared.control_queued.fetch_add(len, Ordering::SeqCst) + len;
    if queued > OUTBOX_CONTROL_BYTES {
        shared.control_queued.fetch_sub(len, Ordering::SeqCst);
        shared.fail(Violation::NotReading { bytes: queued });
        return Err(shared.lost());
    }
    let outgoing = Outgoing {
        frame,
        room: None,
        hold_after,
    };
    if *shared.closed.borrow() || outbox.send(outgoing).is_err() {
        shared.control_queued.fetch_sub(len, Ordering::SeqCst);
        return Err(shared.lost());
    }
    Ok(())
}

/// Writes queued frames and returned credit until the connection closes.
async fn write_loop(
    mut output: OwnedWriteHalf,
    shared: Arc<Shared>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut closed = shared.closed.subscribe();
    let mut held = shared.held.subscribe();
    let mut wire = Vec::new();
    loop {
        wire.clear();
        // Held for a checkpoint: wait for the release (or the end).
        tokio::select! {
            biased;
            () = wait_closed(&mut closed) => break,
            _ = held.wait_for(|h| !*h) => {}
        }
        // Input data keeps its room in the outbox until it is written.
        let mut room = None;
        let mut hold_after = false;
        tokio::select! {
            biased;
            () = wait_closed(&mut closed) => break,
            next = outgoing.recv() => match next {
                Some(next) => {
                    hold_after = next.hold_after;
                    next.frame.encode_into(&mut wire);
                    match next.room {
                        Some(_) => room = next.room,
                        None => {
                            shared.control_queued.fetch_sub(wire.len(), Ordering::SeqCst);
                        }
                    }
                }
                None => break,
            },
            () = shared.windows_ready.notified() => {}
        }
        if hold_after {
            shared.held.send_replace(true);
        }
        // Whatever woke the writer, the credit owed goes too: neither
        // starves the other (unless this is the last frame before a save).
        let owed: Vec<(StreamId, u64)> = if hold_after {
            Vec::new()
        } else {
            lock(&shared.windows).drain().collect()
        };
        for (stream, credit) in owed {
            // At most one window's worth is ever owed.
            let credit = u32::try_from(credit).unwrap_or(u32::MAX);
            Frame::window(stream, credit).encode_into(&mut wire);
        }
        if wire.is_empty() {
            continue;
        }
        let written = tokio::select! {
            written = output.write_all(&wire) => written.is_ok(),
            () = wait_closed(&mut closed) => false,
        };
        drop(room);
        if !written {
            break;
        }
    }
}

async fn wait_closed(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|c| *c).await;
}
