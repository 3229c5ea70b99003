//! One vsock stream between a guest port and a host unix socket, with the
//! credit accounting of virtio 1.2, 5.10.6.3 on both sides.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;

use crate::devices::virtio::vsock::CONN_BUF_ALLOC;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST sent to the guest, RESPONSE awaited.
    Connecting,
    /// Data flows.
    Established,
    /// We told the guest the host side ended; waiting for its RST.
    Closing,
}

/// One connection.
pub struct Connection {
    /// The host end.
    pub stream: UnixStream,
    /// Our (host) port.
    pub local_port: u32,
    /// The guest's port.
    pub peer_port: u32,
    /// Life-cycle state.
    pub state: State,
    /// Bytes sent to the guest (wrapping).
    pub tx_cnt: u32,
    /// The guest's receive buffer size.
    pub peer_buf_alloc: u32,
    /// Bytes the guest has consumed (wrapping).
    pub peer_fwd_cnt: u32,
    /// Bytes we have passed on to the host socket (wrapping).
    pub fwd_cnt: u32,
    /// `fwd_cnt` as last told to the guest.
    pub fwd_cnt_sent: u32,
    /// Guest data not yet accepted by the host socket.
    pub to_host: VecDeque<u8>,
    /// Host data read early (after the CONNECT line), for the guest.
    pub to_guest: Vec<u8>,
    /// The host socket has data (or EOF) we have not consumed.
    pub rx_ready: bool,
    /// The guest will send nothing more.
    pub peer_shut_send: bool,
    /// The host write side is already shut down.
    pub host_write_shut: bool,
    /// Events currently registered with epoll (None: not registered).
    pub interest: Option<u32>,
}

/// Errors of the host side of a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The guest sent more than the credit we gave it.
    #[error("guest overran its credit")]
    CreditOverrun,
    /// The host socket failed.
    #[error("host socket")]
    Io(#[source] io::Error),
}

impl Connection {
    /// A connection over `stream` (set non-blocking here).
    pub fn new(
        stream: UnixStream,
        local_port: u32,
        peer_port: u32,
        state: State,
    ) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            local_port,
            peer_port,
            state,
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            to_host: VecDeque::new(),
            to_guest: Vec::new(),
            rx_ready: false,
            peer_shut_send: false,
            host_write_shut: false,
            interest: None,
        })
    }

    /// Bytes the guest can still take from us.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Records the guest's view of its buffer from a packet header.
    pub fn update_peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = fwd_cnt;
    }

    /// Whether the guest should hear about freed buffer space now.
    pub fn needs_credit_update(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.fwd_cnt_sent) >= CONN_BUF_ALLOC / 4
    }

    /// Takes guest data for the host socket, writing what it accepts now.
    pub fn send_to_host(&mut self, data: &[u8]) -> Result<(), ConnError> {
        if self.to_host.len() + data.len() > CONN_BUF_ALLOC as usize {
            return Err(ConnError::CreditOverrun);
        }
        self.to_host.extend(data);
        self.flush_to_host()
    }

    /// Writes buffered guest data to the host socket until it would block.
    pub fn flush_to_host(&mut self) -> Result<(), ConnError> {
        while !self.to_host.is_empty() {
            let (a, _) = self.to_host.as_slices();
            match self.stream.write(a) {
                Ok(0) => return Err(ConnError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.to_host.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        if self.to_host.is_empty() && self.peer_shut_send && !self.host_write_shut {
            self.host_write_shut = true;
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }

    /// The epoll events this connection wants now (EPOLLIN = 1, EPOLLOUT = 4).
    pub fn wanted_events(&self) -> u32 {
        let mut ev = 0;
        if self.state == State::Established && !self.rx_ready {
            ev |= libc::EPOLLIN as u32;
        }
        if !self.to_host.is_empty() {
            ev |= libc::EPOLLOUT as u32;
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn credit_math_wraps() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut c = Connection::new(a, 1, 2, State::Established).unwrap();
        c.update_peer_credit(1000, u32::MAX - 10);
        c.tx_cnt = u32::MAX - 10;
        assert_eq!(c.peer_credit(), 1000);
        c.tx_cnt = c.tx_cnt.wrapping_add(600);
        assert_eq!(c.peer_credit(), 400);
        c.tx_cnt = c.tx_cnt.wrapping_add(600);
        assert_eq!(c.peer_credit(), 0);
    }

    #[test]
    fn data_flows_and_overruns_are_refused() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut c = Connection::new(a, 1, 2, State::Established).unwrap();
        c.send_to_host(b"ping").unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(c.fwd_cnt, 4);
        let big = vec![0u8; CONN_BUF_ALLOC as usize + 1];
        assert!(matches!(
            c.send_to_host(&big),
            Err(ConnError::CreditOverrun)
        ));
        assert_eq!(c.wanted_events(), libc::EPOLLIN as u32);
    }
}
