//! Saving a hull-vmm VM for a template, and pausing a clone and giving it
//! its disks later (the warm pool), over its control API (a unix
//! socket, one command a line, one reply line each; `vmm/src/api.rs`):
//! `pause`, then `snapshot DIR`, after which hull-vmm has written
//! `DIR/state` and `DIR/memory` (guest RAM, sparse, behind a 4 KiB
//! header) and the VM stays paused until the sandbox kills it. Firecracker
//! does the same over HTTP (`PATCH /vm` Paused, `PUT /snapshot/create`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{DiskSpec, HypervisorError};

/// The API socket in a template's or a clone's sandbox directory.
pub const API_SOCKET: &str = "api.sock";
/// The memory file's header page, before guest RAM.
pub const MEMORY_HEADER_BYTES: u64 = 4096;
/// How long hull-vmm may take to answer one command. A snapshot writes
/// every non-zero page of guest RAM; only a stuck VM takes this long.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the socket may take to appear (hull-vmm binds it before the
/// guest runs, so it is there once the agent said hello; this is slack).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// hull-vmm's longest line; a longer reply is not hull-vmm's.
const MAX_REPLY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum VmmSnapshotError {
    #[error("connect to hull-vmm's API at {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hull-vmm's API")]
    Io(#[source] std::io::Error),
    #[error("hull-vmm refused {command:?}: {reply}")]
    Refused { command: String, reply: String },
    #[error("hull-vmm did not answer {command:?} within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("hull-vmm's API closed or sent more than a line")]
    BadReply,
    #[error(transparent)]
    Path(#[from] HypervisorError),
}

/// Pauses the VM whose sandbox directory is `vm_dir` and writes its
/// snapshot into `dir` (which exists). The VM is left paused.
pub async fn save(vm_dir: &Path, dir: &Path) -> Result<(), VmmSnapshotError> {
    let command = snapshot_command(dir)?;
    let mut api = connect(&vm_dir.join(API_SOCKET)).await?;
    ask(&mut api, "pause").await?;
    ask(&mut api, &command).await?;
    Ok(())
}

/// Lets the paused VM in `vm_dir` run again (a checkpoint that leaves it
/// running).
pub async fn resume(vm_dir: &Path) -> Result<(), VmmSnapshotError> {
    let mut api = connect(&vm_dir.join(API_SOCKET)).await?;
    ask(&mut api, "resume").await.map(|_| ())
}

/// Stops the vCPUs of the clone in `vm_dir` (one waiting in the pool).
pub async fn pause(vm_dir: &Path) -> Result<(), VmmSnapshotError> {
    let mut api = connect(&vm_dir.join(API_SOCKET)).await?;
    ask(&mut api, "pause").await.map(|_| ())
}

/// Gives the paused clone in `vm_dir` its disks, in the placeholder slots
/// named by their serials, and lets it run: the guest learns each disk's
/// capacity from a configuration-change interrupt.
pub async fn attach_and_resume(vm_dir: &Path, disks: &[DiskSpec]) -> Result<(), VmmSnapshotError> {
    let commands = disks
        .iter()
        .map(|d| {
            Ok(format!(
                "attach-disk {} {}",
                d.serial,
                one_line_path(&d.path)?
            ))
        })
        .collect::<Result<Vec<_>, HypervisorError>>()?;
    let mut api = connect(&vm_dir.join(API_SOCKET)).await?;
    for command in &commands {
        ask(&mut api, command).await?;
    }
    ask(&mut api, "resume").await.map(|_| ())
}

/// `snapshot DIR`.
fn snapshot_command(dir: &Path) -> Result<String, HypervisorError> {
    Ok(format!("snapshot {}", one_line_path(dir)?))
}

/// The API takes the rest of a line, trimmed, as a path, so it must be
/// one line of UTF-8 with no edge whitespace.
fn one_line_path(path: &Path) -> Result<&str, HypervisorError> {
    let unfit = || HypervisorError::UnquotablePath(path.to_path_buf());
    let text = path.to_str().ok_or_else(unfit)?;
    if text.is_empty() || text.contains(['\n', '\r']) || text.trim() != text {
        return Err(unfit());
    }
    Ok(text)
}

async fn connect(path: &Path) -> Result<UnixStream, VmmSnapshotError> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(source) => {
                return Err(VmmSnapshotError::Connect {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Sends one command and reads its reply line; anything but `ok…` is the
/// VM's refusal, in its words.
async fn ask(api: &mut UnixStream, command: &str) -> Result<String, VmmSnapshotError> {
    let exchange = async {
        api.write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(VmmSnapshotError::Io)?;
        read_line(api).await
    };
    let reply = tokio::time::timeout(REPLY_TIMEOUT, exchange)
        .await
        .map_err(|_| VmmSnapshotError::Timeout {
            command: command.to_string(),
            timeout: REPLY_TIMEOUT,
        })??;
    match reply.strip_prefix("ok") {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => Ok(rest.trim().to_string()),
        _ => Err(VmmSnapshotError::Refused {
            command: command.to_string(),
            reply: reply.strip_prefix("error: ").unwrap_or(&reply).to_string(),
        }),
    }
}

/// One line, at most [`MAX_REPLY`] bytes (one command is in flight at a
/// time, so nothing follows it).
async fn read_line(api: &mut UnixStream) -> Result<String, VmmSnapshotError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 256];
    loop {
        let n = api.read(&mut byte).await.map_err(VmmSnapshotError::Io)?;
        if n == 0 {
            return Err(VmmSnapshotError::BadReply);
        }
        line.extend_from_slice(&byte[..n]);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            if end + 1 != line.len() {
                return Err(VmmSnapshotError::BadReply);
            }
            line.truncate(end);
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() > MAX_REPLY {
            return Err(VmmSnapshotError::BadReply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in API server answering each line from `replies`, and
    /// recording the commands it got.
    async fn serve(listener: tokio::net::UnixListener, replies: Vec<&'static str>) -> Vec<String> {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        for reply in replies {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).await.unwrap() == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            got.push(String::from_utf8(line).unwrap());
            stream.write_all(reply.as_bytes()).await.unwrap();
        }
        got
    }

    #[tokio::test]
    async fn save_pauses_then_snapshots_into_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::UnixListener::bind(dir.path().join(API_SOCKET)).unwrap();
        let server = tokio::spawn(serve(listener, vec!["ok\n", "ok\n"]));
        save(dir.path(), Path::new("/t/.make-k")).await.unwrap();
        assert_eq!(
            server.await.unwrap(),
            vec!["pause".to_string(), "snapshot /t/.make-k".to_string()]
        );
    }

    #[tokio::test]
    async fn the_hull_vmm_method_saves_through_the_api_socket() {
        // The template code calls the method, never this module.
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::UnixListener::bind(dir.path().join(API_SOCKET)).unwrap();
        let server = tokio::spawn(serve(listener, vec!["ok\n", "ok\n"]));
        let snapshot = dir.path().join("template");
        super::super::SnapshotMethod::HullVmm
            .save(dir.path(), &snapshot)
            .await
            .unwrap();
        let got = server.await.unwrap();
        assert_eq!(got[1], format!("snapshot {}", snapshot.display()));
    }

    #[tokio::test]
    async fn a_refusal_is_the_vms_own_line() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::UnixListener::bind(dir.path().join(API_SOCKET)).unwrap();
        let server = tokio::spawn(serve(
            listener,
            vec![
                "ok\n",
                "error: cannot create snapshot directory /x: denied\n",
            ],
        ));
        let err = save(dir.path(), Path::new("/x")).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "hull-vmm refused \"snapshot /x\": cannot create snapshot directory /x: denied"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_endless_reply_is_refused_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::UnixListener::bind(dir.path().join(API_SOCKET)).unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let junk = vec![b'x'; 64 * 1024];
            let _ = stream.write_all(&junk).await;
        });
        let err = save(dir.path(), Path::new("/x")).await.unwrap_err();
        assert!(matches!(err, VmmSnapshotError::BadReply), "{err}");
        server.await.unwrap();
    }

    #[test]
    fn directories_that_do_not_fit_a_line_are_refused() {
        assert_eq!(
            snapshot_command(Path::new("/var/lib/hull/templates/.make-k-1")).unwrap(),
            "snapshot /var/lib/hull/templates/.make-k-1"
        );
        for bad in ["/a\nresume", "/a ", ""] {
            assert!(snapshot_command(Path::new(bad)).is_err(), "{bad:?}");
        }
    }
}
