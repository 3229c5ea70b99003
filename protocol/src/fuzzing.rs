//! The harness of the `host_to_agent` fuzz target (`fuzz/`), also run as
//! a randomized unit test: the agent decodes whatever arrives on its
//! connection with [`FrameDecoder`] and [`ControlMessage::from_frame`], so
//! those must turn any bytes, split anywhere, into frames, messages or an
//! error, never a panic, a hang or a buffer past one frame. The same
//! decoder reads the agent's bytes on the host (`hull_sandbox`'s
//! `agent_to_host` harness covers what the host does with them).

use crate::frame::{FrameDecoder, HEADER_LEN, MAX_PAYLOAD};
use crate::message::ControlMessage;

/// Byte 0 picks how the rest is split into reads; the rest is the
/// connection. Returns how many control messages were decoded.
pub fn host_to_agent(data: &[u8]) -> usize {
    let Some((&split, wire)) = data.split_first() else {
        return 0;
    };
    let read_size = usize::from(split % 64) + 1;
    let mut decoder = FrameDecoder::new();
    let mut messages = 0;
    for read in wire.chunks(read_size) {
        decoder.feed(read);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                // Framing is lost: the agent drops the connection.
                Err(_) => return messages,
            };
            assert!(frame.payload.len() <= MAX_PAYLOAD);
            let Ok(message) = ControlMessage::from_frame(&frame) else {
                continue;
            };
            messages += 1;
            // What the agent re-encodes (its replies carry what it
            // decoded) decodes again to the same message.
            let again = ControlMessage::from_frame(&message.to_frame())
                .expect("an encoded message decodes");
            assert_eq!(again.to_frame(), message.to_frame());
        }
        // Never more than one unfinished frame is held.
        assert!(decoder.pending() <= HEADER_LEN + MAX_PAYLOAD);
    }
    messages
}

/// xorshift64: deterministic, dependency-free randomness for the
/// harnesses' randomized unit tests (here and in the host crates).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    /// Valid frames with some bytes flipped: most inputs get past the
    /// header, so the JSON and the frame checks are what is exercised.
    fn input(r: &mut Rng) -> Vec<u8> {
        let hello = br#"{"type":"hello","version":1,"software":"x"}"#.to_vec();
        let mut wire = vec![(r.next_u64() % 256) as u8];
        for _ in 0..(r.next_u64() % 6) {
            let frame = match r.next_u64() % 4 {
                0 => Frame::control(hello.clone()),
                1 => Frame::data(
                    (r.next_u64() % 4) as u32,
                    vec![7; (r.next_u64() % 100) as usize],
                ),
                2 => Frame::eof((r.next_u64() % 4) as u32),
                _ => Frame::window((r.next_u64() % 4) as u32, r.next_u64() as u32),
            };
            wire.extend(frame.encode());
        }
        for _ in 0..(r.next_u64() % 4) {
            if !wire.is_empty() {
                let at = (r.next_u64() as usize) % wire.len();
                wire[at] = r.next_u64() as u8;
            }
        }
        wire
    }

    #[test]
    fn random_connections_decode_or_fail_cleanly() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let decoded: usize = (0..20_000).map(|_| host_to_agent(&input(&mut r))).sum();
        // The inputs reach the message decoder, not only the framing.
        assert!(decoded > 1_000, "only {decoded} messages decoded");
    }

    #[test]
    fn a_valid_message_is_counted() {
        let mut wire = vec![3];
        wire.extend(
            ControlMessage::Hello {
                version: 1,
                software: "hull".into(),
            }
            .to_frame()
            .encode(),
        );
        assert_eq!(host_to_agent(&wire), 1);
    }
}
