//! Downloading one blob into `ingest/`, verified while it streams and
//! resumable after an interruption.
//!
//! Model: containerd's content ingest (`ingest/<ref>/data` plus a lock,
//! resumed with an HTTP Range request). Here:
//! - `ingest/<hex>.partial` holds the bytes so far; its writer holds an
//!   `flock` on it (taken without blocking the thread, so two `hull pull`s
//!   of images sharing layers wait for each other instead of deadlocking);
//! - a later attempt hashes what is there and asks for the rest with
//!   `Range: bytes=N-`; a registry that answers 200 instead gets a fresh
//!   start;
//! - the blob is hashed and counted as it arrives: more bytes than the
//!   descriptor says is refused at once, fewer (a clean end of stream) or
//!   another digest drop the partial file;
//! - a verified download is renamed to `ingest/<hex>`, which the commit
//!   moves into `blobs/` under the store lock. Nothing in `ingest/` is
//!   ever an image: an interrupted pull leaves no entry that looks done.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::Client;
use sha2::{Digest as _, Sha256};

use super::remote::{map_oci_error, Remote};
use super::session::Session;
use super::Error;
use crate::digest;
use crate::progress::LayerBar;

/// How often a pull waiting for another process's download looks again.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// A blob to fetch.
pub(super) struct BlobRequest<'a> {
    pub(super) client: &'a Client,
    pub(super) session: &'a Session,
    pub(super) remote: &'a Remote,
    pub(super) ingest: &'a Path,
    /// Where the store keeps this blob once an image commits it.
    pub(super) stored: &'a Path,
    pub(super) digest: &'a str,
    pub(super) size: u64,
    pub(super) bar: &'a LayerBar,
}

/// Path of a verified download of `digest` in `ingest`.
pub(super) fn done_path(ingest: &Path, digest: &str) -> Result<PathBuf, crate::Error> {
    Ok(ingest.join(digest::parse(digest)?))
}

/// Fetches the blob into `ingest/<hex>` unless it is there already;
/// returns its path and whether this call downloaded it.
pub(super) async fn fetch(req: &BlobRequest<'_>) -> Result<(PathBuf, bool), Error> {
    let done = done_path(req.ingest, req.digest)?;
    let hex = digest::parse(req.digest)?;
    let partial = req.ingest.join(format!("{hex}.partial"));
    let mut file = lock(&partial, req.bar).await?;
    if done.exists() {
        // Another pull finished it while we waited.
        let _ = fs::remove_file(&partial);
        req.bar.finish("Download complete");
        return Ok((done, false));
    }
    if req.stored.exists() {
        // Another pull finished it and committed it while we waited.
        let _ = fs::remove_file(&partial);
        req.bar.finish("Already exists");
        return Ok((req.stored.to_path_buf(), false));
    }
    // A download that starts late (after others, or after waiting for
    // the lock) may outlive the pull token it was given at the start.
    req.session.renew(req.client).await?;
    if let Outcome::BadResume = attempt(req, &mut file, &partial, true).await? {
        tracing::info!(
            digest = req.digest,
            "resumed download did not verify; starting over"
        );
        attempt(req, &mut file, &partial, false).await?;
    }
    // Durable before its name says "downloaded".
    file.sync_all()
        .map_err(|e| Error::Store(crate::Error::io(&partial)(e)))?;
    fs::rename(&partial, &done).map_err(crate::Error::io(&done))?;
    req.bar.finish("Download complete");
    Ok((done, true))
}

enum Outcome {
    Verified,
    /// The bytes kept from an earlier attempt did not hash right.
    BadResume,
}

/// One download attempt into the locked `file` at `partial`, resuming
/// from what it holds when `may_resume`.
async fn attempt(
    req: &BlobRequest<'_>,
    file: &mut File,
    partial: &Path,
    may_resume: bool,
) -> Result<Outcome, Error> {
    let io_err = |e| Error::Store(crate::Error::io(partial)(e));
    let mut offset = file.metadata().map_err(io_err)?.len();
    if !may_resume || offset > req.size {
        file.set_len(0).map_err(io_err)?;
        offset = 0;
    }
    let mut hasher = Sha256::new();
    if offset > 0 {
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = offset;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want]).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        tracing::info!(digest = req.digest, offset, "resuming download");
    }
    let resumed = offset > 0;
    req.bar.reset_to(offset);

    if offset < req.size {
        let oci = req.remote.oci();
        let fail = |e| map_oci_error(e, req.remote, Some(req.digest));
        let sized = if offset == 0 {
            req.client
                .pull_blob_stream(&oci, req.digest)
                .await
                .map_err(fail)?
        } else {
            match req
                .client
                .pull_blob_stream_partial(&oci, req.digest, offset, None)
                .await
                .map_err(fail)?
            {
                BlobResponse::Partial(s) => s,
                BlobResponse::Full(s) => {
                    // No range support: start over.
                    file.set_len(0).map_err(io_err)?;
                    hasher = Sha256::new();
                    offset = 0;
                    req.bar.reset_to(0);
                    s
                }
            }
        };
        file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        req.bar.set_message("Downloading");
        let mut stream = sized.stream;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    let n = bytes.len() as u64;
                    if offset + n > req.size {
                        discard(partial);
                        return Err(Error::Oversized {
                            digest: req.digest.to_string(),
                            expected: req.size,
                        });
                    }
                    file.write_all(&bytes).map_err(io_err)?;
                    hasher.update(&bytes);
                    offset += n;
                    req.bar.advance(n);
                }
                // oci-client's own digest check, at the end of a full
                // response: the stream is over; our checks below name
                // what is wrong (short, or other content).
                Err(e) if is_digest_error(&e) => break,
                Err(source) => {
                    let _ = file.sync_data();
                    return Err(Error::Interrupted {
                        digest: req.digest.to_string(),
                        got: offset,
                        expected: req.size,
                        source,
                    });
                }
            }
        }
    }
    if offset < req.size {
        discard(partial);
        return Err(Error::Truncated {
            digest: req.digest.to_string(),
            got: offset,
            expected: req.size,
        });
    }
    let actual = hex::encode(hasher.finalize());
    if Some(actual.as_str()) != digest::parse(req.digest).ok() {
        if resumed && may_resume {
            return Ok(Outcome::BadResume);
        }
        discard(partial);
        return Err(Error::Store(crate::Error::DigestMismatch {
            digest: req.digest.to_string(),
            actual,
        }));
    }
    file.sync_all().map_err(io_err)?;
    Ok(Outcome::Verified)
}

/// Whether a stream error is oci-client's end-of-stream digest check
/// rather than a broken transfer.
pub(super) fn is_digest_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>())
}

fn discard(partial: &Path) {
    let _ = fs::remove_file(partial);
}

/// Opens and locks `path` (creating it), waiting without blocking the
/// thread while another process holds it. Returns only once the locked
/// file is still the one at `path` (its last holder may have renamed or
/// removed it).
async fn lock(path: &Path, bar: &LayerBar) -> Result<File, Error> {
    let io_err = |e| Error::Store(crate::Error::io(path)(e));
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_err)?;
        match rustix::fs::flock(
            file.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(()) => {
                let ours = file.metadata().map_err(io_err)?;
                let same = fs::metadata(path)
                    .is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev());
                if same {
                    return Ok(file);
                }
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                bar.set_message("Waiting");
                tokio::time::sleep(LOCK_POLL).await;
            }
            Err(e) => return Err(io_err(io::Error::from(e))),
        }
    }
}
