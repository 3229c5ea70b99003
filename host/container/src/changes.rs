//! A container's changes as a layer, and a new image from them
//! (`hull commit`, a build's `RUN` step). The changes never leave the VM
//! as a disk: the host does not mount a guest-written ext4. The agent
//! writes its overlay's upper layer as a layer tar on a stream, the
//! supervisor copies it into the caller's file (a running container
//! frozen meanwhile), and this module reads it back through the bounds of
//! a hostile image layer before the caller may use it.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::Path;

use hull_image::commit::{check_layer, CheckedLayer, CommitOptions};
use hull_image::{Image, ImageStore, Limits};

use crate::error::{io_error, Error};
use crate::record::Container;
use crate::supervisor::control::{ControlClient, ControlReply, ControlRequest};

/// Where `hull commit` stages a layer tar under the hull root; the file
/// goes when the commit ends.
const COMMITS_DIR: &str = "commits";

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// `sha256:<hex>` of the tar: the layer's diff id.
    pub diff_id: String,
    /// Entries and file bytes in the layer.
    pub entries: u64,
    pub bytes: u64,
    /// The tar's size.
    pub size: u64,
}

impl From<CheckedLayer> for ExportSummary {
    fn from(c: CheckedLayer) -> Self {
        Self {
            diff_id: c.diff_id,
            entries: c.entries,
            bytes: c.bytes,
            size: c.size,
        }
    }
}

/// Writes `container`'s changes to `out` (truncated first) as an
/// uncompressed OCI layer tar: sorted entries, whiteouts and opaque
/// directories, mtimes clamped to `source_date_epoch` when given. The
/// container must be running (it is frozen while its files are read) or
/// have exited with its VM kept (`RunRequest::keep_vm_for_export`). On
/// any failure `out` is left empty.
pub async fn export(
    container: &Container,
    source_date_epoch: Option<i64>,
    out: &mut File,
) -> Result<ExportSummary, Error> {
    let name = container.config.name.clone();
    let result = export_into(container, source_date_epoch, out).await;
    if result.is_err() {
        let _ = out.set_len(0);
    }
    result.map_err(|e| match e {
        Error::NoAnswer { .. } => Error::NoVmToExport(name),
        e => e,
    })
}

async fn export_into(
    container: &Container,
    source_date_epoch: Option<i64>,
    out: &mut File,
) -> Result<ExportSummary, Error> {
    let name = &container.config.name;
    if container.live_supervisor().is_none() {
        return Err(Error::NoVmToExport(name.clone()));
    }
    out.set_len(0)
        .map_err(io_error("truncate the layer file"))?;
    out.seek(SeekFrom::Start(0))
        .map_err(io_error("rewind the layer file"))?;
    let request = ControlRequest::ExportChanges { source_date_epoch };
    let no_answer = |source| Error::NoAnswer {
        name: name.clone(),
        source,
    };
    let mut client = ControlClient::connect(&container.socket_path(), &request, &[out.as_fd()])
        .await
        .map_err(no_answer)?;
    match client.reply().await.map_err(no_answer)? {
        ControlReply::Agent { .. } => {}
        ControlReply::Error { message, code } => return Err(Error::Refused { message, code }),
        other => return Err(Error::UnexpectedReply(format!("{other:?}"))),
    }
    out.seek(SeekFrom::Start(0))
        .map_err(io_error("rewind the layer file"))?;
    let limits = Limits::from_env()?;
    let checked =
        check_layer(BufReader::new(&*out), &limits).map_err(|source| Error::BadLayer {
            name: name.clone(),
            source: Box::new(source),
        })?;
    Ok(checked.into())
}

/// `hull commit`: exports `container`'s changes into a file under the
/// hull root and commits them on the container's image as a new image
/// (`opts.name`, if any). With `source_date_epoch` the layer's mtimes are
/// clamped to it and the image's time is it (unless `opts.created` is
/// set), so the same changes give the same image id. Nothing is left
/// behind on failure.
pub async fn commit(
    root: &Path,
    container: &Container,
    mut opts: CommitOptions,
    source_date_epoch: Option<i64>,
) -> Result<Image, Error> {
    let store = ImageStore::open(root)?;
    // Not the store's `tmp/`, which its writers clear under their lock.
    let dir = root.join(COMMITS_DIR);
    crate::private::ensure_dir(&dir).map_err(io_error(format!("create {}", dir.display())))?;
    let staging = tempfile::Builder::new()
        .prefix("layer-")
        .tempfile_in(&dir)
        .map_err(io_error("make the layer file"))?;
    let mut file = staging.reopen().map_err(io_error("open the layer file"))?;
    export(container, source_date_epoch, &mut file).await?;
    if opts.created_by.is_empty() {
        opts.created_by = created_by(container);
    }
    if opts.created.is_empty() {
        let at = match source_date_epoch {
            Some(secs) => {
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64)
            }
            None => std::time::SystemTime::now(),
        };
        opts.created = crate::logs::rfc3339_nano(at);
    }
    let base =
        (!container.config.image_id.is_empty()).then_some(container.config.image_id.as_str());
    let image = store
        .commit_layer(base, staging.path(), &opts)
        .map_err(|e| Error::Commit(Box::new(e)))?;
    Ok(image)
}

/// The history's `created_by`: the container's command, as Docker's.
fn created_by(container: &Container) -> String {
    let args = container
        .config
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    args.join(" ")
}
