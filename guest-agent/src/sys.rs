//! The agent's syscall layer: thin, safe wrappers over the libc calls the
//! agent needs. Every `unsafe` block of the agent lives here.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

fn cstring(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// umount2(2) with `flags` (`0`, or `MNT_DETACH`: the mount goes once
/// nothing uses it).
pub fn unmount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), flags) }).map(|_| ())
}

/// mount(2). `source`/`fstype`/`data` may be empty.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let source = CString::new(source)?;
    let target = cstring(target)?;
    let fstype = CString::new(fstype)?;
    let data = CString::new(data)?;
    let opt = |s: &CString| {
        if s.as_bytes().is_empty() {
            std::ptr::null()
        } else {
            s.as_ptr()
        }
    };
    // SAFETY: every pointer is either null or a NUL-terminated string that
    // outlives the call.
    check(unsafe {
        libc::mount(
            opt(&source),
            target.as_ptr(),
            opt(&fstype),
            flags,
            opt(&data).cast(),
        )
    })
    .map(drop)
}

/// mount(2) that moves an existing mount.
pub fn move_mount(source: &Path, target: &Path) -> io::Result<()> {
    let source = cstring(source)?;
    let target = cstring(target)?;
    // SAFETY: both paths are NUL-terminated and outlive the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    })
    .map(drop)
}

pub fn chroot(path: &Path) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: the path is NUL-terminated and outlives the call.
    check(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// setns(2) into the namespace open at `fd`; `nstype` is its CLONE_NEW*
/// flag (0: any). Changes only the calling thread.
pub fn set_namespace(fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and an integer; a bad descriptor is
    // an error, not undefined behaviour.
    check(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

/// prlimit(2): sets `resource` of process `pid` to `soft`:`hard`.
pub fn set_rlimit_of(pid: i32, resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `limit` is a valid rlimit64; the old value is not asked for.
    check(unsafe { libc::prlimit64(pid, resource as _, &limit, std::ptr::null_mut()) }).map(drop)
}

/// struct mount_attr of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount tree at
/// `source`.
pub fn open_tree_clone(source: &Path) -> io::Result<OwnedFd> {
    let source = cstring(source)?;
    // SAFETY: a NUL-terminated path that outlives the call; the returned
    // descriptor is owned below.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as RawFd) })
}

/// mount_setattr(2): idmaps the detached tree `tree` with the ids of the
/// user namespace open at `userns`.
pub fn set_mount_idmap(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: `attr` is a mount_attr of the size passed; "" with
    // AT_EMPTY_PATH names the tree's descriptor itself.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if set < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// move_mount(2): attaches the detached tree `tree` at `target`.
pub fn attach_tree(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: NUL-terminated paths and a descriptor that outlive the call.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// mount(2) from a thread whose filesystem ids are `uid`:`gid` (with its
/// effective capabilities raised again, which the fs uid change drops):
/// overlayfs does its copy-ups with its mounter's credentials. Thread
/// credentials are the thread's own; it ends with the mount.
pub fn mount_with_fs_ids(
    uid: u32,
    gid: u32,
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<()> {
                // SAFETY: setfsgid/setfsuid change only this thread's
                // credentials (raw syscalls, not glibc's broadcast).
                unsafe {
                    libc::syscall(libc::SYS_setfsgid, gid);
                    libc::syscall(libc::SYS_setfsuid, uid);
                }
                raise_effective_capabilities()?;
                mount(source, target, fstype, flags, data)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the mount thread panicked")))
    })
}

/// Changing the fs uid away from 0 drops the file capabilities from the
/// effective set; raises them back to the permitted set (this thread).
fn raise_effective_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: a v3 header and two data structs, as capget(2) wants.
    if unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    // SAFETY: as above; capset reads them.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A child in the new namespaces `flags` that does nothing but wait: it
/// exits once a byte comes on the returned pipe end (or the pipe closes).
/// Returns its pid (the caller registers it with the reaper) and the pipe.
pub fn spawn_waiting_child(flags: u64) -> io::Result<(i32, OwnedFd)> {
    let (hold_read, hold_write) = pipe()?;
    // SAFETY: the child only calls read(2) and _exit(2), both
    // async-signal-safe, on a descriptor it inherited.
    let pid = unsafe { clone_into_namespaces(flags, None) }?;
    if pid == 0 {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a local, then exits.
        unsafe {
            libc::read(hold_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
            libc::_exit(0)
        }
    }
    Ok((pid, hold_write))
}

/// A pipe whose both ends are close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of close-on-exec unix stream sockets.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Space for one SCM_RIGHTS message carrying one descriptor.
const FD_CMSG_SPACE: usize = 64;

/// Receives one descriptor sent with SCM_RIGHTS.
pub fn recv_fd(socket: &OwnedFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u8; FD_CMSG_SPACE];
    // SAFETY: msghdr is plain data; all-zero is valid before we fill it in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: `msg` points at buffers that live through the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `msg`; CMSG_FIRSTHDR/CMSG_DATA stay inside
    // `control`, and we check level, type and length before reading.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            || ((*cmsg).cmsg_len as usize)
                < libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no descriptor was sent",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Sets a terminal's window size.
pub fn set_window_size(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) }).map(drop)
}

/// How a child ended, from waitpid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// Waits for any child. `Ok(None)` when there is no child at all.
pub fn wait_any() -> io::Result<Option<(i32, WaitStatus)>> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer for the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(err),
            }
        }
        let decoded = if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            continue;
        };
        return Ok(Some((pid, decoded)));
    }
}

pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Flushes filesystems and restarts the machine; the kernel command line
/// (`reboot=k` under hull-vmm, `reboot=t` with QEMU's `-no-reboot`) makes
/// that the end of the VM.
pub fn power_off() -> ! {
    // SAFETY: sync and reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    // Only reached when not PID 1 (tests, a misconfigured guest).
    std::process::exit(1)
}

/// A connected AF_VSOCK stream socket to `cid:port`.
pub fn vsock_connect(cid: u32, port: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory-safety preconditions.
    let fd =
        check(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket succeeded, so `fd` is open and ours alone.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain data for which all-zero is valid.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    // SAFETY: `addr` is a valid sockaddr_vm and its size is passed with it.
    check(unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    Ok(sock)
}

/// A socket that receives the kernel's device uevents (what udev reads).
pub fn uevent_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory-safety preconditions.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    })?;
    // SAFETY: socket succeeded, so `fd` is open and ours alone.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data for which all-zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // Group 1: the kernel's own uevents.
    addr.nl_groups = 1;
    // SAFETY: `addr` is a valid sockaddr_nl and its size is passed with it.
    check(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    })?;
    Ok(sock)
}

/// One datagram from `sock` into `buf`; returns its length.
pub fn recv(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Ignores SIGPIPE (a closed pipe is an EPIPE error for the agent, not death).
pub fn ignore_sigpipe() {
    // SAFETY: setting a disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The current process id.
pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Creates a child in the namespaces named by `flags` (CLONE_NEW*), with
/// fork semantics (clone3 without a stack), optionally straight into the
/// cgroup open at `cgroup_fd`. Returns the child's pid in the parent and 0
/// in the child.
///
/// # Safety
/// The caller must be prepared for the child to run in a copy of a possibly
/// multi-threaded process: until it execs or exits, the child may only call
/// async-signal-safe functions (no allocation, no locks).
pub unsafe fn clone_into_namespaces(flags: u64, cgroup_fd: Option<RawFd>) -> io::Result<i32> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    // With CLONE_PARENT the child inherits our own exit signal, and clone3
    // wants none given.
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let mut args = CloneArgs {
        flags,
        exit_signal,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size passed; with no stack
    // and no CLONE_VM the child gets a copy of our memory, like fork. The
    // caller upholds the post-fork rules.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as i32)
    }
}

/// Raw, allocation-free calls for the child between clone and exec. Each
/// returns the errno on failure.
pub mod child {
    use super::*;

    fn errno() -> i32 {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }

    fn ok(ret: libc::c_int) -> Result<(), i32> {
        if ret < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    pub fn make_mounts_private() -> Result<(), i32> {
        // SAFETY: static NUL-terminated strings; mount is async-signal-safe.
        ok(unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })
    }

    /// A mount(2) with every argument given.
    pub fn mount(
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: &CStr,
    ) -> Result<(), i32> {
        let opt = |s: &CStr| {
            if s.to_bytes().is_empty() {
                std::ptr::null()
            } else {
                s.as_ptr()
            }
        };
        // SAFETY: NUL-terminated strings (or null) that outlive the call.
        ok(unsafe {
            libc::mount(
                opt(source),
                target.as_ptr(),
                opt(fstype),
                flags,
                opt(data).cast(),
            )
        })
    }

    /// mkdir that accepts an existing directory.
    pub fn mkdir(path: &CStr, mode: libc::mode_t) -> Result<(), i32> {
        // SAFETY: NUL-terminated string that outlives the call.
        match ok(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
            Err(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    pub fn mknod(path: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), i32> {
        // SAFETY: NUL-terminated string that outlives the calls.
        unsafe {
            ok(libc::mknod(path.as_ptr(), mode, dev))?;
            // mknod honours the umask; the nodes must keep their mode.
            ok(libc::chmod(path.as_ptr(), mode & 0o7777))
        }
    }

    pub fn symlink(target: &CStr, link: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated strings that outlive the call.
        ok(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
    }

    /// Whether `path` is a directory; Err(ENOENT) when it does not exist.
    pub fn is_dir(path: &CStr) -> Result<bool, i32> {
        // SAFETY: all-zero is a valid stat; the pointers are valid.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            ok(libc::stat(path.as_ptr(), &mut st))?;
            Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        }
    }

    pub fn set_rlimit(resource: u32, soft: u64, hard: u64) -> Result<(), i32> {
        let limit = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `limit` is a valid rlimit64; no old value is requested.
        ok(unsafe { libc::prlimit64(0, resource as _, &limit, std::ptr::null_mut()) })
    }

    /// Drops every capability not in `keep` from the bounding set and asks
    /// to keep permitted capabilities across the uid change.
    pub fn limit_bounding_set(keep: u64, last_cap: u32) -> Result<(), i32> {
        for cap in 0..=last_cap {
            if keep & (1u64 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                match ok(unsafe {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0)
                }) {
                    // A capability this kernel does not know.
                    Err(libc::EINVAL) => {}
                    other => other?,
                }
            }
        }
        // SAFETY: prctl with integer arguments.
        ok(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })
    }

    /// Sets effective, permitted and inheritable sets, then raises ambient.
    pub fn set_capabilities(
        effective: u64,
        permitted: u64,
        inheritable: u64,
        ambient: u64,
        last_cap: u32,
    ) -> Result<(), i32> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            Data {
                effective: effective as u32,
                permitted: permitted as u32,
                inheritable: inheritable as u32,
            },
            Data {
                effective: (effective >> 32) as u32,
                permitted: (permitted >> 32) as u32,
                inheritable: (inheritable >> 32) as u32,
            },
        ];
        // SAFETY: header and two data structs as capset(2) version 3 wants.
        let ret =
            unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
        if ret < 0 {
            return Err(errno());
        }
        // The kernel raises an ambient capability only if it is permitted
        // and inheritable; specs (`runc spec`'s default among them) list
        // ambient ones without inheritable, which runc then leaves out
        // rather than failing: so do we.
        let raisable = ambient & permitted & inheritable;
        for cap in 0..=last_cap {
            if raisable & (1u64 << cap) != 0 {
                // SAFETY: prctl with integer arguments.
                ok(unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                })?;
            }
        }
        Ok(())
    }

    pub fn set_no_new_privileges() -> Result<(), i32> {
        // SAFETY: prctl with integer arguments.
        ok(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
    }

    /// Installs a seccomp filter (classic BPF `struct sock_filter`s).
    pub fn load_seccomp(program: &[crate::security::seccomp::SockFilter]) -> Result<(), i32> {
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: SockFilter is layout-compatible with sock_filter (repr C,
        // same fields); the program outlives the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                1, /* SECCOMP_SET_MODE_FILTER */
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    /// Makes `new_root` the root and drops the old one (runc's
    /// `pivot_root(".", ".")` then detach).
    pub fn pivot_into(new_root: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated strings that outlive the calls; all are
        // plain syscalls.
        unsafe {
            ok(libc::chdir(new_root.as_ptr()))?;
            ok(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)?;
            ok(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            ok(libc::chdir(c"/".as_ptr()))
        }
    }

    pub fn set_hostname(name: &CStr) -> Result<(), i32> {
        // SAFETY: the pointer and length describe `name`.
        ok(unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) })
    }

    /// New session, default signal dispositions and an empty signal mask,
    /// as a freshly exec'd process expects (the agent ignores SIGPIPE).
    pub fn reset_process_state() {
        // SAFETY: plain syscalls on values we own.
        unsafe {
            libc::setsid();
            for signal in 1..libc::SIGRTMAX() {
                libc::signal(signal, libc::SIG_DFL);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        }
    }

    /// Opens a pty pair on the devpts instance whose ptmx is `ptmx`;
    /// `pts_prefix` is that instance's directory with a trailing slash.
    /// Returns (master, slave). Builds the slave path on the stack.
    pub fn open_pty(
        ptmx: &CStr,
        pts_prefix: &CStr,
        rows: u16,
        cols: u16,
    ) -> Result<(RawFd, RawFd), i32> {
        // SAFETY: NUL-terminated paths and valid out-pointers; raw calls only.
        unsafe {
            let master = libc::open(
                ptmx.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            if master < 0 {
                return Err(errno());
            }
            let unlock: libc::c_int = 0;
            ok(libc::ioctl(master, libc::TIOCSPTLCK, &unlock))?;
            let mut number: libc::c_uint = 0;
            ok(libc::ioctl(master, libc::TIOCGPTN, &mut number))?;
            let mut path = [0u8; 512];
            let prefix = pts_prefix.to_bytes();
            if prefix.len() + 12 > path.len() {
                return Err(libc::ENAMETOOLONG);
            }
            path[..prefix.len()].copy_from_slice(prefix);
            let mut digits = [0u8; 10];
            let mut count = 0;
            loop {
                digits[count] = b'0' + (number % 10) as u8;
                count += 1;
                number /= 10;
                if number == 0 {
                    break;
                }
            }
            for i in 0..count {
                path[prefix.len() + i] = digits[count - 1 - i];
            }
            let slave = libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_NOCTTY);
            if slave < 0 {
                return Err(errno());
            }
            let size = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            ok(libc::ioctl(slave, libc::TIOCSWINSZ, &size))?;
            Ok((master, slave))
        }
    }

    /// Sends `fd` over the unix socket `socket` (SCM_RIGHTS), then closes it.
    pub fn send_fd(socket: RawFd, fd: RawFd) -> Result<(), i32> {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u8; super::FD_CMSG_SPACE];
        // SAFETY: the message points at stack buffers that outlive the call;
        // CMSG_* stay within `control`, which is large enough for one fd.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
            let sent = libc::sendmsg(socket, &msg, 0);
            libc::close(fd);
            if sent < 0 {
                return Err(errno());
            }
        }
        Ok(())
    }

    /// Makes `tty` the controlling terminal and the standard streams.
    pub fn attach_terminal(tty: RawFd) -> Result<(), i32> {
        // SAFETY: ioctl and dup2 on descriptors we own.
        unsafe {
            ok(libc::ioctl(tty, libc::TIOCSCTTY, 0))?;
            for target in 0..3 {
                ok(libc::dup2(tty, target))?;
            }
            if tty > 2 {
                libc::close(tty);
            }
        }
        Ok(())
    }

    pub fn dup_onto(fd: RawFd, target: RawFd) -> Result<(), i32> {
        // SAFETY: dup2 on descriptors; fails cleanly if `fd` is not open.
        ok(unsafe { libc::dup2(fd, target) })
    }

    /// Raw syscalls on purpose: glibc's wrappers broadcast the change to
    /// every thread they believe exists (SIGSETXID) and wait for answers,
    /// which never come in a child made by a bare clone.
    pub fn set_credentials(uid: u32, gid: u32, groups: &[libc::gid_t]) -> Result<(), i32> {
        let ok_long = |ret: libc::c_long| if ret < 0 { Err(errno()) } else { Ok(()) };
        // SAFETY: the pointer and length describe `groups`; the other calls
        // take plain integers.
        unsafe {
            ok_long(libc::syscall(
                libc::SYS_setgroups,
                groups.len(),
                groups.as_ptr(),
            ))?;
            ok_long(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
            ok_long(libc::syscall(libc::SYS_setresuid, uid, uid, uid))
        }
    }

    pub fn chdir(path: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated string that outlives the call.
        ok(unsafe { libc::chdir(path.as_ptr()) })
    }

    /// execve; returns only on failure, with the errno.
    pub fn exec(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> i32 {
        // SAFETY: argv and envp are null-terminated arrays of pointers to
        // NUL-terminated strings that outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        errno()
    }

    /// setns(2) into the namespace open at `fd` (its type from the fd).
    pub fn set_namespace(fd: RawFd) -> Result<(), i32> {
        // SAFETY: setns takes a descriptor and an integer; a bad descriptor
        // is an error, not undefined behaviour.
        ok(unsafe { libc::setns(fd, 0) })
    }

    /// Clones a child whose parent is our parent (CLONE_PARENT), with fork
    /// semantics, in the namespaces our children get. Ok(0) in the child.
    pub fn clone_sibling() -> Result<i32, i32> {
        // SAFETY: the only caller is the single-threaded middle child of an
        // exec, whose new child runs nothing but the allocation-free
        // `process::child::run`, the rule `clone_into_namespaces` asks for.
        unsafe { super::clone_into_namespaces(libc::CLONE_PARENT as u64, None) }
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }

    pub fn write_all(fd: RawFd, bytes: &[u8]) {
        // SAFETY: the pointer and length describe `bytes`. A short or failed
        // write only loses the diagnostic.
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    }

    /// Waits until the agent wrote the maps of our new user namespace (a
    /// byte on `sync_fd`; EOF means it could not), then becomes root of
    /// it, without the VM's groups.
    pub fn enter_user_namespace(sync_fd: RawFd) -> Result<(), i32> {
        let mut byte = 0u8;
        loop {
            // SAFETY: reads at most one byte into a local.
            let n = unsafe { libc::read(sync_fd, (&mut byte as *mut u8).cast(), 1) };
            match n {
                1 => break,
                0 => return Err(libc::ECANCELED),
                _ if errno() == libc::EINTR => continue,
                _ => return Err(errno()),
            }
        }
        // SAFETY: plain syscalls on integers and a null list of length 0.
        unsafe {
            if libc::syscall(libc::SYS_setresgid, 0, 0, 0) < 0
                || libc::syscall(libc::SYS_setresuid, 0, 0, 0) < 0
                || libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) < 0
            {
                return Err(errno());
            }
        }
        Ok(())
    }

    /// A device node in a user namespace: an empty file with the VM's
    /// node bound onto it.
    pub fn bind_device(source: &CStr, target: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated paths that outlive the calls.
        unsafe {
            let fd = libc::open(
                target.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return Err(errno());
            }
            libc::close(fd);
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) < 0
            {
                return Err(errno());
            }
        }
        Ok(())
    }

    /// /sys in a user namespace without a network namespace of its own
    /// (sysfs refuses a new mount there): the VM's, bound, with `flags`
    /// (ro, nosuid, …) as runc does.
    pub fn bind_sysfs(target: &CStr, flags: libc::c_ulong) -> Result<(), i32> {
        // SAFETY: NUL-terminated strings that outlive the calls.
        unsafe {
            if libc::mount(
                c"/sys".as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) < 0
            {
                return Err(errno());
            }
            let keep = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            if libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | (flags & keep),
                std::ptr::null(),
            ) < 0
            {
                return Err(errno());
            }
        }
        Ok(())
    }

    /// cgroup2 at /sys/fs/cgroup of a bound /sys: the VM's cgroup2 mount
    /// is there already (locked, it cannot be unmounted), and the kernel
    /// refuses the same filesystem twice on one mount point (EBUSY). A
    /// small read-only tmpfs in between makes it another mount point.
    pub fn mount_over_vm_cgroup(
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: &CStr,
    ) -> Result<(), i32> {
        // SAFETY: NUL-terminated strings that outlive the calls.
        unsafe {
            if libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=4k,mode=755".as_ptr().cast(),
            ) < 0
                || libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    flags,
                    data.as_ptr().cast(),
                ) < 0
            {
                return Err(errno());
            }
        }
        Ok(())
    }

    /// Reads a u32 (LE) the agent writes on `fd`; EOF is ECANCELED.
    pub fn read_u32(fd: RawFd) -> Result<u32, i32> {
        let mut word = [0u8; 4];
        let mut filled = 0;
        while filled < word.len() {
            // SAFETY: reads into the rest of a local buffer.
            let n =
                unsafe { libc::read(fd, word[filled..].as_mut_ptr().cast(), word.len() - filled) };
            match n {
                0 => return Err(libc::ECANCELED),
                n if n > 0 => filled += n as usize,
                _ if errno() == libc::EINTR => {}
                _ => return Err(errno()),
            }
        }
        Ok(u32::from_le_bytes(word))
    }

    /// umask(2): cannot fail.
    pub fn set_umask(mask: u32) {
        // SAFETY: umask takes an integer.
        unsafe { libc::umask(mask as libc::mode_t) };
    }

    /// Writes `bytes` to the existing file at `path` in one write(2), as
    /// kernel control files (/proc/sys, oom_score_adj) want.
    pub fn write_file(path: &CStr, bytes: &[u8]) -> Result<(), i32> {
        // SAFETY: a NUL-terminated path; the pointer and length describe
        // `bytes`; the descriptor is ours to close.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(errno());
            }
            let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            let result = if written < 0 {
                Err(errno())
            } else if written as usize != bytes.len() {
                Err(libc::EIO)
            } else {
                Ok(())
            };
            libc::close(fd);
            result
        }
    }

    pub fn set_domainname(name: &CStr) -> Result<(), i32> {
        // SAFETY: the pointer and length describe `name`.
        ok(unsafe { libc::setdomainname(name.as_ptr(), name.to_bytes().len()) })
    }

    /// lchown(2): the owner of a node made for the container.
    pub fn chown(path: &CStr, uid: u32, gid: u32) -> Result<(), i32> {
        // SAFETY: NUL-terminated string that outlives the call.
        ok(unsafe { libc::lchown(path.as_ptr(), uid, gid) })
    }

    /// ioprio_set(IOPRIO_WHO_PROCESS, self, `value`): class << 13 | level.
    pub fn set_io_priority(value: u16) -> Result<(), i32> {
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        // SAFETY: ioprio_set takes integers.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0,
                value as libc::c_long,
            )
        };
        if ret < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    /// sched_setattr(2) of the calling thread.
    pub fn set_scheduler(attr: &crate::process::SchedAttr) -> Result<(), i32> {
        // SAFETY: SchedAttr is the kernel's struct sched_attr (repr C, its
        // `size` field set to its size); it outlives the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_sched_setattr,
                0,
                attr as *const crate::process::SchedAttr,
                0,
            )
        };
        if ret < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    /// Runs one OCI hook to its end: a child (raw clone, fork semantics,
    /// so no atfork handler of a multi-threaded parent's libc runs) with
    /// `state` (its parts, concatenated) on its stdin, chrooted into
    /// `root` first when given, exec'ing `hook.path`. `timeout_ms` > 0
    /// kills it after that long. The Err is a
    /// [`crate::process::HookOutcome`] code.
    pub fn run_hook(
        hook: &crate::process::PreparedHook,
        root: Option<&CStr>,
        state: [&[u8]; 3],
    ) -> Result<(), i32> {
        use crate::process::HookOutcome;
        let fail = |errno: i32| HookOutcome::Failed(errno).code();
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: the state fits the pipe's buffer (checked when it was
        // prepared), so these writes do not block; every pointer and
        // length describes a live buffer; the clone has fork semantics and
        // its child only makes raw calls before exec or _exit.
        unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
                return Err(fail(errno()));
            }
            let [read_end, write_end] = fds;
            for part in state {
                if libc::write(write_end, part.as_ptr().cast(), part.len()) != part.len() as isize {
                    let e = errno();
                    libc::close(read_end);
                    libc::close(write_end);
                    return Err(fail(e));
                }
            }
            libc::close(write_end);
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0);
            if pid < 0 {
                let e = errno();
                libc::close(read_end);
                return Err(fail(e));
            }
            if pid == 0 {
                if libc::dup2(read_end, 0) < 0 {
                    libc::_exit(126);
                }
                if let Some(root) = root {
                    if libc::chroot(root.as_ptr()) < 0 || libc::chdir(c"/".as_ptr()) < 0 {
                        libc::_exit(126);
                    }
                }
                libc::execve(hook.path.as_ptr(), hook.argv.as_ptr(), hook.envp.as_ptr());
                libc::_exit(127);
            }
            libc::close(read_end);
            let pid = pid as libc::pid_t;
            let mut status = 0;
            let outcome = if hook.timeout_ms == 0 {
                loop {
                    if libc::waitpid(pid, &mut status, 0) == pid {
                        break None;
                    }
                    if errno() != libc::EINTR {
                        return Err(fail(errno()));
                    }
                }
            } else {
                let now = || {
                    let mut t: libc::timespec = std::mem::zeroed();
                    libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t);
                    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
                };
                let deadline = now() + hook.timeout_ms;
                loop {
                    if libc::waitpid(pid, &mut status, libc::WNOHANG) == pid {
                        break None;
                    }
                    if now() >= deadline {
                        libc::kill(pid, libc::SIGKILL);
                        while libc::waitpid(pid, &mut status, 0) < 0 && errno() == libc::EINTR {}
                        break Some(HookOutcome::TimedOut);
                    }
                    let pause = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 2_000_000,
                    };
                    libc::nanosleep(&pause, std::ptr::null_mut());
                }
            };
            let outcome = outcome.or(if libc::WIFEXITED(status) {
                match libc::WEXITSTATUS(status) {
                    0 => None,
                    code => Some(HookOutcome::Exited(code)),
                }
            } else if libc::WIFSIGNALED(status) {
                Some(HookOutcome::Killed(libc::WTERMSIG(status)))
            } else {
                None
            });
            match outcome {
                None => Ok(()),
                Some(outcome) => Err(outcome.code()),
            }
        }
    }

    pub fn exit(code: i32) -> ! {
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(code) }
    }
}

// --- network interface set-up (SIOC* ioctls on an AF_INET socket) --------

/// The kernel's `struct rtentry` (include/uapi/linux/route.h); libc has
/// no gnu definition.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the descriptor is owned right away.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn sockaddr_in(addr: std::net::Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; this is how the
    // socket API expects an IPv4 address in a generic sockaddr.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq_ioctl(sock: &OwnedFd, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq for this SIOC* request.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut libc::ifreq) }).map(|_| ())
}

/// Sets the interface up (and running).
pub fn interface_up(name: &str) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq_for(name)?;
    ifreq_ioctl(&sock, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ifreq_ioctl(&sock, libc::SIOCSIFFLAGS, &mut req)
}

/// Gives the interface another Ethernet address (virtio-net passes it to
/// the device, so its receive filter follows).
pub fn set_interface_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: all-zero is a valid sockaddr.
    let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
    addr.sa_family = libc::ARPHRD_ETHER;
    for (dst, src) in addr.sa_data.iter_mut().zip(mac) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_hwaddr = addr;
    ifreq_ioctl(&sock, libc::SIOCSIFHWADDR, &mut req)
}

pub fn set_interface_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    ifreq_ioctl(&sock, libc::SIOCSIFMTU, &mut req)
}

/// Gives the interface an IPv4 address and netmask.
pub fn set_interface_address(
    name: &str,
    addr: std::net::Ipv4Addr,
    netmask: std::net::Ipv4Addr,
) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_in(addr);
    ifreq_ioctl(&sock, libc::SIOCSIFADDR, &mut req)?;
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr_in(netmask);
    ifreq_ioctl(&sock, libc::SIOCSIFNETMASK, &mut req)
}

/// Adds the default route through `gateway`.
pub fn add_default_route(gateway: std::net::Ipv4Addr) -> io::Result<()> {
    let sock = inet_socket()?;
    let any = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
    let mut route = RtEntry {
        rt_pad1: 0,
        rt_dst: any,
        rt_gateway: sockaddr_in(gateway),
        rt_genmask: any,
        rt_flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: std::ptr::null_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: `route` matches the kernel's struct rtentry for SIOCADDRT.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCADDRT,
            &mut route as *mut RtEntry,
        )
    })
    .map(|_| ())
}

/// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program (`insns`, eBPF
/// instructions in their 8-byte encoding) and attaches it to the cgroup
/// open at `cgroup` (BPF_F_ALLOW_MULTI, as runc and youki do; a bad
/// descriptor is an error). The
/// program stays attached after its descriptor closes.
pub fn attach_device_program(cgroup: RawFd, insns: &[u64]) -> io::Result<()> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    let license = c"Apache";
    let load = |log: Option<&mut [u8]>| {
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        attr.prog_name[..11].copy_from_slice(b"hull_device");
        if let Some(log) = log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        // SAFETY: `attr` is a bpf_attr prefix of the size passed; the
        // instructions, the license and the log buffer it points at outlive
        // the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: the kernel just returned this descriptor to us.
            Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
        }
    };
    let program = match load(None) {
        Ok(fd) => fd,
        Err(err) => {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 1 << 16];
            let _ = load(Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let text = text.trim();
            if text.is_empty() {
                return Err(err);
            }
            return Err(io::Error::new(err.kind(), format!("{err}: {text}")));
        }
    };
    let attr = ProgAttach {
        target_fd: cgroup as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: `attr` is a bpf_attr prefix of the size passed, naming two
    // descriptors we hold open.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
