//! The agent's syscall layer: thin, safe wrappers over the libc calls the
//! agent needs. Every `unsafe` block of the agent lives here.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

fn cstring(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
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

/// mknod(2) for a character device.
pub fn mknod_char(path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: the path is NUL-terminated and outlives the call.
    check(unsafe {
        libc::mknod(
            path.as_ptr(),
            libc::S_IFCHR | mode,
            libc::makedev(major, minor),
        )
    })
    .map(drop)
}

/// A pipe whose both ends are close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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

/// Creates a child in new mount, PID, UTS and IPC namespaces with fork
/// semantics (clone3 without a stack). Returns the child's pid in the
/// parent and 0 in the child.
///
/// # Safety
/// The caller must be prepared for the child to run in a copy of a possibly
/// multi-threaded process: until it execs or exits, the child may only call
/// async-signal-safe functions (no allocation, no locks).
pub unsafe fn clone_into_namespaces() -> io::Result<i32> {
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
    }
    let args = CloneArgs {
        flags: (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC)
            as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
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

    pub fn mount_proc(target: &CStr) -> Result<(), i32> {
        // SAFETY: NUL-terminated strings that outlive the call.
        ok(unsafe {
            libc::mount(
                c"proc".as_ptr(),
                target.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        })
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

    pub fn write_all(fd: RawFd, bytes: &[u8]) {
        // SAFETY: the pointer and length describe `bytes`. A short or failed
        // write only loses the diagnostic.
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    }

    pub fn exit(code: i32) -> ! {
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(code) }
    }
}
