//! The agent's end of the connection: a locked writer that puts whole
//! frames on the wire, and the registry of open data streams.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};

use hull_protocol::{ControlMessage, Credit, Frame, StreamId};

/// Writes frames; one lock per frame so frames never interleave. While
/// held (the host saves the VM), senders wait: nothing may be half on
/// the wire when the VM stops.
pub struct Wire {
    out: Mutex<Out>,
    released: Condvar,
}

struct Out {
    file: File,
    held: bool,
}

impl Wire {
    pub fn new(out: File) -> Self {
        Self {
            out: Mutex::new(Out {
                file: out,
                held: false,
            }),
            released: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn send(&self, frame: &Frame) -> io::Result<()> {
        let bytes = frame.encode();
        let mut out = self.lock();
        while out.held {
            out = self.released.wait(out).unwrap_or_else(|p| p.into_inner());
        }
        out.file.write_all(&bytes)
    }

    pub fn send_message(&self, message: &ControlMessage) -> io::Result<()> {
        self.send(&message.to_frame())
    }

    /// Sends `message` whether or not the wire is held: the hello on a
    /// connection made again after a restore.
    pub fn send_unheld(&self, message: &ControlMessage) -> io::Result<()> {
        self.lock().file.write_all(&message.to_frame().encode())
    }

    /// Sends `message`, then holds the wire: it is the last frame before
    /// the host saves the VM.
    pub fn send_then_hold(&self, message: &ControlMessage) -> io::Result<()> {
        let bytes = message.to_frame().encode();
        let mut out = self.lock();
        while out.held {
            out = self.released.wait(out).unwrap_or_else(|p| p.into_inner());
        }
        out.held = true;
        out.file.write_all(&bytes)
    }

    /// Lets the held senders go on.
    pub fn release(&self) {
        self.lock().held = false;
        self.released.notify_all();
    }

    /// Writes to `out` from now on: the connection made again after a
    /// restore reset the old one.
    pub fn replace(&self, out: File) {
        self.lock().file = out;
    }
}

/// Open data streams: where stdin bytes go, and the credit of each output.
#[derive(Default)]
pub struct Streams {
    inputs: Mutex<HashMap<StreamId, mpsc::Sender<Vec<u8>>>>,
    outputs: Mutex<HashMap<StreamId, Arc<Credit>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Streams {
    pub fn add_input(&self, stream: StreamId, sink: mpsc::Sender<Vec<u8>>) {
        lock(&self.inputs).insert(stream, sink);
    }

    pub fn add_output(&self, stream: StreamId) -> Arc<Credit> {
        let credit = Arc::new(Credit::default());
        lock(&self.outputs).insert(stream, credit.clone());
        credit
    }

    /// Whether `stream` is already in use.
    pub fn contains(&self, stream: StreamId) -> bool {
        lock(&self.inputs).contains_key(&stream) || lock(&self.outputs).contains_key(&stream)
    }

    /// Hands data to an input stream; data for unknown or closed streams is
    /// dropped (the peer broke the protocol or the process went away).
    pub fn deliver(&self, stream: StreamId, data: Vec<u8>) {
        if let Some(sink) = lock(&self.inputs).get(&stream) {
            let _ = sink.send(data);
        }
    }

    pub fn close_input(&self, stream: StreamId) {
        lock(&self.inputs).remove(&stream);
    }

    pub fn grant(&self, stream: StreamId, credit: u32) {
        if let Some(c) = lock(&self.outputs).get(&stream) {
            c.grant(credit);
        }
    }

    pub fn remove_output(&self, stream: StreamId) {
        if let Some(c) = lock(&self.outputs).remove(&stream) {
            c.close();
        }
    }

    /// A restored VM's new host connection: every output starts again
    /// with a fresh window, as the host's new end counts it.
    pub fn reset_credit(&self) {
        for credit in lock(&self.outputs).values() {
            credit.reset(hull_protocol::INITIAL_WINDOW);
        }
    }

    /// The connection is gone: wake every sender for good.
    pub fn close_all(&self) {
        lock(&self.inputs).clear();
        for (_, credit) in lock(&self.outputs).drain() {
            credit.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    fn pipe() -> (File, File) {
        let (r, w): (OwnedFd, OwnedFd) = crate::sys::pipe().unwrap();
        (File::from(r), File::from(w))
    }

    /// Nothing follows a checkpoint's answer until the release, however
    /// many senders wait; a hello may still go out.
    #[test]
    fn a_held_wire_sends_nothing_until_released() {
        let (mut reader, writer) = pipe();
        let wire = Arc::new(Wire::new(writer));
        let last = ControlMessage::Hello {
            version: 1,
            software: "last".into(),
        };
        wire.send_then_hold(&last).unwrap();
        let sender = {
            let wire = wire.clone();
            std::thread::spawn(move || wire.send(&Frame::data(1, b"after".to_vec())))
        };
        std::thread::sleep(Duration::from_millis(100));
        let hello = ControlMessage::Hello {
            version: 1,
            software: "again".into(),
        };
        wire.send_unheld(&hello).unwrap();
        let expected: Vec<u8> = [last.to_frame().encode(), hello.to_frame().encode()].concat();
        let mut got = vec![0u8; expected.len()];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(got, expected, "only the last frame and the hello");
        assert!(!sender.is_finished(), "the sender waits for the release");
        wire.release();
        sender.join().unwrap().unwrap();
        let data = Frame::data(1, b"after".to_vec()).encode();
        let mut got = vec![0u8; data.len()];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(got, data);
    }
}
