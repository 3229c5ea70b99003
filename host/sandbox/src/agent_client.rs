//! The host end of the agent connection: one reader task demultiplexes
//! frames into request replies, events and per-stream queues; one writer
//! task owns the write half. Output streams are acknowledged with window
//! credit only once their bytes have been handed on, so the agent can never
//! make the host buffer more than one window per stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hull_protocol::frame::MAX_DATA_CHUNK;
use hull_protocol::{
    AgentError, ControlMessage, Event, Frame, FrameDecoder, FrameKind, Reply, Request, StreamId,
    INITIAL_WINDOW, PROTOCOL_VERSION,
};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, Notify};

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
}

/// A request failed: the agent refused it, or the connection broke.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What arrives on an output stream.
#[derive(Debug)]
pub enum Chunk {
    Data(Vec<u8>),
    Eof,
}

type Pending = HashMap<u64, oneshot::Sender<Result<Reply, AgentError>>>;

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    outputs: Mutex<HashMap<StreamId, mpsc::UnboundedSender<Chunk>>>,
    inputs: Mutex<HashMap<StreamId, Arc<AsyncCredit>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct AgentClient {
    outbox: mpsc::UnboundedSender<Frame>,
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
    ) -> Result<(Self, mpsc::UnboundedReceiver<Event>), ClientError> {
        let (mut client, events, hello_rx) = Self::take_over(stream);
        let (version, software) = tokio::time::timeout(hello_timeout, hello_rx)
            .await
            .map_err(|_| ClientError::HelloTimeout(hello_timeout))?
            .map_err(|_| ClientError::Disconnected)?;
        if version != PROTOCOL_VERSION {
            return Err(ClientError::Version(version));
        }
        let hello = ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: format!("hull {}", env!("CARGO_PKG_VERSION")),
        };
        client
            .outbox
            .send(hello.to_frame())
            .map_err(|_| ClientError::Disconnected)?;
        client.agent_software = software;
        Ok((client, events))
    }

    /// Takes over the connection of an agent that said hello before: that
    /// of a VM restored from a template, whose agent carries on the
    /// template's session. The first request is its sign of life.
    pub fn resume(stream: UnixStream) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (client, events, _hello) = Self::take_over(stream);
        (client, events)
    }

    #[allow(clippy::type_complexity)]
    fn take_over(
        stream: UnixStream,
    ) -> (
        Self,
        mpsc::UnboundedReceiver<Event>,
        oneshot::Receiver<(u32, String)>,
    ) {
        let (read_half, mut write_half) = stream.into_split();
        let (outbox, mut outgoing) = mpsc::unbounded_channel::<Frame>();
        tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                if write_half.write_all(&frame.encode()).await.is_err() {
                    break;
                }
            }
        });
        let shared = Arc::new(Shared::default());
        let (events_tx, events) = mpsc::unbounded_channel();
        let (hello_tx, hello_rx) = oneshot::channel();
        tokio::spawn(read_loop(
            read_half,
            shared.clone(),
            events_tx,
            hello_tx,
            outbox.clone(),
        ));
        let client = Self {
            outbox,
            shared,
            next_id: AtomicU64::new(1),
            agent_software: String::new(),
        };
        (client, events, hello_rx)
    }

    /// Sends a request and waits for its response.
    pub async fn request(&self, request: Request) -> Result<Reply, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id, tx);
        let message = ControlMessage::Request { id, request };
        if self.outbox.send(message.to_frame()).is_err() {
            lock(&self.shared.pending).remove(&id);
            return Err(ClientError::Disconnected.into());
        }
        Ok(rx.await.map_err(|_| ClientError::Disconnected)??)
    }

    /// Sends a request without waiting for the answer.
    pub fn notify(&self, request: Request) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .outbox
            .send(ControlMessage::Request { id, request }.to_frame());
    }

    /// Registers a stream the agent will send on; call before naming it in
    /// a request.
    pub fn open_output(&self, stream: StreamId) -> OutputStream {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.outputs).insert(stream, tx);
        OutputStream {
            stream,
            chunks: rx,
            outbox: self.outbox.clone(),
        }
    }

    /// Ends an output stream nobody will send on (its request failed).
    pub fn close_output(&self, stream: StreamId) {
        lock(&self.shared.outputs).remove(&stream);
    }

    /// Registers a stream the host sends on.
    pub fn open_input(&self, stream: StreamId) -> InputStream {
        let credit = Arc::new(AsyncCredit::new(INITIAL_WINDOW));
        lock(&self.shared.inputs).insert(stream, credit.clone());
        InputStream {
            stream,
            credit,
            outbox: self.outbox.clone(),
        }
    }
}

async fn read_loop(
    mut input: tokio::net::unix::OwnedReadHalf,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    hello: oneshot::Sender<(u32, String)>,
    outbox: mpsc::UnboundedSender<Frame>,
) {
    let mut hello = Some(hello);
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match input.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        decoder.feed(&buf[..n]);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!("agent sent a malformed frame: {err}");
                    break 'read;
                }
            };
            match frame.kind {
                FrameKind::Control => match ControlMessage::from_frame(&frame) {
                    Ok(ControlMessage::Hello { version, software }) => {
                        if let Some(tx) = hello.take() {
                            let _ = tx.send((version, software));
                        }
                    }
                    Ok(ControlMessage::Response { id, result }) => {
                        if let Some(tx) = lock(&shared.pending).remove(&id) {
                            let _ = tx.send(result);
                        }
                    }
                    Ok(ControlMessage::Event { event }) => {
                        let _ = events.send(event);
                    }
                    Ok(ControlMessage::Request { .. }) => {
                        tracing::warn!("agent sent a request; ignoring it");
                    }
                    Err(err) => {
                        tracing::warn!("agent sent a bad control message: {err}");
                        break 'read;
                    }
                },
                FrameKind::Data => {
                    if let Some(tx) = lock(&shared.outputs).get(&frame.stream) {
                        let _ = tx.send(Chunk::Data(frame.payload));
                    } else {
                        // Nobody reads it: give the credit straight back.
                        let _ =
                            outbox.send(Frame::window(frame.stream, frame.payload.len() as u32));
                    }
                }
                FrameKind::Eof => {
                    if let Some(tx) = lock(&shared.outputs).remove(&frame.stream) {
                        let _ = tx.send(Chunk::Eof);
                    }
                }
                FrameKind::Window => {
                    if let (Some(credit), Some(n)) = (
                        lock(&shared.inputs).get(&frame.stream),
                        frame.window_credit(),
                    ) {
                        credit.grant(n);
                    }
                }
            }
        }
    }
    // Disconnected: fail whatever waits on the agent.
    lock(&shared.pending).clear();
    lock(&shared.outputs).clear();
    for (_, credit) in lock(&shared.inputs).drain() {
        credit.close();
    }
}

/// Bytes the agent sends on one stream.
pub struct OutputStream {
    pub stream: StreamId,
    chunks: mpsc::UnboundedReceiver<Chunk>,
    outbox: mpsc::UnboundedSender<Frame>,
}

impl OutputStream {
    /// The next chunk; `None` if the connection broke before EOF.
    pub async fn next(&mut self) -> Option<Chunk> {
        self.chunks.recv().await
    }

    /// Returns credit for `n` bytes that have been handed on.
    pub fn consumed(&self, n: usize) {
        if n > 0 {
            let _ = self.outbox.send(Frame::window(self.stream, n as u32));
        }
    }
}

/// Bytes the host sends on one stream, within the agent's window.
pub struct InputStream {
    stream: StreamId,
    credit: Arc<AsyncCredit>,
    outbox: mpsc::UnboundedSender<Frame>,
}

impl InputStream {
    /// Sends all of `data`, waiting for credit as needed. False once the
    /// connection is gone.
    pub async fn send(&self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let Some(n) = self.credit.take(data.len().min(MAX_DATA_CHUNK)).await else {
                return false;
            };
            if self
                .outbox
                .send(Frame::data(self.stream, data[..n].to_vec()))
                .is_err()
            {
                return false;
            }
            data = &data[n..];
        }
        true
    }

    pub fn close(&self) {
        let _ = self.outbox.send(Frame::eof(self.stream));
    }
}

/// The async twin of `hull_protocol::Credit`, for one waiting task.
struct AsyncCredit {
    state: Mutex<(u64, bool)>,
    changed: Notify,
}

impl AsyncCredit {
    fn new(initial: u32) -> Self {
        Self {
            state: Mutex::new((initial.into(), false)),
            changed: Notify::new(),
        }
    }

    fn grant(&self, n: u32) {
        let mut state = lock(&self.state);
        state.0 = (state.0 + u64::from(n)).min(u64::from(u32::MAX));
        self.changed.notify_one();
    }

    fn close(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hull_protocol::{ExitStatus, CONTROL_STREAM};

    /// A fake agent on the other end of a socket pair.
    async fn fake_agent() -> (UnixStream, UnixStream) {
        let (host, agent) = UnixStream::pair().unwrap();
        (host, agent)
    }

    async fn read_frame(sock: &mut UnixStream, dec: &mut FrameDecoder) -> Frame {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = dec.next_frame().unwrap() {
                return f;
            }
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "host closed");
            dec.feed(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn hello_request_stream_and_event() {
        let (host, mut agent) = fake_agent().await;
        let hello = ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: "fake".into(),
        };
        agent.write_all(&hello.to_frame().encode()).await.unwrap();
        let (client, mut events) = AgentClient::start(host, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(client.agent_software, "fake");
        let mut out = client.open_output(2);

        let mut dec = FrameDecoder::new();
        let host_hello = read_frame(&mut agent, &mut dec).await;
        assert!(matches!(
            ControlMessage::from_frame(&host_hello).unwrap(),
            ControlMessage::Hello { .. }
        ));

        let req = tokio::spawn(async move {
            let r = client.request(Request::Shutdown).await;
            (client, r)
        });
        let frame = read_frame(&mut agent, &mut dec).await;
        let ControlMessage::Request { id, request } = ControlMessage::from_frame(&frame).unwrap()
        else {
            panic!("expected a request")
        };
        assert_eq!(request, Request::Shutdown);
        let mut wire = Vec::new();
        Frame::data(2, b"hello".to_vec()).encode_into(&mut wire);
        Frame::eof(2).encode_into(&mut wire);
        ControlMessage::Response {
            id,
            result: Ok(Reply::Done),
        }
        .to_frame()
        .encode_into(&mut wire);
        let exited = Event::ProcessExited {
            process: "init".into(),
            status: ExitStatus::Code(3),
            oom_killed: false,
        };
        ControlMessage::Event {
            event: exited.clone(),
        }
        .to_frame()
        .encode_into(&mut wire);
        agent.write_all(&wire).await.unwrap();

        let (client, reply) = req.await.unwrap();
        assert_eq!(reply.unwrap(), Reply::Done);
        assert!(matches!(out.next().await, Some(Chunk::Data(d)) if d == b"hello"));
        out.consumed(5);
        assert!(matches!(out.next().await, Some(Chunk::Eof)));
        assert_eq!(events.recv().await, Some(exited));
        let window = read_frame(&mut agent, &mut dec).await;
        assert_eq!((window.stream, window.window_credit()), (2, Some(5)));
        drop(client);
    }

    #[tokio::test]
    async fn input_respects_the_window() {
        let (host, mut agent) = fake_agent().await;
        let hello = ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: "fake".into(),
        };
        agent.write_all(&hello.to_frame().encode()).await.unwrap();
        let (client, _events) = AgentClient::start(host, Duration::from_secs(5))
            .await
            .unwrap();
        let input = client.open_input(3);
        let big = vec![1u8; INITIAL_WINDOW as usize + 10];
        let sender = tokio::spawn(async move { input.send(&big).await });
        let mut dec = FrameDecoder::new();
        let mut got = 0usize;
        while got < INITIAL_WINDOW as usize {
            let f = read_frame(&mut agent, &mut dec).await;
            if f.stream == 3 {
                got += f.payload.len();
            }
        }
        assert_eq!(got, INITIAL_WINDOW as usize);
        // Nothing more until credit comes back.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sender.is_finished());
        agent
            .write_all(&Frame::window(3, 10).encode())
            .await
            .unwrap();
        assert!(sender.await.unwrap());
        assert_eq!(read_frame(&mut agent, &mut dec).await.payload.len(), 10);
    }

    #[tokio::test]
    async fn disconnect_fails_pending_requests() {
        let (host, mut agent) = fake_agent().await;
        let hello = ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: "fake".into(),
        };
        agent.write_all(&hello.to_frame().encode()).await.unwrap();
        let (client, mut events) = AgentClient::start(host, Duration::from_secs(5))
            .await
            .unwrap();
        drop(agent);
        assert!(matches!(
            client.request(Request::Shutdown).await,
            Err(RequestError::Client(_))
        ));
        assert_eq!(events.recv().await, None);
        let _ = CONTROL_STREAM;
    }

    #[tokio::test]
    async fn wrong_version_is_refused() {
        let (host, mut agent) = fake_agent().await;
        let hello = ControlMessage::Hello {
            version: 99,
            software: "future".into(),
        };
        agent.write_all(&hello.to_frame().encode()).await.unwrap();
        assert!(matches!(
            AgentClient::start(host, Duration::from_secs(5)).await,
            Err(ClientError::Version(99))
        ));
    }
}
