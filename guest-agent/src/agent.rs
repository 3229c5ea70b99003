//! The agent's server: reads frames from the host, routes data to streams
//! and requests to thin handlers that call the domain modules.

use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hull_protocol::{
    AgentError, ControlMessage, ErrorKind, FrameDecoder, FrameKind, Reply, Request,
    PROTOCOL_VERSION,
};

use crate::container;
use crate::process::Reaper;
use crate::sys;
use crate::wire::{Streams, Wire};

/// How long a `--rm` VM waits for the host's shutdown after the exit was
/// reported, before powering off on its own.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct Agent {
    pub wire: Arc<Wire>,
    pub streams: Streams,
    pub reaper: Arc<Reaper>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    container_created: bool,
    /// The main process: (process id, pid) while it runs.
    main: Option<(String, i32)>,
    /// The pty master of the main process, when it has a terminal.
    terminal: Option<std::os::fd::OwnedFd>,
}

impl Agent {
    pub fn new(wire: Wire, reaper: Arc<Reaper>) -> Arc<Self> {
        Arc::new(Self {
            wire: Arc::new(wire),
            streams: Streams::default(),
            reaper,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn claim_container(&self) -> Result<(), AgentError> {
        let mut state = self.state();
        if state.container_created {
            return Err(AgentError::new(
                ErrorKind::InvalidRequest,
                "this VM already runs a container",
            ));
        }
        state.container_created = true;
        Ok(())
    }

    pub fn set_main_process(&self, id: &str, pid: i32) {
        self.state().main = Some((id.to_string(), pid));
    }

    pub fn clear_main_process(&self) {
        self.state().main = None;
    }

    pub fn set_terminal(&self, master: std::os::fd::OwnedFd) {
        self.state().terminal = Some(master);
    }

    pub fn clear_terminal(&self) {
        self.state().terminal = None;
    }

    fn resize(&self, process: &str, rows: u16, cols: u16) -> Result<Reply, AgentError> {
        use std::os::fd::AsRawFd;
        let state = self.state();
        let fd = match (&state.main, &state.terminal) {
            (Some((id, _)), Some(master)) if id == process => master.as_raw_fd(),
            _ => {
                return Err(AgentError::new(
                    ErrorKind::InvalidRequest,
                    format!("no terminal for process {process:?}"),
                ))
            }
        };
        sys::set_window_size(fd, rows, cols)
            .map(|_| Reply::Done)
            .map_err(|e| AgentError::new(ErrorKind::InvalidRequest, format!("resize: {e}")))
    }

    pub fn power_off_soon(&self) {
        std::thread::spawn(|| {
            std::thread::sleep(SHUTDOWN_GRACE);
            sys::power_off();
        });
    }

    /// Serves the host until it goes away.
    pub fn serve(self: &Arc<Self>, mut input: File) -> io::Result<()> {
        self.wire.send_message(&ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: format!("hull-agent {}", env!("CARGO_PKG_VERSION")),
        })?;
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            decoder.feed(&buf[..n]);
            while let Some(frame) = decoder
                .next_frame()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                match frame.kind {
                    FrameKind::Control => {
                        self.on_control(ControlMessage::from_frame(&frame).map_err(|e| {
                            io::Error::new(io::ErrorKind::InvalidData, container::error_chain(&e))
                        })?)?
                    }
                    FrameKind::Data => self.streams.deliver(frame.stream, frame.payload),
                    FrameKind::Eof => self.streams.close_input(frame.stream),
                    FrameKind::Window => {
                        if let Some(credit) = frame.window_credit() {
                            self.streams.grant(frame.stream, credit);
                        }
                    }
                }
            }
        }
    }

    fn on_control(self: &Arc<Self>, message: ControlMessage) -> io::Result<()> {
        match message {
            ControlMessage::Hello { version, .. } if version != PROTOCOL_VERSION => {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("host speaks protocol {version}, agent speaks {PROTOCOL_VERSION}"),
                ))
            }
            ControlMessage::Hello { .. } => Ok(()),
            ControlMessage::Request { id, request } => {
                // Requests may block (mounts, exec); the reader must not.
                let agent = self.clone();
                std::thread::spawn(move || {
                    let shutdown = matches!(request, Request::Shutdown);
                    let result = agent.handle(request);
                    let _ = agent
                        .wire
                        .send_message(&ControlMessage::Response { id, result });
                    if shutdown {
                        sys::power_off();
                    }
                });
                Ok(())
            }
            ControlMessage::Response { .. } | ControlMessage::Event { .. } => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "host sent an agent-only message",
            )),
        }
    }

    fn handle(self: &Arc<Self>, request: Request) -> Result<Reply, AgentError> {
        match request {
            Request::RunContainer(spec) => container::run(self, *spec),
            Request::Signal { process, signal } => self.signal(&process, signal),
            Request::ResizeTerminal {
                process,
                rows,
                cols,
            } => self.resize(&process, rows, cols),
            Request::Shutdown => {
                self.kill_main_process();
                Ok(Reply::Done)
            }
        }
    }

    fn signal(&self, process: &str, signal: i32) -> Result<Reply, AgentError> {
        let pid = match &self.state().main {
            Some((id, pid)) if id == process => *pid,
            _ => {
                return Err(AgentError::new(
                    ErrorKind::InvalidRequest,
                    format!("no running process {process:?}"),
                ))
            }
        };
        sys::kill(pid, signal).map(|_| Reply::Done).map_err(|e| {
            AgentError::new(ErrorKind::InvalidRequest, format!("signal {signal}: {e}"))
        })
    }

    /// Kills the container (its PID namespace dies with its init).
    pub fn kill_main_process(&self) {
        if let Some((_, pid)) = &self.state().main {
            let _ = sys::kill(*pid, libc::SIGKILL);
        }
    }
}
