//! Looking after the store: `hull image inspect` (everything the store
//! knows about an image, as JSON) and `hull image prune` (untagged images,
//! leftovers of interrupted pulls).
//!
//! Model: `docker image inspect` / `docker image prune`. Prune never
//! touches an `ingest/` download that a pull is working on: pulls hold the
//! ingest directory's `flock` shared, prune tries it exclusive and leaves
//! `ingest/` alone when it cannot have it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::Path;

use serde::Serialize;

use super::index::find;
use super::store::ImageStore;
use super::Error;

/// `hull image inspect`'s view of one image.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub manifest_digest: String,
    /// Sum of the layer blobs' sizes, as stored.
    pub size: u64,
    pub layers: Vec<InspectLayer>,
    /// The image config exactly as stored (OCI or Docker).
    pub config: serde_json::Value,
    pub disk: InspectDisk,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectLayer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub diff_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectDisk {
    pub path: std::path::PathBuf,
    pub fs_type: String,
    /// Whether the disk has been built (it is built on pull or first run).
    pub built: bool,
}

/// What `prune` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Ids of the images removed.
    pub images: Vec<String>,
    /// Bytes freed in blobs, disks, ingest and unpacked layers.
    pub reclaimed: u64,
}

/// A shared hold on `ingest/` that a pull keeps while it downloads and
/// commits, so `prune` leaves its files alone.
pub struct IngestGuard {
    _dir: File,
}

impl ImageStore {
    /// Everything the store holds about one image.
    pub fn inspect(&self, reference: &str) -> Result<Inspect, Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        let (id, _) = find(&index, reference)?;
        let rec = &index.images[&id];
        let manifest = self.blobs().manifest(&rec.manifest_digest)?;
        let config_bytes = self.blobs().read(&id, "image config")?;
        let config: serde_json::Value =
            serde_json::from_slice(&config_bytes).map_err(|source| Error::InvalidJson {
                what: "image config",
                digest: id.clone(),
                source,
            })?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let layers = manifest
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| InspectLayer {
                digest: l.digest().to_string(),
                media_type: l.media_type().to_string(),
                size: l.size(),
                diff_id: diff_ids.get(i).cloned().unwrap_or_default(),
            })
            .collect();
        let disk = self.disk_path(&id)?;
        Ok(Inspect {
            repo_tags: rec.names.clone(),
            manifest_digest: rec.manifest_digest.clone(),
            size: manifest.layers().iter().map(|l| l.size()).sum(),
            layers,
            config,
            disk: InspectDisk {
                built: disk.exists(),
                path: disk,
                fs_type: self.disk_fs.to_string(),
            },
            id,
        })
    }

    /// Removes untagged images (with `all`, every image no container
    /// uses: `in_use` maps image ids to a container), then blobs and disks
    /// nothing refers to, and leftovers of interrupted pulls.
    pub fn prune(
        &self,
        all: bool,
        in_use: &BTreeMap<String, String>,
    ) -> Result<PruneReport, Error> {
        let _lock = self.lock()?;
        let before = self.usage()?;
        let mut index = self.read_index()?;
        let doomed: Vec<String> = index
            .images
            .iter()
            .filter(|(id, rec)| (all || rec.names.is_empty()) && !in_use.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &doomed {
            index.images.remove(id);
        }
        if !doomed.is_empty() {
            self.write_index(&index)?;
        }
        self.gc(&index)?;
        self.prune_ingest()?;
        let after = self.usage()?;
        Ok(PruneReport {
            images: doomed,
            reclaimed: before.saturating_sub(after),
        })
    }

    /// Takes the ingest guard (shared); see [`IngestGuard`].
    pub fn ingest_guard(&self) -> Result<IngestGuard, Error> {
        let path = self.root().join("ingest");
        let dir = File::open(&path).map_err(Error::io(&path))?;
        rustix::fs::flock(dir.as_fd(), rustix::fs::FlockOperation::LockShared)
            .map_err(|e| Error::io(&path)(e.into()))?;
        Ok(IngestGuard { _dir: dir })
    }

    /// Empties `ingest/` unless a pull holds it.
    fn prune_ingest(&self) -> Result<(), Error> {
        let path = self.root().join("ingest");
        let dir = File::open(&path).map_err(Error::io(&path))?;
        let got = rustix::fs::flock(
            dir.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        );
        if got.is_err() {
            return Ok(()); // a pull is under way
        }
        for entry in fs::read_dir(&path).map_err(Error::io(&path))? {
            let p = entry.map_err(Error::io(&path))?.path();
            fs::remove_file(&p).map_err(Error::io(&p))?;
        }
        Ok(())
    }

    /// Bytes in blobs, disks, ingest and unpacked layers.
    fn usage(&self) -> Result<u64, Error> {
        let mut total = self.layer_cache().usage()?;
        for dir in ["blobs/sha256", "disks", "ingest"] {
            total += dir_size(&self.root().join(dir))?;
        }
        Ok(total)
    }
}

fn dir_size(dir: &Path) -> Result<u64, Error> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        if let Ok(m) = entry.metadata() {
            if m.is_file() {
                total += m.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{LayerBuilder, OciArchive, TestImage};

    #[test]
    fn inspect_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let layers = vec![LayerBuilder::new().file("etc/a", b"1", 0o644).build()];
        let a = OciArchive::new(vec![TestImage::new(layers)]);
        let path = a.write(dir.path(), "a.tar");
        let img = store.load_archive(&path).unwrap().remove(0);

        let info = store.inspect("hull-test/img").unwrap();
        assert_eq!(info.id, img.id);
        assert_eq!(info.repo_tags, vec!["hull-test/img:latest"]);
        assert_eq!(info.layers.len(), 1);
        assert!(info.layers[0].diff_id.starts_with("sha256:"));
        assert_eq!(info.config["config"]["Cmd"][0], "sh");
        assert!(!info.disk.built);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["RepoTags"][0], "hull-test/img:latest");

        // A tagged image survives a plain prune; leftovers in ingest go.
        std::fs::write(store.root().join("ingest/abc.partial"), b"half").unwrap();
        let report = store.prune(false, &BTreeMap::new()).unwrap();
        assert!(report.images.is_empty());
        assert_eq!(report.reclaimed, 4);
        assert!(store.resolve("hull-test/img").is_ok());

        // With -a, an image in use stays; otherwise it goes.
        let in_use = BTreeMap::from([(img.id.clone(), "c1".to_string())]);
        assert!(store.prune(true, &in_use).unwrap().images.is_empty());
        let report = store.prune(true, &BTreeMap::new()).unwrap();
        assert_eq!(report.images, vec![img.id.clone()]);
        assert!(report.reclaimed > 0);
        assert!(store.list().unwrap().is_empty());
        let err = store.inspect("hull-test/img").unwrap_err();
        assert_eq!(err.to_string(), "image not found: hull-test/img:latest");
    }

    #[test]
    fn prune_leaves_ingest_of_a_running_pull() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let partial = store.root().join("ingest/abc.partial");
        std::fs::write(&partial, b"half").unwrap();
        let guard = store.ingest_guard().unwrap();
        store.prune(false, &BTreeMap::new()).unwrap();
        assert!(partial.exists());
        drop(guard);
        store.prune(false, &BTreeMap::new()).unwrap();
        assert!(!partial.exists());
    }

    #[test]
    fn rmi_refuses_an_image_in_use_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let layers = vec![LayerBuilder::new().file("etc/a", b"1", 0o644).build()];
        let a = OciArchive::new(vec![TestImage::new(layers)]);
        let img = store
            .load_archive(&a.write(dir.path(), "a.tar"))
            .unwrap()
            .remove(0);
        let in_use = BTreeMap::from([(img.id.clone(), "web1".to_string())]);
        let err = store
            .remove_unless_used("hull-test/img", &in_use, false)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "image hull-test/img is used by container web1 (use -f to remove it anyway)"
        );
        assert!(store.resolve("hull-test/img").is_ok());
        store
            .remove_unless_used("hull-test/img", &in_use, true)
            .unwrap();
        assert!(store.list().unwrap().is_empty());
    }
}
