//! Moves bytes between a process's pipes and the connection's data streams,
//! within the flow-control window the host grants.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use hull_protocol::{frame::MAX_DATA_CHUNK, Credit, Frame, StreamId};

use crate::wire::Wire;

/// Copies a process's output pipe to `stream` until EOF, then sends Eof.
pub fn pump_output(
    mut pipe: File,
    stream: StreamId,
    credit: Arc<Credit>,
    wire: Arc<Wire>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; MAX_DATA_CHUNK];
        loop {
            let Some(allowed) = credit.take(MAX_DATA_CHUNK) else {
                return;
            };
            let n = match pipe.read(&mut buf[..allowed]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    credit.grant(allowed as u32);
                    continue;
                }
                Err(_) => 0,
            };
            // Return what this read did not use.
            credit.grant((allowed - n) as u32);
            if n == 0 {
                let _ = wire.send(&Frame::eof(stream));
                return;
            }
            if wire.send(&Frame::data(stream, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    })
}

/// Starts a writer for a process's stdin pipe; returns where to send data.
/// Dropping every sender closes the pipe (EOF for the process). Each chunk
/// written returns its credit to the host.
pub fn pump_input(mut pipe: File, stream: StreamId, wire: Arc<Wire>) -> mpsc::Sender<Vec<u8>> {
    let (sink, chunks) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut open = true;
        for chunk in chunks {
            // After the process closed its stdin we still return credit,
            // so the host never blocks on a stream nobody reads.
            if open && pipe.write_all(&chunk).is_err() {
                open = false;
            }
            let _ = wire.send(&Frame::window(stream, chunk.len() as u32));
        }
    });
    sink
}
