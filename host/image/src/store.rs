//! The store itself: importing images, the name index, resolving
//! references, removal with garbage collection, and the per-image rootfs
//! disk cache. It alone owns the store's state; the parts it is made of
//! ([`super::blobs`], [`super::index`], [`super::layers`],
//! [`super::build`]) take paths and return values.
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
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use rustix::fs::FlockOperation;

use super::blobs::{write_atomic, Blobs};
use super::build::DiskBuild;
use super::disk::FsType;
use super::index::{find, Index};
use super::layer::{check_diff_id, LayerSource};
use super::layers::{chain_ids, LayerCache, LAYERS_DIR};
use super::reference::Reference;
use super::source::{self, Imported, LayerFile};
use super::{archive, digest, Error, Image, ImageConfig, Limits, RootfsDisk};

const INDEX_FILE: &str = "images.json";

/// A local image store rooted at one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    pub(super) limits: Limits,
    /// The filesystem new disks are built with.
    pub(super) disk_fs: FsType,
    blobs: Blobs,
}

/// Held while writing (exclusive) or reading (shared) the store.
pub(super) struct Lock {
    _file: File,
}

/// A layer blob as the commit finds it under the lock.
struct Placed {
    digest: String,
    path: PathBuf,
    /// Not in `blobs/` yet: `path` is moved in by the commit.
    fresh: bool,
}

impl ImageStore {
    /// Opens the store at `root`, creating its layout if missing. Disks
    /// are built as EROFS unless `HULL_DISK_FS` says `ext4`; layers are
    /// bounded by [`Limits::from_env`].
    pub fn open(root: &Path) -> Result<ImageStore, Error> {
        let disk_fs = FsType::from_env()?;
        let limits = Limits::from_env()?;
        for dir in ["blobs/sha256", "disks", "tmp", "ingest", LAYERS_DIR] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(Error::io(&path))?;
        }
        // Unpacked layers hold the images' set-id binaries and devices:
        // nobody but root may reach them on the host.
        let layers = root.join(LAYERS_DIR);
        let mode = fs::metadata(&layers).map_err(Error::io(&layers))?.mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&layers, fs::Permissions::from_mode(0o700))
                .map_err(Error::io(&layers))?;
        }
        let root = root.canonicalize().map_err(Error::io(root))?;
        let store = ImageStore {
            blobs: Blobs::new(&root, &root.join("tmp")),
            root,
            limits,
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
        let imported = archive::read(archive, staging.path(), self.limits)?;
        let placed = imported
            .iter()
            .map(|img| self.place(&img.layers))
            .collect::<Result<Vec<_>, _>>()?;
        self.commit(&imported, &placed)?;
        for img in &imported {
            let id = &img.docs.config_digest;
            tracing::info!(id = %id, names = ?img.names, "imported image");
        }
        let mut out = Vec::new();
        for img in &imported {
            out.extend(self.images_named(&img.docs.config_digest, &img.names)?);
        }
        Ok(out)
    }

    /// Image `id` once per name, or once without a name.
    fn images_named(&self, id: &str, names: &[String]) -> Result<Vec<Image>, Error> {
        if names.is_empty() {
            return Ok(vec![self.image(id, "")?]);
        }
        names.iter().map(|name| self.image(id, name)).collect()
    }

    /// Whether image `id` is recorded with exactly this manifest.
    pub(crate) fn has_exact(&self, id: &str, manifest_digest: &str) -> Result<bool, Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        Ok(index
            .images
            .get(id)
            .is_some_and(|r| r.manifest_digest == manifest_digest))
    }

    /// Under the lock: applies the layers of a pulled image (from
    /// `blobs/` or `ingest/`), checking diff ids, builds the disk, then
    /// commits blobs and names. With no layers only the names change (the
    /// store has the image already).
    pub(crate) fn commit_pulled(&self, img: &Imported) -> Result<Image, Error> {
        let _lock = self.lock()?;
        let placed = self.place(&img.layers)?;
        let id = &img.docs.config_digest;
        let disk = self.disk_path(id)?;
        let built = self.build_or_check(img, &placed, &disk)?;
        if let Err(e) = self.commit(std::slice::from_ref(img), &[placed]) {
            if built {
                let _ = fs::remove_file(&disk);
                // And the layers unpacked for it that no image uses.
                if let Ok(index) = self.read_index() {
                    let _ = self.gc(&index);
                }
            }
            return Err(e);
        }
        self.image(id, img.names.first().map_or("", String::as_str))
    }

    /// Builds the disk of a new image; when it exists already (same
    /// config, other manifest) still checks the new layers' diff ids
    /// before they become part of the store. Whether a disk was built.
    fn build_or_check(
        &self,
        img: &Imported,
        placed: &[Placed],
        disk: &Path,
    ) -> Result<bool, Error> {
        let sources = layer_sources(placed, &img.docs.diff_ids);
        if !img.layers.is_empty() && !disk.exists() {
            self.build_disk(&img.docs.config_digest, &sources, disk)?;
            return Ok(true);
        }
        for s in sources.iter().filter(|s| s.fresh) {
            check_diff_id(s, self.limits.budget(Default::default()))?;
        }
        Ok(false)
    }

    /// Where each layer blob is under the lock: in `blobs/` already (a
    /// copy of ours is then spare and removed), or our verified file,
    /// which the commit moves in.
    fn place(&self, layers: &[LayerFile]) -> Result<Vec<Placed>, Error> {
        let mut out = Vec::with_capacity(layers.len());
        for layer in layers {
            let blob = self.blobs.path(&layer.digest)?;
            let (path, fresh) = if blob.exists() {
                if layer.path != blob {
                    // A concurrent import committed it first.
                    let _ = fs::remove_file(&layer.path);
                }
                (blob, false)
            } else if layer.path.exists() {
                (layer.path.clone(), true)
            } else {
                return Err(Error::MissingBlob {
                    digest: layer.digest.clone(),
                });
            };
            let digest = layer.digest.clone();
            out.push(Placed {
                digest,
                path,
                fresh,
            });
        }
        Ok(out)
    }

    /// Moves the images' new blobs into place, writes their manifests and
    /// configs and records them with their names; a failure takes back
    /// every blob it added.
    fn commit(&self, images: &[Imported], placed: &[Vec<Placed>]) -> Result<(), Error> {
        let mut created = Vec::new();
        let result = self
            .commit_blobs(images, placed, &mut created)
            .and_then(|()| {
                let mut index = self.read_index()?;
                for img in images {
                    let docs = &img.docs;
                    index.record(&docs.config_digest, &docs.manifest_digest, &img.names);
                }
                self.write_index(&index)?;
                // A re-import may have replaced a manifest; drop what is orphaned.
                self.gc(&index)
            });
        if result.is_err() {
            for path in &created {
                let _ = fs::remove_file(path);
            }
        }
        result
    }

    fn commit_blobs(
        &self,
        images: &[Imported],
        placed: &[Vec<Placed>],
        created: &mut Vec<PathBuf>,
    ) -> Result<(), Error> {
        for (img, layers) in images.iter().zip(placed) {
            for layer in layers.iter().filter(|l| l.fresh) {
                self.blobs.move_in(&layer.digest, &layer.path, created)?;
            }
            let docs = &img.docs;
            self.blobs
                .write(&docs.config_digest, &docs.config_bytes, created)?;
            self.blobs
                .write(&docs.manifest_digest, &docs.manifest_bytes, created)?;
        }
        Ok(())
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
            out.extend(self.images_named(id, &rec.names)?);
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
        let layers = self.stored_layers(&image.id)?;
        self.build_disk(&image.id, &layers, &path)?;
        Ok(disk)
    }

    /// Copies the directory at absolute `path` in `image`'s root
    /// filesystem into `dest` (an existing, empty directory), with owners,
    /// modes, times and symlinks: what fills a new volume. False when the
    /// image has no directory there.
    pub fn copy_out(&self, image: &Image, path: &str, dest: &Path) -> Result<bool, Error> {
        let layers = self.stored_layers(&image.id)?;
        let tree = {
            let _lock = self.lock()?;
            self.layer_cache().unpack(&layers)?.0
        };
        match tree {
            Some(tree) => super::copy_out::copy_subtree(&tree, path, dest),
            None => Ok(false),
        }
    }

    /// The layers of stored image `id`, with the diff ids its config says.
    fn stored_layers(&self, id: &str) -> Result<Vec<LayerSource>, Error> {
        let (manifest_digest, manifest, config) = self.documents_of(id)?;
        let diff_ids = source::diff_ids(&manifest_digest, &manifest, &config)?;
        manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(desc, diff_id)| {
                let digest = desc.digest().to_string();
                Ok(LayerSource {
                    path: self.blobs.path(&digest)?,
                    digest,
                    diff_id,
                    fresh: false,
                })
            })
            .collect()
    }

    /// Builds the disk of image `id` from `layers` at `dest`; the caller
    /// holds the writer lock.
    fn build_disk(&self, id: &str, layers: &[LayerSource], dest: &Path) -> Result<(), Error> {
        let staging = self.tempdir("disk-")?;
        let build = DiskBuild {
            cache: &self.layer_cache(),
            fs: self.disk_fs,
            staging: staging.path(),
        };
        build.run(id, layers, dest)
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

    pub(super) fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    pub(super) fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        self.blobs.path(digest)
    }

    /// The unpacked layers, bounded by this store's limits.
    pub(super) fn layer_cache(&self) -> LayerCache {
        LayerCache::new(&self.root, &self.root.join("tmp"), self.limits)
    }

    /// The manifest digest, manifest and config of recorded image `id`.
    fn documents_of(&self, id: &str) -> Result<(String, ImageManifest, ImageConfiguration), Error> {
        let index = self.read_index()?;
        let rec = index
            .images
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let manifest = self.blobs.manifest(&rec.manifest_digest)?;
        let config = self.blobs.config(id)?;
        Ok((rec.manifest_digest.clone(), manifest, config))
    }

    /// Image `id`'s manifest and config as JSON values, for a commit that
    /// keeps every field of them.
    pub(crate) fn raw_documents(
        &self,
        id: &str,
    ) -> Result<(serde_json::Value, serde_json::Value), Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        let rec = index
            .images
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let parse = |digest: &str, what: &'static str| {
            let bytes = self.blobs.read(digest, what)?;
            serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
                what,
                digest: digest.to_string(),
                source,
            })
        };
        Ok((
            parse(&rec.manifest_digest, "image manifest")?,
            parse(id, "image config")?,
        ))
    }

    /// Builds the public view of image `id` under `name`.
    pub(super) fn image(&self, id: &str, name: &str) -> Result<Image, Error> {
        let (manifest_digest, manifest, config) = self.documents_of(id)?;
        Ok(Image {
            name: name.to_string(),
            id: id.to_string(),
            manifest_digest,
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
        write_atomic(&self.root.join("tmp"), &path, &bytes)
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
        self.flock(FlockOperation::LockShared)
    }

    /// Takes the writers' lock, then clears what crashed writers left in
    /// `tmp/` (only lock holders write there).
    pub(super) fn lock(&self) -> Result<Lock, Error> {
        let lock = self.flock(FlockOperation::LockExclusive)?;
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(Error::io(&tmp))? {
            let p = entry.map_err(Error::io(&tmp))?.path();
            let _ = if p.is_dir() && !p.is_symlink() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
        Ok(lock)
    }

    fn flock(&self, op: FlockOperation) -> Result<Lock, Error> {
        let file = self.lock_file()?;
        let path = self.root.join("lock");
        rustix::fs::flock(file.as_fd(), op).map_err(|e| Error::io(&path)(e.into()))?;
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

    /// Deletes blobs, disks and unpacked layers that no image in `index`
    /// uses. Everything is kept if an image's manifest or config cannot
    /// be read (we do not guess).
    pub(super) fn gc(&self, index: &Index) -> Result<(), Error> {
        let Some(live) = self.live(index) else {
            return Ok(());
        };
        self.layer_cache().gc(&live.layers)?;
        self.blobs.sweep(&live.blobs)?;
        let disks = self.root.join("disks");
        for entry in fs::read_dir(&disks).map_err(Error::io(&disks))? {
            let entry = entry.map_err(Error::io(&disks))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.disks.contains(&name) {
                let p = entry.path();
                fs::remove_file(&p).map_err(Error::io(&p))?;
            }
        }
        Ok(())
    }

    /// What the images of `index` use; `None` if any of it cannot be read.
    fn live(&self, index: &Index) -> Option<Live> {
        let mut live = Live::default();
        for (id, rec) in &index.images {
            live.blobs.insert(id.clone());
            live.blobs.insert(rec.manifest_digest.clone());
            let hex = id.trim_start_matches("sha256:");
            for fs in FsType::ALL {
                live.disks.insert(format!("{hex}.{}", fs.extension()));
            }
            let manifest = self.blobs.manifest(&rec.manifest_digest).ok()?;
            live.blobs
                .extend(manifest.layers().iter().map(|l| l.digest().to_string()));
            let config = self.blobs.config(id).ok()?;
            live.layers
                .extend(chain_ids(config.rootfs().diff_ids()).ok()?);
        }
        Some(live)
    }
}

/// Blobs (digests), disk file names and layer chain ids in use.
#[derive(Default)]
struct Live {
    blobs: BTreeSet<String>,
    disks: BTreeSet<String>,
    layers: BTreeSet<String>,
}

/// The layers to apply for placed blobs and their diff ids.
fn layer_sources(placed: &[Placed], diff_ids: &[String]) -> Vec<LayerSource> {
    placed
        .iter()
        .zip(diff_ids)
        .map(|(p, diff_id)| LayerSource {
            digest: p.digest.clone(),
            path: p.path.clone(),
            diff_id: diff_id.clone(),
            fresh: p.fresh,
        })
        .collect()
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
        busybox_archive, docker_save, erofs_extract, erofs_files, store_fixture as fixture,
        LayerBuilder, OciArchive, StoreFixture as Fixture, TestImage,
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

    /// The documents of `a`'s first image, as a source would hand them
    /// over.
    fn documents_of(a: &OciArchive) -> source::Documents {
        let (m, c, _) = a.digests[0].clone();
        let (manifest_bytes, config_bytes) = (a.blob(&m), a.blob(&c));
        let manifest = source::parse_manifest(&m, &manifest_bytes).unwrap();
        let config = source::parse_config(&c, &config_bytes).unwrap();
        let diff_ids = source::diff_ids(&m, &manifest, &config).unwrap();
        source::Documents {
            manifest_digest: m,
            manifest_bytes,
            manifest,
            config_digest: c,
            config_bytes,
            diff_ids,
        }
    }

    #[test]
    fn a_pulled_image_commits_its_downloads_once() {
        let f = fixture();
        let a = OciArchive::new(vec![TestImage::new(layers())]);
        let ingest = f.store.root().join("ingest");
        let downloads = || -> Vec<LayerFile> {
            let digests = &a.digests[0].2;
            let file = |d: &String| {
                let path = ingest.join(digest::parse(d).unwrap());
                fs::write(&path, a.blob(d)).unwrap();
                LayerFile {
                    digest: d.clone(),
                    path,
                }
            };
            digests.iter().map(file).collect()
        };
        let names = vec!["hull-test/img:latest".to_string()];
        let pulled = |layers| Imported {
            names: names.clone(),
            docs: documents_of(&a),
            layers,
        };

        // A download that went missing is named, and nothing is kept.
        let mut layers = downloads();
        layers[1].path = ingest.join("gone");
        let err = f.store.commit_pulled(&pulled(layers)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {} is missing", a.digests[0].2[1])
        );
        assert!(f.store.list().unwrap().is_empty());

        let img = f.store.commit_pulled(&pulled(downloads())).unwrap();
        assert_eq!(img.name, "hull-test/img:latest");
        assert!(f.store.disk_path(&img.id).unwrap().exists());
        assert!(fs::read_dir(&ingest).unwrap().next().is_none());
        // A second pull's copies are spare once the blobs are in: removed.
        assert_eq!(f.store.commit_pulled(&pulled(downloads())).unwrap(), img);
        assert!(fs::read_dir(&ingest).unwrap().next().is_none());
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
        let img = f.load_first(&a, "a.tar");
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
        let img = f.load_first(&a, "a.tar");
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

    /// Lists an EROFS image's non-directory paths, one a line.
    fn erofs_listing(image: &Path) -> String {
        erofs_files(image).join("\n")
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

    #[test]
    fn hostile_layers_are_refused_on_load_leaving_nothing() {
        let f = fixture();
        let before = f.files();
        // A PAX header over the bound, with all the data it claims.
        let bomb = LayerBuilder::new()
            .file("ok", b"fine", 0o644)
            .raw_header_with_data("PaxHeaders/ok2", b'x', 2 << 20, &vec![0u8; 2 << 20])
            .file("ok2", b"x", 0o644)
            .build();
        let a = OciArchive::new(vec![TestImage::new(vec![bomb])]);
        let p = a.write(f.dir.path(), "bomb.tar");
        let err = f.store.load_archive(&p).unwrap_err();
        let layer = &a.digests[0].2[0];
        assert_eq!(
            crate::test_utils::chain(&err),
            format!(
                "layer {layer} is refused: entry \"PaxHeaders/ok2\" (header 2): PAX extended \
                 header of 2097152 bytes is over the bound of 1048576 bytes"
            )
        );
        assert_eq!(f.files(), before);

        // The image bounds add up over its layers.
        let two = |name: &str, size: usize| {
            LayerBuilder::new()
                .file(&format!("{name}1"), &vec![1u8; size], 0o644)
                .file(&format!("{name}2"), &vec![1u8; size], 0o644)
                .build()
        };
        let a = OciArchive::new(vec![TestImage::new(vec![two("a", 1), two("b", 1)])]);
        let p = a.write(f.dir.path(), "many.tar");
        let limited = f.store.clone().with_limits(Limits {
            max_image_entries: 3,
            ..Limits::default()
        });
        let err = limited.load_archive(&p).unwrap_err();
        assert!(
            crate::test_utils::chain(&err)
                .ends_with("entry \"b2\" (header 2): more than 3 entries in the image"),
            "{err}"
        );
        assert_eq!(f.files(), before);
        let a = OciArchive::new(vec![TestImage::new(vec![two("a", 300), two("b", 300)])]);
        let p = a.write(f.dir.path(), "big.tar");
        let limited = f.store.clone().with_limits(Limits {
            max_image_size: 1000,
            ..Limits::default()
        });
        let err = limited.load_archive(&p).unwrap_err();
        assert!(
            crate::test_utils::chain(&err).ends_with(
                "entry \"b2\" (header 2): 300 bytes take the image past its bound of 1000 bytes"
            ),
            "{err}"
        );
        assert_eq!(f.files(), before);
        assert!(f.store.list().unwrap().is_empty());
    }

    #[test]
    fn image_bounds_count_reused_layers() {
        let f = fixture();
        let base = LayerBuilder::new()
            .file("a1", b"", 0o644)
            .file("a2", b"", 0o644)
            .build();
        let top = LayerBuilder::new()
            .file("b1", b"", 0o644)
            .file("b2", b"", 0o644)
            .build();
        let only_base = f.load_first(
            &OciArchive::new(vec![TestImage::new(vec![base.clone()])]),
            "a.tar",
        );
        f.store.rootfs_disk(&only_base).unwrap();
        let both = OciArchive::new(vec![TestImage::new(vec![base, top]).named(Some("x/both:1"))]);
        let both = f.load_first(&both, "b.tar");
        // The base's tree is reused; what it holds still counts.
        let limited = f.store.clone().with_limits(Limits {
            max_image_entries: 3,
            ..Limits::default()
        });
        let err = limited.rootfs_disk(&both).unwrap_err();
        assert!(
            crate::test_utils::chain(&err)
                .ends_with("entry \"b2\" (header 2): more than 3 entries in the image"),
            "{err}"
        );
        assert_eq!(
            fs::read_dir(f.store.root().join("layers")).unwrap().count(),
            1,
            "only the base's tree"
        );
        f.store.rootfs_disk(&both).unwrap();
    }

    #[test]
    fn too_many_layers_are_refused() {
        let f = fixture();
        let layers = (0..=crate::MAX_LAYERS)
            .map(|i| {
                LayerBuilder::new()
                    .file(&format!("f{i}"), b"", 0o644)
                    .build()
            })
            .collect();
        let a = OciArchive::new(vec![TestImage::new(layers)]);
        let p = a.write(f.dir.path(), "deep.tar");
        let err = f.store.load_archive(&p).unwrap_err();
        assert!(
            matches!(err, Error::TooManyLayers { count: 128, .. }),
            "{err}"
        );
    }
}
