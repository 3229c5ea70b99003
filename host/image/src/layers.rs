//! Unpacked layers, kept once and shared between images.
//!
//! Model: containerd's snapshotter, where the unpacked form of a layer is
//! keyed by its *chain id* (OCI image-spec `config.md`: the diff ids of
//! the layer and of every layer below it, hashed together), not by the
//! layer's diff id alone. The key has to include the layers below because
//! applying a layer depends on them: an entry `lib/x.so` lands in
//! `usr/lib/` when a lower layer made `lib` a symlink, a hardlink may name
//! a lower layer's file, and whiteouts remove lower content. Two images
//! that share base layers share their chain ids, so the base is unpacked
//! once for both.
//!
//! Layout: `layers/<chain hex>/rootfs/` is the flattened tree of that
//! layer and all below it; `layers/<chain hex>/complete.json` says what
//! it is. A tree is made by cloning the tree below it as a hardlink farm
//! (directories copied with their owner, mode, xattrs and mtime; every
//! other entry hardlinked, so file data is stored once) and applying the
//! layer onto the clone with the [`Unpacker`] and all its checks. Nothing
//! the unpacker does changes an inode it did not create (replaced and
//! whited-out entries are unlinked, new files are created), so applying
//! onto a clone never alters the tree below. The disk of an image is built
//! straight from the tree of its top layer.
//!
//! Crash safety and concurrency: a tree is built in `tmp/` and renamed
//! into `layers/` once complete, with `complete.json` written before the
//! rename; a directory in `layers/` without it is never used (and garbage
//! collection removes it). All of this happens under the store's writer
//! lock, as blob commits do; `tmp/` leftovers of a crashed writer are
//! cleared by the next one.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::layer::{apply_layer, check_diff_id, LayerSource};
use super::tar_bounds::Totals;
use super::unpack::Unpacker;
use super::{digest, Error, Limits};

pub(crate) const LAYERS_DIR: &str = "layers";
const COMPLETE: &str = "complete.json";
const TREE: &str = "rootfs";

/// What `complete.json` records about one unpacked layer.
#[derive(Debug, Serialize, Deserialize)]
struct Complete {
    chain_id: String,
    diff_id: String,
    /// The chain id of the tree this one was cloned from.
    parent: Option<String>,
    /// Entries and file bytes of this layer and all below it, counted
    /// against the image bounds of every image on top (absent in trees
    /// made before the bounds: counted as nothing).
    #[serde(default)]
    totals: Totals,
}

/// The chain ids of a stack of layers, bottom first (OCI image-spec:
/// `ChainID(L0) = DiffID(L0)`, `ChainID(L0|…|Ln) =
/// sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln))`).
pub(crate) fn chain_ids<S: AsRef<str>>(diff_ids: &[S]) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let diff_id = diff_id.as_ref();
        digest::parse(diff_id)?;
        let chain = match out.last() {
            None => diff_id.to_string(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {diff_id}")))
            ),
        };
        out.push(chain);
    }
    Ok(out)
}

/// What [`LayerCache::unpack`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Unpacked {
    /// Layers found unpacked already.
    pub(crate) reused: usize,
    /// The directories of the layers unpacked now, bottom first.
    pub(crate) created: Vec<PathBuf>,
}

impl Unpacked {
    /// Takes back what was unpacked (the image it was for failed).
    pub(crate) fn undo(&self) {
        for dir in self.created.iter().rev() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// The unpacked layers of one store: `layers/` and the staging directory
/// new trees are built in (the store's `tmp/`, which only the holder of
/// the writer lock uses).
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    dir: PathBuf,
    tmp: PathBuf,
    limits: Limits,
}

impl LayerCache {
    /// The cache in `<root>/layers`, staging in `tmp`.
    pub(crate) fn new(root: &Path, tmp: &Path, limits: Limits) -> LayerCache {
        LayerCache {
            dir: root.join(LAYERS_DIR),
            tmp: tmp.to_path_buf(),
            limits,
        }
    }

    /// The flattened tree of the stack whose top has `chain_id`, if it is
    /// complete.
    pub(crate) fn tree(&self, chain_id: &str) -> Result<Option<PathBuf>, Error> {
        Ok(self.complete(chain_id)?.map(|(tree, _)| tree))
    }

    /// The tree of a complete stack and what it holds.
    fn complete(&self, chain_id: &str) -> Result<Option<(PathBuf, Totals)>, Error> {
        let dir = self.layer_dir(chain_id)?;
        let complete = dir.join(COMPLETE);
        let Ok(bytes) = fs::read(&complete) else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_slice::<Complete>(&bytes) else {
            return Ok(None);
        };
        let tree = dir.join(TREE);
        Ok((record.chain_id == chain_id && tree.is_dir()).then_some((tree, record.totals)))
    }

    fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, Error> {
        Ok(self.dir.join(digest::parse(chain_id)?))
    }

    /// Makes sure every layer of `layers` (bottom first) is unpacked in
    /// `layers/`, unpacking only those not there yet, and returns the tree
    /// of the top one (`None` for an image without layers). The caller
    /// holds the writer lock. A layer found unpacked whose blob is
    /// `fresh` (not in the store before) is still checked against its
    /// diff id, so every stored blob is what its image's config says.
    pub(crate) fn unpack(
        &self,
        layers: &[LayerSource],
    ) -> Result<(Option<PathBuf>, Unpacked), Error> {
        let chains = chain_ids(&layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>())?;
        let mut stats = Unpacked::default();
        // The highest layer unpacked already; everything below it is in
        // its tree.
        let mut below = None;
        for i in (0..chains.len()).rev() {
            if let Some(found) = self.complete(&chains[i])? {
                below = Some((i, found));
                break;
            }
        }
        let start = below.as_ref().map_or(0, |(i, _)| i + 1);
        for layer in &layers[..start] {
            if layer.fresh {
                // Its content is in a tree already, within the bounds.
                check_diff_id(layer, self.limits.budget(Totals::default()))?;
            }
        }
        stats.reused = start;
        let (mut top, mut used) = match below {
            Some((_, (tree, totals))) => (Some(tree), totals),
            None => (None, Totals::default()),
        };
        for i in start..layers.len() {
            let parent = i.checked_sub(1).map(|p| chains[p].as_str());
            match self.unpack_one(&layers[i], &chains[i], top.as_deref(), parent, used) {
                Ok((tree, totals)) => {
                    stats.created.push(self.layer_dir(&chains[i])?);
                    top = Some(tree);
                    used = totals;
                }
                Err(e) => {
                    // No layer of a failed image stays behind.
                    stats.undo();
                    return Err(e);
                }
            }
        }
        Ok((top, stats))
    }

    /// Unpacks one layer onto a clone of `below` (or an empty tree),
    /// whose layers hold `used` of the image bounds, and commits it as
    /// `chain_id`; its tree and what the stack holds.
    fn unpack_one(
        &self,
        layer: &LayerSource,
        chain_id: &str,
        below: Option<&Path>,
        parent: Option<&str>,
        used: Totals,
    ) -> Result<(PathBuf, Totals), Error> {
        let staging = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&self.tmp)
            .map_err(Error::io(&self.tmp))?;
        // Becomes `layers/<chain>/`: root's alone (see `ImageStore::open`).
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o700))
            .map_err(Error::io(staging.path()))?;
        let tree = staging.path().join(TREE);
        let dir_times = match below {
            Some(below) => clone_tree(below, &tree).map_err(|source| Error::Unpack {
                digest: layer.digest.clone(),
                source,
            })?,
            None => {
                fs::create_dir(&tree).map_err(Error::io(&tree))?;
                Vec::new()
            }
        };
        let mut unpacker = Unpacker::new(&tree);
        unpacker.keep_dir_times(dir_times);
        let totals = used.add(apply_layer(&mut unpacker, layer, self.limits.budget(used))?);
        unpacker.finish().map_err(|source| Error::Unpack {
            digest: layer.digest.clone(),
            source,
        })?;

        let record = Complete {
            chain_id: chain_id.to_string(),
            diff_id: layer.diff_id.clone(),
            parent: parent.map(str::to_string),
            totals,
        };
        let complete = staging.path().join(COMPLETE);
        let bytes = serde_json::to_vec_pretty(&record).expect("a record serializes");
        fs::write(&complete, bytes).map_err(Error::io(&complete))?;

        let dest = self.layer_dir(chain_id)?;
        fs::create_dir_all(&self.dir).map_err(Error::io(&self.dir))?;
        if dest.exists() {
            // Incomplete (we checked before): never trusted, replaced.
            fs::remove_dir_all(&dest).map_err(Error::io(&dest))?;
        }
        // The whole tree on disk before the rename marks it complete:
        // one syncfs of the store's filesystem, not an fsync per file.
        let staged = fs::File::open(staging.path()).map_err(Error::io(staging.path()))?;
        rustix::fs::syncfs(&staged).map_err(|e| Error::io(staging.path())(e.into()))?;
        fs::rename(staging.path(), &dest).map_err(Error::io(&dest))?;
        let _ = staging.keep(); // renamed away: nothing left to remove
        Ok((dest.join(TREE), totals))
    }

    /// Removes unpacked layers that no stack in `live` (chain ids) needs,
    /// and any entry of `layers/` that is not complete.
    pub(crate) fn gc(&self, live: &BTreeSet<String>) -> Result<(), Error> {
        let dir = &self.dir;
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let chain_id = format!("sha256:{name}");
            let keep = live.contains(&chain_id) && self.tree(&chain_id).ok().flatten().is_some();
            if !keep {
                let p = entry.path();
                let removed = if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                removed.map_err(Error::io(&p))?;
            }
        }
        Ok(())
    }

    /// Bytes of the distinct files under `layers/` (a file shared by
    /// several trees counts once).
    pub(crate) fn usage(&self) -> Result<u64, Error> {
        let mut seen = HashSet::new();
        let mut total = 0u64;
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let entries = match fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&d)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(Error::io(&d))?;
                let Ok(m) = entry.metadata() else { continue };
                if m.is_dir() {
                    stack.push(entry.path());
                } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                    total += m.len();
                }
            }
        }
        Ok(total)
    }
}

/// Clones the tree `src` to `dst` (which must not exist): directories are
/// made anew with `src`'s owner, mode and xattrs, everything else is
/// hardlinked. Returns the directories' mtimes, to be set once the layer
/// on top is applied (adding entries changes them). `src` is the store's
/// own, trusted tree: no entry of it is followed.
fn clone_tree(src: &Path, dst: &Path) -> Result<Vec<(PathBuf, i64)>, super::unpack::Error> {
    let io_err = |entry: &Path, path: &Path| {
        let entry = entry.to_path_buf();
        let path = path.to_path_buf();
        move |source| super::unpack::Error::Io {
            entry,
            path,
            source,
        }
    };
    let mut times = Vec::new();
    let mut stack = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        let rel = from.strip_prefix(src).unwrap_or(&from).to_path_buf();
        let meta = fs::symlink_metadata(&from).map_err(io_err(&rel, &from))?;
        copy_dir(&from, &to, &meta).map_err(io_err(&rel, &to))?;
        times.push((to.clone(), meta.mtime()));
        for entry in fs::read_dir(&from).map_err(io_err(&rel, &from))? {
            let entry = entry.map_err(io_err(&rel, &from))?;
            let (child_from, child_to) = (entry.path(), to.join(entry.file_name()));
            let kind = entry.file_type().map_err(io_err(&rel, &child_from))?;
            if kind.is_dir() {
                stack.push((child_from, child_to));
            } else {
                rustix::fs::linkat(CWD, &child_from, CWD, &child_to, AtFlags::empty())
                    .map_err(|e| io_err(&rel, &child_to)(e.into()))?;
            }
        }
    }
    Ok(times)
}

/// Makes directory `to` with the owner, mode and xattrs of `from`.
fn copy_dir(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    fs::create_dir(to)?;
    rustix::fs::chownat(
        CWD,
        to,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    // After chown, which clears set-id bits.
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let mut names = vec![0u8; 64 << 10];
    let n = match rustix::fs::llistxattr(from, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => 0,
        Err(e) => return Err(e.into()),
    };
    let mut value = vec![0u8; 64 << 10];
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        let len = rustix::fs::lgetxattr(from, name, &mut value[..])?;
        // Best effort, as when unpacking: some namespaces may be refused.
        let _ = rustix::fs::lsetxattr(to, name, &value[..len], rustix::fs::XattrFlags::empty());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{
        erofs_files, gzip, store_fixture as fixture, LayerBuilder, OciArchive,
        StoreFixture as Fixture, TestImage, MTIME,
    };
    use crate::Image;
    use std::collections::BTreeMap;

    impl Fixture {
        /// Loads one image of `layers` named `name`.
        fn load(&self, name: &str, layers: Vec<Vec<u8>>) -> (Image, OciArchive) {
            let a = OciArchive::new(vec![TestImage::new(layers).named(Some(name))]);
            let file = format!("{}.tar", name.replace(['/', ':'], "_"));
            let img = self
                .store
                .load_archive(&a.write(self.dir.path(), &file))
                .unwrap()
                .remove(0);
            (img, a)
        }

        fn chains(&self, img: &Image) -> Vec<String> {
            let config = self.store.blobs().config(&img.id).unwrap();
            chain_ids(config.rootfs().diff_ids()).unwrap()
        }

        fn tree(&self, chain: &str) -> PathBuf {
            self.store
                .layer_cache()
                .tree(chain)
                .unwrap()
                .expect("unpacked")
        }

        fn entries(&self) -> Vec<String> {
            let mut out: Vec<String> = fs::read_dir(self.store.root().join(LAYERS_DIR))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            out.sort();
            out
        }

        fn tmp_is_empty(&self) -> bool {
            fs::read_dir(self.store.root().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        }
    }

    fn base() -> Vec<u8> {
        LayerBuilder::new()
            .dir("etc", 0o755)
            .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
            .file("etc/doomed", b"x", 0o644)
            .file("opt/a", b"a", 0o644)
            .file("opt/sub/b", b"b", 0o644)
            .dir("usr/lib", 0o755)
            .symlink("lib", "usr/lib")
            .build()
    }

    fn ino(p: &Path) -> u64 {
        fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chains = chain_ids(&[&a, &b]).unwrap();
        assert_eq!(chains[0], a);
        let want = hex::encode(Sha256::digest(format!("{a} {b}")));
        assert_eq!(chains[1], format!("sha256:{want}"));
        assert!(chain_ids(&["sha256:nothex"]).is_err());
    }

    #[test]
    fn a_shared_base_is_unpacked_once_and_reused() {
        let f = fixture();
        let top_a = LayerBuilder::new()
            .file("etc/a-release", b"a", 0o644)
            .build();
        let top_b = LayerBuilder::new()
            .file("etc/b-release", b"b", 0o644)
            .build();
        let (a, _) = f.load("hull-test/a:1", vec![base(), top_a]);
        let (b, archive_b) = f.load("hull-test/b:1", vec![base(), top_b]);
        let (ca, cb) = (f.chains(&a), f.chains(&b));
        assert_eq!(ca[0], cb[0], "same base, same chain id");

        f.store.rootfs_disk(&a).unwrap();
        assert_eq!(f.entries().len(), 2);
        // Images' set-id files are out of other users' reach.
        for dir in [
            f.store.root().join(LAYERS_DIR),
            f.store.layer_cache().layer_dir(&ca[0]).unwrap(),
        ] {
            assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o077, 0, "{dir:?}");
        }
        let base_tree = f.tree(&ca[0]);
        let complete = base_tree.parent().unwrap().join(COMPLETE);
        let (complete_ino, passwd_ino) = (ino(&complete), ino(&base_tree.join("etc/passwd")));

        // Damage the base blob: building b must not read it again.
        let base_blob = f.store.blob_path(&archive_b.digests[0].2[0]).unwrap();
        fs::write(&base_blob, gzip(b"not the base any more")).unwrap();
        f.store.rootfs_disk(&b).unwrap();
        assert_eq!(f.entries().len(), 3, "only b's own layer was added");
        assert_eq!(ino(&complete), complete_ino, "the base was unpacked again");

        // b's tree shares the base's files and keeps its directory times.
        let tree_b = f.tree(&cb[1]);
        assert_eq!(ino(&tree_b.join("etc/passwd")), passwd_ino);
        assert!(tree_b.join("etc/b-release").exists());
        assert!(!tree_b.join("etc/a-release").exists());
        assert!(!base_tree.join("etc/b-release").exists());
        let etc_mtime = fs::metadata(tree_b.join("etc")).unwrap().mtime();
        assert_eq!(etc_mtime, MTIME as i64);
        assert!(f.tmp_is_empty());
    }

    #[test]
    fn layers_apply_onto_the_layers_below() {
        // Why stacks are keyed by chain id: `lib/x.so` follows the base's
        // `lib -> usr/lib`, and a hardlink names a lower layer's file.
        let f = fixture();
        let top = LayerBuilder::new()
            .file("lib/x.so", b"elf", 0o755)
            .hardlink("etc/passwd-", "etc/passwd")
            .build();
        let (img, _) = f.load("hull-test/img:1", vec![base(), top]);
        f.store.rootfs_disk(&img).unwrap();
        let tree = f.tree(&f.chains(&img)[1]);
        assert_eq!(fs::read(tree.join("usr/lib/x.so")).unwrap(), b"elf");
        assert!(fs::symlink_metadata(tree.join("lib")).unwrap().is_symlink());
        assert_eq!(
            ino(&tree.join("etc/passwd-")),
            ino(&tree.join("etc/passwd"))
        );
    }

    #[test]
    fn whiteouts_hide_cached_layers_without_touching_them() {
        let f = fixture();
        let (plain, _) = f.load("hull-test/plain:1", vec![base()]);
        let top = LayerBuilder::new()
            .whiteout("etc/.wh.doomed")
            .file("opt/new", b"n", 0o644)
            .whiteout("opt/.wh..wh..opq")
            .whiteout(".wh.lib")
            .build();
        let (slim, _) = f.load("hull-test/slim:1", vec![base(), top]);
        f.store.rootfs_disk(&plain).unwrap();
        f.store.rootfs_disk(&slim).unwrap();

        let chains = f.chains(&slim);
        let slim_tree = f.tree(&chains[1]);
        assert!(!slim_tree.join("etc/doomed").exists());
        assert!(slim_tree.join("etc/passwd").exists());
        assert!(!slim_tree.join("opt/a").exists());
        assert!(!slim_tree.join("opt/sub").exists());
        assert!(slim_tree.join("opt/new").exists());
        assert!(fs::symlink_metadata(slim_tree.join("lib")).is_err());
        // The base's tree, which the plain image's disk is made of, is whole.
        let base_tree = f.tree(&chains[0]);
        for p in ["etc/doomed", "opt/a", "opt/sub/b", "lib"] {
            assert!(fs::symlink_metadata(base_tree.join(p)).is_ok(), "{p}");
        }
        // Rebuilt from the cache, the plain image's disk still has them.
        let disk = f.store.rootfs_disk(&plain).unwrap();
        fs::remove_file(&disk.path).unwrap();
        let disk = f.store.rootfs_disk(&plain).unwrap();
        let listing = erofs_files(&disk.path);
        assert!(listing.contains(&"etc/doomed".to_string()), "{listing:?}");
        assert!(listing.contains(&"opt/sub/b".to_string()), "{listing:?}");
    }

    #[test]
    fn an_interrupted_unpack_is_never_trusted() {
        let f = fixture();
        let top = LayerBuilder::new().file("etc/release", b"1", 0o644).build();
        let (img, _) = f.load("hull-test/img:1", vec![base(), top]);
        let chains = f.chains(&img);

        // A writer killed halfway through: its staging is in tmp/, and a
        // stack directory was renamed in without its record (as a crash
        // between steps of an older layout could leave it).
        let stale = f.store.root().join("tmp/layer-crashed/rootfs/etc");
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join("half"), b"x").unwrap();
        let top_dir = f.store.layer_cache().layer_dir(&chains[1]).unwrap();
        fs::create_dir_all(top_dir.join("rootfs/etc")).unwrap();
        fs::write(top_dir.join("rootfs/etc/half-written"), b"x").unwrap();
        assert_eq!(f.store.layer_cache().tree(&chains[1]).unwrap(), None);

        let disk = f.store.rootfs_disk(&img).unwrap();
        let listing = erofs_files(&disk.path);
        assert!(listing.contains(&"etc/release".to_string()), "{listing:?}");
        assert!(listing.contains(&"etc/passwd".to_string()), "{listing:?}");
        assert!(!listing.iter().any(|p| p.contains("half")), "{listing:?}");
        assert!(f.tree(&chains[1]).join("etc/release").exists());
        assert!(f.tmp_is_empty(), "the crashed writer's staging is gone");

        // A failure while unpacking leaves no record behind either.
        let bad = LayerBuilder::new().raw_file("../escape", b"x").build();
        let (bad_img, _) = f.load("hull-test/bad:1", vec![base(), bad]);
        let err = f.store.rootfs_disk(&bad_img).unwrap_err();
        let cause = std::error::Error::source(&err).map(|e| e.to_string());
        assert!(cause.is_some_and(|c| c.contains("escape")), "{err}");
        assert_eq!(
            f.store.layer_cache().tree(&f.chains(&bad_img)[1]).unwrap(),
            None
        );
        assert_eq!(f.entries().len(), 2, "{:?}", f.entries());
        assert!(f.tmp_is_empty());

        // Nor do the good layers below it, unpacked for it alone.
        let g = fixture();
        let bad = LayerBuilder::new().raw_file("../escape", b"x").build();
        let (bad_img, _) = g.load("hull-test/bad:1", vec![base(), bad]);
        assert!(g.store.rootfs_disk(&bad_img).is_err());
        assert!(g.entries().is_empty(), "{:?}", g.entries());
        assert!(g.tmp_is_empty());
    }

    #[test]
    fn rmi_and_prune_remove_layers_no_image_uses() {
        let f = fixture();
        let top = LayerBuilder::new().file("etc/release", b"1", 0o644).build();
        let (plain, _) = f.load("hull-test/plain:1", vec![base()]);
        let (full, _) = f.load("hull-test/full:1", vec![base(), top]);
        f.store.rootfs_disk(&plain).unwrap();
        f.store.rootfs_disk(&full).unwrap();
        let chains = f.chains(&full);
        assert_eq!(f.entries().len(), 2);
        // Junk without a record goes at the next collection.
        fs::create_dir_all(f.store.root().join(LAYERS_DIR).join("c".repeat(64))).unwrap();

        f.store.remove("hull-test/full:1").unwrap();
        assert_eq!(
            f.entries(),
            vec![digest::parse(&chains[0]).unwrap().to_string()]
        );
        assert!(f.store.layer_cache().tree(&chains[0]).unwrap().is_some());

        let report = f.store.prune(true, &BTreeMap::new()).unwrap();
        assert_eq!(report.images, vec![plain.id.clone()]);
        assert!(f.entries().is_empty());
    }
}
