//! Wire format: a 12-byte header and a payload.
//!
//! ```text
//!  0        4      5            8          12
//!  | stream | kind | reserved=0 | length   | payload (length bytes) |
//!    u32 LE   u8     3 bytes      u32 LE
//! ```
//!
//! Stream 0 carries control messages (JSON). Other stream ids are chosen by
//! the host when it names them in a request (stdin, stdout, … of a process).
//! The decoder is incremental and never trusts a length it has not bounded.

use thiserror::Error;

/// Identifies one byte stream on a connection.
pub type StreamId = u32;

/// The stream that carries control messages.
pub const CONTROL_STREAM: StreamId = 0;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 12;

/// Largest payload a peer may send; bigger frames are a protocol error.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Data frames are cut to at most this many bytes, so one stream's burst
/// never delays another's frame by much; with its header a frame fits one
/// 32 KiB virtio-console write.
pub const MAX_DATA_CHUNK: usize = 32 * 1024 - HEADER_LEN;

/// What a frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON control message; only on [`CONTROL_STREAM`].
    Control = 1,
    /// Bytes of a stream; counts against the receiver's window.
    Data = 2,
    /// The sender will send no more data on this stream.
    Eof = 3,
    /// The receiver consumed bytes: payload is a u32 LE credit increment.
    Window = 4,
}

impl FrameKind {
    fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Control),
            2 => Some(Self::Data),
            3 => Some(Self::Eof),
            4 => Some(Self::Window),
            _ => None,
        }
    }
}

/// Errors in bytes received from a peer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of unknown kind {0}")]
    UnknownKind(u8),
    #[error("frame payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("frame header has non-zero reserved bytes")]
    Reserved,
    #[error("{kind:?} frame on stream {stream} is not allowed there")]
    WrongStream { kind: FrameKind, stream: StreamId },
    #[error("window frame must carry 4 bytes, got {0}")]
    BadWindow(usize),
    #[error("eof frame must be empty, got {0} bytes")]
    BadEof(usize),
}

/// One unit on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: StreamId,
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A control frame holding `json`.
    pub fn control(json: Vec<u8>) -> Self {
        Self {
            stream: CONTROL_STREAM,
            kind: FrameKind::Control,
            payload: json,
        }
    }

    /// A data frame; callers cut data to [`MAX_DATA_CHUNK`].
    pub fn data(stream: StreamId, bytes: Vec<u8>) -> Self {
        Self {
            stream,
            kind: FrameKind::Data,
            payload: bytes,
        }
    }

    /// End of a stream.
    pub fn eof(stream: StreamId) -> Self {
        Self {
            stream,
            kind: FrameKind::Eof,
            payload: Vec::new(),
        }
    }

    /// Grants the peer `credit` more bytes on `stream`.
    pub fn window(stream: StreamId, credit: u32) -> Self {
        Self {
            stream,
            kind: FrameKind::Window,
            payload: credit.to_le_bytes().to_vec(),
        }
    }

    /// The credit carried by a window frame.
    pub fn window_credit(&self) -> Option<u32> {
        match (self.kind, self.payload.as_slice()) {
            (FrameKind::Window, [a, b, c, d]) => Some(u32::from_le_bytes([*a, *b, *c, *d])),
            _ => None,
        }
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&[0, 0, 0]);
        // Payloads we build are far below u32::MAX; encode asserts nothing
        // the decoder does not check on the other side.
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// The encoded frame as one buffer (one `write_all`, so frames from
    /// several threads never interleave when the writer is locked per frame).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode_into(&mut out);
        out
    }

    fn validate(&self) -> Result<(), FrameError> {
        let on_control = self.stream == CONTROL_STREAM;
        match self.kind {
            FrameKind::Control if !on_control => {}
            FrameKind::Data | FrameKind::Eof | FrameKind::Window if on_control => {}
            FrameKind::Window if self.payload.len() != 4 => {
                return Err(FrameError::BadWindow(self.payload.len()))
            }
            FrameKind::Eof if !self.payload.is_empty() => {
                return Err(FrameError::BadEof(self.payload.len()))
            }
            _ => return Ok(()),
        }
        Err(FrameError::WrongStream {
            kind: self.kind,
            stream: self.stream,
        })
    }
}

/// Turns a byte stream back into frames, however the bytes were split.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After
    /// an error the connection is unusable: framing is lost.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            self.compact();
            return Ok(None);
        }
        let stream = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]);
        let kind = FrameKind::from_u8(avail[4]).ok_or(FrameError::UnknownKind(avail[4]))?;
        if avail[5..8] != [0, 0, 0] {
            return Err(FrameError::Reserved);
        }
        let len = u32::from_le_bytes([avail[8], avail[9], avail[10], avail[11]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        if avail.len() < HEADER_LEN + len {
            self.compact();
            return Ok(None);
        }
        let payload = avail[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.start += HEADER_LEN + len;
        let frame = Frame {
            stream,
            kind,
            payload,
        };
        frame.validate()?;
        Ok(Some(frame))
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_split(frames: &[Frame], split: usize) -> Vec<Frame> {
        let mut wire = Vec::new();
        for f in frames {
            f.encode_into(&mut wire);
        }
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(split.max(1)) {
            dec.feed(chunk);
            while let Some(f) = dec.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(dec.pending(), 0);
        out
    }

    #[test]
    fn frames_survive_any_split() {
        let frames = vec![
            Frame::control(br#"{"type":"x"}"#.to_vec()),
            Frame::data(3, vec![7; 70_000]),
            Frame::window(3, 4096),
            Frame::eof(3),
            Frame::data(5, Vec::new()),
        ];
        for split in [1, 2, 11, 12, 13, 4096, 1 << 20] {
            assert_eq!(roundtrip_split(&frames, split), frames, "split {split}");
        }
    }

    #[test]
    fn window_credit_reads_back() {
        assert_eq!(Frame::window(9, 123_456).window_credit(), Some(123_456));
        assert_eq!(Frame::eof(9).window_credit(), None);
    }

    fn decode(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        let mut dec = FrameDecoder::new();
        dec.feed(bytes);
        dec.next_frame()
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut hdr = vec![1, 0, 0, 0, 2, 0, 0, 0];
        hdr.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&hdr), Err(FrameError::TooLarge(u32::MAX as usize)));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(
            decode(&[1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(9))
        );
        assert_eq!(
            decode(&[1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::Reserved)
        );
        // data on the control stream
        assert!(matches!(
            decode(&[0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::WrongStream { .. })
        ));
        // control on a data stream
        assert!(matches!(
            decode(&[4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::WrongStream { .. })
        ));
        // window with 3 bytes
        assert_eq!(
            decode(&[4, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3]),
            Err(FrameError::BadWindow(3))
        );
        assert_eq!(
            decode(&[4, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1]),
            Err(FrameError::BadEof(1))
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: xorshift bytes, fed in odd chunks.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut dec = FrameDecoder::new();
            let mut bytes = Vec::new();
            for _ in 0..(x % 97) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8 % 6);
            }
            for chunk in bytes.chunks(5) {
                dec.feed(chunk);
                while let Ok(Some(_)) = dec.next_frame() {}
            }
        }
    }
}
