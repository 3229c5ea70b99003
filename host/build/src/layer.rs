//! COPY and ADD layers, made on the host without a VM: the entries a
//! step adds (files, directories, symlinks with the owners and modes it
//! asks for) written as one reproducible tar — entries sorted by path,
//! no user or group names, mtimes clamped to `SOURCE_DATE_EPOCH` when it
//! is set, gzip without a timestamp — so the same input gives the same
//! digest. ADD's local archives (tar, gzip, bzip2, xz) are unpacked with
//! hull-image's [`Unpacker`] (paths confined, bounds checked) and copied
//! in like a directory.
//!
//! Model: BuildKit's `fileop` copy (`COPY dir/ /d` copies the contents,
//! `--chown`/`--chmod` apply to every entry, missing parents are made)
//! and the reproducible-builds rules of `SOURCE_DATE_EPOCH`.

use hull_image::HashingWriter;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use hull_image::unpack::Unpacker;
use hull_image::NewLayer;

use crate::context::{Entry, Source, Tree};

/// Media type of the layers we write.
pub const MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Why a layer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("when copying several sources the destination must be a directory ending in /: {0}")]
    DestNotDir(String),
    #[error("ADD of a URL ({0}) needs the internet, which hull builds do not have; download it into the context and ADD or COPY the file")]
    Url(String),
    #[error("invalid --chmod {0:?} (octal, e.g. 0755)")]
    BadChmod(String),
    #[error("invalid --chown {0:?}")]
    BadChown(String),
    #[error("--chown {0:?}: no such user or group in the image")]
    UnknownOwner(String),
    #[error("cannot unpack archive {0}")]
    Unpack(PathBuf, #[source] hull_image::unpack::Error),
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What one entry of the layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file with this host file's content.
    File(PathBuf),
    Symlink(PathBuf),
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    pub kind: Kind,
    /// Permission bits, set-id and sticky bits included.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

/// Owner and mode overrides of a COPY.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub owner: Option<(u64, u64)>,
    pub chmod: Option<u32>,
    /// Keep the sources' owners (COPY --from, ADD archives) instead of
    /// root's.
    pub keep_owners: bool,
}

/// What the layer so far holds, by absolute path without the leading `/`.
#[derive(Debug, Default)]
pub struct Layer {
    pub entries: BTreeMap<String, LayerEntry>,
}

impl Layer {
    /// Adds `source` of `tree` at `dest` (a path in the image, cleaned,
    /// without the leading `/`): a directory's contents go into `dest`,
    /// anything else becomes `dest`.
    pub fn add_source(
        &mut self,
        tree: &Tree,
        source: &Source,
        dest: &str,
        o: Overrides,
    ) -> Result<(), LayerError> {
        let entries = tree
            .walk(source)
            .map_err(|e| io_err(&source.path)(io::Error::other(e)))?;
        for Entry { rel, path, meta } in entries {
            let at = match (rel.is_empty(), dest.is_empty()) {
                (true, _) => dest.to_string(),
                (false, true) => rel.clone(),
                (false, false) => format!("{dest}/{rel}"),
            };
            if at.is_empty() {
                continue; // the root itself
            }
            let kind = if meta.file_type().is_symlink() {
                Kind::Symlink(fs::read_link(&path).map_err(io_err(&path))?)
            } else if meta.is_dir() {
                Kind::Dir
            } else if meta.is_file() {
                Kind::File(path.clone())
            } else {
                // Devices, sockets, fifos: not copied (BuildKit copies
                // them; a context rarely holds any).
                continue;
            };
            let (uid, gid) = match (o.owner, o.keep_owners) {
                (Some(owner), _) => owner,
                (None, true) => (meta.uid() as u64, meta.gid() as u64),
                (None, false) => (0, 0),
            };
            let mode = match (o.chmod, &kind) {
                (_, Kind::Symlink(_)) => 0o777,
                (Some(m), _) => m,
                (None, _) => meta.permissions().mode() & 0o7777,
            };
            self.entries.insert(
                at,
                LayerEntry {
                    kind,
                    mode,
                    uid,
                    gid,
                    mtime: meta.mtime().max(0) as u64,
                },
            );
        }
        Ok(())
    }

    /// Adds a directory entry at `path` unless the layer has one.
    pub fn add_dir(&mut self, path: &str, owner: (u64, u64), mtime: u64) {
        self.entries.entry(path.to_string()).or_insert(LayerEntry {
            kind: Kind::Dir,
            mode: 0o755,
            uid: owner.0,
            gid: owner.1,
            mtime,
        });
    }

    /// Writes the layer as a gzip'd tar into `dir` (named by its digest),
    /// mtimes clamped to `epoch` if given.
    pub fn write(&self, dir: &Path, epoch: Option<u64>) -> Result<NewLayer, LayerError> {
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
        let blob = HashingWriter::new(tmp.as_file_mut());
        let gz = GzEncoder::new(blob, flate2::Compression::fast());
        let mut tar = tar::Builder::new(HashingWriter::new(gz));
        for (path, e) in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mode(e.mode);
            h.set_mtime(epoch.map_or(e.mtime, |ep| e.mtime.min(ep)));
            let res = match &e.kind {
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{path}/"), io::empty())
                }
                Kind::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, path, target)
                }
                Kind::File(src) => {
                    let f = fs::File::open(src).map_err(io_err(src))?;
                    let len = f.metadata().map_err(io_err(src))?.len();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(len);
                    // A file that changes size while read fails the build
                    // rather than writing a torn entry.
                    tar.append_data(&mut h, path, ExactReader::new(f, len))
                }
            };
            res.map_err(io_err(Path::new(path)))?;
        }
        let tar_out = tar.into_inner().map_err(io_err(dir))?;
        let (gz, diff_hash, _) = tar_out.finish();
        let blob = gz.finish().map_err(io_err(dir))?;
        let (_, digest_hash, size) = blob.finish();
        tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
        let digest = format!("sha256:{digest_hash}");
        let dest = dir.join(&digest_hash);
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(NewLayer {
            path: dest,
            digest,
            diff_id: format!("sha256:{diff_hash}"),
            size,
            media_type: MEDIA_TYPE.to_string(),
        })
    }
}

/// Compresses the uncompressed layer tar at `tar` (a RUN step's
/// changes) into `dir`, named by its digest.
pub fn compress(tar: &Path, dir: &Path) -> Result<NewLayer, LayerError> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    let blob = HashingWriter::new(tmp.as_file_mut());
    let mut gz = HashingWriter::new(GzEncoder::new(blob, flate2::Compression::fast()));
    let mut input = fs::File::open(tar).map_err(io_err(tar))?;
    io::copy(&mut input, &mut gz).map_err(io_err(tar))?;
    let (gz, diff_hash, _) = gz.finish();
    let (_, digest_hash, size) = gz.finish().map_err(io_err(dir))?.finish();
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    let dest = dir.join(&digest_hash);
    tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
    Ok(NewLayer {
        path: dest,
        digest: format!("sha256:{digest_hash}"),
        diff_id: format!("sha256:{diff_hash}"),
        size,
        media_type: MEDIA_TYPE.to_string(),
    })
}

/// The directories a layer blob (gzip'd tar, e.g. a RUN step's) holds,
/// named or implied by its entries' paths, as absolute paths: later COPY
/// steps must know them to copy into them rather than over them.
pub fn dirs_in(blob: &Path) -> Result<Vec<String>, LayerError> {
    let f = fs::File::open(blob).map_err(io_err(blob))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut dirs = std::collections::BTreeSet::new();
    for entry in archive.entries().map_err(io_err(blob))? {
        let entry = entry.map_err(io_err(blob))?;
        let path = entry
            .path()
            .map_err(io_err(blob))?
            .to_string_lossy()
            .into_owned();
        let comps = crate::context::clean(&path);
        let is_dir = entry.header().entry_type().is_dir();
        let parents = if is_dir {
            comps.len()
        } else {
            comps.len().saturating_sub(1)
        };
        for n in 1..=parents {
            dirs.insert(format!("/{}", comps[..n].join("/")));
        }
    }
    Ok(dirs.into_iter().collect())
}

/// Parses `--chmod` (octal).
pub fn parse_chmod(s: &str) -> Result<u32, LayerError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| LayerError::BadChmod(s.to_string()))
}

/// Parses `--chown=user[:group]`, names looked up in the image's
/// `/etc/passwd` and `/etc/group` (given as their contents, if any). A
/// user without a group takes the user's primary group (Docker: the uid
/// as gid when the user is numeric).
pub fn parse_chown(
    s: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u64, u64), LayerError> {
    let (user, grp) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if user.is_empty() || grp == Some("") {
        return Err(LayerError::BadChown(s.to_string()));
    }
    let lookup = |db: Option<&str>, name: &str, field: usize| -> Option<u64> {
        db?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(field)?.parse().ok())?
        })
    };
    let (uid, primary) = match user.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) => {
            let uid = lookup(passwd, user, 2).ok_or_else(|| LayerError::UnknownOwner(s.into()))?;
            let gid = lookup(passwd, user, 3).ok_or_else(|| LayerError::UnknownOwner(s.into()))?;
            (uid, gid)
        }
    };
    let gid = match grp {
        None => primary,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => lookup(group, g, 2).ok_or_else(|| LayerError::UnknownOwner(s.into()))?,
        },
    };
    Ok((uid, gid))
}

/// Unpacks a local archive (tar, or tar compressed with gzip, bzip2 or
/// xz) into `dest` (an empty directory); false when `path` is not an
/// archive (ADD then copies it as a file).
pub fn unpack_archive(path: &Path, dest: &Path, scratch: &Path) -> Result<bool, LayerError> {
    let mut f = BufReader::new(fs::File::open(path).map_err(io_err(path))?);
    let head = f.fill_buf().map_err(io_err(path))?.to_vec();
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(f))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(f))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        // lzma-rs decodes into a writer, not as a stream: through a file.
        let out_path = scratch.join("xz-decoded.tar");
        let mut out = fs::File::create(&out_path).map_err(io_err(&out_path))?;
        lzma_rs::xz_decompress(&mut f, &mut out)
            .map_err(|e| io_err(path)(io::Error::other(e.to_string())))?;
        Box::new(fs::File::open(&out_path).map_err(io_err(&out_path))?)
    } else if is_tar(&head) {
        Box::new(f)
    } else {
        return Ok(false);
    };
    let mut unpacker = Unpacker::new(dest);
    let rest = unpacker
        .apply(reader)
        .map_err(|e| LayerError::Unpack(path.to_path_buf(), e))?;
    drop(rest);
    unpacker
        .finish()
        .map_err(|e| LayerError::Unpack(path.to_path_buf(), e))?;
    Ok(true)
}

/// Whether the first block looks like a tar header (`ustar` magic, or a
/// valid header checksum for old v7 tars).
fn is_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&head[148..156])
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok());
    let sum: u64 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u64
            }
        })
        .sum();
    stored == Some(sum)
}

/// Reads exactly `len` bytes of a file, failing if it is shorter or
/// longer now than when it was measured.
struct ExactReader {
    file: fs::File,
    left: u64,
}

impl ExactReader {
    fn new(file: fs::File, len: u64) -> Self {
        ExactReader { file, left: len }
    }
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.file.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other("file grew while copied")),
            };
        }
        let want = buf.len().min(self.left as usize);
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other("file shrank while copied"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    fn ctx() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("dir/sub")).unwrap();
        fs::write(d.path().join("dir/a"), "a").unwrap();
        fs::write(d.path().join("dir/sub/b"), "bb").unwrap();
        fs::set_permissions(d.path().join("dir/a"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("a", d.path().join("dir/l")).unwrap();
        d
    }

    fn build(ctx: &Path, out: &Path, o: Overrides, epoch: Option<u64>) -> NewLayer {
        let tree = Tree::context(ctx).unwrap();
        let mut layer = Layer::default();
        for s in tree.sources("dir").unwrap() {
            layer.add_source(&tree, &s, "app", o).unwrap();
        }
        layer.write(out, epoch).unwrap()
    }

    fn listing(layer: &NewLayer) -> Vec<(String, u32, u64, u64, u64)> {
        let f = fs::File::open(&layer.path).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn same_input_same_digest() {
        let c = ctx();
        let out = tempfile::tempdir().unwrap();
        let one = build(c.path(), out.path(), Overrides::default(), Some(1000));
        let two = build(c.path(), out.path(), Overrides::default(), Some(1000));
        assert_eq!(one, two);
        // A fresh copy of the same files (new inodes, new times) too.
        let c2 = ctx();
        let three = build(c2.path(), out.path(), Overrides::default(), Some(1000));
        assert_eq!(one.digest, three.digest);
        assert_eq!(one.diff_id, three.diff_id);
        // Other content: another digest.
        fs::write(c2.path().join("dir/a"), "A").unwrap();
        let four = build(c2.path(), out.path(), Overrides::default(), Some(1000));
        assert_ne!(one.digest, four.digest);
    }

    #[test]
    fn entries_sorted_owned_and_clamped() {
        let c = ctx();
        let out = tempfile::tempdir().unwrap();
        let l = build(
            c.path(),
            out.path(),
            Overrides {
                owner: Some((1000, 1001)),
                chmod: None,
                keep_owners: false,
            },
            Some(5),
        );
        let list = listing(&l);
        let paths: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, ["app/", "app/a", "app/l", "app/sub/", "app/sub/b"]);
        assert!(list.iter().all(|e| e.2 == 1000 && e.3 == 1001 && e.4 == 5));
        assert_eq!(list[1].1, 0o600);
        let l = build(
            c.path(),
            out.path(),
            Overrides {
                chmod: Some(0o755),
                ..Default::default()
            },
            None,
        );
        let list = listing(&l);
        assert!(list.iter().all(|e| e.2 == 0 && e.3 == 0));
        assert_eq!(list[1].1, 0o755);
        assert!(list[1].4 > 5, "kept the file's own mtime without an epoch");
    }

    #[test]
    fn dirs_of_a_layer() {
        let c = ctx();
        let out = tempfile::tempdir().unwrap();
        let layer = build(c.path(), out.path(), Overrides::default(), Some(1));
        assert_eq!(dirs_in(&layer.path).unwrap(), ["/app", "/app/sub"]);
    }

    #[test]
    fn a_compressed_tar_keeps_its_diff_id() {
        let c = ctx();
        let out = tempfile::tempdir().unwrap();
        let layer = build(c.path(), out.path(), Overrides::default(), Some(1));
        let tar = out.path().join("plain.tar");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(fs::File::open(&layer.path).unwrap())
            .read_to_end(&mut plain)
            .unwrap();
        fs::write(&tar, &plain).unwrap();
        let again = compress(&tar, out.path()).unwrap();
        assert_eq!(again.diff_id, layer.diff_id);
        assert_eq!(
            again.path,
            out.path().join(again.digest.trim_start_matches("sha256:"))
        );
        // Compressed again the same way: the same blob.
        assert_eq!(compress(&tar, out.path()).unwrap(), again);
    }

    #[test]
    fn chown_and_chmod_syntax() {
        let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
        let group = "root:x:0:\nstaff:x:50:\n";
        assert_eq!(parse_chown("1:2", None, None).unwrap(), (1, 2));
        assert_eq!(parse_chown("7", None, None).unwrap(), (7, 7));
        assert_eq!(
            parse_chown("app", Some(passwd), None).unwrap(),
            (1000, 1000)
        );
        assert_eq!(
            parse_chown("app:staff", Some(passwd), Some(group)).unwrap(),
            (1000, 50)
        );
        assert!(matches!(
            parse_chown("nobody", Some(passwd), None),
            Err(LayerError::UnknownOwner(_))
        ));
        assert!(matches!(
            parse_chown(":1", None, None),
            Err(LayerError::BadChown(_))
        ));
        assert_eq!(parse_chmod("0755").unwrap(), 0o755);
        assert!(parse_chmod("u+x").is_err());
    }

    #[test]
    fn archives_of_every_compression_unpack() {
        let src = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "pkg/hello.txt", &b"hello"[..])
            .unwrap();
        let plain = tar.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&plain).unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &plain[..], &mut xz).unwrap();
        for (name, bytes) in [
            ("a.tar", plain.clone()),
            ("a.tar.gz", gz.finish().unwrap()),
            ("a.tar.bz2", bz.finish().unwrap()),
            ("a.tar.xz", xz),
        ] {
            let p = src.path().join(name);
            fs::write(&p, bytes).unwrap();
            let dest = tempfile::tempdir().unwrap();
            assert!(
                unpack_archive(&p, dest.path(), src.path()).unwrap(),
                "{name}"
            );
            assert_eq!(
                fs::read(dest.path().join("pkg/hello.txt")).unwrap(),
                b"hello",
                "{name}"
            );
        }
        let p = src.path().join("not-an-archive.txt");
        fs::write(&p, "just text").unwrap();
        let dest = tempfile::tempdir().unwrap();
        assert!(!unpack_archive(&p, dest.path(), src.path()).unwrap());
    }
}
