//! `ExportChanges`: the container's writable layer, as the agent writes it
//! (an uncompressed layer tar on a stream of its own), copied into the
//! file the client passed. A running container is frozen meanwhile and
//! thawed after, as `docker commit` pauses; an exited one's VM must have
//! been kept (`keep_vm_for_export`). What the guest sends is hostile:
//! the copy stops at a byte bound and at a stall, and the client checks
//! the tar itself (`crate::changes`) before anyone uses it.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hull_protocol::{ExportChanges, Reply, Request};
use hull_sandbox::agent_client::{AgentClient, Chunk, OutputStream, RequestError};
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use super::control::{ControlConn, ControlReply};
use super::shared::Shared;

/// Stream ids of exports: far above the exec streams (16 + 3n).
const FIRST_EXPORT_STREAM: u32 = 1 << 30;

/// How long the agent may send nothing before the export is given up.
const STALL: Duration = Duration::from_secs(60);

/// Why an export failed; the reply's message is the error's.
#[derive(Debug, Error)]
pub(super) enum ExportError {
    #[error("the container is not running and its VM was not kept for an export")]
    NoVm,
    #[error("export needs the descriptor of the file to write")]
    NoFile,
    #[error("freeze the container")]
    Freeze(#[source] RequestError),
    #[error("the guest sent more than {0} bytes of changes")]
    TooLarge(u64),
    #[error("the guest sent nothing for {0:?}")]
    Stalled(Duration),
    #[error("the guest's stream ended before its reply")]
    Cut,
    #[error("write the changes")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Agent(RequestError),
}

/// Serves one export conversation: one reply, the agent's `Exported` or
/// an error.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    mut conn: ControlConn,
    source_date_epoch: Option<i64>,
    fds: Vec<OwnedFd>,
) {
    let reply = match export(shared, source_date_epoch, fds).await {
        Ok(answer) => ControlReply::Agent { answer },
        Err(e) => ControlReply::Error {
            message: super::one_line(&e),
            code: 125,
        },
    };
    let _ = conn.reply(&reply).await;
}

async fn export(
    shared: &Arc<Shared>,
    source_date_epoch: Option<i64>,
    fds: Vec<OwnedFd>,
) -> Result<Reply, ExportError> {
    let file = fds.into_iter().next().ok_or(ExportError::NoFile)?;
    let (client, running) = shared.export_agent().ok_or(ExportError::NoVm)?;
    let id = shared.container.config.agent_id().to_string();
    // A process that writes while its files are read makes a torn layer.
    let freeze = running && !shared.container.state().paused;
    let set_frozen = |frozen| Request::Freeze {
        container_id: id.clone(),
        frozen,
    };
    if freeze {
        client
            .request(set_frozen(true))
            .await
            .map_err(ExportError::Freeze)?;
    }
    let result = copy_out(shared, &client, id.clone(), source_date_epoch, file).await;
    if freeze {
        let _ = client.request(set_frozen(false)).await;
    }
    result
}

/// Asks the agent for the layer and copies its stream into `file`.
async fn copy_out(
    shared: &Shared,
    client: &Arc<AgentClient>,
    container_id: String,
    source_date_epoch: Option<i64>,
    file: OwnedFd,
) -> Result<Reply, ExportError> {
    let n = shared.next_exec.fetch_add(1, Ordering::Relaxed);
    let stream = FIRST_EXPORT_STREAM + n;
    let output = client.open_output(stream);
    let request = Request::ExportChanges(ExportChanges {
        container_id,
        stream,
        source_date_epoch,
    });
    let file = tokio::fs::File::from_std(std::fs::File::from(file));
    let bound = byte_bound();
    let asking = client.clone();
    let answer = tokio::spawn(async move { asking.request(request).await });
    let copied = copy_stream(output, file, bound, STALL).await;
    // Whatever the copy saw, the host reads no more of the stream; after
    // a failed copy it waits for no answer either.
    client.close_output(stream);
    if let Err(e) = copied {
        answer.abort();
        return Err(e);
    }
    match tokio::time::timeout(STALL, answer).await {
        Ok(Ok(answer)) => answer.map_err(ExportError::Agent),
        Ok(Err(_)) => Err(ExportError::Cut),
        Err(_) => Err(ExportError::Stalled(STALL)),
    }
}

/// The most bytes a layer tar may take: the layer's file bytes and, per
/// entry, a header with a PAX header in front of it (a little over 1.5
/// KiB in a worst honest case), plus the end blocks.
fn byte_bound() -> u64 {
    let limits = hull_image::Limits::from_env().unwrap_or_default();
    limits
        .max_layer_size
        .saturating_add(limits.max_layer_entries.saturating_mul(4 * 512))
        .saturating_add(1 << 20)
}

/// Copies the chunks of `output` into `file` until its end, at most
/// `bound` bytes, giving up after `stall` without a chunk.
async fn copy_stream(
    mut output: OutputStream,
    mut file: tokio::fs::File,
    bound: u64,
    stall: Duration,
) -> Result<u64, ExportError> {
    let mut total = 0u64;
    loop {
        let chunk = tokio::time::timeout(stall, output.next())
            .await
            .map_err(|_| ExportError::Stalled(stall))?;
        match chunk {
            Some(Chunk::Data(data)) => {
                total += data.len() as u64;
                if total > bound {
                    return Err(ExportError::TooLarge(bound));
                }
                file.write_all(&data).await.map_err(ExportError::Write)?;
                output.consumed(data.len());
            }
            Some(Chunk::Eof) => break,
            None => return Err(ExportError::Cut),
        }
    }
    file.flush().await.map_err(ExportError::Write)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hull_protocol::{ControlMessage, Frame, PROTOCOL_VERSION};
    use hull_sandbox::agent_client::AgentClient;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A client of a fake agent that says hello and then what the test
    /// writes.
    async fn fake_agent() -> (AgentClient, tokio::net::UnixStream) {
        let (host, mut agent) = tokio::net::UnixStream::pair().unwrap();
        let hello = ControlMessage::Hello {
            version: PROTOCOL_VERSION,
            software: "hostile".into(),
        };
        agent.write_all(&hello.to_frame().encode()).await.unwrap();
        let (client, _events) = AgentClient::start(host, Duration::from_secs(5))
            .await
            .unwrap();
        (client, agent)
    }

    async fn file() -> (tempfile::NamedTempFile, tokio::fs::File) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let file = tokio::fs::File::from_std(tmp.reopen().unwrap());
        (tmp, file)
    }

    #[tokio::test]
    async fn the_copy_stops_at_its_byte_bound() {
        let (client, mut agent) = fake_agent().await;
        let output = client.open_output(FIRST_EXPORT_STREAM);
        for _ in 0..2 {
            let frame = Frame::data(FIRST_EXPORT_STREAM, vec![7; 800]).encode();
            agent.write_all(&frame).await.unwrap();
        }
        let (tmp, file) = file().await;
        let e = copy_stream(output, file, 1000, STALL).await.unwrap_err();
        assert_eq!(
            super::super::one_line(&e),
            "the guest sent more than 1000 bytes of changes"
        );
        assert!(std::fs::metadata(tmp.path()).unwrap().len() <= 1000);
    }

    #[tokio::test]
    async fn a_silent_guest_is_given_up() {
        let (client, _agent) = fake_agent().await;
        let output = client.open_output(FIRST_EXPORT_STREAM);
        let (_tmp, file) = file().await;
        let stall = Duration::from_millis(100);
        let e = copy_stream(output, file, 1000, stall).await.unwrap_err();
        assert!(matches!(e, ExportError::Stalled(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_stream_ended_by_eof_is_copied_whole() {
        let (client, mut agent) = fake_agent().await;
        let output = client.open_output(FIRST_EXPORT_STREAM);
        let data = Frame::data(FIRST_EXPORT_STREAM, b"layer".to_vec()).encode();
        agent.write_all(&data).await.unwrap();
        agent
            .write_all(&Frame::eof(FIRST_EXPORT_STREAM).encode())
            .await
            .unwrap();
        let (tmp, file) = file().await;
        assert_eq!(copy_stream(output, file, 1000, STALL).await.unwrap(), 5);
        assert_eq!(std::fs::read(tmp.path()).unwrap(), b"layer");
    }
}
