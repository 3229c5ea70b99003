//! The harness of the `agent_to_host` fuzz target (`fuzz/`), also run as
//! a randomized unit test: a hostile agent controls every byte it sends.
//! The host's reader must hand each frame on within the connection's
//! bounds (a stream's credit, the unread budget, the events queue) or
//! drop the connection with a [`Violation`]; never panic, never buffer
//! past a bound.

use std::sync::Arc;

use hull_protocol::{FrameDecoder, StreamId, INITIAL_WINDOW};
use tokio::sync::{mpsc, oneshot};

use super::reader::Reader;
use super::streams::{AsyncCredit, Chunk, Output, OutputStream};
use super::{lock, Shared, Violation, EVENTS_CAPACITY, UNREAD_BUDGET};

/// The host reads output streams 1 to 3; data on any other is unread.
const READ_STREAMS: StreamId = 3;
/// The host sends on stream 5 (a process's stdin).
const INPUT_STREAM: StreamId = 5;
/// Requests waiting for an answer: ids 1 to 3.
const WAITING: u64 = 3;

/// Byte 0 picks how the rest is split into reads (its low six bits) and
/// whether the host consumes its streams between reads (bit 6); the rest
/// is what the agent sends. Returns the violation that dropped the
/// connection, if one did.
pub fn agent_to_host(data: &[u8]) -> Option<Violation> {
    let (&knobs, wire) = data.split_first()?;
    let read_size = usize::from(knobs % 64) + 1;
    let host_consumes = knobs & 0x40 != 0;
    let shared = Arc::new(Shared::new());
    let mut outputs: Vec<OutputStream> = (1..=READ_STREAMS)
        .map(|stream| {
            let output = Arc::new(Output::new());
            lock(&shared.outputs).insert(stream, output.clone());
            OutputStream::new(stream, output, shared.clone())
        })
        .collect();
    let credit = Arc::new(AsyncCredit::new(INITIAL_WINDOW));
    lock(&shared.inputs).insert(INPUT_STREAM, credit);
    let _answers: Vec<_> = (1..=WAITING)
        .map(|id| {
            let (tx, rx) = oneshot::channel();
            lock(&shared.pending).waiting.insert(id, tx);
            rx
        })
        .collect();
    // The supervisor is busy elsewhere: it takes no event meanwhile.
    let (events, _untaken) = mpsc::channel(EVENTS_CAPACITY);
    let (hello, _heard) = oneshot::channel();
    let mut reader = Reader::new(shared.clone(), events, hello);
    let mut decoder = FrameDecoder::new();
    for read in wire.chunks(read_size) {
        decoder.feed(read);
        while let Some(taken) = reader.take_frame(&mut decoder) {
            if let Err(violation) = taken {
                shared.fail(violation.clone());
                return Some(violation);
            }
            for output in &outputs {
                assert!(output.buffered() <= u64::from(INITIAL_WINDOW));
            }
            assert!(reader.unread() <= UNREAD_BUDGET);
        }
        if host_consumes {
            for output in &mut outputs {
                while let Some(Some(Chunk::Data(data))) = output.ready() {
                    output.consumed(data.len());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use hull_protocol::frame::MAX_DATA_CHUNK;
    use hull_protocol::fuzzing::Rng;
    use hull_protocol::Frame;

    use super::*;

    const MESSAGES: &[&str] = &[
        r#"{"type":"hello","version":1,"software":"x"}"#,
        r#"{"type":"response","id":2,"result":{"Ok":{"reply":"done"}}}"#,
        r#"{"type":"response","id":9,"result":{"Ok":{"reply":"done"}}}"#,
        r#"{"type":"event","event":{"event":"process_exited","process":"main","status":{"code":0},"oom_killed":false}}"#,
        r#"{"type":"request","id":1,"request":{}}"#,
        r#"{"type":"hello""#,
    ];

    /// Frames an agent could send, honest or not, with a byte flipped now
    /// and then. Each input leans one way (events, unread data, data on a
    /// read stream, or a mix), so every bound is reached.
    fn input(r: &mut Rng) -> Vec<u8> {
        let lean = r.next_u64() % 4;
        let mut wire = vec![r.next_u64() as u8];
        for _ in 0..(r.next_u64() % 300) {
            let stream = match lean {
                1 => 4 + (r.next_u64() % 3) as StreamId,
                2 => 1,
                _ => 1 + (r.next_u64() % 6) as StreamId,
            };
            let frame = match (lean, r.next_u64() % 5) {
                (0, _) => Frame::control(MESSAGES[3].into()),
                (3, 0) => Frame::control(MESSAGES[(r.next_u64() as usize) % MESSAGES.len()].into()),
                (_, 4) => Frame::eof(stream),
                (_, 3) => Frame::window(stream, r.next_u64() as u32),
                _ => Frame::data(stream, vec![b'x'; (r.next_u64() as usize) % MAX_DATA_CHUNK]),
            };
            wire.extend(frame.encode());
        }
        match r.next_u64() % 8 {
            0 if wire.len() > 1 => {
                let at = 1 + (r.next_u64() as usize) % (wire.len() - 1);
                wire[at] = r.next_u64() as u8;
            }
            // The first frame's kind byte: framing breaks at once.
            1 if wire.len() > 5 => wire[5] = 0x7f,
            _ => {}
        }
        wire
    }

    #[test]
    fn random_agents_stay_within_bounds_or_are_cut_off() {
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        let mut seen = std::collections::BTreeMap::<&str, usize>::new();
        for _ in 0..1_000 {
            let kind = match agent_to_host(&input(&mut r)) {
                None => "none",
                Some(Violation::Overrun { .. }) => "overrun",
                Some(Violation::Unread { .. }) => "unread",
                Some(Violation::EventFlood) => "events",
                Some(Violation::Malformed(_)) => "malformed",
                Some(Violation::BadControl(_)) => "control",
                Some(Violation::NotReading { .. }) => "not reading",
            };
            *seen.entry(kind).or_default() += 1;
        }
        // The inputs reach every bound the reader keeps, and pass too.
        for kind in [
            "none",
            "overrun",
            "unread",
            "events",
            "malformed",
            "control",
        ] {
            assert!(
                seen.contains_key(kind),
                "no input ended with {kind}: {seen:?}"
            );
        }
    }
}
