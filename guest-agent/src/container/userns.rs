//! A container in a user namespace of its own (`linux.uidMappings`,
//! `gidMappings`), in runc's and youki's order: the user namespace is
//! created first, in the same clone as the container's other namespaces,
//! so they are owned by it; the child waits until the agent (VM root in
//! the parent namespace) has written its maps, becomes root inside, and
//! only then builds its root. What root inside may do is confined to what
//! the namespace owns: device nodes come as bind mounts (mknod is
//! refused), /sys as a bind of the VM's (sysfs needs a network namespace
//! of the user namespace's), and VM-owned files stay out of reach.
//!
//! Files: the root overlay is rebuilt on idmapped layers (Linux 6.1 idmaps
//! ext4 and EROFS mounts, and overlayfs takes idmapped layers), so an
//! image file owned by uid N shows as N inside, and what the container
//! writes is stored on the writable layer with the ids it sees: the disk
//! looks the same whatever the map. A tmpfs writable layer cannot be
//! idmapped on 6.1 and is refused.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxIdMapping};
use thiserror::Error;

use super::blkio;
use crate::process::Reaper;
use crate::sys;

/// The kernel takes at most this many lines per map.
const MAX_MAP_LINES: usize = 340;

#[derive(Debug, Error)]
pub enum UsernsError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("find the root's layers")]
    Layers(#[source] blkio::BlkioError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> UsernsError {
    let what = what.into();
    move |source| UsernsError::Io { what, source }
}

fn invalid(message: impl Into<String>) -> UsernsError {
    UsernsError::Invalid(message.into())
}

/// A container's user namespace: its maps, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespace {
    /// uid_map's text ("inside outside count" lines).
    pub uid_map: String,
    pub gid_map: String,
    /// The VM's ids of root inside.
    pub root_uid: u32,
    pub root_gid: u32,
}

/// Checks one map: 1 to 340 lines, no empty or overflowing range, no
/// overlap inside or outside, and root inside mapped. Returns its text and
/// the outside id of root.
fn check_map(kind: &str, map: &[LinuxIdMapping]) -> Result<(String, u32), UsernsError> {
    if map.is_empty() || map.len() > MAX_MAP_LINES {
        return Err(invalid(format!(
            "the {kind} map needs 1 to {MAX_MAP_LINES} lines, it has {}",
            map.len()
        )));
    }
    let range = |start: u32, size: u32| (u64::from(start), u64::from(start) + u64::from(size));
    let mut text = String::new();
    for (i, line) in map.iter().enumerate() {
        let inside = range(line.container_id(), line.size());
        let outside = range(line.host_id(), line.size());
        if line.size() == 0 || inside.1 > 1 << 32 || outside.1 > 1 << 32 {
            return Err(invalid(format!("{kind} map line {i}: empty or past 2^32")));
        }
        let overlap = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
        if map[..i].iter().any(|other| {
            overlap(inside, range(other.container_id(), other.size()))
                || overlap(outside, range(other.host_id(), other.size()))
        }) {
            return Err(invalid(format!(
                "{kind} map line {i} overlaps an earlier one"
            )));
        }
        text.push_str(&format!(
            "{} {} {}\n",
            line.container_id(),
            line.host_id(),
            line.size()
        ));
    }
    let root = map
        .iter()
        .find(|l| l.container_id() == 0)
        .map(|l| l.host_id())
        .ok_or_else(|| invalid(format!("the {kind} map must map {kind} 0 of the container")))?;
    Ok((text, root))
}

/// The user namespace the spec asks for, if any. `namespaces` are the
/// CLONE_NEW* flags from its namespace list.
pub fn from_spec(linux: &Linux, namespaces: u64) -> Result<Option<UserNamespace>, UsernsError> {
    let uid = linux.uid_mappings().clone().unwrap_or_default();
    let gid = linux.gid_mappings().clone().unwrap_or_default();
    if namespaces & libc::CLONE_NEWUSER as u64 == 0 {
        if uid.is_empty() && gid.is_empty() {
            return Ok(None);
        }
        return Err(invalid("uid/gid mappings need a user namespace"));
    }
    let (uid_map, root_uid) = check_map("uid", &uid)?;
    let (gid_map, root_gid) = check_map("gid", &gid)?;
    Ok(Some(UserNamespace {
        uid_map,
        gid_map,
        root_uid,
        root_gid,
    }))
}

/// Writes the maps of the user namespace of process `pid`.
pub fn write_maps(pid: i32, ns: &UserNamespace) -> io::Result<()> {
    fs::write(format!("/proc/{pid}/uid_map"), &ns.uid_map)?;
    fs::write(format!("/proc/{pid}/gid_map"), &ns.gid_map)
}

/// Lets a new container's child go on: sets its rlimits (inside the
/// namespace it could not raise a hard limit: that takes CAP_SYS_RESOURCE
/// of the VM's namespace; runc does the same), writes its maps, then one
/// byte on `sync`. On failure the child is killed (it holds a copy of the
/// pipe's write end, so it would never see the pipe close); the caller
/// reaps it.
pub fn release_child(
    pid: i32,
    ns: &UserNamespace,
    rlimits: &[(u32, u64, u64)],
    sync: OwnedFd,
) -> io::Result<()> {
    let mut file = File::from(sync);
    let released = set_rlimits(pid, rlimits)
        .and_then(|_| write_maps(pid, ns))
        .and_then(|_| io::Write::write_all(&mut file, b"1"));
    if released.is_err() {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    released
}

/// prlimit(2) on process `pid`.
fn set_rlimits(pid: i32, rlimits: &[(u32, u64, u64)]) -> io::Result<()> {
    for (resource, soft, hard) in rlimits {
        let limit = libc::rlimit64 {
            rlim_cur: *soft,
            rlim_max: *hard,
        };
        // SAFETY: `limit` is a valid rlimit64; the old value is not asked for.
        if unsafe { libc::prlimit64(pid, *resource, &limit, std::ptr::null_mut()) } < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("set rlimit {resource} to {soft}:{hard}: {err}"),
            ));
        }
    }
    Ok(())
}

/// What the child of a container with a user namespace needs, prepared
/// before the clone.
pub struct ChildUserns {
    /// Read end of the pipe `release_child` writes to.
    pub sync_fd: RawFd,
    /// The VM's device nodes, bound onto the container's (same order as
    /// the devices to create).
    pub device_sources: Vec<CString>,
}

/// Rebuilds the overlay at `rootfs` on layers idmapped with the
/// container's maps (see the module header). The agent's own writes to
/// the root (identity files, mount points) must come before: the overlay
/// now creates files as root of the container.
pub fn idmap_rootfs(rootfs: &Path, ns: &UserNamespace, reaper: &Reaper) -> Result<(), UsernsError> {
    let layers = blkio::root_layers(rootfs).map_err(UsernsError::Layers)?;
    let (Some(upper), Some(work)) = (&layers.upper, &layers.work) else {
        return Err(invalid("the container's root has no writable layer"));
    };
    let rw = match (upper.parent(), work.parent()) {
        (Some(a), Some(b)) if a == b => a.to_path_buf(),
        _ => {
            return Err(invalid(
                "the overlay's upper and work dirs are not siblings",
            ))
        }
    };
    let userns = helper_namespace(ns, reaper)?;
    let base = PathBuf::from(format!("{}-idmapped", rootfs.display()));
    let mut lower = Vec::new();
    for (i, dir) in layers.lower.iter().enumerate() {
        let target = base.join(format!("lower{i}"));
        idmapped_copy(dir, &target, &userns)?;
        lower.push(target.display().to_string());
    }
    let rw_target = base.join("rw");
    idmapped_copy(&rw, &rw_target, &userns)?;
    let name = |p: &Path| p.file_name().map(PathBuf::from).unwrap_or_default();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        rw_target.join(name(upper)).display(),
        rw_target.join(name(work)).display()
    );
    let target = CString::new(rootfs.as_os_str().as_encoded_bytes())
        .map_err(|_| invalid("the root's path has a NUL byte"))?;
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(target.as_ptr(), 0) } < 0 {
        return Err(io_err("unmount the root overlay")(
            io::Error::last_os_error(),
        ));
    }
    mount_overlay_as(ns, &target, &options)
}

/// A user namespace with the container's maps, open, for idmapping
/// mounts: its creator (a child that only waits) exits once it is open;
/// the namespace lives on with the file.
fn helper_namespace(ns: &UserNamespace, reaper: &Reaper) -> Result<File, UsernsError> {
    let (hold_read, hold_write) = sys::pipe().map_err(io_err("pipe"))?;
    // SAFETY: the child only calls read(2) and _exit(2), both
    // async-signal-safe, on a descriptor it inherited.
    let pid = unsafe { sys::clone_into_namespaces(libc::CLONE_NEWUSER as u64, None) }
        .map_err(io_err("create a user namespace"))?;
    if pid == 0 {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a local.
        unsafe {
            libc::read(hold_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
            libc::_exit(0)
        }
    }
    reaper.child_spawned();
    drop(hold_read);
    let opened = write_maps(pid, ns)
        .map_err(io_err("write the user namespace's maps"))
        .and_then(|_| {
            File::open(format!("/proc/{pid}/ns/user")).map_err(io_err("open the user namespace"))
        });
    // The child holds a copy of the write end too: it needs a byte, not EOF.
    let mut hold = File::from(hold_write);
    if io::Write::write_all(&mut hold, b"1").is_err() {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    reaper.wait_for(pid);
    opened
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

/// Mounts a copy of the directory `source` at `target`, with the ids of
/// `userns` (open_tree, mount_setattr, move_mount).
fn idmapped_copy(source: &Path, target: &Path, userns: &File) -> Result<(), UsernsError> {
    let what = |step: &str| format!("{step} {} for the user namespace", source.display());
    fs::create_dir_all(target).map_err(io_err(format!("create {}", target.display())))?;
    let c_source = CString::new(source.as_os_str().as_encoded_bytes())
        .map_err(|_| invalid("a layer's path has a NUL byte"))?;
    let c_target = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| invalid("a layer's path has a NUL byte"))?;
    // SAFETY: a NUL-terminated path; the returned descriptor is owned below.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_source.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(io_err(what("clone"))(io::Error::last_os_error()));
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
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
        return Err(io_err(what("idmap"))(io::Error::last_os_error()));
    }
    // SAFETY: NUL-terminated paths and a descriptor that outlive the call.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c_target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(io_err(what("attach"))(io::Error::last_os_error()));
    }
    Ok(())
}

/// Mounts the overlay from a thread whose filesystem ids are the
/// container's root: overlayfs does its copy-ups with its mounter's
/// credentials, and on an idmapped layer those must map (VM root does
/// not). Thread credentials are the thread's own; it ends with the mount.
fn mount_overlay_as(
    ns: &UserNamespace,
    target: &CString,
    options: &str,
) -> Result<(), UsernsError> {
    let data = CString::new(options).map_err(|_| invalid("overlay options have a NUL byte"))?;
    let (uid, gid) = (ns.root_uid, ns.root_gid);
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<()> {
                // SAFETY: setfsgid/setfsuid change only this thread's
                // credentials (raw syscalls, not glibc's broadcast).
                unsafe {
                    libc::syscall(libc::SYS_setfsgid, gid);
                    libc::syscall(libc::SYS_setfsuid, uid);
                }
                raise_effective_capabilities()?;
                // SAFETY: NUL-terminated strings that outlive the call.
                let ret = unsafe {
                    libc::mount(
                        c"overlay".as_ptr(),
                        target.as_ptr(),
                        c"overlay".as_ptr(),
                        0,
                        data.as_ptr().cast(),
                    )
                };
                if ret < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
            .join()
    });
    match result {
        Ok(done) => done.map_err(io_err(format!(
            "mount the idmapped root overlay ({options})"
        ))),
        Err(_) => Err(invalid("the overlay mount thread panicked")),
    }
}

/// Changing the fs uid away from 0 drops the file capabilities from the
/// effective set; this thread needs them back for overlayfs.
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

/// Raw, allocation-free steps for the child between clone and exec.
pub mod child {
    use std::ffi::CStr;
    use std::os::fd::RawFd;

    use crate::container::mounts::MountOp;

    fn errno() -> i32 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }

    /// Waits until the agent wrote the maps (a byte; EOF means it could
    /// not), then becomes root of the namespace, without the VM's groups.
    pub fn enter(sync_fd: RawFd) -> Result<(), i32> {
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
    pub fn mount_over_vm_cgroup(m: &MountOp) -> Result<(), i32> {
        // SAFETY: NUL-terminated strings that outlive the calls.
        unsafe {
            if libc::mount(
                c"tmpfs".as_ptr(),
                m.target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=4k,mode=755".as_ptr().cast(),
            ) < 0
                || libc::mount(
                    m.source.as_ptr(),
                    m.target.as_ptr(),
                    m.fstype.as_ptr(),
                    m.flags,
                    m.data.as_ptr().cast(),
                ) < 0
            {
                return Err(errno());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    const USER: u64 = libc::CLONE_NEWUSER as u64;

    #[test]
    fn maps_are_checked_and_written_as_the_kernel_reads_them() {
        let ns = from_spec(
            &linux(
                r#"{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],
                    "gidMappings":[{"containerID":0,"hostID":200000,"size":10},{"containerID":10,"hostID":300000,"size":1}]}"#,
            ),
            USER,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ns.uid_map, "0 100000 65536\n");
        assert_eq!(ns.gid_map, "0 200000 10\n10 300000 1\n");
        assert_eq!((ns.root_uid, ns.root_gid), (100_000, 200_000));
        assert_eq!(from_spec(&linux("{}"), 0).unwrap(), None);
    }

    #[test]
    fn bad_maps_are_refused() {
        let bad = [
            (r#"{}"#, USER),
            (
                r#"{"uidMappings":[{"containerID":0,"hostID":1,"size":1}]}"#,
                0,
            ),
            (
                r#"{"uidMappings":[{"containerID":1,"hostID":1000,"size":5}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}"#,
                USER,
            ),
            (
                r#"{"uidMappings":[{"containerID":0,"hostID":1000,"size":0}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}"#,
                USER,
            ),
            (
                r#"{"uidMappings":[{"containerID":0,"hostID":4294967295,"size":2}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}"#,
                USER,
            ),
            (
                r#"{"uidMappings":[{"containerID":0,"hostID":1000,"size":10},{"containerID":20,"hostID":1005,"size":1}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}"#,
                USER,
            ),
        ];
        for (json, flags) in bad {
            assert!(
                matches!(from_spec(&linux(json), flags), Err(UsernsError::Invalid(_))),
                "{json}"
            );
        }
    }
}
