//! The listening sockets (a unix socket of mode 0660, optionally TCP, or
//! the ones systemd passes with LISTEN_FDS) and one hyper HTTP/1
//! connection per client, with upgrades for hijacked streams. A client
//! slow to send its headers is cut off; nothing is shared between
//! connections but the [`App`].

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use crate::state::App;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// systemd's first passed descriptor.
const SD_LISTEN_FDS_START: i32 = 3;

pub enum Listener {
    Unix(UnixListener, Option<PathBuf>),
    Tcp(TcpListener),
}

/// The sockets to serve: systemd's if it passed some, else ours.
pub fn open(socket: &Path, tcp: Option<std::net::SocketAddr>) -> Result<Vec<Listener>> {
    let passed = systemd_sockets()?;
    if !passed.is_empty() {
        return Ok(passed);
    }
    let mut listeners = Vec::new();
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    // A socket left by a server that died is in the way; a live one is not ours.
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(anyhow!(
            "{} is in use by a running server",
            socket.display()
        ));
    }
    let _ = std::fs::remove_file(socket);
    let unix =
        UnixListener::bind(socket).with_context(|| format!("listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", socket.display()))?;
    listeners.push(Listener::Unix(unix, Some(socket.to_path_buf())));
    if let Some(addr) = tcp {
        let std = std::net::TcpListener::bind(addr).with_context(|| format!("listen on {addr}"))?;
        std.set_nonblocking(true)?;
        listeners.push(Listener::Tcp(TcpListener::from_std(std)?));
    }
    Ok(listeners)
}

/// The sockets of socket activation (`LISTEN_PID` is us, `LISTEN_FDS` of
/// them from fd 3).
fn systemd_sockets() -> Result<Vec<Listener>> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count: i32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) if pid_ok => n,
        _ => return Ok(Vec::new()),
    };
    let mut listeners = Vec::new();
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + count {
        // SAFETY: systemd passed these descriptors to us and nothing else
        // in this process owns them.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let addr = rustix::net::getsockname(&owned).context("a passed socket")?;
        match addr.address_family() {
            rustix::net::AddressFamily::INET | rustix::net::AddressFamily::INET6 => {
                let std = std::net::TcpListener::from(owned);
                std.set_nonblocking(true)?;
                listeners.push(Listener::Tcp(TcpListener::from_std(std)?));
            }
            _ => {
                let std = std::os::unix::net::UnixListener::from(owned);
                std.set_nonblocking(true)?;
                listeners.push(Listener::Unix(UnixListener::from_std(std)?, None));
            }
        }
    }
    Ok(listeners)
}

/// Accepts on every listener until SIGTERM or SIGINT; then removes the
/// socket it made.
pub async fn serve(app: Arc<App>, listeners: Vec<Listener>) -> Result<()> {
    let mut cleanup = Vec::new();
    for listener in listeners {
        let app = app.clone();
        match listener {
            Listener::Unix(l, path) => {
                if let Some(p) = path {
                    tracing::info!(socket = %p.display(), "serving the Engine API");
                    cleanup.push(p);
                }
                tokio::spawn(async move {
                    loop {
                        match l.accept().await {
                            Ok((stream, _)) => connection(app.clone(), stream),
                            Err(e) => backoff(e).await,
                        }
                    }
                });
            }
            Listener::Tcp(l) => {
                tracing::info!(addr = ?l.local_addr().ok(), "serving the Engine API");
                tokio::spawn(async move {
                    loop {
                        match l.accept().await {
                            Ok((stream, _)) => connection(app.clone(), stream),
                            Err(e) => backoff(e).await,
                        }
                    }
                });
            }
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    for path in cleanup {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// A failing accept (out of descriptors) waits a moment instead of spinning.
async fn backoff(e: std::io::Error) {
    tracing::warn!("accept: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn connection<S>(app: Arc<App>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(crate::router::route(app, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        if let Err(e) = conn.await {
            tracing::debug!("connection: {e}");
        }
    });
}
