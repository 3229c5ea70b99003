//! The store itself: importing archives, the name index, resolving
//! references, removal with garbage collection, and the per-image rootfs
//! disk cache.
//!
//! Model: containerd's content store plus its image metadata, reduced to
//! files. Every change is a temp file renamed into place; writers hold an
//! exclusive `flock` on `<root>/lock`, so `tmp/` holds only their staging
//! and whatever a crashed writer left, which the next writer removes.
//! Readers (`resolve`, `list`) hold the lock shared while they read the
//! index and the blobs it names, so a concurrent `rmi` cannot take a blob
//! away halfway through.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use super::archive::{ImportedImage, Staged};
use super::build::LayerSource;
use super::disk::FsType;
use super::layers::chain_ids;
use super::reference::{self, Reference};
use super::{digest, Error, Image, ImageConfig, Limits, RootfsDisk, MAX_JSON_SIZE};

const INDEX_FILE: &str = "images.json";
const MIN_ID_PREFIX: usize = 12;

/// A local image store rooted at one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    pub(super) limits: Limits,
    /// The filesystem new disks are built with.
    pub(super) disk_fs: FsType,
}

/// `images.json`: image id -> record.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Index {
    pub(super) images: BTreeMap<String, Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) manifest_digest: String,
    /// Normalized `repo:tag` names; a name belongs to one image at most.
    pub(super) names: Vec<String>,
}

/// Held while writing (exclusive) or reading (shared) the store.
pub(super) struct Lock {
    _file: File,
}

impl ImageStore {
    /// Opens the store at `root`, creating its layout if missing. Disks
    /// are built as EROFS unless `HULL_DISK_FS` says `ext4`.
    pub fn open(root: &Path) -> Result<ImageStore, Error> {
        let disk_fs = FsType::from_env()?;
        for dir in [
            "blobs/sha256",
            "disks",
            "tmp",
            "ingest",
            super::layers::LAYERS_DIR,
        ] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(Error::io(&path))?;
        }
        // Unpacked layers hold the images' set-id binaries and devices:
        // nobody but root may reach them on the host.
        let layers = root.join(super::layers::LAYERS_DIR);
        let mode = fs::metadata(&layers).map_err(Error::io(&layers))?.mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&layers, fs::Permissions::from_mode(0o700))
                .map_err(Error::io(&layers))?;
        }
        let root = root.canonicalize().map_err(Error::io(root))?;
        let store = ImageStore {
            root,
            limits: Limits::default(),
            disk_fs,
        };
        store.lock_file()?;
        Ok(store)
    }

    /// The same store with other bounds on layer content.
    pub fn with_limits(mut self, limits: Limits) -> ImageStore {
        self.limits = limits;
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports every image of an OCI archive or `docker save` tarball and
    /// returns them, one entry per name (an unnamed image once, with an
    /// empty name). Nothing is left behind if any part fails.
    pub fn load_archive(&self, archive: &Path) -> Result<Vec<Image>, Error> {
        let _lock = self.lock()?;
        let staging = self.tempdir("import-")?;
        let staged = Staged::new(archive, staging.path())?;
        let imported = staged.images()?;

        let mut created: Vec<PathBuf> = Vec::new();
        let result = self.commit(&imported, &mut created);
        if result.is_err() {
            for path in &created {
                let _ = fs::remove_file(path);
            }
        }
        result?;
        for img in &imported {
            tracing::info!(id = %img.config_digest, names = ?img.names, "imported image");
        }

        let mut out = Vec::new();
        for img in &imported {
            if img.names.is_empty() {
                out.push(self.image(&img.config_digest, "")?);
            }
            for name in &img.names {
                out.push(self.image(&img.config_digest, name)?);
            }
        }
        Ok(out)
    }

    /// Moves verified blobs into place and records the images; `created`
    /// collects new blob paths so a failure can take them back.
    fn commit(&self, imported: &[ImportedImage], created: &mut Vec<PathBuf>) -> Result<(), Error> {
        for img in imported {
            for layer in &img.layers {
                let dest = self.blob_path(&layer.digest)?;
                if !dest.exists() {
                    fs::rename(&layer.file.path, &dest).map_err(Error::io(&dest))?;
                    created.push(dest);
                }
            }
            for (digest, bytes) in [
                (&img.config_digest, &img.config),
                (&img.manifest_digest, &img.manifest),
            ] {
                let dest = self.blob_path(digest)?;
                if !dest.exists() {
                    self.write_atomic(&dest, bytes)?;
                    created.push(dest);
                }
            }
        }
        let mut index = self.read_index()?;
        for img in imported {
            index.record(&img.config_digest, &img.manifest_digest, &img.names);
        }
        self.write_index(&index)?;
        // A re-import may have replaced a manifest; drop what is orphaned.
        self.gc(&index)
    }

    /// Finds an image by name (`repo`, `repo:tag`, `repo@sha256:…`) or by
    /// id (`sha256:<hex>` or a hex prefix of at least 12 digits).
    pub fn resolve(&self, reference: &str) -> Result<Image, Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        let (id, name) = find(&index, reference)?;
        self.image(&id, &name)
    }

    /// Every image, one entry per name, untagged images with an empty name;
    /// sorted by name, then id.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        let mut out = Vec::new();
        for (id, rec) in &index.images {
            if rec.names.is_empty() {
                out.push(self.image(id, "")?);
            }
            for name in &rec.names {
                out.push(self.image(id, name)?);
            }
        }
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(out)
    }

    /// Removes a name; removing by id drops the image with all its names.
    /// An image left without names is dropped, and blobs and disks no
    /// image uses any more are deleted.
    pub fn remove(&self, reference: &str) -> Result<(), Error> {
        self.remove_unless_used(reference, &BTreeMap::new(), true)
    }

    /// [`ImageStore::remove`], refused while a container uses the image:
    /// `in_use` maps image ids (`sha256:…`) to a container using each.
    /// With `force` the image is removed anyway (a running VM keeps its
    /// open disk file).
    pub fn remove_unless_used(
        &self,
        reference: &str,
        in_use: &BTreeMap<String, String>,
        force: bool,
    ) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (id, name) = find(&index, reference)?;
        if let (false, Some(container)) = (force, in_use.get(&id)) {
            return Err(Error::InUse {
                image: reference.to_string(),
                container: container.clone(),
            });
        }
        let by_name = Reference::parse(reference)
            .ok()
            .and_then(|r| r.tagged_name())
            .is_some_and(|n| n == name);
        let drop_image = match index.images.get_mut(&id) {
            Some(rec) if by_name => {
                rec.names.retain(|n| n != &name);
                rec.names.is_empty()
            }
            _ => true,
        };
        if drop_image {
            index.images.remove(&id);
        }
        self.write_index(&index)?;
        self.gc(&index)
    }

    /// The same store, building disks of kind `fs`.
    pub fn with_disk_fs(mut self, fs: FsType) -> ImageStore {
        self.disk_fs = fs;
        self
    }

    /// The rootfs disk of `image`, built on first use and cached per image
    /// id. Every layer not unpacked yet has its diff id checked again
    /// while it is unpacked.
    pub fn rootfs_disk(&self, image: &Image) -> Result<RootfsDisk, Error> {
        let path = self.disk_path(&image.id)?;
        let disk = RootfsDisk {
            path: path.clone(),
            fs_type: self.disk_fs,
        };
        if path.exists() {
            return Ok(disk);
        }
        let _lock = self.lock()?;
        if path.exists() {
            return Ok(disk); // built by someone else while we waited
        }
        let index = self.read_index()?;
        let rec = index
            .images
            .get(&image.id)
            .ok_or_else(|| Error::NotFound(image.id.clone()))?;
        let manifest = self.read_manifest(&rec.manifest_digest)?;
        let config = self.read_config(&image.id)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::LayerCountMismatch {
                digest: rec.manifest_digest.clone(),
                layers: manifest.layers().len(),
                diff_ids: diff_ids.len(),
            });
        }

        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(desc, diff_id)| {
                let digest = desc.digest().to_string();
                Ok(LayerSource {
                    path: self.blob_path(&digest)?,
                    digest,
                    diff_id: diff_id.clone(),
                    fresh: false,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.build_disk(&image.id, &layers, &path)?;
        Ok(disk)
    }

    /// Where the rootfs disk of image `id` is (or will be) kept.
    pub(super) fn disk_path(&self, id: &str) -> Result<PathBuf, Error> {
        let hex = digest::parse(id)?;
        Ok(self
            .root
            .join("disks")
            .join(format!("{hex}.{}", self.disk_fs.extension())))
    }

    // ----- internals -----

    pub(super) fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        let hex = digest::parse(digest)?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    /// Reads a small blob from the store and checks its digest.
    pub(super) fn read_blob(&self, digest: &str, what: &'static str) -> Result<Vec<u8>, Error> {
        let path = self.blob_path(digest)?;
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingBlob {
                    digest: digest.to_string(),
                })
            }
            Err(e) => return Err(Error::io(&path)(e)),
        };
        if meta.len() > MAX_JSON_SIZE {
            return Err(Error::TooLarge {
                what,
                digest: digest.to_string(),
                limit: MAX_JSON_SIZE,
            });
        }
        let bytes = fs::read(&path).map_err(Error::io(&path))?;
        let actual = digest::sha256_hex(&bytes);
        if Some(actual.as_str()) != digest::parse(digest).ok() {
            return Err(Error::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub(super) fn read_manifest(&self, digest: &str) -> Result<ImageManifest, Error> {
        let bytes = self.read_blob(digest, "image manifest")?;
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
            what: "image manifest",
            digest: digest.to_string(),
            source,
        })
    }

    pub(super) fn read_config(&self, digest: &str) -> Result<ImageConfiguration, Error> {
        let bytes = self.read_blob(digest, "image config")?;
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
            what: "image config",
            digest: digest.to_string(),
            source,
        })
    }

    /// Builds the public view of image `id` under `name`.
    pub(super) fn image(&self, id: &str, name: &str) -> Result<Image, Error> {
        let index = self.read_index()?;
        let rec = index
            .images
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let manifest = self.read_manifest(&rec.manifest_digest)?;
        let config = self.read_config(id)?;
        Ok(Image {
            name: name.to_string(),
            id: id.to_string(),
            manifest_digest: rec.manifest_digest.clone(),
            config: image_config(&config),
            size: manifest.layers().iter().map(|l| l.size()).sum(),
        })
    }

    pub(super) fn read_index(&self) -> Result<Index, Error> {
        let path = self.root.join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| Error::CorruptIndex { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(Error::io(&path)(e)),
        }
    }

    pub(super) fn write_index(&self, index: &Index) -> Result<(), Error> {
        let path = self.root.join(INDEX_FILE);
        let bytes = serde_json::to_vec_pretty(index).map_err(|source| Error::CorruptIndex {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &bytes)
    }

    /// Writes `bytes` to a temp file in `tmp/`, syncs and renames it to `dest`.
    pub(super) fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), Error> {
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(Error::io(&tmp_dir))?;
        tmp.write_all(bytes).map_err(Error::io(tmp.path()))?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(Error::io(tmp.path()))?;
        tmp.as_file().sync_all().map_err(Error::io(tmp.path()))?;
        tmp.persist(dest).map_err(|e| Error::io(dest)(e.error))?;
        Ok(())
    }

    pub(super) fn tempdir(&self, prefix: &str) -> Result<tempfile::TempDir, Error> {
        let tmp_dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp_dir)
            .map_err(Error::io(&tmp_dir))
    }

    /// Takes the lock shared: readers exclude writers, not each other.
    pub(super) fn read_lock(&self) -> Result<Lock, Error> {
        let file = self.lock_file()?;
        let path = self.root.join("lock");
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockShared)
            .map_err(|e| Error::io(&path)(e.into()))?;
        Ok(Lock { _file: file })
    }

    fn lock_file(&self) -> Result<File, Error> {
        let path = self.root.join("lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))
    }

    /// Takes the writers' lock, then clears what crashed writers left in
    /// `tmp/` (only lock holders write there).
    pub(super) fn lock(&self) -> Result<Lock, Error> {
        let file = self.lock_file()?;
        let path = self.root.join("lock");
        rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(&path)(e.into()))?;
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(Error::io(&tmp))? {
            let p = entry.map_err(Error::io(&tmp))?.path();
            let _ = if p.is_dir() && !p.is_symlink() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
        Ok(Lock { _file: file })
    }

    /// Deletes blobs, disks and unpacked layers that no image in `index`
    /// uses. Everything is kept if an image's manifest or config cannot
    /// be read (we do not guess).
    pub(super) fn gc(&self, index: &Index) -> Result<(), Error> {
        let mut live: BTreeSet<String> = BTreeSet::new();
        let mut live_disks: BTreeSet<String> = BTreeSet::new();
        let mut live_layers: BTreeSet<String> = BTreeSet::new();
        for (id, rec) in &index.images {
            live.insert(id.clone());
            live.insert(rec.manifest_digest.clone());
            for fs in FsType::ALL {
                live_disks.insert(format!(
                    "{}.{}",
                    id.trim_start_matches("sha256:"),
                    fs.extension()
                ));
            }
            match self.read_manifest(&rec.manifest_digest) {
                Ok(m) => live.extend(m.layers().iter().map(|l| l.digest().to_string())),
                Err(_) => return Ok(()),
            }
            let diff_ids = match self.read_config(id) {
                Ok(c) => c.rootfs().diff_ids().clone(),
                Err(_) => return Ok(()),
            };
            match chain_ids(&diff_ids) {
                Ok(chains) => live_layers.extend(chains),
                Err(_) => return Ok(()),
            }
        }
        self.gc_layers(&live_layers)?;
        let blobs = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(Error::io(&blobs))? {
            let entry = entry.map_err(Error::io(&blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&format!("sha256:{name}")) {
                let p = entry.path();
                fs::remove_file(&p).map_err(Error::io(&p))?;
            }
        }
        let disks = self.root.join("disks");
        for entry in fs::read_dir(&disks).map_err(Error::io(&disks))? {
            let entry = entry.map_err(Error::io(&disks))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live_disks.contains(&name) {
                let p = entry.path();
                fs::remove_file(&p).map_err(Error::io(&p))?;
            }
        }
        Ok(())
    }
}

impl Index {
    /// Records image `id` with `manifest_digest` and moves `names` to it
    /// (an image that loses its last name stays, untagged).
    pub(super) fn record(&mut self, id: &str, manifest_digest: &str, names: &[String]) {
        for name in names {
            for rec in self.images.values_mut() {
                rec.names.retain(|n| n != name);
            }
        }
        let rec = self.images.entry(id.to_string()).or_insert_with(|| Record {
            manifest_digest: manifest_digest.to_string(),
            names: Vec::new(),
        });
        rec.manifest_digest = manifest_digest.to_string();
        for name in names {
            if !rec.names.contains(name) {
                rec.names.push(name.clone());
            }
        }
    }
}

/// Finds (id, name) for a reference; the name is empty when found by id
/// and the image has no name.
pub(super) fn find(index: &Index, reference: &str) -> Result<(String, String), Error> {
    let parsed = Reference::parse(reference);
    if let Ok(r) = &parsed {
        if let Some(name) = r.tagged_name() {
            let hit = index.images.iter().find(|(_, rec)| {
                rec.names.contains(&name)
                    && r.digest.as_ref().is_none_or(|d| d == &rec.manifest_digest)
            });
            if let Some((id, _)) = hit {
                return Ok((id.clone(), name));
            }
        } else if let Some(d) = &r.digest {
            for (id, rec) in &index.images {
                if &rec.manifest_digest == d {
                    let name = rec
                        .names
                        .iter()
                        .find(|n| reference::repo_of(n) == r.repo)
                        .cloned();
                    if let Some(name) = name {
                        return Ok((id.clone(), name));
                    }
                }
            }
            // Pulled by digest alone: the image may carry no name at all.
            for (id, rec) in &index.images {
                if &rec.manifest_digest == d {
                    return Ok((id.clone(), rec.names.first().cloned().unwrap_or_default()));
                }
            }
        }
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let is_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_hex && hex.len() >= MIN_ID_PREFIX && hex.len() <= 64 {
        let hits: Vec<&String> = index
            .images
            .keys()
            .filter(|id| id.trim_start_matches("sha256:").starts_with(hex))
            .collect();
        match hits.as_slice() {
            [id] => {
                let name = index.images[*id].names.first().cloned().unwrap_or_default();
                return Ok(((*id).clone(), name));
            }
            [] => {}
            many => {
                return Err(Error::Ambiguous {
                    reference: reference.to_string(),
                    count: many.len(),
                })
            }
        }
    }
    match parsed {
        Ok(r) => Err(Error::NotFound(r.to_string())),
        Err(_) if is_hex => Err(Error::NotFound(reference.to_string())),
        Err(e) => Err(e),
    }
}

fn image_config(config: &ImageConfiguration) -> ImageConfig {
    let Some(c) = config.config() else {
        return ImageConfig::default();
    };
    let mut exposed_ports = c.exposed_ports().clone().unwrap_or_default();
    exposed_ports.sort();
    ImageConfig {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
        exposed_ports,
        stop_signal: c.stop_signal().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{
        busybox_archive, docker_save, store_fixture as fixture, LayerBuilder, OciArchive,
        StoreFixture as Fixture, TestImage,
    };
    use crate::FsType;

    impl Fixture {
        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.dir.path().join(name);
            fs::write(&p, bytes).unwrap();
            p
        }

        /// Every file under the store root except the lock and an empty index.
        fn files(&self) -> Vec<String> {
            let mut out = Vec::new();
            walk(self.store.root(), self.store.root(), &mut out);
            out.sort();
            out
        }
    }

    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }

    fn layers() -> Vec<Vec<u8>> {
        vec![
            LayerBuilder::new()
                .dir("etc", 0o755)
                .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
                .file("etc/doomed", b"x", 0o644)
                .build(),
            LayerBuilder::new()
                .file("etc/release", b"2", 0o644)
                .whiteout("etc/.wh.doomed")
                .build(),
        ]
    }

    #[test]
    fn open_creates_the_layout() {
        let f = fixture();
        for d in ["blobs/sha256", "disks", "tmp"] {
            assert!(f.store.root().join(d).is_dir(), "{d}");
        }
        assert!(f.store.list().unwrap().is_empty());
        ImageStore::open(f.store.root()).unwrap();
    }

    #[test]
    fn round_trip() {
        let f = fixture();
        let a = OciArchive::new(vec![TestImage::new(layers())]);
        let (manifest_digest, config_digest, _) = a.digests[0].clone();
        let path = a.write(f.dir.path(), "img.tar");
        let loaded = f.store.load_archive(&path).unwrap();
        assert_eq!(loaded.len(), 1);
        let img = &loaded[0];
        assert_eq!(img.name, "hull-test/img:latest");
        assert_eq!(img.id, config_digest);
        assert_eq!(img.manifest_digest, manifest_digest);
        assert_eq!(img.config.cmd, vec!["sh"]);
        assert_eq!(
            img.config.env,
            vec!["PATH=/bin", "HULL_IMAGE_ENV=from-image"]
        );
        assert_eq!(img.config.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(img.config.exposed_ports, vec!["80/tcp"]);
        assert!(img.size > 0);

        for r in [
            "hull-test/img",
            "hull-test/img:latest",
            &config_digest,
            &config_digest[7..19],
            &format!("hull-test/img@{manifest_digest}"),
        ] {
            assert_eq!(&f.store.resolve(r).unwrap(), img, "{r}");
        }
        assert_eq!(f.store.list().unwrap(), loaded);
        let err = f.store.resolve("hull-test/other").unwrap_err();
        assert_eq!(err.to_string(), "image not found: hull-test/other:latest");
        assert!(matches!(
            f.store.resolve(&config_digest[7..15]),
            Err(Error::NotFound(_))
        ));

        // Loading again is a no-op.
        assert_eq!(f.store.load_archive(&path).unwrap(), loaded);
        // 2 layers + config + manifest, index, lock; tmp is empty.
        assert_eq!(f.files().len(), 6, "{:?}", f.files());
    }

    #[test]
    fn failed_imports_leave_nothing() {
        let f = fixture();
        let good = OciArchive::new(vec![TestImage::new(layers())]);
        let before = f.files();

        let other = vec![LayerBuilder::new().file("other", b"1", 0o644).build(); 2];
        let mut missing = OciArchive::new(vec![TestImage::new(other).named(Some("a/b:1"))]);
        let layer = missing.digests[0].2[1].clone();
        missing.remove_blob(&layer);
        // One good image and one bad one in the same archive.
        let mut both = OciArchive::new(vec![TestImage::new(layers())]);
        both.blobs.extend(missing.blobs.clone());
        let m = missing.index["manifests"][0].clone();
        both.index["manifests"].as_array_mut().unwrap().push(m);
        let p = both.write(f.dir.path(), "both.tar");
        let err = f.store.load_archive(&p).unwrap_err();
        assert_eq!(err.to_string(), format!("blob {layer} is missing"));
        assert_eq!(f.files(), before);

        let mut tar = good.to_tar();
        tar.truncate(tar.len() - 1500);
        let p = f.write("truncated.tar", &tar);
        assert!(f.store.load_archive(&p).is_err());
        assert_eq!(f.files(), before);

        let err = f
            .store
            .load_archive(&f.dir.path().join("nope.tar"))
            .unwrap_err();
        assert!(err.to_string().starts_with("cannot read archive"), "{err}");
        assert_eq!(f.files(), before);
        assert!(f.store.list().unwrap().is_empty());
    }

    #[test]
    fn unnamed_images_are_reachable_by_id() {
        let f = fixture();
        let a = OciArchive::new(vec![TestImage::new(layers()).named(None)]);
        let loaded = f
            .store
            .load_archive(&a.write(f.dir.path(), "a.tar"))
            .unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].name, "");
        assert_eq!(f.store.resolve(&loaded[0].id).unwrap(), loaded[0]);
        assert_eq!(f.store.list().unwrap(), loaded);
        f.store.remove(&loaded[0].id).unwrap();
        assert!(f.store.list().unwrap().is_empty());
        assert_eq!(f.files(), vec!["images.json", "lock"]);
    }

    #[test]
    fn stale_tmp_is_cleared_by_the_next_writer() {
        let f = fixture();
        let stale = f.store.root().join("tmp/import-crashed");
        fs::create_dir_all(stale.join("x")).unwrap();
        let a = OciArchive::new(vec![TestImage::new(layers())]);
        f.store
            .load_archive(&a.write(f.dir.path(), "a.tar"))
            .unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn names_move_and_remove_collects_garbage() {
        let f = fixture();
        let a = OciArchive::new(vec![TestImage::new(layers())]);
        let v1 = f
            .store
            .load_archive(&a.write(f.dir.path(), "v1.tar"))
            .unwrap();
        let mut other = TestImage::new(vec![LayerBuilder::new().file("x", b"v2", 0o644).build()]);
        other.config["config"]["Cmd"] = serde_json::json!(["true"]);
        let b = OciArchive::new(vec![other]);
        let v2 = f
            .store
            .load_archive(&b.write(f.dir.path(), "v2.tar"))
            .unwrap();
        assert_ne!(v1[0].id, v2[0].id);
        // The name moved; the old image is left untagged (docker's way).
        assert_eq!(f.store.resolve("hull-test/img").unwrap().id, v2[0].id);
        let list = f.store.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "");
        assert_eq!(list[0].id, v1[0].id);

        // A second name for v2, then a disk for it.
        let c = OciArchive::new(vec![TestImage::new(vec![LayerBuilder::new()
            .file("x", b"v2", 0o644)
            .build()])
        .named(Some("docker.io/library/alias:2"))]);
        let mut c = c;
        // Same content as b, so same id: reuse b's blobs with a new name.
        c.blobs = b.blobs.clone();
        c.index = b.index.clone();
        c.index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] =
            serde_json::json!("docker.io/library/alias:2");
        f.store
            .load_archive(&c.write(f.dir.path(), "c.tar"))
            .unwrap();
        assert_eq!(f.store.resolve("alias:2").unwrap().id, v2[0].id);
        let disk = f.store.rootfs_disk(&v2[0]).unwrap();
        assert!(disk.path.exists());

        // Untag one name: image and disk stay.
        f.store.remove("hull-test/img").unwrap();
        assert!(f.store.resolve("hull-test/img").is_err());
        assert!(disk.path.exists());
        // Remove the untagged v1 by short id: its blobs go.
        f.store.remove(v1[0].short_id()).unwrap();
        assert!(!f.store.blob_path(&v1[0].id).unwrap().exists());
        // Last name: everything goes.
        f.store.remove("alias:2").unwrap();
        assert!(!disk.path.exists());
        assert!(f.store.list().unwrap().is_empty());
        assert_eq!(f.files(), vec!["images.json", "lock"]);
        let err = f.store.remove("alias:2").unwrap_err();
        assert_eq!(err.to_string(), "image not found: alias:2");
    }

    #[test]
    fn ambiguous_id_prefix() {
        let mut index = Index::default();
        for id in ["sha256:aaaaaaaaaaaa1", "sha256:aaaaaaaaaaaa2"] {
            index.images.insert(
                id.to_string(),
                Record {
                    manifest_digest: String::new(),
                    names: vec![],
                },
            );
        }
        let err = find(&index, "aaaaaaaaaaaa").unwrap_err();
        assert!(matches!(err, Error::Ambiguous { count: 2, .. }), "{err}");
        assert!(matches!(
            find(&index, "aaaaaaaaaaa"),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn docker_save_loads() {
        let f = fixture();
        let (bytes, config_digest) = docker_save(&layers(), &["busybox:1.36", "busybox:latest"]);
        let p = f.write("save.tar", &bytes);
        let loaded = f.store.load_archive(&p).unwrap();
        let names: Vec<&str> = loaded.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["busybox:1.36", "busybox:latest"]);
        assert_eq!(f.store.resolve("busybox").unwrap().id, config_digest);
        let disk = f.store.rootfs_disk(&loaded[0]).unwrap();
        assert_eq!(disk.fs_type, FsType::Erofs);
    }

    #[test]
    fn rootfs_disk_is_built_once_and_applies_whiteouts() {
        let f = fixture();
        let a = OciArchive::new(vec![TestImage::new(layers())]);
        let img = f
            .store
            .load_archive(&a.write(f.dir.path(), "a.tar"))
            .unwrap()
            .remove(0);
        let disk = f.store.rootfs_disk(&img).unwrap();
        assert_eq!(disk.fs_type, FsType::Erofs);
        assert_eq!(disk.path.extension().unwrap(), "erofs");
        let mtime = fs::metadata(&disk.path).unwrap().modified().unwrap();
        assert_eq!(f.store.rootfs_disk(&img).unwrap(), disk);
        assert_eq!(fs::metadata(&disk.path).unwrap().modified().unwrap(), mtime);
        assert!(fs::read_dir(f.store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none());
        let listing = erofs_listing(&disk.path);
        assert!(listing.contains("etc/passwd"), "{listing}");
        assert!(listing.contains("etc/release"), "{listing}");
        assert!(!listing.contains("doomed"), "{listing}");
    }

    #[test]
    fn rootfs_disk_rechecks_layers() {
        let f = fixture();
        let a = OciArchive::new(vec![TestImage::new(layers())]);
        let img = f
            .store
            .load_archive(&a.write(f.dir.path(), "a.tar"))
            .unwrap()
            .remove(0);
        // Tamper with a stored layer: unpacking notices.
        let layer = &a.digests[0].2[1];
        let p = f.store.blob_path(layer).unwrap();
        fs::write(&p, crate::test_utils::gzip(b"garbage")).unwrap();
        let err = f.store.rootfs_disk(&img).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot unpack layer {layer}"))
                || matches!(err, Error::DiffIdMismatch { .. }),
            "{err}"
        );
        assert!(fs::read_dir(f.store.root().join("disks"))
            .unwrap()
            .next()
            .is_none());
        assert!(fs::read_dir(f.store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    /// Extracts an EROFS image with `fsck.erofs --extract` into a temp dir.
    fn erofs_extract(image: &Path) -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("x");
        let status = std::process::Command::new("fsck.erofs")
            .arg(format!("--extract={}", dest.display()))
            .arg(image)
            .output()
            .expect("fsck.erofs (erofs-utils) is needed by this test");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        out
    }

    /// Lists an EROFS image's non-directory paths.
    fn erofs_listing(image: &Path) -> String {
        let out = erofs_extract(image);
        let dest = out.path().join("x");
        let mut files = Vec::new();
        walk(&dest, &dest, &mut files);
        files.sort();
        files.join("\n")
    }

    #[test]
    fn real_skopeo_archive_loads_and_converts() {
        let f = fixture();
        let archive = busybox_archive(f.dir.path(), &[]);
        let loaded = f.store.load_archive(&archive).unwrap();
        assert_eq!(loaded.len(), 1);
        let img = &loaded[0];
        assert_eq!(img.name, "hull-demo/busybox:latest");
        assert_eq!(img.config.cmd, vec!["sh"]);
        assert!(img
            .config
            .env
            .contains(&"HULL_IMAGE_ENV=from-image".to_string()));
        assert!(img.config.working_dir.is_empty());
        assert_eq!(f.store.resolve("hull-demo/busybox").unwrap(), *img);
        let disk = f.store.rootfs_disk(img).unwrap();
        let listing = erofs_listing(&disk.path);
        for want in [
            "bin/busybox",
            "etc/passwd",
            "etc/group",
            "etc/hull-release",
            "etc/hull-doomed2",
        ] {
            assert!(
                listing.lines().any(|l| l == want),
                "{want} missing:\n{listing}"
            );
        }
        assert!(
            !listing.lines().any(|l| l == "etc/hull-doomed"),
            "{listing}"
        );

        use std::os::unix::fs::MetadataExt;
        let out = erofs_extract(&disk.path);
        let x = out.path().join("x");
        assert_eq!(
            fs::read_link(x.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        let home = fs::metadata(x.join("home/app")).unwrap();
        assert_eq!((home.uid(), home.gid()), (1000, 1000));
        assert_eq!(fs::metadata(x.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
        assert_eq!(
            fs::metadata(x.join("bin/busybox")).unwrap().mode() & 0o111,
            0o111
        );
        let passwd = fs::read_to_string(x.join("etc/passwd")).unwrap();
        assert!(
            passwd.contains("app:x:1000:1000:app:/home/app:"),
            "{passwd}"
        );
    }

    #[test]
    fn real_skopeo_archive_workdir_user_variant() {
        let f = fixture();
        let archive = busybox_archive(f.dir.path(), &["--workdir-user"]);
        let img = f.store.load_archive(&archive).unwrap().remove(0);
        assert_eq!(img.name, "hull-demo/busybox:workdir-user");
        assert_eq!(img.config.working_dir, "/home/app");
        assert_eq!(img.config.user, "app");
        assert_eq!(img.config.entrypoint, vec!["/bin/sh", "-c"]);
        assert_eq!(img.config.cmd, vec!["id"]);

        // The same image as `docker save` writes it (skopeo's docker-archive).
        let docker = f.dir.path().join("docker.tar");
        let status = std::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!(
                "docker-archive:{}:hull-demo/busybox:docker",
                docker.display()
            ))
            .status()
            .expect("skopeo is needed by this test");
        assert!(status.success());
        let from_docker = f.store.load_archive(&docker).unwrap().remove(0);
        assert_eq!(from_docker.name, "hull-demo/busybox:docker");
        assert_eq!(from_docker.id, img.id);
        assert_eq!(from_docker.config, img.config);
        f.store.rootfs_disk(&from_docker).unwrap();
    }
}
