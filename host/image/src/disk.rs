//! Building the read-only rootfs disk image the guest mounts.
//!
//! EROFS, uncompressed, made by `mkfs.erofs` (erofs-utils 1.5), chosen over
//! `mkfs.ext4 -d` by measurement on this host (3 runs each, wall clock):
//!
//! | tree                                   | mkfs.erofs        | mkfs.ext4 -d (no journal)                   | mkfs.erofs -zlz4hc |
//! |----------------------------------------|-------------------|---------------------------------------------|--------------------|
//! | busybox image (2.0 MB, 406 entries)    | 23–36 ms, 1.9 MiB | 45–48 ms, 19.6 MiB file (2.3 MiB allocated) | 68–89 ms, 1.4 MiB  |
//! | copy of /usr/lib (3.9 GB, 72k entries) | 16–32 s, 3.65 GiB | 21–35 s, 4.77 GiB file (3.83 GiB allocated) | 81–102 s, 1.94 GiB |
//!
//! EROFS is at least as fast to build, smaller, needs no size guessed up
//! front (ext4 does: too small fails, too big wastes), is read-only by
//! design, and the guest reads it without a journal or fsck. Compression
//! would halve big images but costs 3–5× the build time and guest CPU on
//! every read, and needs `EROFS_FS_ZIP` in the guest kernel; not now.
//!
//! Guest read speed (`bench/disk/run.sh`: a fresh VM per read, reading
//! every file of the 205 MB debootstrap image with `tar`, cold, under
//! QEMU TCG on this host, 5 runs each): EROFS 18.9–26.7 s (median 23.7 s,
//! 8.2 MiB/s), ext4 21.4–30.5 s (median 25.6 s, 7.6 MiB/s); built from
//! the same unpacked tree in 742 vs 940 ms, 190 vs 207 MiB allocated.
//! EROFS stays.
//!
//! ext4 stays buildable for measuring the two against each other:
//! `HULL_DISK_FS=ext4` makes a store build ext4 disks (kept next to
//! EROFS ones, by extension).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::Error;

const MKFS_EROFS: &str = "mkfs.erofs";
const MKFS_EXT4: &str = "mkfs.ext4";
/// Environment variable choosing the filesystem of new disks.
pub const DISK_FS_ENV: &str = "HULL_DISK_FS";

/// Filesystem of a rootfs disk, as the guest names it to mount(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Erofs,
    Ext4,
}

impl FsType {
    /// The filesystem type string for mount(2).
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Erofs => "erofs",
            FsType::Ext4 => "ext4",
        }
    }

    /// The file extension disks of this type get in the store.
    pub(crate) fn extension(self) -> &'static str {
        self.as_str()
    }

    /// Every kind, for finding a store's disks whatever they were built as.
    pub(crate) const ALL: [FsType; 2] = [FsType::Erofs, FsType::Ext4];

    /// The kind `HULL_DISK_FS` names, [`DISK_FS`] if unset or empty.
    pub(crate) fn from_env() -> Result<FsType, super::Error> {
        match std::env::var(DISK_FS_ENV).as_deref() {
            Err(_) | Ok("") => Ok(DISK_FS),
            Ok("erofs") => Ok(FsType::Erofs),
            Ok("ext4") => Ok(FsType::Ext4),
            Ok(other) => Err(super::Error::BadDiskFs(other.to_string())),
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The filesystem new disks are built with.
pub(crate) const DISK_FS: FsType = FsType::Erofs;

/// Builds a disk of kind `fs` of `dir` at `out` (which must not exist).
pub(crate) fn build(fs: FsType, dir: &Path, out: &Path) -> Result<(), Error> {
    match fs {
        FsType::Erofs => build_erofs(dir, out),
        FsType::Ext4 => build_ext4(dir, out),
    }
}

/// Builds an EROFS image of `dir` at `out` (which may exist, and is
/// overwritten).
pub fn build_erofs(dir: &Path, out: &Path) -> Result<(), Error> {
    let mut cmd = Command::new(MKFS_EROFS);
    cmd.arg("--quiet").arg(out).arg(dir);
    run(cmd, MKFS_EROFS, "erofs-utils", dir)
}

/// Builds an ext4 image of `dir` at `out` (no journal: it is mounted
/// read-only), sized from the tree: its blocks and inodes plus a margin.
pub(crate) fn build_ext4(dir: &Path, out: &Path) -> Result<(), Error> {
    let (blocks, inodes) = tree_blocks(dir).map_err(Error::io(dir))?;
    let inodes = inodes + inodes / 10 + 1024;
    // Data, inode tables (256 bytes each), then 10% and 16 MiB of room for
    // block groups' metadata.
    let bytes = blocks * 4096 + inodes * 256;
    let kib = (bytes + bytes / 10) / 1024 + (16 << 10);
    let mut cmd = Command::new(MKFS_EXT4);
    cmd.args([
        "-q",
        "-F",
        "-O",
        "^has_journal",
        "-m",
        "0",
        "-b",
        "4096",
        "-I",
        "256",
    ])
    .arg("-N")
    .arg(inodes.to_string())
    .args(["-E", "root_owner=0:0,nodiscard"])
    .arg("-d")
    .arg(dir)
    .arg(out)
    .arg(format!("{kib}k"));
    run(cmd, MKFS_EXT4, "e2fsprogs", dir)
}

/// 4 KiB blocks the tree's distinct files, directories and long symlinks
/// take, and its number of entries.
fn tree_blocks(dir: &Path) -> io::Result<(u64, u64)> {
    let mut seen = HashSet::new();
    let (mut blocks, mut entries) = (1u64, 1u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let m = entry.metadata()?;
            entries += 1;
            if m.is_dir() {
                blocks += m.len().div_ceil(4096).max(1);
                stack.push(entry.path());
            } else if (m.is_file() || m.file_type().is_symlink()) && seen.insert((m.dev(), m.ino()))
            {
                blocks += m.len().div_ceil(4096);
            }
        }
    }
    Ok((blocks, entries))
}

fn run(
    mut cmd: Command,
    tool: &'static str,
    package: &'static str,
    dir: &Path,
) -> Result<(), Error> {
    let output = cmd.output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::ToolMissing { tool, package },
        _ => Error::Io {
            path: tool.into(),
            source: e,
        },
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        return Err(Error::ToolFailed {
            tool,
            dir: dir.to_path_buf(),
            stderr: format!("{} ({last})", output.status),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_erofs_image() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hello"), b"hi").unwrap();
        let out = dir.path().join("out.erofs");
        build_erofs(&src, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        // EROFS superblock magic at offset 1024.
        assert_eq!(&bytes[1024..1028], &0xE0F5_E1E2u32.to_le_bytes());
    }

    #[test]
    fn builds_an_ext4_image() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hello"), vec![7u8; 100_000]).unwrap();
        std::os::unix::fs::symlink("etc/hello", src.join("link")).unwrap();
        let out = dir.path().join("out.ext4");
        build_ext4(&src, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        // ext4 superblock magic at offset 1024 + 0x38.
        assert_eq!(&bytes[1024 + 0x38..1024 + 0x3a], &0xEF53u16.to_le_bytes());
        let listing = Command::new("debugfs")
            .args(["-R", "ls -l /etc"])
            .arg(&out)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains("hello") && listing.contains("100000"),
            "{listing}"
        );
    }

    #[test]
    fn missing_tool_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = Command::new("mkfs.hull-does-not-exist");
        let err = run(cmd, "mkfs.hull-does-not-exist", "erofs-utils", dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mkfs.hull-does-not-exist not found; install erofs-utils"
        );
    }

    #[test]
    fn tool_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_erofs(&dir.path().join("no-such-dir"), &dir.path().join("x")).unwrap_err();
        assert!(matches!(err, Error::ToolFailed { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
    }
}
