//! The system calls the server makes, each relative to a directory fd
//! and never following a symlink; errors are errnos, which go back to the
//! guest as they are.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub type Errno = i32;

fn errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

const EMPTY: &CStr = c"";

/// openat(2) with `O_NOFOLLOW | O_CLOEXEC` added.
pub fn openat(
    dir: BorrowedFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> Result<OwnedFd, Errno> {
    // SAFETY: a valid dirfd and NUL-terminated name for the call.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `O_PATH` handle on `name` in `dir` (the entry itself if it is a
/// symlink).
pub fn open_path(dir: BorrowedFd, name: &CStr) -> Result<OwnedFd, Errno> {
    openat(dir, name, libc::O_PATH, 0)
}

fn zeroed_stat() -> libc::stat {
    // SAFETY: `stat` is plain data; all zeros is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The file `fd` is (an `O_PATH` fd too), not following it.
pub fn fstat(fd: BorrowedFd) -> Result<libc::stat, Errno> {
    let mut st = zeroed_stat();
    // SAFETY: valid fd, empty NUL-terminated path, and a stat to fill.
    check(unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

pub fn fstatat(dir: BorrowedFd, name: &CStr) -> Result<libc::stat, Errno> {
    let mut st = zeroed_stat();
    // SAFETY: valid dirfd, NUL-terminated name, and a stat to fill.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

pub fn fstatfs(fd: BorrowedFd) -> Result<libc::statfs, Errno> {
    // SAFETY: `statfs` is plain data; all zeros is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a statfs to fill.
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// chown of the file `fd` is, not following it.
pub fn fchown(fd: BorrowedFd, uid: u32, gid: u32) -> Result<(), Errno> {
    // SAFETY: valid fd and empty NUL-terminated path.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn fchownat(dir: BorrowedFd, name: &CStr, uid: u32, gid: u32) -> Result<(), Errno> {
    // SAFETY: valid dirfd and NUL-terminated name.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// chmod of the file `fd` is (fchmodat2 with `AT_EMPTY_PATH`, Linux 6.6:
/// works on an `O_PATH` fd without reopening the file).
pub fn fchmod(fd: BorrowedFd, mode: u32) -> Result<(), Errno> {
    // The same number on every architecture (libc lacks it on some).
    const SYS_FCHMODAT2: libc::c_long = 452;
    // SAFETY: valid fd and empty NUL-terminated path; fchmodat2 takes
    // (dirfd, path, mode, flags).
    let ret = unsafe {
        libc::syscall(
            SYS_FCHMODAT2,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            mode & 0o7777,
            libc::AT_EMPTY_PATH,
        )
    };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Clears `O_NONBLOCK` on an open file (opened with it so that opening
/// a FIFO put where a file was cannot block the server).
pub fn set_blocking(fd: BorrowedFd) -> Result<(), Errno> {
    // SAFETY: valid fd; F_GETFL takes no argument.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: valid fd; F_SETFL takes the flags.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) })
        .map(drop)
}

/// utimensat of the file `fd` is; `times` as utimensat(2) takes them.
pub fn futimens(fd: BorrowedFd, times: &[libc::timespec; 2]) -> Result<(), Errno> {
    // SAFETY: valid fd, empty NUL-terminated path, two timespecs.
    check(unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn ftruncate(fd: BorrowedFd, size: u64) -> Result<(), Errno> {
    let size = i64::try_from(size).map_err(|_| libc::EFBIG)?;
    // SAFETY: valid fd.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }).map(drop)
}

pub fn mkdirat(dir: BorrowedFd, name: &CStr, mode: u32) -> Result<(), Errno> {
    // SAFETY: valid dirfd and NUL-terminated name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode & 0o7777) }).map(drop)
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd, name: &CStr) -> Result<(), Errno> {
    // SAFETY: NUL-terminated target and name, valid dirfd.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

pub fn mknodat(dir: BorrowedFd, name: &CStr, mode: u32) -> Result<(), Errno> {
    // SAFETY: valid dirfd and NUL-terminated name; no device number.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) }).map(drop)
}

pub fn readlink(fd: BorrowedFd) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid fd, empty NUL-terminated path, a buffer of that size.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(errno());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

pub fn renameat(
    old_dir: BorrowedFd,
    old: &CStr,
    new_dir: BorrowedFd,
    new: &CStr,
) -> Result<(), Errno> {
    // SAFETY: valid dirfds and NUL-terminated names.
    check(unsafe {
        libc::renameat(
            old_dir.as_raw_fd(),
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
        )
    })
    .map(drop)
}

pub fn unlinkat(dir: BorrowedFd, name: &CStr, flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: valid dirfd and NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// A hard link to the file `fd` is (`AT_EMPTY_PATH` needs
/// CAP_DAC_READ_SEARCH, which the server keeps for this).
pub fn linkat(fd: BorrowedFd, dir: BorrowedFd, name: &CStr) -> Result<(), Errno> {
    // SAFETY: valid fds, empty and NUL-terminated names.
    check(unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    })
    .map(drop)
}

pub fn pread(fd: BorrowedFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let offset = i64::try_from(offset).map_err(|_| libc::EINVAL)?;
    // SAFETY: valid fd and a buffer of that length.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

pub fn pwrite(fd: BorrowedFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    let offset = i64::try_from(offset).map_err(|_| libc::EINVAL)?;
    // SAFETY: valid fd and a buffer of that length.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

pub fn fsync(fd: BorrowedFd, datasync: bool) -> Result<(), Errno> {
    // SAFETY: valid fd.
    check(unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })
    .map(drop)
}

/// One entry of a directory, as getdents64 gives it.
pub struct DirEntry {
    pub ino: u64,
    /// The position of the entry after this one.
    pub next: u64,
    pub d_type: u8,
    pub name: Vec<u8>,
}

/// Directory entries of `dir` from the position `offset` (a `d_off` the
/// kernel gave before, or 0).
pub fn read_dir(dir: BorrowedFd, offset: u64, buf: &mut [u8]) -> Result<Vec<DirEntry>, Errno> {
    let raw: RawFd = dir.as_raw_fd();
    // SAFETY: valid fd; lseek takes any offset (the filesystem checks).
    if unsafe { libc::lseek(raw, offset as i64, libc::SEEK_SET) } < 0 {
        return Err(errno());
    }
    // SAFETY: valid fd and a buffer of that length.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, raw, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return Err(errno());
    }
    let data = &buf[..n as usize];
    let mut entries = Vec::new();
    let mut at = 0;
    // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
    while at + 19 <= data.len() {
        let ino = u64::from_ne_bytes(data[at..at + 8].try_into().unwrap_or_default());
        let off = u64::from_ne_bytes(data[at + 8..at + 16].try_into().unwrap_or_default());
        let reclen = u16::from_ne_bytes([data[at + 16], data[at + 17]]) as usize;
        if reclen < 19 || at + reclen > data.len() {
            break;
        }
        let kind = data[at + 18];
        let name = &data[at + 19..at + reclen];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        entries.push(DirEntry {
            ino,
            next: off,
            d_type: kind,
            name: name[..end].to_vec(),
        });
        at += reclen;
    }
    Ok(entries)
}

/// Whether `fd` becomes readable (or hung up) within `timeout_ms`.
pub fn readable_within(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        match unsafe { libc::poll(&mut pfd, 1, timeout_ms) } {
            n if n > 0 => return true,
            0 => return false,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
}
