//! A container's writable layer: a sparse ext4 disk per sandbox, under the
//! hull root (real disk, not the run dir's tmpfs), copied from a template
//! made once. Only blocks the container writes take host space; the guest
//! mounts it as the overlay's upper layer.
//!
//! Each layer says whose it is (an `owner` file: the run directory whose
//! record it belongs to, and the boot it was made in), so a sweep of one
//! run directory never takes a layer of another's, nor one whose records
//! went with a reboot (only an explicit prune does).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{io_error, SandboxError};

/// The serial the agent looks for.
pub const SCRATCH_SERIAL: &str = "hull-scratch";

/// The disk's file name in its directory.
pub const DISK_FILE: &str = "scratch.ext4";
/// Whose layer it is, in its directory.
pub const OWNER_FILE: &str = "owner";

/// Apparent size of a writable layer; sparse, so this costs nothing until
/// written.
const SIZE: &str = "8G";

/// Where sandboxes' writable layers live under the hull root.
pub fn sandboxes_dir(root: &Path) -> PathBuf {
    root.join("sandboxes")
}

/// The template: no journal (the layer dies with the sandbox), lazy inode
/// tables (the guest mounts with `noinit_itable`), no reserved blocks.
fn ensure_template(root: &Path) -> Result<PathBuf, SandboxError> {
    let dir = root.join("scratch");
    let template = dir.join(format!("template-{SIZE}.ext4"));
    if template.is_file() {
        return Ok(template);
    }
    std::fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
    let staging = dir.join(format!(".template.{}", std::process::id()));
    let file = std::fs::File::create(&staging)
        .map_err(io_error(format!("create {}", staging.display())))?;
    let size: u64 = 8 << 30;
    file.set_len(size)
        .map_err(io_error(format!("size {}", staging.display())))?;
    drop(file);
    let made = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-O",
            "^has_journal",
            "-E",
            "lazy_itable_init=1,nodiscard",
            "-m",
            "0",
        ])
        .arg(&staging)
        .status();
    match made {
        Ok(status) if status.success() => {}
        Ok(status) => {
            let _ = std::fs::remove_file(&staging);
            return Err(SandboxError::Io {
                what: format!("mkfs.ext4 {}", staging.display()),
                source: std::io::Error::other(format!("exited with {status}")),
            });
        }
        Err(source) => {
            let _ = std::fs::remove_file(&staging);
            return Err(SandboxError::Io {
                what: "mkfs.ext4 not found; install e2fsprogs".into(),
                source,
            });
        }
    }
    // Durable before it is marked complete by its name; rename is
    // atomic: concurrent first runs each make one, one wins.
    std::fs::File::open(&staging)
        .and_then(|f| f.sync_all())
        .map_err(io_error(format!("sync {}", staging.display())))?;
    std::fs::rename(&staging, &template)
        .map_err(io_error(format!("install {}", template.display())))?;
    Ok(template)
}

/// Whose a writable layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The run directory holding the container's record.
    pub run_dir: PathBuf,
    /// The kernel's boot id when the layer was made.
    pub boot: String,
}

impl Owner {
    /// A layer made now for a record in `run_dir`.
    pub fn current(run_dir: &Path) -> Self {
        Self {
            run_dir: std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf()),
            boot: boot_id(),
        }
    }

    /// The owner of the layer in `dir`; None if it has no (readable) one.
    pub fn of(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(OWNER_FILE)).ok()?;
        let (run_dir, boot) = text.trim_end().split_once('\n')?;
        Some(Self {
            run_dir: PathBuf::from(run_dir),
            boot: boot.to_string(),
        })
    }

    /// Whether it was made in this boot of the machine.
    pub fn this_boot(&self) -> bool {
        self.boot == boot_id()
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = format!("{}\n{}\n", self.run_dir.display(), self.boot);
        std::fs::write(dir.join(OWNER_FILE), text)
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// Makes the writable layer of sandbox `name`, owned by `owner`; returns
/// its directory and disk.
pub fn create(root: &Path, name: &str, owner: &Owner) -> Result<(PathBuf, PathBuf), SandboxError> {
    use std::os::unix::fs::DirBuilderExt;
    let template = ensure_template(root)?;
    let dir = sandboxes_dir(root).join(name);
    // Owner-only: a container's data.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_error(format!("create {}", dir.display())))?;
    // First, so a layer is never without an owner.
    if let Err(source) = owner.write(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(SandboxError::Io {
            what: format!("record the owner of {}", dir.display()),
            source,
        });
    }
    let disk = dir.join(DISK_FILE);
    if let Err(source) = copy_sparse(&template, &disk) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(SandboxError::Io {
            what: format!("copy the scratch template to {}", disk.display()),
            source,
        });
    }
    Ok((dir, disk))
}

/// Copies `from` to `to` keeping holes: only the data extents
/// (SEEK_DATA..SEEK_HOLE) are copied, in the kernel (copy_file_range).
fn copy_sparse(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let src = std::fs::File::open(from)?;
    let dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    let len = src.metadata()?.len();
    dst.set_len(len)?;
    let seek = |offset: u64, whence: libc::c_int| -> std::io::Result<Option<u64>> {
        // SAFETY: lseek on a descriptor we own.
        let ret = unsafe { libc::lseek(src.as_raw_fd(), offset as libc::off_t, whence) };
        if ret >= 0 {
            return Ok(Some(ret as u64));
        }
        match std::io::Error::last_os_error() {
            // No data at or after `offset`.
            e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            e => Err(e),
        }
    };
    let mut offset = 0u64;
    while offset < len {
        let Some(start) = seek(offset, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(len);
        let (mut src_off, mut dst_off) = (start as libc::loff_t, start as libc::loff_t);
        while (src_off as u64) < end {
            let want = (end - src_off as u64).min(1 << 30) as usize;
            // SAFETY: both descriptors are ours; the offsets are valid pointers.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut src_off,
                    dst.as_raw_fd(),
                    &mut dst_off,
                    want,
                    0,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
        }
        offset = end;
    }
    dst.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_disks_are_sparse_copies_of_one_template() {
        let root = tempfile::tempdir().unwrap();
        let owner = Owner::current(Path::new("/run/hull"));
        let (dir, disk) = create(root.path(), "abc", &owner).unwrap();
        assert!(disk.starts_with(&dir));
        assert_eq!(Owner::of(&dir), Some(owner.clone()));
        assert!(owner.this_boot());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let meta = std::fs::metadata(&disk).unwrap();
        assert_eq!(meta.len(), 8 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < 64 << 20, "the copy must stay sparse");
        let (_, second) = create(root.path(), "def", &owner).unwrap();
        assert!(second.is_file());
        assert_eq!(
            std::fs::read_dir(root.path().join("scratch"))
                .unwrap()
                .count(),
            1,
            "one template"
        );
    }

    #[test]
    fn sparse_copies_keep_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        let file = std::fs::File::create(&from).unwrap();
        file.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        file.write_all_at(b"head", 0).unwrap();
        file.write_all_at(b"middle", 32 << 20).unwrap();
        drop(file);
        copy_sparse(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        use std::os::unix::fs::MetadataExt;
        assert!(
            std::fs::metadata(&to).unwrap().blocks() * 512 < 1 << 20,
            "holes stay holes"
        );
        assert!(copy_sparse(&from, &to).is_err(), "never overwrites");
    }
}
