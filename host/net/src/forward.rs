//! Published ports: the supervisor listens on the host (127.0.0.1 unless
//! told otherwise) and carries each TCP connection or UDP flow into the
//! sandbox's network namespace, to the guest's address. Sockets toward
//! the guest are made by one thread that lives in that namespace (a
//! thread's network namespace is its own), then driven by tokio.
//!
//! Bounded, since what is behind a port is a hostile guest and what is in
//! front of it may be anyone: at most [`MAX_TCP_CONNECTIONS`] connections
//! and [`MAX_UDP_FLOWS`] flows per published port (the next one waits in
//! the kernel's backlog, or its datagrams are dropped), and a failing
//! `accept` or `recv` (out of descriptors, say) backs off instead of
//! spinning.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};
use tokio::task::JoinSet;

/// How long a connection toward the guest may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A UDP flow without traffic for this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// Connections one published TCP port carries at once.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// Flows (host peers) one published UDP port carries at once.
pub const MAX_UDP_FLOWS: usize = 1024;
/// The longest pause after a failing accept or receive.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Pauses after each failure in a row, doubling from 10 ms to a second.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::ZERO)
    }

    async fn failed(&mut self) {
        self.0 = (self.0 * 2).clamp(Duration::from_millis(10), MAX_BACKOFF);
        tokio::time::sleep(self.0).await;
    }

    fn succeeded(&mut self) {
        self.0 = Duration::ZERO;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// `-p [IP:]HOSTPORT:CONTAINERPORT[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// A `-p` value that is not `[IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid -p {0:?}: use [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]")]
pub struct InvalidPort(String);

impl PortMapping {
    pub fn parse(spec: &str) -> Result<Self, InvalidPort> {
        let bad = || InvalidPort(spec.to_string());
        let (ports, protocol) = match spec.rsplit_once('/') {
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some(_) => return Err(bad()),
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [c, h] => (IpAddr::V4(Ipv4Addr::LOCALHOST), *h, *c),
            [c, h, ip] => (ip.parse().map_err(|_| bad())?, *h, *c),
            _ => return Err(bad()),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        Ok(Self {
            host_ip,
            host_port: port(host_port)?,
            container_port: port(container_port)?,
            protocol,
        })
    }
}

impl fmt::Display for PortMapping {
    /// As `docker port` prints it: `80/tcp -> 127.0.0.1:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        write!(
            f,
            "{}/{proto} -> {}",
            self.container_port,
            SocketAddr::new(self.host_ip, self.host_port)
        )
    }
}

enum Want {
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

enum Made {
    Tcp(std::net::TcpStream),
    Udp(std::net::UdpSocket),
}

type Request = (Want, oneshot::Sender<std::io::Result<Made>>);

/// Makes sockets inside a network namespace.
#[derive(Clone)]
struct Dialer(mpsc::UnboundedSender<Request>);

impl Dialer {
    fn start(netns: &Path) -> std::io::Result<Self> {
        let ns = std::fs::File::open(netns)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: setns on a namespace file we opened; it changes only
            // this thread's network namespace.
            let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
            let _ = ready_tx.send(
                entered
                    .then_some(())
                    .ok_or_else(std::io::Error::last_os_error),
            );
            if !entered {
                return;
            }
            while let Some((want, reply)) = rx.blocking_recv() {
                let made = match want {
                    Want::Tcp(addr) => {
                        std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map(Made::Tcp)
                    }
                    Want::Udp(addr) => std::net::UdpSocket::bind("0.0.0.0:0")
                        .and_then(|s| s.connect(addr).map(|_| s))
                        .map(Made::Udp),
                };
                let _ = reply.send(made);
            }
        });
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the namespace thread died"))??;
        Ok(Self(tx))
    }

    async fn make(&self, want: Want) -> std::io::Result<Made> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send((want, tx))
            .map_err(|_| std::io::Error::other("the namespace thread is gone"))?;
        rx.await
            .map_err(|_| std::io::Error::other("the namespace thread is gone"))?
    }
}

/// A published port that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("enter the network namespace")]
    Netns(#[source] std::io::Error),
    #[error("publish {host}/{protocol}")]
    Bind {
        host: SocketAddr,
        protocol: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The listeners of one sandbox; dropping this stops every forwarder.
pub struct Forwarders {
    tasks: JoinSet<()>,
}

/// Binds every published port on the host (so a busy port fails the start
/// with a clear error) and forwards to `guest` inside `netns`.
pub async fn start(
    mappings: &[PortMapping],
    netns: &Path,
    guest: Ipv4Addr,
) -> Result<Forwarders, PublishError> {
    let mut tasks = JoinSet::new();
    if mappings.is_empty() {
        return Ok(Forwarders { tasks });
    }
    let dialer = Dialer::start(netns).map_err(PublishError::Netns)?;
    for m in mappings {
        let host = SocketAddr::new(m.host_ip, m.host_port);
        let target = SocketAddr::new(IpAddr::V4(guest), m.container_port);
        match m.protocol {
            Protocol::Tcp => {
                let listener =
                    TcpListener::bind(host)
                        .await
                        .map_err(|source| PublishError::Bind {
                            host,
                            protocol: "tcp",
                            source,
                        })?;
                tasks.spawn(serve_tcp(listener, dialer.clone(), target));
            }
            Protocol::Udp => {
                let socket = UdpSocket::bind(host)
                    .await
                    .map_err(|source| PublishError::Bind {
                        host,
                        protocol: "udp",
                        source,
                    })?;
                tasks.spawn(serve_udp(Arc::new(socket), dialer.clone(), target));
            }
        }
    }
    Ok(Forwarders { tasks })
}

impl Forwarders {
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

async fn serve_tcp(listener: TcpListener, dialer: Dialer, target: SocketAddr) {
    serve_tcp_bounded(listener, dialer, target, MAX_TCP_CONNECTIONS).await
}

async fn serve_tcp_bounded(listener: TcpListener, dialer: Dialer, target: SocketAddr, max: usize) {
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(max));
    let mut backoff = Backoff::new();
    loop {
        // A slot first: past the bound, callers wait in the backlog.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut client = match listener.accept().await {
            Ok((client, _)) => {
                backoff.succeeded();
                client
            }
            Err(_) => {
                backoff.failed().await;
                continue;
            }
        };
        let dialer = dialer.clone();
        connections.spawn(async move {
            let _slot = slot;
            let Ok(Made::Tcp(stream)) = dialer.make(Want::Tcp(target)).await else {
                return;
            };
            if stream.set_nonblocking(true).is_err() {
                return;
            }
            let Ok(mut guest) = TcpStream::from_std(stream) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = guest.set_nodelay(true);
            // Copies both ways; an EOF on one side is passed on as a
            // shutdown of the other's write half.
            let _ = tokio::io::copy_bidirectional(&mut client, &mut guest).await;
        });
        // Reap finished connections.
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_udp(host: Arc<UdpSocket>, dialer: Dialer, target: SocketAddr) {
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    let mut replies = JoinSet::new();
    let mut backoff = Backoff::new();
    loop {
        let (n, peer) = match host.recv_from(&mut buf).await {
            Ok(received) => {
                backoff.succeeded();
                received
            }
            Err(_) => {
                backoff.failed().await;
                continue;
            }
        };
        let existing = flows.lock().await.get(&peer).cloned();
        let flow = match existing {
            Some(flow) => flow,
            // Full: a new peer's datagrams are dropped, as a full
            // conntrack table would.
            None if flows.lock().await.len() >= MAX_UDP_FLOWS => continue,
            None => {
                let Ok(Made::Udp(socket)) = dialer.make(Want::Udp(target)).await else {
                    continue;
                };
                if socket.set_nonblocking(true).is_err() {
                    continue;
                }
                let Ok(socket) = UdpSocket::from_std(socket) else {
                    continue;
                };
                let socket = Arc::new(socket);
                flows.lock().await.insert(peer, socket.clone());
                let (host, flows, back) = (host.clone(), flows.clone(), socket.clone());
                replies.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, back.recv(&mut buf)).await
                    {
                        let _ = host.send_to(&buf[..n], peer).await;
                    }
                    flows.lock().await.remove(&peer);
                });
                socket
            }
        };
        let _ = flow.send(&buf[..n]).await;
        while replies.try_join_next().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_like_docker() {
        let m = PortMapping::parse("8080:80").unwrap();
        assert_eq!(m.host_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((m.host_port, m.container_port), (8080, 80));
        assert_eq!(m.protocol, Protocol::Tcp);
        let m = PortMapping::parse("0.0.0.0:53:5353/udp").unwrap();
        assert_eq!(m.host_ip.to_string(), "0.0.0.0");
        assert_eq!(m.protocol, Protocol::Udp);
        assert_eq!(m.to_string(), "5353/udp -> 0.0.0.0:53");
        for bad in [
            "80",
            "x:80",
            "8080:80/sctp",
            "1.2.3:80:80",
            "0:80",
            "8080:0",
        ] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_forwarded_connection_carries_bytes_both_ways_and_closes() {
        // Our own namespace stands in for the sandbox's.
        let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let guest_port = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut data).unwrap();
            std::io::Write::write_all(&mut s, &data).unwrap();
        });
        let host_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mapping = PortMapping::parse(&format!("{host_port}:{guest_port}")).unwrap();
        let forwarders = start(
            &[mapping],
            Path::new("/proc/self/ns/net"),
            Ipv4Addr::LOCALHOST,
        )
        .await
        .unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", host_port)).await.unwrap();
        let payload = vec![7u8; 1 << 20];
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        client.write_all(&payload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, payload);
        forwarders.stop();
    }

    #[tokio::test]
    async fn connections_past_the_bound_wait_for_a_free_slot() {
        // A "guest" that holds every connection open until told.
        let guest = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = guest.local_addr().unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in guest.incoming() {
                let mut stream = stream.unwrap();
                std::io::Write::write_all(&mut stream, b"hi").unwrap();
                held.push(stream);
                if held.len() == 2 {
                    if release_rx.recv().is_err() {
                        return;
                    }
                    held.remove(0);
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap();
        let dialer = Dialer::start(Path::new("/proc/self/ns/net")).unwrap();
        let server = tokio::spawn(serve_tcp_bounded(listener, dialer, target, 2));
        use tokio::io::AsyncReadExt;
        let mut greeting = [0u8; 2];
        let mut first = TcpStream::connect(host).await.unwrap();
        first.read_exact(&mut greeting).await.unwrap();
        let mut second = TcpStream::connect(host).await.unwrap();
        second.read_exact(&mut greeting).await.unwrap();
        // The third is queued by the kernel, not carried: nothing comes.
        let mut third = TcpStream::connect(host).await.unwrap();
        let waited =
            tokio::time::timeout(Duration::from_millis(300), third.read_exact(&mut greeting)).await;
        assert!(
            waited.is_err(),
            "a third connection was carried past the bound"
        );
        // One ends: the third gets its slot.
        drop(first);
        release_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut greeting))
            .await
            .expect("the third connection is carried once a slot is free")
            .unwrap();
        assert_eq!(&greeting, b"hi");
        drop(second);
        server.abort();
    }
}
