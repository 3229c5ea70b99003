//! The syscall seam of container set-up (model: youki
//! `crates/libcontainer/src/syscall/{mod,linux,test}.rs`): mount and
//! namespace logic calls the kernel through these traits, so it can be
//! unit-tested without root against [`test::Recording`], which records
//! every call and fails the ones a test asks it to.
//!
//! Two traits, because two worlds:
//! - [`Syscall`]: the agent's own side (root overlay, idmapped layers,
//!   user namespace maps, cgroup files, joining a pod's namespaces). Object
//!   safe; code takes a `&dyn Syscall`.
//! - [`ChildSyscall`]: what the forked child does between clone and exec
//!   (the container's mounts, /dev, masks, pivot, hostname). That code must
//!   stay async-signal-safe and allocation-free, so it is generic over the
//!   trait (static dispatch, no trait object) and its methods take C
//!   strings prepared before the clone and return the errno. The rest of
//!   the child (credentials, capabilities, seccomp, exec) stays on the raw
//!   `sys::child` functions.
//!
//! [`Linux`] is the real implementation, over `crate::sys`.

pub mod linux;
#[cfg(test)]
pub mod test;

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

pub use linux::Linux;

/// The real syscalls, for whoever needs a `&'static dyn Syscall`.
pub static LINUX: Linux = Linux;

/// Which id map of a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMap {
    /// `/proc/PID/uid_map`
    Uid,
    /// `/proc/PID/gid_map`
    Gid,
}

/// The agent-side calls of container set-up.
pub trait Syscall: Send + Sync {
    /// mount(2); `source`, `fstype` and `data` may be empty (none).
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()>;

    /// mount(2) with the filesystem ids `uid`:`gid` (overlayfs copies up
    /// with its mounter's credentials).
    #[allow(clippy::too_many_arguments)]
    fn mount_as(
        &self,
        uid: u32,
        gid: u32,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()>;

    /// umount2(2); `flags` 0 or `MNT_DETACH`.
    fn unmount(&self, target: &Path, flags: libc::c_int) -> io::Result<()>;

    /// mount(2) with MS_MOVE.
    fn move_mount(&self, source: &Path, target: &Path) -> io::Result<()>;

    fn chroot(&self, path: &Path) -> io::Result<()>;

    /// open_tree(2), OPEN_TREE_CLONE: a detached copy of the mount at `source`.
    fn open_tree_clone(&self, source: &Path) -> io::Result<OwnedFd>;

    /// mount_setattr(2), MOUNT_ATTR_IDMAP with the user namespace `userns`.
    fn set_mount_idmap(&self, tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()>;

    /// move_mount(2) of a detached tree onto `target`.
    fn attach_tree(&self, tree: BorrowedFd<'_>, target: &Path) -> io::Result<()>;

    /// Writes `text` to the `map` of process `pid`'s user namespace.
    fn write_id_map(&self, pid: i32, map: IdMap, text: &str) -> io::Result<()>;

    /// prlimit(2) on process `pid`.
    fn set_rlimit(&self, pid: i32, resource: u32, soft: u64, hard: u64) -> io::Result<()>;

    /// Writes a kernel control file (cgroup limits and controllers).
    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()>;

    fn kill(&self, pid: i32, signal: i32) -> io::Result<()>;

    /// setns(2) of the calling thread; `nstype` a CLONE_NEW* flag.
    fn set_namespace(&self, fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()>;

    /// The text of /proc/self/mountinfo.
    fn mountinfo(&self) -> io::Result<String>;

    /// The device (st_dev) the file at `path` lives on.
    fn device_of(&self, path: &Path) -> io::Result<u64>;

    /// Attaches a cgroup device program (eBPF instructions) to the cgroup
    /// open at `cgroup`.
    fn attach_device_program(&self, cgroup: RawFd, insns: &[u64]) -> io::Result<()>;
}

/// The child's calls between clone and exec: raw, allocation-free, each
/// returning the errno on failure. Implementations used in a real child
/// must keep that promise; the test one records (and allocates), which is
/// fine because tests never fork through it.
pub trait ChildSyscall {
    /// Makes every mount of the new mount namespace private (recursively).
    fn make_mounts_private(&self) -> Result<(), i32>;
    fn mount(
        &self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: &CStr,
    ) -> Result<(), i32>;
    /// mkdir that accepts an existing directory.
    fn mkdir(&self, path: &CStr, mode: libc::mode_t) -> Result<(), i32>;
    fn mknod(&self, path: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), i32>;
    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), i32>;
    /// Whether `path` is a directory; Err(ENOENT) when it does not exist.
    fn is_dir(&self, path: &CStr) -> Result<bool, i32>;
    /// pivot_root into `new_root`, dropping the old root.
    fn pivot_into(&self, new_root: &CStr) -> Result<(), i32>;
    fn set_hostname(&self, name: &CStr) -> Result<(), i32>;
    /// Waits for the maps of the new user namespace, becomes its root.
    fn enter_user_namespace(&self, sync_fd: RawFd) -> Result<(), i32>;
    /// A device node in a user namespace: the VM's, bound.
    fn bind_device(&self, source: &CStr, target: &CStr) -> Result<(), i32>;
    /// /sys in a user namespace: the VM's, bound, with `flags`.
    fn bind_sysfs(&self, target: &CStr, flags: libc::c_ulong) -> Result<(), i32>;
    /// cgroup2 over the VM's own cgroup2 mount of a bound /sys.
    fn mount_over_vm_cgroup(
        &self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: &CStr,
    ) -> Result<(), i32>;
    /// Opens a pty pair on a devpts instance: (master, slave).
    fn open_pty(
        &self,
        ptmx: &CStr,
        pts_prefix: &CStr,
        rows: u16,
        cols: u16,
    ) -> Result<(RawFd, RawFd), i32>;
    /// Sends `fd` over the unix socket `socket`, then closes it.
    fn send_fd(&self, socket: RawFd, fd: RawFd) -> Result<(), i32>;
    /// Writes a kernel control file (a sysctl) in one write.
    fn write_file(&self, path: &CStr, bytes: &[u8]) -> Result<(), i32>;
    fn chown(&self, path: &CStr, uid: u32, gid: u32) -> Result<(), i32>;
    fn set_domainname(&self, name: &CStr) -> Result<(), i32>;
    /// Runs an OCI hook to its end with `state` on its stdin, chrooted
    /// into `root` when given; the Err is a `HookOutcome` code.
    fn run_hook(
        &self,
        hook: &crate::process::PreparedHook,
        root: Option<&CStr>,
        state: [&[u8]; 3],
    ) -> Result<(), i32>;
}
