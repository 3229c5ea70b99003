//! Turns an overlay upper directory into the entries of an OCI layer, in
//! the order Docker's archive walk gives them (depth first, names sorted
//! by bytes at each level): whiteouts (character devices 0:0) become
//! `.wh.<name>` files, an opaque directory is followed by its
//! `.wh..wh..opq`, hard links within the layer become link entries after
//! the first path, mtimes are clamped to `SOURCE_DATE_EPOCH`, and only
//! `security.capability` of the xattrs is carried (overlayfs's own
//! `trusted.overlay.*` never is). Sockets are left out, as Docker does.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::tar::{Header, Kind, TarWriter};

/// The whiteout prefix and the opaque marker of the OCI layer format.
pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The one xattr a layer carries: file capabilities (`setcap`).
const CAPABILITY_XATTR: &str = "security.capability";

/// How the overlay marks what the walk must translate; the real one reads
/// xattrs and device numbers, tests fake it where they cannot set them.
pub trait Overlay {
    /// Whether the directory at `path` is opaque (it replaced the lower
    /// directory: nothing below shows through).
    fn is_opaque(&self, path: &Path) -> bool;
    /// Whether the entry at `path` is a whiteout (a deleted lower entry).
    fn is_whiteout(&self, path: &Path, meta: &Metadata) -> bool;
    /// The xattr `name` of `path`, if it has one.
    fn xattr(&self, path: &Path, name: &str) -> Option<Vec<u8>>;
}

/// What to export and how.
pub struct Options<'a> {
    /// The overlay's upper directory.
    pub upper: &'a Path,
    /// The image's tree under it (the overlay's lower directory), to tell
    /// a directory only copied up for a skipped file from a changed one.
    pub lower: Option<&'a Path>,
    /// Paths (relative) never exported: the files the agent wrote itself.
    pub skip: &'a [&'a str],
    pub source_date_epoch: Option<i64>,
}

/// What was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub entries: u64,
    pub bytes: u64,
}

/// One entry found in the upper directory, before it is written.
struct Node {
    rel: PathBuf,
    meta: Metadata,
    what: What,
}

enum What {
    Plain,
    Whiteout,
    /// A directory; `opaque` adds the marker after it.
    Dir {
        opaque: bool,
    },
}

/// Writes the layer for `opts` to `out` as a tar archive.
pub fn write_layer(
    overlay: &dyn Overlay,
    opts: &Options<'_>,
    out: &mut dyn Write,
) -> io::Result<Written> {
    let mut nodes = Vec::new();
    collect(overlay, opts, Path::new(""), &mut nodes)?;
    let mut tar = TarWriter::new(out);
    let mut written = Written::default();
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for node in nodes {
        let path = node.rel.as_os_str().as_bytes().to_vec();
        let full = opts.upper.join(&node.rel);
        match node.what {
            What::Whiteout => {
                let mut name = parent_bytes(&node.rel);
                name.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                name.extend_from_slice(file_name(&node.rel));
                let mut header = base_header(name, Kind::File, &node.meta, opts);
                header.mode = 0o644;
                tar.append(&header, None)?;
                written.entries += 1;
            }
            What::Dir { opaque } => {
                let header = with_xattrs(
                    overlay,
                    &full,
                    base_header(path.clone(), Kind::Dir, &node.meta, opts),
                );
                tar.append(&header, None)?;
                written.entries += 1;
                if opaque {
                    let mut name = path;
                    name.push(b'/');
                    name.extend_from_slice(OPAQUE_MARKER.as_bytes());
                    let mut marker = base_header(name, Kind::File, &node.meta, opts);
                    marker.mode = 0o644;
                    tar.append(&marker, None)?;
                    written.entries += 1;
                }
            }
            What::Plain => {
                let meta = &node.meta;
                let kind = kind_of(&full, meta)?;
                let Some(kind) = kind else { continue };
                let key = (meta.dev(), meta.ino());
                if kind == Kind::File && meta.nlink() > 1 {
                    if let Some(first) = links.get(&key) {
                        let header = base_header(path, Kind::Link(first.clone()), meta, opts);
                        tar.append(&header, None)?;
                        written.entries += 1;
                        continue;
                    }
                    links.insert(key, path.clone());
                }
                let mut header = with_xattrs(overlay, &full, base_header(path, kind, meta, opts));
                if header.kind == Kind::File {
                    header.size = meta.len();
                    let mut file = File::open(&full)?;
                    tar.append(&header, Some(&mut file))?;
                    written.bytes += header.size;
                } else {
                    tar.append(&header, None)?;
                }
                written.entries += 1;
            }
        }
    }
    tar.finish()?;
    Ok(written)
}

/// Collects the entries under `rel` (depth first, sorted); returns
/// whether anything under it was skipped.
fn collect(
    overlay: &dyn Overlay,
    opts: &Options<'_>,
    rel: &Path,
    nodes: &mut Vec<Node>,
) -> io::Result<bool> {
    let dir = opts.upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut skipped = false;
    for name in names {
        let child = rel.join(&name);
        if opts.skip.iter().any(|s| Path::new(s) == child) {
            skipped = true;
            continue;
        }
        let full = opts.upper.join(&child);
        let meta = fs::symlink_metadata(&full)?;
        if meta.file_type().is_socket() {
            continue;
        }
        if overlay.is_whiteout(&full, &meta) {
            nodes.push(Node {
                rel: child,
                meta,
                what: What::Whiteout,
            });
            continue;
        }
        if !meta.is_dir() {
            nodes.push(Node {
                rel: child,
                meta,
                what: What::Plain,
            });
            continue;
        }
        let opaque = overlay.is_opaque(&full);
        let at = nodes.len();
        nodes.push(Node {
            rel: child.clone(),
            meta,
            what: What::Dir { opaque },
        });
        let below_skipped = collect(overlay, opts, &child, nodes)?;
        skipped |= below_skipped;
        // A directory overlayfs copied up only for a file the agent wrote
        // (/etc for /etc/hosts) is no change of the container's.
        let nothing_below = nodes.len() == at + 1;
        if below_skipped && nothing_below && !opaque && same_as_lower(opts, &child, &nodes[at].meta)
        {
            nodes.truncate(at);
        }
    }
    Ok(skipped)
}

/// Whether the image has `rel` as a directory with the same mode and
/// owner.
fn same_as_lower(opts: &Options<'_>, rel: &Path, meta: &Metadata) -> bool {
    let Some(lower) = opts.lower else {
        return false;
    };
    match fs::symlink_metadata(lower.join(rel)) {
        Ok(l) => {
            l.is_dir() && l.mode() == meta.mode() && l.uid() == meta.uid() && l.gid() == meta.gid()
        }
        Err(_) => false,
    }
}

/// The tar kind of a non-directory entry; `None` for what a layer does
/// not hold.
fn kind_of(full: &Path, meta: &Metadata) -> io::Result<Option<Kind>> {
    let ft = meta.file_type();
    let rdev = meta.rdev();
    Ok(Some(if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink(fs::read_link(full)?.as_os_str().as_bytes().to_vec())
    } else if ft.is_char_device() {
        Kind::Char(major(rdev), minor(rdev))
    } else if ft.is_block_device() {
        Kind::Block(major(rdev), minor(rdev))
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        return Ok(None);
    }))
}

fn base_header(path: Vec<u8>, kind: Kind, meta: &Metadata, opts: &Options<'_>) -> Header {
    let mut header = Header::new(path, kind);
    header.mode = meta.mode() & 0o7777;
    header.uid = meta.uid();
    header.gid = meta.gid();
    header.mtime = clamp(meta.mtime(), opts.source_date_epoch);
    header
}

fn with_xattrs(overlay: &dyn Overlay, full: &Path, mut header: Header) -> Header {
    if matches!(header.kind, Kind::File | Kind::Dir) {
        if let Some(value) = overlay.xattr(full, CAPABILITY_XATTR) {
            header.xattrs.push((CAPABILITY_XATTR.to_string(), value));
        }
    }
    header
}

/// `mtime`, no later than `SOURCE_DATE_EPOCH` when one is given.
pub fn clamp(mtime: i64, source_date_epoch: Option<i64>) -> i64 {
    match source_date_epoch {
        Some(epoch) => mtime.min(epoch),
        None => mtime,
    }
}

/// `rel`'s parent with a trailing `/`, or nothing at the top.
fn parent_bytes(rel: &Path) -> Vec<u8> {
    match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => {
            let mut v = p.as_os_str().as_bytes().to_vec();
            v.push(b'/');
            v
        }
        _ => Vec::new(),
    }
}

fn file_name(rel: &Path) -> &[u8] {
    rel.file_name().unwrap_or(OsStr::new("")).as_bytes()
}

fn major(rdev: u64) -> u32 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)) as u32
}

fn minor(rdev: u64) -> u32 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)) as u32
}

/// Whether `meta` is an overlayfs whiteout: a character device 0:0.
pub fn is_whiteout_device(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}
