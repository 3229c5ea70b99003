//! The agent's end of the connection: a locked writer that puts whole
//! frames on the wire, and the registry of open data streams.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use hull_protocol::{ControlMessage, Credit, Frame, StreamId};

/// Writes frames; one lock per frame so frames never interleave.
pub struct Wire {
    out: Mutex<File>,
}

impl Wire {
    pub fn new(out: File) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    pub fn send(&self, frame: &Frame) -> io::Result<()> {
        let bytes = frame.encode();
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(&bytes)
    }

    pub fn send_message(&self, message: &ControlMessage) -> io::Result<()> {
        self.send(&message.to_frame())
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

    /// The connection is gone: wake every sender for good.
    pub fn close_all(&self) {
        lock(&self.inputs).clear();
        for (_, credit) in lock(&self.outputs).drain() {
            credit.close();
        }
    }
}
