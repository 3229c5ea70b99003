//! Moving bytes between agent streams and host descriptors.
//!
//! Each direction runs on its own thread with blocking I/O: the descriptors
//! are the user's terminal or pipes, passed from a `hull` command, and
//! making them non-blocking would change them for the user's shell too.
//! The threads reach the agent client's channels through the runtime's
//! handle (they need no I/O driver).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::logs::{LogStream, LogWriter};
use hull_sandbox::agent_client::{Chunk, InputStream, OutputStream};

/// Where one output stream of the container goes besides the log: the
/// descriptor of whichever `hull` command is attached, if any.
#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Option<File>>>);

impl Sink {
    pub fn attach(&self, fd: OwnedFd) {
        *lock(&self.0) = Some(File::from(fd));
    }

    pub fn detach(&self) {
        lock(&self.0).take();
    }

    fn write(&self, bytes: &[u8]) {
        let mut slot = lock(&self.0);
        if let Some(file) = slot.as_mut() {
            if file.write_all(bytes).is_err() {
                // The reader went away: stop writing to it, keep logging.
                slot.take();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Copies an output stream into the log (if any) and the sink until EOF,
/// returning credit only after the bytes are written.
pub fn pump_output(
    handle: Handle,
    mut stream: OutputStream,
    log: Option<(Arc<Mutex<LogWriter>>, LogStream)>,
    sink: Sink,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while let Some(Chunk::Data(bytes)) = handle.block_on(stream.next()) {
            if let Some((writer, which)) = &log {
                if let Err(e) = lock(writer).write(*which, &bytes) {
                    tracing::warn!("container log: {e}");
                }
            }
            sink.write(&bytes);
            stream.consumed(bytes.len());
        }
        if let Some((writer, _)) = &log {
            let _ = lock(writer).flush_partial();
        }
    })
}

/// Copies `fd` into an agent stream until EOF (then closes the stream when
/// `close_at_eof`) or until `cancel` is set.
pub fn pump_input(
    handle: Handle,
    fd: OwnedFd,
    input: Arc<InputStream>,
    cancel: Arc<AtomicBool>,
    close_at_eof: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut file = File::from(fd);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            // Poll with a timeout so a cancelled pump does not sit in a
            // read of a terminal nobody types into.
            let fd = file.as_fd();
            let mut pfd = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec::try_from(Duration::from_millis(200))
                .expect("a small duration converts");
            match rustix::event::poll(&mut pfd, Some(&timeout)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !handle.block_on(input.send(&buf[..n])) {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if close_at_eof && !cancel.load(Ordering::Relaxed) {
            input.close();
        }
    })
}

/// Joins pump threads without blocking the runtime.
pub async fn join(threads: Vec<JoinHandle<()>>) {
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}
