//! `hull save`: images out of the store as an OCI archive (an OCI image
//! layout in a tar, what `skopeo copy … oci-archive:` writes), which `hull
//! load`, `skopeo` and `podman load` read back.
//!
//! The tar is written to a temp file next to the output and renamed, so
//! the output is never half-written; blobs are re-hashed as they are
//! copied, so a store damaged on disk makes `save` fail rather than export
//! bad content.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::json;

use super::digest::HashingReader;
use super::index::find;
use super::store::ImageStore;
use super::{digest, Error};

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

impl ImageStore {
    /// Writes the images `references` name to `out` as one OCI archive.
    pub fn save(&self, references: &[String], out: &Path) -> Result<(), Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        let mut manifests = Vec::new();
        let mut blobs: BTreeSet<String> = BTreeSet::new();
        for reference in references {
            let (id, name) = find(&index, reference)?;
            let rec = &index.images[&id];
            let manifest_bytes = self.blobs().read(&rec.manifest_digest, "image manifest")?;
            let manifest = self.blobs().manifest(&rec.manifest_digest)?;
            let media_type = manifest
                .media_type()
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_else(|| super::media::MT_OCI_MANIFEST.to_string());
            let mut desc = json!({
                "mediaType": media_type,
                "digest": rec.manifest_digest,
                "size": manifest_bytes.len(),
            });
            if !name.is_empty() {
                desc["annotations"] = json!({ ANNOTATION_REF_NAME: name });
            }
            manifests.push(desc);
            blobs.insert(rec.manifest_digest.clone());
            blobs.insert(manifest.config().digest().to_string());
            blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        }
        let index_json = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": super::media::MT_OCI_INDEX,
            "manifests": manifests,
        }))
        .map_err(|source| Error::InvalidJson {
            what: "image index",
            digest: "index.json".into(),
            source,
        })?;

        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".hull-save-")
            .tempfile_in(dir)
            .map_err(Error::io(dir))?;
        let io_out = |e| Error::io(out)(e);
        {
            let mut tar = tar::Builder::new(BufWriter::new(tmp.as_file()));
            append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_out)?;
            append(&mut tar, "index.json", &index_json).map_err(io_out)?;
            for d in &blobs {
                self.append_blob(&mut tar, d, out)?;
            }
            let mut w = tar.into_inner().map_err(io_out)?;
            w.flush().map_err(io_out)?;
        }
        tmp.as_file().sync_all().map_err(io_out)?;
        tmp.persist(out).map_err(|e| io_out(e.error))?;
        Ok(())
    }

    fn append_blob<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        digest_str: &str,
        out: &Path,
    ) -> Result<(), Error> {
        let hex = digest::parse(digest_str)?;
        let path = self.blob_path(digest_str)?;
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::MissingBlob {
                digest: digest_str.to_string(),
            },
            _ => Error::io(&path)(e),
        })?;
        let size = file.metadata().map_err(Error::io(&path))?.len();
        let mut header = header(size);
        let mut reader = HashingReader::new(file);
        tar.append_data(&mut header, format!("blobs/sha256/{hex}"), &mut reader)
            .map_err(|e| Error::io(out)(e))?;
        let (actual, _) = reader.finish().map_err(Error::io(&path))?;
        if actual != hex {
            return Err(Error::DigestMismatch {
                digest: digest_str.to_string(),
                actual,
            });
        }
        Ok(())
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = header(data.len() as u64);
    tar.append_data(&mut h, name, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{LayerBuilder, OciArchive, TestImage};
    use std::fs;

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("a")).unwrap();
        let layers = vec![
            LayerBuilder::new().file("etc/a", b"1", 0o644).build(),
            LayerBuilder::new().whiteout("etc/.wh.a").build(),
        ];
        let a = OciArchive::new(vec![TestImage::new(layers)]);
        let img = store
            .load_archive(&a.write(dir.path(), "a.tar"))
            .unwrap()
            .remove(0);
        let out = dir.path().join("saved.tar");
        store.save(&["hull-test/img".to_string()], &out).unwrap();

        let other = ImageStore::open(&dir.path().join("b")).unwrap();
        let loaded = other.load_archive(&out).unwrap();
        assert_eq!(loaded, vec![img.clone()]);
        // No temp files next to the output.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".hull-save"))
            .collect();
        assert!(names.is_empty(), "{names:?}");

        // A damaged blob makes save fail and leaves no output.
        let layer = a.digests[0].2[0].clone();
        fs::write(store.blob_path(&layer).unwrap(), b"rotten").unwrap();
        let out2 = dir.path().join("bad.tar");
        let err = store
            .save(&["hull-test/img".to_string()], &out2)
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!out2.exists());
        let err = store.save(&["nope".to_string()], &out2).unwrap_err();
        assert_eq!(err.to_string(), "image not found: nope:latest");
    }

    #[test]
    fn skopeo_reads_what_save_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("a")).unwrap();
        let layers = vec![LayerBuilder::new().file("etc/a", b"1", 0o644).build()];
        let a = OciArchive::new(vec![TestImage::new(layers)]);
        store.load_archive(&a.write(dir.path(), "a.tar")).unwrap();
        let out = dir.path().join("saved.tar");
        store.save(&["hull-test/img".to_string()], &out).unwrap();
        let status = std::process::Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", out.display()))
            .output()
            .expect("skopeo is needed by this test");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
}
