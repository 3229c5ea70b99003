//! Where the server serves from: a mount namespace of its own whose root
//! is a read-only tmpfs holding only the shared paths (entry `n` bound on
//! `/n`; read-only shares bound read-only, recursively, so root in the
//! guest cannot write through them whatever it remounts on its side),
//! with no network and the few capabilities a file server needs.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{ShareError, ShareSpec};

/// What [`enter`] leaves: the tree's root and which entries are read-only.
pub struct Jailed {
    pub root: OwnedFd,
    pub read_only: Vec<bool>,
}

/// Capabilities kept: create files for any owner, reach any file, keep
/// setgid bits a guest sets (CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER,
/// FSETID). No MKNOD, no SYS_ADMIN.
const CAP_CHOWN: u32 = 0;
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_FOWNER: u32 = 3;
const CAP_FSETID: u32 = 4;
const KEPT_CAPS: u64 = (1 << CAP_CHOWN)
    | (1 << CAP_DAC_OVERRIDE)
    | (1 << CAP_DAC_READ_SEARCH)
    | (1 << CAP_FOWNER)
    | (1 << CAP_FSETID);
const LAST_CAP: u32 = 63;
/// Fids hold fds: enough for `server::MAX_FIDS` of them, twice.
const NOFILE: u64 = 32768;

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const SYS_MOUNT_SETATTR: libc::c_long = 442;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn jail_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShareError {
    let what = what.into();
    move |source| ShareError::Jail { what, source }
}

fn cstr(path: &Path) -> Result<CString, ShareError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ShareError::Source {
        path: path.to_path_buf(),
        reason: "a path with a NUL byte".into(),
    })
}

fn ok(ret: libc::c_int, what: &str) -> Result<(), ShareError> {
    if ret < 0 {
        Err(jail_err(what)(std::io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

fn mount(
    source: Option<&CString>,
    target: &CString,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
    what: &str,
) -> Result<(), ShareError> {
    let ptr = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: NUL-terminated strings or nulls, as mount(2) takes them.
    let ret = unsafe {
        libc::mount(
            ptr(source.map(|s| s.as_c_str())),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    ok(ret, what)
}

/// Builds the jail on `scratch` and moves into it; see the module doc.
pub fn enter(spec: &ShareSpec, scratch: &Path) -> Result<Jailed, ShareError> {
    // SAFETY: unshare takes flags only; this process is single-threaded.
    let ret = unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC) };
    ok(ret, "unshare the mount namespace")?;
    let slash = CString::from(c"/");
    mount(
        None,
        &slash,
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
        "make / private",
    )?;
    let top = cstr(scratch)?;
    mount(
        Some(&CString::from(c"tmpfs")),
        &top,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"size=1m,mode=0755"),
        "mount the jail's root",
    )?;
    for (n, source) in spec.sources.iter().enumerate() {
        bind_source(&source.path, source.read_only, &scratch.join(n.to_string()))?;
    }
    mount(
        None,
        &top,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
        "make the jail's root read-only",
    )?;
    std::env::set_current_dir(scratch).map_err(jail_err("enter the jail"))?;
    let dot = CString::from(c".");
    // SAFETY: pivot_root(".", "."): the old root is stacked on the new
    // one, then detached; NUL-terminated strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as i32 };
    if ret == 0 {
        // SAFETY: NUL-terminated string.
        let ret = unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) };
        ok(ret, "detach the host's root")?;
    } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // The host's root is the initramfs (rootfs cannot be pivoted
        // away): move the jail over it and chroot, as switch_root and
        // runc's no-pivot do. The host's root stays under it, out of
        // reach: no fd of ours points there and CAP_SYS_CHROOT is dropped.
        mount(
            Some(&dot),
            &slash,
            None,
            libc::MS_MOVE,
            None,
            "move the jail over the host's root",
        )?;
        // SAFETY: NUL-terminated string.
        let ret = unsafe { libc::chroot(dot.as_ptr()) };
        ok(ret, "chroot into the jail")?;
    } else {
        ok(ret, "pivot into the jail")?;
    }
    std::env::set_current_dir("/").map_err(jail_err("enter the jail's root"))?;
    let root = open_root()?;
    limit_self()?;
    Ok(Jailed {
        root,
        read_only: spec.sources.iter().map(|s| s.read_only).collect(),
    })
}

/// Binds `source` (a directory or regular file, not a symlink) on
/// `target`, read-only if asked, never with suid or device files.
fn bind_source(source: &Path, read_only: bool, target: &Path) -> Result<(), ShareError> {
    let bad = |reason: &str| ShareError::Source {
        path: source.to_path_buf(),
        reason: reason.into(),
    };
    let path = cstr(source)?;
    // SAFETY: NUL-terminated path; the fd is owned below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(bad(&std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: the kernel just gave us this fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let kind = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| bad(&e.to_string()))?;
    let link = std::fs::symlink_metadata(source).map_err(|e| bad(&e.to_string()))?;
    if link.file_type().is_symlink() {
        return Err(bad("it is a symlink"));
    }
    if kind.is_dir() {
        std::fs::create_dir(target).map_err(jail_err("make a mount point"))?;
    } else if kind.is_file() {
        std::fs::File::create(target).map_err(jail_err("make a mount point"))?;
    } else {
        return Err(bad("neither a directory nor a regular file"));
    }
    let from = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
    mount(
        Some(&from),
        &cstr(target)?,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
        "bind a share",
    )?;
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let target = cstr(target)?;
    // SAFETY: mount_setattr(dirfd, path, flags, attr, size) with a valid
    // NUL-terminated path and an attr of the size given.
    let ret = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_RECURSIVE,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    ok(ret as i32, "make a share read-only")
}

fn open_root() -> Result<OwnedFd, ShareError> {
    // SAFETY: NUL-terminated path; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c"/".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    ok(fd, "open the jail's root")?;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Room for the fids' fds, no umask, then no new privileges and only the kept
/// capabilities, in every set.
fn limit_self() -> Result<(), ShareError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    ok(ret, "read the fd limit")?;
    // Raising the hard limit needs CAP_SYS_RESOURCE, which whoever started
    // the server may lack: the soft one goes up to it, and an fd beyond it
    // is EMFILE to the guest.
    limit.rlim_cur = NOFILE.min(limit.rlim_max);
    // SAFETY: a valid rlimit.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    ok(ret, "raise the fd limit")?;
    // The guest's kernel has applied its process's umask to every mode it
    // sends; a second one here would change what the guest asked for.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    ok(ret, "set no_new_privs")?;
    for cap in 0..=LAST_CAP {
        if KEPT_CAPS & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments; EINVAL past the last
            // capability this kernel knows is expected.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
    }
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
    let low = KEPT_CAPS as u32;
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [
        Data {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset(header, data[2]) as _LINUX_CAPABILITY_VERSION_3
    // takes them.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    ok(ret as i32, "drop capabilities")
}
