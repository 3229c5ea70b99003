//! The store itself: importing archives, the name index, resolving
//! references, removal with garbage collection, and the per-image rootfs
//! disk cache.
//!
//! Model: containerd's content store plus its image metadata, reduced to
//! files. Every change is a temp file renamed into place; writers hold an
//! exclusive `flock` on `<root>/lock`, so `tmp/` holds only their staging
//! and whatever a crashed writer left, which the next writer removes.
//! Readers take no lock: they see the old or the new `images.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use super::archive::{ImportedImage, Staged};
use super::disk::{self, DISK_FS};
use super::reference::{self, Reference};
use super::unpack::Unpacker;
use super::{digest, layer, Error, Image, ImageConfig, RootfsDisk, MAX_JSON_SIZE};

const INDEX_FILE: &str = "images.json";
const MIN_ID_PREFIX: usize = 12;

/// A local image store rooted at one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// `images.json`: image id -> record.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    manifest_digest: String,
    /// Normalized `repo:tag` names; a name belongs to one image at most.
    names: Vec<String>,
}

/// Held while writing the store.
struct Lock {
    _file: File,
}

impl ImageStore {
    /// Opens the store at `root`, creating its layout if missing.
    pub fn open(root: &Path) -> Result<ImageStore, Error> {
        for dir in ["blobs/sha256", "disks", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(Error::io(&path))?;
        }
        let root = root.canonicalize().map_err(Error::io(root))?;
        Ok(ImageStore { root })
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
            for name in &img.names {
                for rec in index.images.values_mut() {
                    rec.names.retain(|n| n != name);
                }
            }
            let rec = index
                .images
                .entry(img.config_digest.clone())
                .or_insert_with(|| Record {
                    manifest_digest: img.manifest_digest.clone(),
                    names: Vec::new(),
                });
            rec.manifest_digest = img.manifest_digest.clone();
            for name in &img.names {
                if !rec.names.contains(name) {
                    rec.names.push(name.clone());
                }
            }
        }
        self.write_index(&index)?;
        // A re-import may have replaced a manifest; drop what is orphaned.
        self.gc(&index)
    }

    /// Finds an image by name (`repo`, `repo:tag`, `repo@sha256:…`) or by
    /// id (`sha256:<hex>` or a hex prefix of at least 12 digits).
    pub fn resolve(&self, reference: &str) -> Result<Image, Error> {
        let index = self.read_index()?;
        let (id, name) = find(&index, reference)?;
        self.image(&id, &name)
    }

    /// Every image, one entry per name, untagged images with an empty name;
    /// sorted by name, then id.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
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
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (id, name) = find(&index, reference)?;
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

    /// The rootfs disk of `image`, built on first use and cached per image
    /// id. Every layer's diff id is checked again while it is unpacked.
    pub fn rootfs_disk(&self, image: &Image) -> Result<RootfsDisk, Error> {
        let hex = digest::parse(&image.id)?.to_string();
        let path = self
            .root
            .join("disks")
            .join(format!("{hex}.{}", DISK_FS.extension()));
        let disk = RootfsDisk {
            path: path.clone(),
            fs_type: DISK_FS,
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

        let staging = self.tempdir("rootfs-")?;
        let rootfs = staging.path().join("rootfs");
        fs::create_dir(&rootfs).map_err(Error::io(&rootfs))?;
        let mut unpacker = Unpacker::new(&rootfs);
        for (desc, expected) in manifest.layers().iter().zip(diff_ids) {
            let digest = desc.digest().to_string();
            let blob = self.blob_path(&digest)?;
            let read_err = |source| Error::ReadLayer {
                digest: digest.clone(),
                source,
            };
            let stream = layer::open(&blob).map_err(read_err)?;
            let stream = unpacker.apply(stream).map_err(|source| Error::Unpack {
                digest: digest.clone(),
                source,
            })?;
            let (actual, _) = stream.finish().map_err(read_err)?;
            if Some(actual.as_str()) != digest::parse(expected).ok() {
                return Err(Error::DiffIdMismatch {
                    digest,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        unpacker.finish().map_err(|source| Error::Unpack {
            digest: image.id.clone(),
            source,
        })?;

        let tmp_disk = staging.path().join("disk");
        disk::build_erofs(&rootfs, &tmp_disk)?;
        fs::rename(&tmp_disk, &path).map_err(Error::io(&path))?;
        Ok(disk)
    }

    // ----- internals -----

    fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        let hex = digest::parse(digest)?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    /// Reads a small blob from the store and checks its digest.
    fn read_blob(&self, digest: &str, what: &'static str) -> Result<Vec<u8>, Error> {
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

    fn read_manifest(&self, digest: &str) -> Result<ImageManifest, Error> {
        let bytes = self.read_blob(digest, "image manifest")?;
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
            what: "image manifest",
            digest: digest.to_string(),
            source,
        })
    }

    fn read_config(&self, digest: &str) -> Result<ImageConfiguration, Error> {
        let bytes = self.read_blob(digest, "image config")?;
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
            what: "image config",
            digest: digest.to_string(),
            source,
        })
    }

    /// Builds the public view of image `id` under `name`.
    fn image(&self, id: &str, name: &str) -> Result<Image, Error> {
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

    fn read_index(&self) -> Result<Index, Error> {
        let path = self.root.join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| Error::CorruptIndex { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(Error::io(&path)(e)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), Error> {
        let path = self.root.join(INDEX_FILE);
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|source| Error::CorruptIndex {
                path: path.clone(),
                source,
            })?;
        self.write_atomic(&path, &bytes)
    }

    /// Writes `bytes` to a temp file in `tmp/`, syncs and renames it to `dest`.
    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), Error> {
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(Error::io(&tmp_dir))?;
        tmp.write_all(bytes).map_err(Error::io(tmp.path()))?;
        tmp.as_file().sync_all().map_err(Error::io(tmp.path()))?;
        tmp.persist(dest)
            .map_err(|e| Error::io(dest)(e.error))?;
        Ok(())
    }

    fn tempdir(&self, prefix: &str) -> Result<tempfile::TempDir, Error> {
        let tmp_dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp_dir)
            .map_err(Error::io(&tmp_dir))
    }

    /// Takes the writers' lock, then clears what crashed writers left in
    /// `tmp/` (only lock holders write there).
    fn lock(&self) -> Result<Lock, Error> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
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

    /// Deletes blobs and disks that no image in `index` uses. Blobs of an
    /// image whose manifest cannot be read are kept.
    fn gc(&self, index: &Index) -> Result<(), Error> {
        let mut live: BTreeSet<String> = BTreeSet::new();
        let mut live_disks: BTreeSet<String> = BTreeSet::new();
        for (id, rec) in &index.images {
            live.insert(id.clone());
            live.insert(rec.manifest_digest.clone());
            live_disks.insert(format!(
                "{}.{}",
                id.trim_start_matches("sha256:"),
                DISK_FS.extension()
            ));
            match self.read_manifest(&rec.manifest_digest) {
                Ok(m) => live.extend(m.layers().iter().map(|l| l.digest().to_string())),
                Err(_) => return Ok(()), // do not guess: keep everything
            }
        }
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

/// Finds (id, name) for a reference; the name is empty when found by id
/// and the image has no name.
fn find(index: &Index, reference: &str) -> Result<(String, String), Error> {
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
        }
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let is_hex = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
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
        labels: c
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        exposed_ports,
        stop_signal: c.stop_signal().clone(),
    }
}

