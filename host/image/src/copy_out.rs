//! A subtree of an image's root filesystem, copied out of its unpacked
//! layers: what fills a new volume (Docker copies the image's content at
//! the mount point into an empty volume). The path is resolved inside the
//! tree as the container would (a symlink's target is relative to the
//! image's root), never reaching outside it; device nodes and sockets are
//! not copied.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::Error;

/// How many symlinks one path may pass through (Linux's limit).
const MAX_HOPS: usize = 40;

/// Copies the directory at `path` in the tree `root` into `dest` (an
/// existing directory); false if it is not a directory of the image.
pub(crate) fn copy_subtree(root: &Path, path: &str, dest: &Path) -> Result<bool, Error> {
    let Some(source) = resolve(root, path) else {
        return Ok(false);
    };
    if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_dir()) {
        return Ok(false);
    }
    copy_dir(&source, dest)?;
    let meta = fs::symlink_metadata(&source).map_err(Error::io(&source))?;
    set_owner_mode_times(dest, &meta).map_err(Error::io(dest))?;
    Ok(true)
}

/// The host path of `path` inside `root`, following symlinks the way the
/// container would see them.
pub(crate) fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = components(Path::new(path));
    pending.reverse();
    let mut at: Vec<std::ffi::OsString> = Vec::new();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        let here = at
            .iter()
            .fold(root.to_path_buf(), |p, n| p.join(n))
            .join(&name);
        let meta = fs::symlink_metadata(&here).ok()?;
        if !meta.file_type().is_symlink() {
            at.push(name);
            continue;
        }
        hops += 1;
        if hops > MAX_HOPS {
            return None;
        }
        let target = fs::read_link(&here).ok()?;
        if target.is_absolute() {
            at.clear();
        }
        let mut more = components(&target);
        more.reverse();
        pending.extend(more);
    }
    Some(at.iter().fold(root.to_path_buf(), |p, n| p.join(n)))
}

fn components(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    for entry in fs::read_dir(from).map_err(Error::io(from))? {
        let entry = entry.map_err(Error::io(from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&source).map_err(Error::io(&source))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let link = fs::read_link(&source).map_err(Error::io(&source))?;
            std::os::unix::fs::symlink(&link, &target).map_err(Error::io(&target))?;
        } else if kind.is_dir() {
            fs::create_dir(&target).map_err(Error::io(&target))?;
            copy_dir(&source, &target)?;
        } else if kind.is_file() {
            fs::copy(&source, &target).map_err(Error::io(&target))?;
        } else {
            continue;
        }
        set_owner_mode_times(&target, &meta).map_err(Error::io(&target))?;
    }
    Ok(())
}

/// The owner, mode and times of `meta` on `path` (a symlink itself:
/// owner and times only).
fn set_owner_mode_times(path: &Path, meta: &fs::Metadata) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    // SAFETY: a NUL-terminated path and two timespecs.
    let ret = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subtree_is_copied_with_links_and_never_leaves_the_tree() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("rootfs");
        fs::create_dir_all(root.join("usr/share/app/sub")).unwrap();
        fs::write(root.join("usr/share/app/sub/file"), "data").unwrap();
        fs::set_permissions(
            root.join("usr/share/app/sub/file"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/file", root.join("usr/share/app/link")).unwrap();
        std::os::unix::fs::symlink("/usr/share/app", root.join("app")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("usr/share/up")).unwrap();
        fs::write(top.path().join("outside"), "x").unwrap();
        let dest = top.path().join("dest");
        fs::create_dir(&dest).unwrap();
        assert!(copy_subtree(&root, "/app", &dest).unwrap());
        assert_eq!(fs::read_to_string(dest.join("sub/file")).unwrap(), "data");
        assert_eq!(
            fs::metadata(dest.join("sub/file")).unwrap().mode() & 0o777,
            0o640
        );
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            Path::new("sub/file")
        );
        // `..` past the root stays at the root.
        assert_eq!(resolve(&root, "/usr/share/up"), Some(root.clone()));
        assert!(!copy_subtree(&root, "/nonexistent", &dest).unwrap());
        assert!(!copy_subtree(&root, "/usr/share/app/sub/file", &dest).unwrap());
    }
}
