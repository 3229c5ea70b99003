//! The client against fake agents on a socket pair: honest ones, and
//! hostile ones that flood, ignore windows and never read.

use std::time::Instant;

use hull_protocol::frame::MAX_DATA_CHUNK;
use hull_protocol::{ExitStatus, FrameDecoder, FrameKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::reader::{GuestLog, LOG_BURST, LOG_PERIOD};
use super::*;

const LONG: Duration = Duration::from_secs(30);

/// A client greeted by a fake agent; the agent's end of the pair.
async fn connected() -> (AgentClient, Events, UnixStream) {
    let (host, mut agent) = UnixStream::pair().unwrap();
    let hello = ControlMessage::Hello {
        version: PROTOCOL_VERSION,
        software: "fake".into(),
    };
    agent.write_all(&hello.to_frame().encode()).await.unwrap();
    let (client, events) = AgentClient::start(host, Duration::from_secs(5))
        .await
        .unwrap();
    (client, events, agent)
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

/// Every frame the host wrote until it closed the connection.
async fn read_all(sock: &mut UnixStream) -> Vec<Frame> {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(LONG, sock.read_to_end(&mut bytes)).await;
    let mut dec = FrameDecoder::new();
    dec.feed(&bytes);
    std::iter::from_fn(|| dec.next_frame().unwrap()).collect()
}

fn exited(n: i32) -> Event {
    Event::ProcessExited {
        process: format!("exec-{n}"),
        status: ExitStatus::Code(n),
        oom_killed: false,
    }
}

fn event_frame(event: Event) -> Vec<u8> {
    ControlMessage::Event { event }.to_frame().encode()
}

/// Writes `frame` over and over, `total` payload bytes in all, until the
/// host hangs up; returns the payload bytes written.
async fn flood(agent: &mut UnixStream, frame: Frame, total: u64) -> u64 {
    let wire = frame.encode();
    let mut batch = Vec::new();
    while batch.len() < 256 * 1024 {
        batch.extend_from_slice(&wire);
    }
    let per_batch = (batch.len() / wire.len() * frame.payload.len()) as u64;
    let mut sent = 0;
    while sent < total {
        if agent.write_all(&batch).await.is_err() {
            break;
        }
        sent += per_batch;
    }
    sent
}

/// The resident set of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn hello_request_stream_and_event() {
    let (client, mut events, mut agent) = connected().await;
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
    wire.extend(event_frame(exited(3)));
    agent.write_all(&wire).await.unwrap();

    let (client, reply) = req.await.unwrap();
    assert_eq!(reply.unwrap(), Reply::Done);
    assert!(matches!(out.next().await, Some(Chunk::Data(d)) if d == b"hello"));
    out.consumed(5);
    assert!(matches!(out.next().await, Some(Chunk::Eof)));
    assert_eq!(events.recv().await, Some(exited(3)));
    let window = read_frame(&mut agent, &mut dec).await;
    assert_eq!((window.stream, window.window_credit()), (2, Some(5)));
    assert_eq!(client.violation(), None);
}

#[tokio::test]
async fn input_respects_the_window() {
    let (client, _events, mut agent) = connected().await;
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
    let (client, mut events, agent) = connected().await;
    drop(agent);
    assert!(matches!(
        client.request(Request::Shutdown).await,
        Err(RequestError::Client(ClientError::Disconnected))
    ));
    assert_eq!(events.recv().await, None);
    // Later requests fail too, rather than wait forever.
    let late = tokio::time::timeout(LONG, client.request(Request::Shutdown)).await;
    assert!(matches!(late, Ok(Err(RequestError::Client(_)))));
}

#[tokio::test]
async fn wrong_version_is_refused() {
    let (host, mut agent) = UnixStream::pair().unwrap();
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

/// An agent that keeps within its window may send forever: credit comes
/// back once bytes are consumed, coalesced into few Window frames.
#[tokio::test]
async fn an_agent_within_its_window_is_never_cut_off() {
    let (client, _events, mut agent) = connected().await;
    let mut out = client.open_output(1);
    let mut dec = FrameDecoder::new();
    let _hello = read_frame(&mut agent, &mut dec).await;
    for round in 0..3 {
        let mut wire = Vec::new();
        let mut left = INITIAL_WINDOW as usize;
        while left > 0 {
            let n = left.min(MAX_DATA_CHUNK);
            Frame::data(1, vec![round; n]).encode_into(&mut wire);
            left -= n;
        }
        agent.write_all(&wire).await.unwrap();
        let mut got = 0;
        while got < INITIAL_WINDOW as usize {
            let Some(Chunk::Data(bytes)) = out.next().await else {
                panic!("stream ended: {:?}", client.violation())
            };
            assert!(bytes.iter().all(|b| *b == round));
            got += bytes.len();
            assert!(out.buffered() <= u64::from(INITIAL_WINDOW));
            out.consumed(bytes.len());
        }
        assert_eq!(out.buffered(), 0);
        let mut credit = 0;
        while credit < INITIAL_WINDOW {
            let window = read_frame(&mut agent, &mut dec).await;
            assert_eq!(window.stream, 1);
            credit += window.window_credit().unwrap();
        }
        assert_eq!(credit, INITIAL_WINDOW);
    }
    assert_eq!(client.violation(), None);
    assert!(out.peak_buffered() <= u64::from(INITIAL_WINDOW));
}

/// (a) An agent that ignores its window: the host buffers one window, no
/// more, and drops the connection with the overrun; a waiting request
/// fails with it. The flood is 1 GiB; the host cuts it off at once.
#[tokio::test]
async fn a_flood_past_the_window_is_an_overrun() {
    let (client, mut events, mut agent) = connected().await;
    let out = client.open_output(5);
    let client = Arc::new(client);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.request(Request::Shutdown).await })
    };
    let rss_before = rss_kib();
    let frame = Frame::data(5, vec![7; MAX_DATA_CHUNK]);
    let sent = tokio::time::timeout(LONG, flood(&mut agent, frame, 1 << 30))
        .await
        .expect("the host hung up on the flood");
    let rss_grew = rss_kib().saturating_sub(rss_before);

    // Eight chunks fit the window; the ninth overruns it.
    let by = 9 * MAX_DATA_CHUNK as u64 - u64::from(INITIAL_WINDOW);
    assert_eq!(
        client.violation(),
        Some(Violation::Overrun { stream: 5, by })
    );
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(err.violation(), Some(&Violation::Overrun { stream: 5, by }));
    assert_eq!(
        err.to_string(),
        "the guest agent broke the protocol",
        "the cause follows in the chain"
    );
    assert!(out.peak_buffered() <= u64::from(INITIAL_WINDOW));
    assert!(out.buffered() <= u64::from(INITIAL_WINDOW));
    assert_eq!(events.recv().await, None);
    assert!(sent < 16 << 20, "the flood went on for {sent} bytes");
    eprintln!(
        "1 GiB overrun flood: {sent} bytes written before the hang-up, {} buffered at most, RSS +{rss_grew} KiB",
        out.peak_buffered()
    );
}

/// (b) Data on streams the host does not read, from an agent that never
/// reads: dropped without credit (nothing queued for it), and cut off
/// past the budget.
#[tokio::test]
async fn a_flood_on_unread_streams_is_cut_off() {
    let (client, _events, mut agent) = connected().await;
    // One stream the host opened and closed, one it never opened.
    drop(client.open_output(9));
    let closed = Frame::data(9, vec![1; 1000]);
    agent.write_all(&closed.encode()).await.unwrap();
    let sent = tokio::time::timeout(
        LONG,
        flood(
            &mut agent,
            Frame::data(77, vec![2; MAX_DATA_CHUNK]),
            1 << 30,
        ),
    )
    .await
    .expect("the host hung up on the flood");
    let Some(Violation::Unread { bytes }) = client.violation() else {
        panic!("{:?}", client.violation())
    };
    assert!(bytes > UNREAD_BUDGET && bytes <= UNREAD_BUDGET + MAX_DATA_CHUNK as u64);
    assert!(sent < 16 << 20, "the flood went on for {sent} bytes");
    // The host answered none of it: its hello is all it wrote.
    let written = read_all(&mut agent).await;
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0].kind, FrameKind::Control);
}

/// An agent that sends tiny frames within its window while never reading:
/// the credit the host owes it is coalesced, so the outbox stays small.
#[tokio::test]
async fn returned_credit_does_not_pile_up_for_an_agent_that_never_reads() {
    let (client, _events, mut agent) = connected().await;
    let mut out = client.open_output(4);
    let consumed = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let consumed = consumed.clone();
        tokio::spawn(async move {
            while let Some(Chunk::Data(bytes)) = out.next().await {
                out.consumed(bytes.len());
                consumed.fetch_add(bytes.len(), Ordering::SeqCst);
            }
            consumed.load(Ordering::SeqCst)
        })
    };
    let frames = 512 * 1024;
    let mut wire = Vec::new();
    for _ in 0..frames {
        Frame::data(4, vec![0]).encode_into(&mut wire);
    }
    // Fill the agent's side of the socket, so the writer is stuck.
    let stuck = loop {
        client.notify(Request::Shutdown);
        tokio::task::yield_now().await;
        let queued = client.queued_for_agent();
        if queued > 64 * 1024 {
            break queued;
        }
    };
    let mut most_queued = 0;
    let part_len = 13 * 4096;
    for (n, part) in wire.chunks(part_len).enumerate() {
        // Keep within the window, as the agent's own count would, though
        // the Window frames that say so stay unread.
        while n * 4096 > consumed.load(Ordering::SeqCst) + INITIAL_WINDOW as usize / 2 {
            tokio::task::yield_now().await;
        }
        agent.write_all(part).await.unwrap();
        most_queued = most_queued.max(client.queued_for_agent());
    }
    agent.write_all(&Frame::eof(4).encode()).await.unwrap();
    assert_eq!(consumer.await.unwrap(), frames);
    assert_eq!(client.violation(), None);
    // Past what was stuck before, one Window frame owed, no more.
    let owed = most_queued - stuck;
    assert!(owed <= HEADER_LEN + 4, "{owed} bytes of credit queued");
    eprintln!("{frames} one-byte frames consumed, agent never reading: {owed} bytes of Window frames queued at most");
}

/// The outbox of control frames for an agent that never reads is bounded:
/// past it the agent is cut off, and later sends fail at once.
#[tokio::test]
async fn an_agent_that_never_reads_is_cut_off() {
    let (client, _events, _agent) = connected().await;
    let started = Instant::now();
    while client.violation().is_none() {
        client.notify(Request::Shutdown);
        assert!(started.elapsed() < LONG);
        // Let the writer fill the socket.
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        client.violation(),
        Some(Violation::NotReading { bytes }) if bytes > OUTBOX_CONTROL_BYTES
    ));
    assert!(client.queued_for_agent() <= OUTBOX_CONTROL_BYTES);
    let late = tokio::time::timeout(LONG, client.request(Request::Shutdown)).await;
    assert!(matches!(late, Ok(Err(e)) if e.violation().is_some()));
}

/// (c) Events nobody takes: a few wait, a flood is a violation.
#[tokio::test]
async fn an_event_flood_is_cut_off() {
    let (client, mut events, mut agent) = connected().await;
    let mut wire = Vec::new();
    for n in 0..EVENTS_CAPACITY as i32 {
        wire.extend(event_frame(exited(n)));
    }
    agent.write_all(&wire).await.unwrap();
    // All of those are kept.
    let ping = tokio::spawn(async move {
        let _ = client.request(Request::Shutdown).await;
        client
    });
    let mut dec = FrameDecoder::new();
    let _hello = read_frame(&mut agent, &mut dec).await;
    let request = read_frame(&mut agent, &mut dec).await;
    let ControlMessage::Request { id, .. } = ControlMessage::from_frame(&request).unwrap() else {
        panic!("expected a request")
    };
    let answer = ControlMessage::Response {
        id,
        result: Ok(Reply::Done),
    };
    agent.write_all(&answer.to_frame().encode()).await.unwrap();
    let client = ping.await.unwrap();
    assert_eq!(client.violation(), None);

    let sent = tokio::time::timeout(LONG, flood_events(&mut agent))
        .await
        .expect("the host hung up on the flood");
    assert_eq!(client.violation(), Some(Violation::EventFlood));
    assert!(sent < 100_000, "{sent} events went in");
    for n in 0..EVENTS_CAPACITY as i32 {
        assert_eq!(events.recv().await, Some(exited(n)));
    }
    assert_eq!(events.recv().await, None);
}

/// Sends events until the host hangs up; returns how many.
async fn flood_events(agent: &mut UnixStream) -> u64 {
    let mut batch = Vec::new();
    for n in 0..1000 {
        batch.extend(event_frame(exited(n)));
    }
    let mut sent = 0;
    while agent.write_all(&batch).await.is_ok() {
        sent += 1000;
    }
    sent
}

/// (d) An agent that never answers: the request waits only as long as
/// its caller's deadline (the supervisor bounds RunContainer), and a
/// dropped connection ends it.
#[tokio::test]
async fn a_request_never_answered_ends_with_the_connection() {
    let (client, _events, agent) = connected().await;
    let client = Arc::new(client);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.request(Request::Shutdown).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    drop(agent);
    let result = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert!(matches!(
        result,
        Err(RequestError::Client(ClientError::Disconnected))
    ));
}

#[tokio::test]
async fn bad_frames_and_messages_are_violations() {
    let (client, mut events, mut agent) = connected().await;
    // A header with a reserved byte set.
    let mut bad = Frame::data(1, vec![1]).encode();
    bad[5] = 1;
    agent.write_all(&bad).await.unwrap();
    assert_eq!(events.recv().await, None);
    assert!(matches!(client.violation(), Some(Violation::Malformed(_))));

    let (client, mut events, mut agent) = connected().await;
    agent
        .write_all(&Frame::control(b"{not json".to_vec()).encode())
        .await
        .unwrap();
    assert_eq!(events.recv().await, None);
    assert!(matches!(client.violation(), Some(Violation::BadControl(_))));
}

/// Empty Data frames cost nothing, and data after EOF is unread.
#[tokio::test]
async fn empty_frames_and_data_after_eof() {
    let (client, _events, mut agent) = connected().await;
    let mut out = client.open_output(6);
    let mut wire = Vec::new();
    for _ in 0..10_000 {
        Frame::data(6, Vec::new()).encode_into(&mut wire);
    }
    Frame::data(6, b"x".to_vec()).encode_into(&mut wire);
    Frame::eof(6).encode_into(&mut wire);
    Frame::data(6, vec![0; 100]).encode_into(&mut wire);
    agent.write_all(&wire).await.unwrap();
    assert!(matches!(out.next().await, Some(Chunk::Data(d)) if d == b"x"));
    assert!(matches!(out.next().await, Some(Chunk::Eof)));
    assert_eq!(client.violation(), None);
}

#[test]
fn guest_triggered_lines_are_rate_limited() {
    let mut log = GuestLog::new();
    let start = Instant::now();
    let logged = (0..1000)
        .filter(|n| log.warn_at(start, format_args!("line {n}")))
        .count();
    assert_eq!(logged, LOG_BURST as usize);
    assert_eq!(log.suppressed(), 1000 - u64::from(LOG_BURST));
    // The next period starts afresh (and summarises the last).
    assert!(log.warn_at(start + LOG_PERIOD, format_args!("again")));
    assert_eq!(log.suppressed(), 0);
}

#[tokio::test]
async fn a_request_left_unanswered_fails_at_its_deadline_and_a_late_answer_is_dropped() {
    let (client, _events, mut agent) = connected().await;
    let result = client
        .request_within(Request::Shutdown, Duration::from_millis(100))
        .await;
    assert!(
        matches!(
            result,
            Err(RequestError::Client(ClientError::NoAnswer {
                op: "shutdown",
                ..
            }))
        ),
        "{result:?}"
    );
    assert!(
        lock(&client.shared.pending).waiting.is_empty(),
        "the waiter went"
    );
    // The answer comes after all: nobody waits for it, the connection
    // stays, and the next request is answered.
    let late = ControlMessage::Response {
        id: 1,
        result: Ok(Reply::Done),
    };
    agent.write_all(&late.to_frame().encode()).await.unwrap();
    let next = {
        let answer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let reply = ControlMessage::Response {
                id: 2,
                result: Ok(Reply::Done),
            };
            agent.write_all(&reply.to_frame().encode()).await.unwrap();
        };
        let (reply, ()) = tokio::join!(client.request(Request::Shutdown), answer);
        reply
    };
    assert!(matches!(next, Ok(Reply::Done)), "{next:?}");
    assert!(client.violation().is_none());
}

#[test]
fn only_starting_a_container_may_take_longer_than_a_minute() {
    assert_eq!(request_deadline(&Request::Shutdown), REQUEST_DEADLINE);
    assert!(RUN_CONTAINER_DEADLINE > REQUEST_DEADLINE);
}

/// A checkpoint's request is the host's last frame until the release:
/// credit for output consumed meanwhile is kept, then sent.
#[tokio::test]
async fn nothing_follows_a_checkpoint_request_until_the_release() {
    let (client, _events, mut agent) = connected().await;
    let client = Arc::new(client);
    let mut dec = FrameDecoder::new();
    let hello = read_frame(&mut agent, &mut dec).await;
    assert_eq!(hello.kind, FrameKind::Control);
    let mut output = client.open_output(1);
    let asking = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .request_then_hold(Request::Checkpoint {
                    container_id: "c".into(),
                })
                .await
        })
    };
    let request = read_frame(&mut agent, &mut dec).await;
    let id = match ControlMessage::from_frame(&request).unwrap() {
        ControlMessage::Request {
            id,
            request: Request::Checkpoint { .. },
        } => id,
        other => panic!("expected the checkpoint request, got {other:?}"),
    };
    let mut answer = Frame::data(1, b"before".to_vec()).encode();
    let response = ControlMessage::Response {
        id,
        result: Ok(Reply::Done),
    };
    answer.extend(response.to_frame().encode());
    agent.write_all(&answer).await.unwrap();
    assert!(matches!(asking.await.unwrap(), Ok(Reply::Done)));
    let Some(Chunk::Data(data)) = output.next().await else {
        panic!("the data before the answer");
    };
    output.consumed(data.len());
    let mut buf = [0u8; 64];
    let quiet = tokio::time::timeout(Duration::from_millis(200), agent.read(&mut buf)).await;
    assert!(quiet.is_err(), "the host wrote while held");
    client.release();
    let window = read_frame(&mut agent, &mut dec).await;
    assert_eq!(window.kind, FrameKind::Window);
    assert_eq!(window.window_credit(), Some(6));
}
