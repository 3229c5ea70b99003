//! Turning an image's layers into its read-only rootfs disk: apply every
//! layer in order onto one staging directory (checking each layer's diff
//! id as it streams past), then build the EROFS image of that directory.
//!
//! Why no per-layer unpack cache (`layers/<diffid>/`): the disk is built
//! once per image and then cached, and EROFS is built from one flattened
//! directory, so a cache would only help the first disk build of a second
//! image sharing a base layer, while costing the full uncompressed size
//! again on disk and an extra copy of every file on every build. Measured
//! on the 200 MB Debian image (`bench/pull/run.sh`): decompressing and
//! applying all layers is a minority of the build next to `mkfs.erofs`
//! and a copy of the unpacked tree would cost about as much as the
//! unpacking it saves.

use std::fs;
use std::path::{Path, PathBuf};

use super::disk::{self, DISK_FS};
use super::store::ImageStore;
use super::unpack::Unpacker;
use super::{digest, layer, Error};

/// One layer to apply: its blob (in `blobs/` or a verified download in
/// `ingest/`) and the diff id its image's config promises.
#[derive(Clone, Debug)]
pub(super) struct LayerSource {
    pub(super) digest: String,
    pub(super) path: PathBuf,
    pub(super) diff_id: String,
}

impl ImageStore {
    /// Builds the disk of image `id` from `layers` and renames it to
    /// `dest`. The caller holds the store lock (staging is in `tmp/`).
    /// Nothing is left behind on failure.
    pub(super) fn build_disk(
        &self,
        id: &str,
        layers: &[LayerSource],
        dest: &Path,
    ) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let staging = self.tempdir("rootfs-")?;
        let rootfs = staging.path().join("rootfs");
        fs::create_dir(&rootfs).map_err(Error::io(&rootfs))?;
        let limit = self.limits.max_layer_size;
        let mut unpacker = Unpacker::with_limit(&rootfs, limit);
        for layer in layers {
            let digest = layer.digest.clone();
            let read_err = |source| Error::ReadLayer {
                digest: digest.clone(),
                source,
            };
            let stream = layer::open(&layer.path, limit).map_err(read_err)?;
            let stream = unpacker.apply(stream).map_err(|source| Error::Unpack {
                digest: digest.clone(),
                source,
            })?;
            let (actual, _) = stream.finish().map_err(read_err)?;
            if Some(actual.as_str()) != digest::parse(&layer.diff_id).ok() {
                return Err(Error::DiffIdMismatch {
                    digest,
                    expected: layer.diff_id.clone(),
                    actual,
                });
            }
        }
        let unpacked = started.elapsed();
        unpacker.finish().map_err(|source| Error::Unpack {
            digest: id.to_string(),
            source,
        })?;

        let tmp_disk = staging.path().join("disk");
        disk::build_erofs(&rootfs, &tmp_disk)?;
        fs::rename(&tmp_disk, dest).map_err(Error::io(dest))?;
        tracing::info!(
            image = %id,
            fs = %DISK_FS,
            unpack_ms = unpacked.as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            "built rootfs disk"
        );
        Ok(())
    }
}
