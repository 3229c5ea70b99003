//! The jail a QEMU runs in, with Firecracker's jailer as the model. QEMU
//! 7.2 does the parts it can itself, just before the guest runs, once it
//! has opened as root everything it boots with (kernel, initramfs, disks,
//! tap, RAM file, its sockets):
//!
//! * `-runas UID:GID`: a uid and gid of the VM's own, from a range no
//!   account uses ([`FIRST_ID`], [`IDS`] of them), with no supplementary
//!   groups and no capabilities left;
//! * `-chroot`: an empty, root-owned directory of the VM's own
//!   ([`JAIL_DIR`] in the sandbox directory, closed to the VM's uid): no
//!   host path is reachable by name;
//! * `-sandbox`, QEMU's seccomp filter, which sets `no_new_privs`.
//!
//! What reaches the VM later comes as descriptors over QMP, never as a
//! path: hot-added disks through `add-fd` (`/dev/fdset/N`), a joining
//! container's agent channel and a share server's stream as connected
//! sockets through `getfd`, migration's state file through `getfd`.
//!
//! A VM's id is held by an `flock` on `<n>` under [`IDS_DIR`], whose
//! descriptor the hypervisor inherits as [`LOCK_FD`]: the id is taken
//! exactly as long as that process lives, however it ends, and never by
//! two VMs at once.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The first uid (and gid) of VMs.
pub const FIRST_ID: u32 = 0x6800_0000;
/// How many VMs can be jailed at once.
pub const IDS: u32 = 1 << 16;
/// Where ids are taken, for the whole host (ids must not repeat across
/// hull's run directories).
pub const IDS_DIR: &str = "/run/hull-jail-ids";
/// The descriptor of its id's lock in the hypervisor.
pub const LOCK_FD: i32 = 4;
/// The chroot, in the sandbox directory.
pub const JAIL_DIR: &str = "jail";

#[derive(Debug, Error)]
pub enum JailError {
    #[error("make the jail's {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("all {IDS} jail ids are taken (under {0})")]
    Exhausted(PathBuf),
}

/// A VM's jail: its id, held while the lock lives, and its root.
#[derive(Debug)]
pub struct Jail {
    pub uid: u32,
    pub gid: u32,
    pub root: PathBuf,
    lock: OwnedFd,
}

impl Jail {
    /// Takes a free id and makes the (empty) jail root in `sandbox_dir`.
    pub fn reserve(sandbox_dir: &Path) -> Result<Jail, JailError> {
        reserve_in(Path::new(IDS_DIR), sandbox_dir)
    }

    /// QEMU's arguments that put it in this jail.
    pub fn qemu_args(&self) -> [String; 4] {
        [
            "-runas".into(),
            format!("{}:{}", self.uid, self.gid),
            "-chroot".into(),
            self.root.display().to_string(),
        ]
    }

    /// The lock the hypervisor must inherit (as [`LOCK_FD`]) to keep the id.
    pub fn into_lock(self) -> OwnedFd {
        self.lock
    }
}

fn reserve_in(ids_dir: &Path, sandbox_dir: &Path) -> Result<Jail, JailError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| JailError::Io { what, path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(ids_dir)
        .map_err(io("id directory", ids_dir))?;
    // The lowest free id: there are never more lock files than VMs ever
    // ran at once.
    let mut taken = None;
    for n in 0..IDS {
        let path = ids_dir.join(n.to_string());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io("id lock", &path))?;
        if try_lock(&file) {
            taken = Some((n, file));
            break;
        }
    }
    let (n, file) = taken.ok_or_else(|| JailError::Exhausted(ids_dir.to_path_buf()))?;
    let root = sandbox_dir.join(JAIL_DIR);
    match std::fs::create_dir(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("root", &root)(e)),
    }
    // Root's and closed to others: QEMU chroots and chdirs into it while
    // still root; after the drop it can neither list nor create anything.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o500))
        .map_err(io("root", &root))?;
    Ok(Jail {
        uid: FIRST_ID + n,
        gid: FIRST_ID + n,
        root,
        lock: file.into(),
    })
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_held_while_its_lock_lives_and_free_after() {
        let ids = tempfile::tempdir().unwrap();
        let vm_a = tempfile::tempdir().unwrap();
        let vm_b = tempfile::tempdir().unwrap();
        let a = reserve_in(ids.path(), vm_a.path()).unwrap();
        let b = reserve_in(ids.path(), vm_b.path()).unwrap();
        assert_ne!(a.uid, b.uid, "two live VMs never share an id");
        assert!((FIRST_ID..FIRST_ID + IDS).contains(&a.uid));
        assert_eq!(a.uid, a.gid);
        let a_uid = a.uid;
        // The process holding the lock ends: its id is free again, and
        // the lowest.
        drop(a.into_lock());
        let again = reserve_in(ids.path(), vm_a.path()).unwrap();
        assert_eq!(again.uid, a_uid);
        drop(b);
    }

    #[test]
    fn the_root_is_empty_and_not_the_vms_to_write() {
        let ids = tempfile::tempdir().unwrap();
        let vm = tempfile::tempdir().unwrap();
        let jail = reserve_in(ids.path(), vm.path()).unwrap();
        let meta = std::fs::metadata(&jail.root).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o500);
        assert_eq!(std::fs::read_dir(&jail.root).unwrap().count(), 0);
        let args = jail.qemu_args();
        assert_eq!(args[0], "-runas");
        assert_eq!(args[1], format!("{}:{}", jail.uid, jail.gid));
        assert_eq!(args[3], jail.root.display().to_string());
    }
}
