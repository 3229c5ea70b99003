//! Applies OCI layer tarballs, in order, onto a staging directory: the
//! flattened rootfs that the disk image is built from.
//!
//! Models: the OCI image-spec's "Applying Changesets" (whiteouts, opaque
//! directories, replacing entries) and containerd's `archive.Apply` /
//! umoci's `UnpackLayer` for confinement. Layers are untrusted:
//! - entry paths are cleaned: a leading `/` is dropped, `..` is refused;
//! - the parent directories of every entry, and hardlink targets, are
//!   resolved component by component inside the root, following symlinks
//!   as if the root were `/` (an earlier layer's `etc -> /` makes
//!   `etc/passwd` land in `<root>/passwd`, never in the host's `/etc`), so
//!   no path we open or create ever passes through a symlink;
//! - the final component is never followed: an existing entry there is
//!   replaced, files are created with `O_EXCL`, metadata is set with
//!   `AT_SYMLINK_NOFOLLOW`.
//!
//! The staging directory belongs to this process alone, so checks and
//! uses do not race with anyone but the archive, which is read in order.
//!
//! The tar stream reaches the `tar` crate through [`TarBounds`], which
//! refuses oversized PAX and GNU long-name headers (the `tar` crate would
//! read them whole into memory) and counts entries and file bytes against
//! the layer's and the image's bounds as they stream past.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::hash::BuildHasher;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

use super::tar_bounds::{self, Budget, TarBounds, Totals};

/// Symlinks followed while resolving one path, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("corrupt tar stream")]
    Tar(#[source] io::Error),
    #[error("entry {0:?}: path escapes the rootfs through ..")]
    DotDot(PathBuf),
    #[error("entry {0:?}: more than {MAX_SYMLINKS} symlinks while resolving")]
    SymlinkLoop(PathBuf),
    #[error("entry {entry:?}: {parent:?} is not a directory")]
    NotADirectory { entry: PathBuf, parent: PathBuf },
    #[error("entry {entry:?}: hardlink target {target:?} does not exist or is a directory")]
    BadHardlink { entry: PathBuf, target: PathBuf },
    #[error("entry {entry:?}: {kind} entries are not supported")]
    Unsupported { entry: PathBuf, kind: String },
    #[error(transparent)]
    Bounds(#[from] tar_bounds::Error),
    #[error("entry {entry:?}: more than {limit} directories implied by the layer's paths")]
    TooManyImpliedDirs { entry: PathBuf, limit: u64 },
    #[error("entry {entry:?}: missing link target")]
    MissingLinkName { entry: PathBuf },
    #[error("entry {entry:?}: cannot write {path:?}")]
    Io {
        entry: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Applies layers one after another onto `root` (an existing, empty,
/// canonical directory). Call [`Unpacker::finish`] after the last layer.
pub struct Unpacker {
    root: PathBuf,
    /// Directory mtimes, set once all layers are in (adding children
    /// changes them).
    dir_times: Vec<(PathBuf, i64)>,
    /// What the next layer may hold (see [`TarBounds`]).
    budget: Budget,
    /// Entries and file bytes of the last layer applied.
    totals: Totals,
    /// Parent directories created for entries without their own entry
    /// in the layer being applied: counted too, as one entry of a deep
    /// path can imply thousands.
    implied_dirs: Cell<u64>,
}

impl Unpacker {
    /// An unpacker bounded by [`crate::DEFAULT_MAX_LAYER_SIZE`].
    pub fn new(root: &Path) -> Unpacker {
        Unpacker::with_limit(root, super::DEFAULT_MAX_LAYER_SIZE)
    }

    /// An unpacker that refuses a layer whose files add up to more than
    /// `max_layer_size` bytes, naming the entry that crosses the bound;
    /// the other bounds are [`crate::Limits`]' defaults.
    pub fn with_limit(root: &Path, max_layer_size: u64) -> Unpacker {
        let limits = crate::Limits {
            max_layer_size,
            ..crate::Limits::default()
        };
        Unpacker {
            root: root.to_path_buf(),
            dir_times: Vec::new(),
            budget: limits.budget(Totals::default()),
            totals: Totals::default(),
            implied_dirs: Cell::new(0),
        }
    }

    /// Bounds the next layers by `budget` (the image's share left to them
    /// included).
    pub(crate) fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
    }

    /// Entries and file bytes of the last layer applied.
    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// Directory mtimes to restore at [`Unpacker::finish`] (before the
    /// layers' own): those of a tree cloned into the root, whose
    /// directories get new entries while a layer is applied on top.
    pub fn keep_dir_times(&mut self, times: Vec<(PathBuf, i64)>) {
        let ours = std::mem::replace(&mut self.dir_times, times);
        self.dir_times.extend(ours);
    }

    /// Applies one uncompressed layer tar stream, reading it to its end.
    /// Returns the stream so the caller can drain and hash what is left.
    pub fn apply<R: Read>(&mut self, layer: R) -> Result<R, Error> {
        self.implied_dirs.set(0);
        let mut archive = tar::Archive::new(TarBounds::new(PadAtEof::new(layer), self.budget));
        let applied = self.apply_entries(&mut archive);
        let bounds = archive.into_inner();
        // A refused header fails the `tar` crate's read: name the bound.
        if let Some(v) = bounds.violation() {
            return Err(Error::Bounds(v.clone()));
        }
        applied?;
        let mut totals = bounds.totals();
        totals.entries = totals.entries.saturating_add(self.implied_dirs.get());
        self.totals = totals;
        Ok(bounds.into_inner().inner)
    }

    fn apply_entries<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), Error> {
        // Entries in this layer (and their parents): whiteouts only hide
        // lower layers' content, never this layer's, whatever the order.
        let mut added = Added::default();
        for entry in archive.entries().map_err(Error::Tar)? {
            let mut entry = entry.map_err(Error::Tar)?;
            self.apply_entry(&mut entry, &mut added)?;
        }
        Ok(())
    }

    /// Sets the directory mtimes recorded while unpacking.
    pub fn finish(self) -> Result<(), Error> {
        // In layer order, so a later layer's time wins; a directory a later
        // layer removed or replaced is skipped.
        for (dir, mtime) in &self.dir_times {
            if !is_real_dir(dir) {
                continue;
            }
            set_mtime(dir, *mtime).map_err(|source| Error::Io {
                entry: dir.clone(),
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        added: &mut Added,
    ) -> Result<(), Error> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            return Ok(()); // metadata only (`git archive` writes a global one)
        }
        let raw_path = entry.path().map_err(Error::Tar)?.into_owned();
        let comps = clean(&raw_path)?;
        let io_err = |path: &Path| {
            let entry = raw_path.clone();
            let path = path.to_path_buf();
            move |source| Error::Io {
                entry,
                path,
                source,
            }
        };

        let Some((name, parent_comps)) = comps.split_last() else {
            // The root itself ("/" or "./"): take its metadata.
            if kind.is_dir() {
                self.set_metadata(entry, &self.root.clone(), &raw_path)?;
            }
            return Ok(());
        };

        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let Some(parent) = self.resolve(parent_comps, false, &raw_path)? else {
                return Ok(()); // nothing below to hide
            };
            if name == OPAQUE_WHITEOUT {
                mark_added(added, &parent, &self.root);
                prune_lower(&parent, added).map_err(io_err(&parent))?;
            } else if !hidden.starts_with(WHITEOUT_PREFIX.as_bytes())
                && !matches!(hidden, b"" | b"." | b"..")
            {
                // `.wh..wh.*` other than the opaque marker are aufs
                // bookkeeping; skip them.
                let target = parent.join(OsStr::from_bytes(hidden));
                if added.contains(&target) {
                    if is_real_dir(&target) {
                        prune_lower(&target, added).map_err(io_err(&target))?;
                    }
                } else {
                    remove_any(&target).map_err(io_err(&target))?;
                }
            }
            return Ok(());
        }

        let parent = self
            .resolve(parent_comps, true, &raw_path)?
            .unwrap_or_else(|| self.root.clone());
        let path = parent.join(name);
        let existing = fs::symlink_metadata(&path).ok();
        let keep_dir = kind.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_dir {
            remove_any(&path).map_err(io_err(&path))?;
        }

        match kind {
            tar::EntryType::Directory => {
                if !keep_dir {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .map_err(io_err(&path))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                // Its size was counted against the bounds by `TarBounds`.
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(o_nofollow())
                    .open(&path)
                    .map_err(io_err(&path))?;
                io::copy(entry, &mut file).map_err(Error::Tar)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(Error::Tar)?.ok_or_else(|| {
                    Error::MissingLinkName {
                        entry: raw_path.clone(),
                    }
                })?;
                std::os::unix::fs::symlink(&target, &path).map_err(io_err(&path))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(Error::Tar)?
                    .ok_or_else(|| Error::MissingLinkName {
                        entry: raw_path.clone(),
                    })?
                    .into_owned();
                let source = self.resolve_hardlink_target(&target, &raw_path)?;
                fs::hard_link(&source, &path).map_err(io_err(&path))?;
                mark_added(added, &path, &self.root);
                // The inode's metadata is the target's; leave it alone.
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let header = entry.header();
                let major = header.device_major().map_err(Error::Tar)?.unwrap_or(0);
                let minor = header.device_minor().map_err(Error::Tar)?.unwrap_or(0);
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                rustix::fs::mknodat(
                    CWD,
                    &path,
                    file_type,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| io_err(&path)(e.into()))?;
            }
            other => {
                return Err(Error::Unsupported {
                    entry: raw_path,
                    kind: format!("{other:?}"),
                })
            }
        }
        mark_added(added, &path, &self.root);
        self.set_metadata(entry, &path, &raw_path)
    }

    /// Resolves the directory `comps` inside the root, following symlinks
    /// scoped to the root. Missing directories are created (mode 0755,
    /// root-owned) when `create`, else `None` is returned.
    fn resolve(
        &self,
        comps: &[OsString],
        create: bool,
        entry: &Path,
    ) -> Result<Option<PathBuf>, Error> {
        let mut resolved = self.root.clone();
        let mut depth = 0usize; // components of `resolved` below the root
        let mut queue: Vec<OsString> = comps.iter().rev().cloned().collect();
        let mut links = 0;
        while let Some(c) = queue.pop() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                if depth > 0 {
                    resolved.pop();
                    depth -= 1;
                }
                continue;
            }
            let candidate = resolved.join(&c);
            match fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Error::SymlinkLoop(entry.to_path_buf()));
                    }
                    let target = fs::read_link(&candidate).map_err(|source| Error::Io {
                        entry: entry.to_path_buf(),
                        path: candidate.clone(),
                        source,
                    })?;
                    if target.is_absolute() {
                        resolved = self.root.clone();
                        depth = 0;
                    }
                    for part in target.components().rev() {
                        match part {
                            Component::Normal(p) => queue.push(p.to_os_string()),
                            Component::ParentDir => queue.push("..".into()),
                            _ => {}
                        }
                    }
                }
                Ok(m) if m.is_dir() => {
                    resolved = candidate;
                    depth += 1;
                }
                Ok(_) => {
                    return Err(Error::NotADirectory {
                        entry: entry.to_path_buf(),
                        parent: candidate
                            .strip_prefix(&self.root)
                            .unwrap_or(&candidate)
                            .to_path_buf(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    let implied = self.implied_dirs.get() + 1;
                    if implied > self.budget.layer_entries {
                        return Err(Error::TooManyImpliedDirs {
                            entry: entry.to_path_buf(),
                            limit: self.budget.layer_entries,
                        });
                    }
                    self.implied_dirs.set(implied);
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&candidate)
                        .map_err(|source| Error::Io {
                            entry: entry.to_path_buf(),
                            path: candidate.clone(),
                            source,
                        })?;
                    resolved = candidate;
                    depth += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(source) => {
                    return Err(Error::Io {
                        entry: entry.to_path_buf(),
                        path: candidate,
                        source,
                    })
                }
            }
        }
        Ok(Some(resolved))
    }

    /// The existing non-directory a hardlink entry points at, inside the root.
    fn resolve_hardlink_target(&self, target: &Path, entry: &Path) -> Result<PathBuf, Error> {
        let comps = clean(target)?;
        let bad = || Error::BadHardlink {
            entry: entry.to_path_buf(),
            target: target.to_path_buf(),
        };
        let (name, parent_comps) = comps.split_last().ok_or_else(bad)?;
        let parent = self.resolve(parent_comps, false, entry)?.ok_or_else(bad)?;
        let source = parent.join(name);
        match fs::symlink_metadata(&source) {
            Ok(m) if !m.is_dir() => Ok(source),
            _ => Err(bad()),
        }
    }

    /// Owner, mode, xattrs and mtime of a freshly written entry at `path`
    /// (never followed if it is a symlink).
    fn set_metadata<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        raw_path: &Path,
    ) -> Result<(), Error> {
        let io_err = |source: io::Error| Error::Io {
            entry: raw_path.to_path_buf(),
            path: path.to_path_buf(),
            source,
        };
        let header = entry.header();
        let uid = header.uid().map_err(Error::Tar)?;
        let gid = header.gid().map_err(Error::Tar)?;
        let mode = header.mode().map_err(Error::Tar)? & 0o7777;
        let mtime = header.mtime().map_err(Error::Tar)?;
        let kind = header.entry_type();

        let owner = |id: u64| u32::try_from(id).ok().map(rustix::fs::Uid::from_raw);
        let group = |id: u64| u32::try_from(id).ok().map(rustix::fs::Gid::from_raw);
        rustix::fs::chownat(CWD, path, owner(uid), group(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(e.into()))?;

        if !kind.is_symlink() {
            // After chown, which clears set-id bits. The path is not a
            // symlink: we just created it, or it is the real root/dir.
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
        }

        if let Some(exts) = entry.pax_extensions().map_err(Error::Tar)? {
            for ext in exts {
                let ext = ext.map_err(Error::Tar)?;
                let Ok(key) = ext.key() else { continue };
                let Some(attr) = key.strip_prefix("SCHILY.xattr.") else {
                    continue;
                };
                // Best effort: the staging filesystem may refuse some
                // namespaces (e.g. trusted.*, security.* without LSM).
                if let Err(e) = rustix::fs::lsetxattr(
                    path,
                    attr,
                    ext.value_bytes(),
                    rustix::fs::XattrFlags::empty(),
                ) {
                    tracing::debug!(entry = ?raw_path, attr, error = %e, "xattr not kept");
                }
            }
        }

        let mtime = i64::try_from(mtime).unwrap_or(0);
        if kind.is_dir() {
            self.dir_times.push((path.to_path_buf(), mtime));
        } else {
            set_mtime(path, mtime).map_err(io_err)?;
        }
        Ok(())
    }
}

/// Supplies the zero padding and end-of-archive blocks some writers leave
/// out (umoci's single-file layers end right after the file's data; GNU
/// tar and Go's archive/tar accept that). Only what a well-formed tar would
/// still need is added: an entry cut short by more than that stays an error.
struct PadAtEof<R> {
    inner: R,
    read: u64,
    /// Zeros left to hand out once `inner` is at its end.
    pad: Option<u64>,
}

impl<R: Read> PadAtEof<R> {
    fn new(inner: R) -> Self {
        PadAtEof {
            inner,
            read: 0,
            pad: None,
        }
    }
}

impl<R: Read> Read for PadAtEof<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pad.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.read += n as u64;
                return Ok(n);
            }
            self.pad = Some((512 - self.read % 512) % 512 + 1024);
        }
        let left = self.pad.unwrap_or(0);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.pad = Some(left - n as u64);
        Ok(n)
    }
}

fn o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let ts = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Cleans an archive path into normal components: drops `/` and `.`,
/// refuses `..`.
fn clean(path: &Path) -> Result<Vec<OsString>, Error> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p.to_os_string()),
            Component::ParentDir => return Err(Error::DotDot(path.to_path_buf())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Records `path` and its ancestors below `root` as written by this layer.
fn mark_added(added: &mut Added, path: &Path, root: &Path) {
    for p in path.ancestors() {
        if p == root || !p.starts_with(root) || !added.insert(p) {
            break;
        }
    }
}

/// The paths a layer wrote, kept as 128-bit keyed hashes: 16 bytes each
/// whatever the path's length (a layer of deep paths would otherwise hold
/// gigabytes of them). The keys are random per layer, so a layer cannot
/// aim for a collision; one would only keep a lower entry a whiteout
/// meant to hide.
#[derive(Default)]
struct Added {
    keys: (RandomState, RandomState),
    set: HashSet<u128>,
}

impl Added {
    fn key(&self, path: &Path) -> u128 {
        let hi = self.keys.0.hash_one(path);
        let lo = self.keys.1.hash_one(path);
        (u128::from(hi) << 64) | u128::from(lo)
    }

    /// Whether `path` was not recorded yet.
    fn insert(&mut self, path: &Path) -> bool {
        let key = self.key(path);
        self.set.insert(key)
    }

    fn contains(&self, path: &Path) -> bool {
        self.set.contains(&self.key(path))
    }
}

/// Removes everything under `dir` that this layer did not write.
fn prune_lower(dir: &Path, added: &Added) -> io::Result<()> {
    for child in fs::read_dir(dir)? {
        let path = child?.path();
        if !added.contains(&path) {
            remove_any(&path)?;
        } else if is_real_dir(&path) {
            prune_lower(&path, added)?;
        }
    }
    Ok(())
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Removes a file, symlink (not its target) or directory tree, if present.
fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Whether a file name is an OCI whiteout marker.
pub fn is_whiteout(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{LayerBuilder, TempRoot};
    use std::os::unix::fs::MetadataExt;

    fn apply_all(root: &Path, layers: &[Vec<u8>]) -> Result<(), Error> {
        let mut u = Unpacker::new(root);
        for l in layers {
            u.apply(&l[..])?;
        }
        u.finish()
    }

    #[test]
    fn files_dirs_links_devices_and_metadata() {
        let t = TempRoot::new();
        let layer = LayerBuilder::new()
            .dir("/etc", 0o755)
            .file_owned("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644, 0, 0)
            .file_owned("home/app/.profile", b"x", 0o600, 1000, 1000)
            .file("usr/bin/su", b"su", 0o4755)
            .symlink("bin", "usr/bin")
            .hardlink("usr/bin/su2", "usr/bin/su")
            .char_dev("dev/null", 1, 3)
            .fifo("run/fifo")
            .xattr_file("usr/bin/ping", b"ping", "user.hull", b"yes")
            .build();
        apply_all(t.root(), &[layer]).unwrap();
        let r = t.root();
        assert_eq!(
            fs::read(r.join("etc/passwd")).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        let m = fs::metadata(r.join("home/app/.profile")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o600));
        assert_eq!(
            fs::metadata(r.join("usr/bin/su")).unwrap().mode() & 0o7777,
            0o4755
        );
        assert_eq!(fs::read_link(r.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(
            fs::metadata(r.join("usr/bin/su2")).unwrap().ino(),
            fs::metadata(r.join("usr/bin/su")).unwrap().ino()
        );
        let dev = fs::symlink_metadata(r.join("dev/null")).unwrap();
        assert_eq!(dev.rdev(), rustix::fs::makedev(1, 3));
        assert!(fs::symlink_metadata(r.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo_like());
        assert_eq!(
            rustix_get_xattr(&r.join("usr/bin/ping"), "user.hull").as_deref(),
            Some(&b"yes"[..])
        );
        assert_eq!(fs::metadata(r.join("etc")).unwrap().mtime(), 1_700_000_000);
    }

    trait FifoLike {
        fn is_fifo_like(&self) -> bool;
    }
    impl FifoLike for fs::FileType {
        fn is_fifo_like(&self) -> bool {
            use std::os::unix::fs::FileTypeExt;
            self.is_fifo()
        }
    }

    fn rustix_get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    #[test]
    fn later_layers_replace_earlier_entries() {
        let t = TempRoot::new();
        let l1 = LayerBuilder::new()
            .file("a", b"file", 0o644)
            .dir("d", 0o755)
            .file("d/x", b"x", 0o644)
            .build();
        let l2 = LayerBuilder::new()
            .dir("a", 0o711) // file -> dir
            .file("d", b"now a file", 0o600) // dir -> file
            .build();
        apply_all(t.root(), &[l1, l2]).unwrap();
        assert!(t.root().join("a").is_dir());
        assert_eq!(fs::read(t.root().join("d")).unwrap(), b"now a file");
    }

    #[test]
    fn whiteouts_remove_lower_entries_only() {
        let t = TempRoot::new();
        let l1 = LayerBuilder::new()
            .dir("gonedir", 0o755)
            .file("etc/gone", b"1", 0o644)
            .file("etc/kept", b"1", 0o644)
            .file("dir/sub/f", b"1", 0o644)
            .file("etc/readded", b"old", 0o644)
            .build();
        let l2 = LayerBuilder::new()
            .whiteout("etc/.wh.gone")
            .whiteout(".wh.gonedir")
            .whiteout(".wh.dir")
            // Same layer adds it back after the whiteout, then whites it out
            // again: whiteouts never hide this layer's own content.
            .whiteout("etc/.wh.readded")
            .file("etc/readded", b"new", 0o644)
            .whiteout("etc/.wh.readded")
            .whiteout("etc/.wh.never-existed")
            .whiteout("nodir/.wh.x")
            .build();
        apply_all(t.root(), &[l1, l2]).unwrap();
        let r = t.root();
        assert!(!r.join("etc/gone").exists());
        assert!(r.join("etc/kept").exists());
        assert!(!r.join("dir").exists());
        assert!(!r.join("gonedir").exists());
        assert_eq!(fs::read(r.join("etc/readded")).unwrap(), b"new");
        assert!(!r.join("nodir").exists());
        assert!(!r.join("etc/.wh.gone").exists());
    }

    #[test]
    fn opaque_directories_hide_lower_children() {
        let t = TempRoot::new();
        let l1 = LayerBuilder::new()
            .file("opt/a", b"1", 0o644)
            .file("opt/sub/b", b"1", 0o644)
            .file("other/c", b"1", 0o644)
            .build();
        // The marker comes after this layer's own entries, as tar order
        // does not matter.
        let l2 = LayerBuilder::new()
            .file("opt/sub/new", b"2", 0o644)
            .whiteout("opt/.wh..wh..opq")
            .build();
        apply_all(t.root(), &[l1, l2]).unwrap();
        let r = t.root();
        assert!(!r.join("opt/a").exists());
        assert!(!r.join("opt/sub/b").exists());
        assert!(r.join("opt/sub/new").exists());
        assert!(r.join("other/c").exists());
        assert!(!r.join("opt/.wh..wh..opq").exists());
    }

    #[test]
    fn dotdot_is_refused() {
        let t = TempRoot::new();
        let layer = LayerBuilder::new().raw_file("../escape", b"x").build();
        let err = apply_all(t.root(), &[layer]).unwrap_err();
        assert!(matches!(err, Error::DotDot(_)), "{err}");
        assert!(!t.outside().join("escape").exists());
        let layer = LayerBuilder::new().raw_file("a/../../escape", b"x").build();
        assert!(matches!(
            apply_all(t.root(), &[layer]),
            Err(Error::DotDot(_))
        ));
        assert!(!t.outside().join("escape").exists());
    }

    #[test]
    fn absolute_paths_stay_inside() {
        let t = TempRoot::new();
        let target = t.outside().join("abs-escape");
        let layer = LayerBuilder::new()
            .raw_file(target.to_str().unwrap(), b"x")
            .build();
        apply_all(t.root(), &[layer]).unwrap();
        assert!(!target.exists());
        let inside = t.root().join(target.strip_prefix("/").unwrap());
        assert_eq!(fs::read(inside).unwrap(), b"x");
    }

    #[test]
    fn symlinked_parents_from_earlier_layers_stay_inside() {
        let t = TempRoot::new();
        let out = t.outside();
        let l1 = LayerBuilder::new()
            .symlink("etc", "/")
            .symlink("up", "../../../../../../..")
            .symlink("abs", out.to_str().unwrap())
            .symlink("loop", "loop")
            .build();
        let l2 = LayerBuilder::new()
            .file("etc/passwd", b"pwned", 0o644)
            .file("up/escape-up", b"pwned", 0o644)
            .file("abs/escape-abs", b"pwned", 0o644)
            .build();
        apply_all(t.root(), &[l1, l2]).unwrap();
        let r = t.root();
        assert_eq!(fs::read(r.join("passwd")).unwrap(), b"pwned");
        assert_eq!(fs::read(r.join("escape-up")).unwrap(), b"pwned");
        assert!(!out.join("escape-up").exists());
        assert!(!out.join("escape-abs").exists());
        let inside = r.join(out.strip_prefix("/").unwrap()).join("escape-abs");
        assert_eq!(fs::read(inside).unwrap(), b"pwned");
        // The symlinks themselves are kept verbatim for the guest.
        assert_eq!(fs::read_link(r.join("etc")).unwrap(), Path::new("/"));
        let l3 = LayerBuilder::new().file("loop/x", b"", 0o644).build();
        let err = apply_all(t.root(), &[l3]).unwrap_err();
        assert!(matches!(err, Error::SymlinkLoop(_)), "{err}");
    }

    #[test]
    fn symlink_in_same_layer_cannot_be_written_through() {
        let t = TempRoot::new();
        let out = t.outside();
        let victim = out.join("victim");
        fs::write(&victim, b"safe").unwrap();
        // A symlink as the final component is replaced, never followed.
        let layer = LayerBuilder::new()
            .symlink("f", victim.to_str().unwrap())
            .file("f", b"pwned", 0o644)
            .build();
        apply_all(t.root(), &[layer]).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"safe");
        assert_eq!(fs::read(t.root().join("f")).unwrap(), b"pwned");
        // Metadata of a symlink entry is not applied to its target.
        let layer = LayerBuilder::new()
            .symlink_owned("g", victim.to_str().unwrap(), 1234)
            .build();
        apply_all(t.root(), &[layer]).unwrap();
        assert_eq!(fs::metadata(&victim).unwrap().uid(), 0);
    }

    #[test]
    fn hardlinks_cannot_reach_outside() {
        let t = TempRoot::new();
        let out = t.outside();
        let secret = out.join("secret");
        fs::write(&secret, b"host secret").unwrap();
        let secret_str = secret.to_str().unwrap();
        // Absolute target: resolved inside the root, where it does not exist.
        let l = LayerBuilder::new().hardlink("stolen", secret_str).build();
        let err = apply_all(t.root(), &[l]).unwrap_err();
        assert!(matches!(err, Error::BadHardlink { .. }), "{err}");
        // Through a symlinked directory planted by an earlier layer.
        let l1 = LayerBuilder::new()
            .symlink("hostdir", out.to_str().unwrap())
            .build();
        let l2 = LayerBuilder::new()
            .hardlink("stolen", "hostdir/secret")
            .build();
        let err = apply_all(t.root(), &[l1, l2]).unwrap_err();
        assert!(matches!(err, Error::BadHardlink { .. }), "{err}");
        // `..` in the target.
        let l = LayerBuilder::new()
            .hardlink("stolen", "../outside/secret")
            .build();
        assert!(matches!(apply_all(t.root(), &[l]), Err(Error::DotDot(_))));
        assert!(!t.root().join("stolen").exists());
        assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
    }

    #[test]
    fn file_as_parent_is_an_error() {
        let t = TempRoot::new();
        let l = LayerBuilder::new()
            .file("a", b"x", 0o644)
            .file("a/b", b"y", 0o644)
            .build();
        let err = apply_all(t.root(), &[l]).unwrap_err();
        assert!(matches!(err, Error::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn truncated_tar_is_an_error() {
        let t = TempRoot::new();
        let mut l = LayerBuilder::new().file("big", &[7u8; 4096], 0o644).build();
        l.truncate(1024);
        let err = apply_all(t.root(), &[l]).unwrap_err();
        assert!(matches!(err, Error::Tar(_)), "{err}");
    }

    #[test]
    fn missing_padding_and_end_blocks_are_tolerated() {
        let t = TempRoot::new();
        let mut l = LayerBuilder::new()
            .file("etc/hull-release", b"27 bytes of data, no pad..\n", 0o644)
            .build();
        l.truncate(512 + 27);
        apply_all(t.root(), &[l]).unwrap();
        assert_eq!(
            fs::read(t.root().join("etc/hull-release")).unwrap().len(),
            27
        );
    }

    #[test]
    fn pax_global_headers_are_skipped() {
        let t = TempRoot::new();
        let l = LayerBuilder::new()
            .global_header("pax_global_header")
            .file("a", b"x", 0o644)
            .build();
        apply_all(t.root(), &[l]).unwrap();
        assert!(!t.root().join("pax_global_header").exists());
        assert!(t.root().join("a").exists());
    }

    #[test]
    fn oversized_entries_are_refused_by_name() {
        let t = TempRoot::new();
        let l = LayerBuilder::new()
            .file("small", &[1u8; 600], 0o644)
            .file("big/bomb", &[0u8; 500], 0o644)
            .build();
        let mut u = Unpacker::with_limit(t.root(), 1000);
        let err = u.apply(&l[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry \"big/bomb\" (header 2): 500 bytes take the layer past its bound of 1000 bytes"
        );
        assert!(!t.root().join("big/bomb").exists());
        // The bound is per layer: the same files in two layers fit.
        let t = TempRoot::new();
        let l1 = LayerBuilder::new().file("a", &[1u8; 600], 0o644).build();
        let l2 = LayerBuilder::new().file("b", &[1u8; 600], 0o644).build();
        let mut u = Unpacker::with_limit(t.root(), 1000);
        u.apply(&l1[..]).unwrap();
        u.apply(&l2[..]).unwrap();
    }

    #[test]
    fn a_huge_pax_header_is_refused_before_it_is_read() {
        let t = TempRoot::new();
        // A header claiming 4 GiB, followed by all of it: without the
        // bounds the `tar` crate would read it into one `Vec`.
        let head = LayerBuilder::new()
            .file("first", b"1", 0o644)
            .raw_header("PaxHeaders/big", b'x', 4 << 30)
            .build();
        let head = &head[..head.len() - 1024]; // no end blocks
        let layer = head.chain(io::repeat(0).take(4 << 30));
        let started = std::time::Instant::now();
        let err = Unpacker::new(t.root()).apply(layer).err().unwrap();
        assert!(
            matches!(
                err,
                Error::Bounds(tar_bounds::Error::ExtensionTooLarge { header: 2, .. })
            ),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(t.root().join("first").exists());
    }

    #[test]
    fn entries_over_the_layer_bound_are_refused() {
        let t = TempRoot::new();
        let l = LayerBuilder::new()
            .file("a", b"", 0o644)
            .file("b", b"", 0o644)
            .build();
        let mut u = Unpacker::new(t.root());
        let mut budget = crate::Limits::default().budget(Totals::default());
        budget.layer_entries = 1;
        u.set_budget(budget);
        let err = u.apply(&l[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry \"b\" (header 2): more than 1 entries in the layer"
        );
        assert!(!t.root().join("b").exists());
        budget.layer_entries = 2;
        u.set_budget(budget);
        u.apply(&l[..]).unwrap();
        assert_eq!(
            u.totals(),
            Totals {
                entries: 2,
                bytes: 0
            }
        );

        // One entry of a deep path implies a directory per component.
        let t = TempRoot::new();
        let deep = LayerBuilder::new().file("a/b/c/d/f", b"", 0o644).build();
        let mut u = Unpacker::new(t.root());
        budget.layer_entries = 3;
        u.set_budget(budget);
        let err = u.apply(&deep[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry \"a/b/c/d/f\": more than 3 directories implied by the layer's paths"
        );
        budget.layer_entries = 5;
        u.set_budget(budget);
        u.apply(&deep[..]).unwrap();
        // 1 entry + a, b, c, d (a..c exist from the failed try: only d
        // is new now).
        assert_eq!(u.totals().entries, 2);
    }

    #[test]
    fn whiteout_names() {
        assert!(is_whiteout(OsStr::new(".wh.foo")));
        assert!(!is_whiteout(OsStr::new("foo")));
    }
}
