//! The real [`Syscall`] and [`ChildSyscall`]: each method forwards to the
//! safe wrappers of `crate::sys`, where the `unsafe` blocks are (youki's
//! `syscall/linux.rs`). The child methods forward to `sys::child`, which
//! is async-signal-safe and allocation-free.

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{ChildSyscall, IdMap, Syscall};
use crate::sys;

/// The kernel's syscalls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()> {
        sys::mount(source, target, fstype, flags, data)
    }

    fn mount_as(
        &self,
        uid: u32,
        gid: u32,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()> {
        sys::mount_with_fs_ids(uid, gid, source, target, fstype, flags, data)
    }

    fn unmount(&self, target: &Path, flags: libc::c_int) -> io::Result<()> {
        sys::unmount(target, flags)
    }

    fn move_mount(&self, source: &Path, target: &Path) -> io::Result<()> {
        sys::move_mount(source, target)
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        sys::chroot(path)
    }

    fn open_tree_clone(&self, source: &Path) -> io::Result<OwnedFd> {
        sys::open_tree_clone(source)
    }

    fn set_mount_idmap(&self, tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
        sys::set_mount_idmap(tree, userns)
    }

    fn attach_tree(&self, tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        sys::attach_tree(tree, target)
    }

    fn write_id_map(&self, pid: i32, map: IdMap, text: &str) -> io::Result<()> {
        let file = match map {
            IdMap::Uid => "uid_map",
            IdMap::Gid => "gid_map",
        };
        std::fs::write(format!("/proc/{pid}/{file}"), text)
    }

    fn set_rlimit(&self, pid: i32, resource: u32, soft: u64, hard: u64) -> io::Result<()> {
        sys::set_rlimit_of(pid, resource, soft, hard)
    }

    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()> {
        std::fs::write(path, contents)
    }

    fn kill(&self, pid: i32, signal: i32) -> io::Result<()> {
        sys::kill(pid, signal)
    }

    fn set_namespace(&self, fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
        sys::set_namespace(fd, nstype)
    }

    fn mountinfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }

    fn device_of(&self, path: &Path) -> io::Result<u64> {
        std::fs::metadata(path).map(|meta| meta.dev())
    }

    fn attach_device_program(&self, cgroup: RawFd, insns: &[u64]) -> io::Result<()> {
        sys::attach_device_program(cgroup, insns)
    }
}

impl ChildSyscall for Linux {
    fn make_mounts_private(&self) -> Result<(), i32> {
        sys::child::make_mounts_private()
    }

    fn mount(
        &self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: &CStr,
    ) -> Result<(), i32> {
        sys::child::mount(source, target, fstype, flags, data)
    }

    fn mkdir(&self, path: &CStr, mode: libc::mode_t) -> Result<(), i32> {
        sys::child::mkdir(path, mode)
    }

    fn mknod(&self, path: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), i32> {
        sys::child::mknod(path, mode, dev)
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), i32> {
        sys::child::symlink(target, link)
    }

    fn is_dir(&self, path: &CStr) -> Result<bool, i32> {
        sys::child::is_dir(path)
    }

    fn pivot_into(&self, new_root: &CStr) -> Result<(), i32> {
        sys::child::pivot_into(new_root)
    }

    fn set_hostname(&self, name: &CStr) -> Result<(), i32> {
        sys::child::set_hostname(name)
    }

    fn enter_user_namespace(&self, sync_fd: RawFd) -> Result<(), i32> {
        sys::child::enter_user_namespace(sync_fd)
    }

    fn bind_device(&self, source: &CStr, target: &CStr) -> Result<(), i32> {
        sys::child::bind_device(source, target)
    }

    fn bind_sysfs(&self, target: &CStr, flags: libc::c_ulong) -> Result<(), i32> {
        sys::child::bind_sysfs(target, flags)
    }

    fn mount_over_vm_cgroup(
        &self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: &CStr,
    ) -> Result<(), i32> {
        sys::child::mount_over_vm_cgroup(source, target, fstype, flags, data)
    }

    fn open_pty(
        &self,
        ptmx: &CStr,
        pts_prefix: &CStr,
        rows: u16,
        cols: u16,
    ) -> Result<(RawFd, RawFd), i32> {
        sys::child::open_pty(ptmx, pts_prefix, rows, cols)
    }

    fn send_fd(&self, socket: RawFd, fd: RawFd) -> Result<(), i32> {
        sys::child::send_fd(socket, fd)
    }

    fn write_file(&self, path: &CStr, bytes: &[u8]) -> Result<(), i32> {
        sys::child::write_file(path, bytes)
    }

    fn chown(&self, path: &CStr, uid: u32, gid: u32) -> Result<(), i32> {
        sys::child::chown(path, uid, gid)
    }

    fn set_domainname(&self, name: &CStr) -> Result<(), i32> {
        sys::child::set_domainname(name)
    }

    fn run_hook(
        &self,
        hook: &crate::process::PreparedHook,
        root: Option<&CStr>,
        state: [&[u8]; 3],
    ) -> Result<(), i32> {
        sys::child::run_hook(hook, root, state)
    }
}
