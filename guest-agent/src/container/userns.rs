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
//!
//! Here: the maps from the spec, the idmapped root, and the helper
//! namespace for it. The agent's half of the handshake at spawn (maps,
//! rlimits, the go) is `process::userns`.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxIdMapping};
use thiserror::Error;

use super::blkio;
use crate::process::userns::write_maps;
use crate::process::{Reaper, UserNamespace};
use crate::syscall::Syscall;

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

/// Rebuilds the overlay at `rootfs` on layers idmapped with the
/// container's maps (see the module header). The agent's own writes to
/// the root (identity files, mount points) must come before: the overlay
/// now creates files as root of the container. `open_userns` gives a user
/// namespace with the container's maps ([`helper_namespace`]); it is
/// called once the root's layers were found.
pub fn idmap_rootfs(
    sys: &dyn Syscall,
    rootfs: &Path,
    ns: &UserNamespace,
    open_userns: impl FnOnce() -> Result<File, UsernsError>,
) -> Result<(), UsernsError> {
    let layers = blkio::root_layers(sys, rootfs).map_err(UsernsError::Layers)?;
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
    let userns = open_userns()?;
    let base = PathBuf::from(format!("{}-idmapped", rootfs.display()));
    let mut lower = Vec::new();
    for (i, dir) in layers.lower.iter().enumerate() {
        let target = base.join(format!("lower{i}"));
        idmapped_copy(sys, dir, &target, &userns)?;
        lower.push(target.display().to_string());
    }
    let rw_target = base.join("rw");
    idmapped_copy(sys, &rw, &rw_target, &userns)?;
    let name = |p: &Path| p.file_name().map(PathBuf::from).unwrap_or_default();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        rw_target.join(name(upper)).display(),
        rw_target.join(name(work)).display()
    );
    sys.unmount(rootfs, 0)
        .map_err(io_err("unmount the root overlay"))?;
    // Mounted with the container's root as filesystem ids: overlayfs does
    // its copy-ups with its mounter's credentials, and on an idmapped
    // layer those must map (VM root does not).
    sys.mount_as(
        ns.root_uid,
        ns.root_gid,
        "overlay",
        rootfs,
        "overlay",
        0,
        &options,
    )
    .map_err(io_err(format!(
        "mount the idmapped root overlay ({options})"
    )))
}

/// A user namespace with the container's maps, open, for idmapping
/// mounts: its creator (a child that only waits) exits once it is open;
/// the namespace lives on with the file. Forks, so it is not behind the
/// seam's fake; its map writes are.
pub fn helper_namespace(
    sys: &dyn Syscall,
    ns: &UserNamespace,
    reaper: &Reaper,
) -> Result<File, UsernsError> {
    let (pid, hold_write) = crate::sys::spawn_waiting_child(libc::CLONE_NEWUSER as u64)
        .map_err(io_err("create a user namespace"))?;
    reaper.child_spawned();
    let opened = write_maps(sys, pid, ns)
        .map_err(io_err("write the user namespace's maps"))
        .and_then(|_| {
            File::open(format!("/proc/{pid}/ns/user")).map_err(io_err("open the user namespace"))
        });
    // The child holds a copy of the write end too: it needs a byte, not EOF.
    let mut hold = File::from(hold_write);
    if io::Write::write_all(&mut hold, b"1").is_err() {
        let _ = sys.kill(pid, libc::SIGKILL);
    }
    reaper.wait_for(pid);
    opened
}

/// Mounts a copy of the directory `source` at `target`, with the ids of
/// `userns` (open_tree, mount_setattr, move_mount).
fn idmapped_copy(
    sys: &dyn Syscall,
    source: &Path,
    target: &Path,
    userns: &File,
) -> Result<(), UsernsError> {
    let what = |step: &str| format!("{step} {} for the user namespace", source.display());
    fs::create_dir_all(target).map_err(io_err(format!("create {}", target.display())))?;
    let tree = sys.open_tree_clone(source).map_err(io_err(what("clone")))?;
    sys.set_mount_idmap(tree.as_fd(), userns.as_fd())
        .map_err(io_err(what("idmap")))?;
    sys.attach_tree(tree.as_fd(), target)
        .map_err(io_err(what("attach")))
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

    mod through_the_fake {
        use super::*;
        use crate::syscall::test::{Call, Recording};
        use crate::test_utils::{user_namespace, TempDir};

        /// A root overlay at `dir/rootfs` on two image layers and `dir/rw`.
        fn overlay_root(dir: &TempDir, sys: &Recording) -> PathBuf {
            let rootfs = dir.path().join("rootfs");
            sys.set_mountinfo(&format!(
                "32 22 0:30 / {} rw - overlay overlay rw,lowerdir={}:{},upperdir={},workdir={}\n",
                rootfs.display(),
                dir.str("l0"),
                dir.str("l1"),
                dir.str("rw/upper"),
                dir.str("rw/work"),
            ));
            rootfs
        }

        fn userns() -> Result<File, UsernsError> {
            File::open("/dev/null").map_err(io_err("open"))
        }

        #[test]
        fn the_root_is_rebuilt_on_idmapped_layers_as_root_of_the_container() {
            let dir = TempDir::new("idmap");
            let sys = Recording::new();
            let rootfs = overlay_root(&dir, &sys);
            idmap_rootfs(&sys, &rootfs, &user_namespace(), userns).unwrap();
            let base = format!("{}-idmapped", rootfs.display());
            let copy = |source: String, target: String| {
                [
                    Call::OpenTree(source),
                    Call::SetMountIdmap,
                    Call::AttachTree(target),
                ]
            };
            let mut expected = Vec::new();
            expected.extend(copy(dir.str("l0"), format!("{base}/lower0")));
            expected.extend(copy(dir.str("l1"), format!("{base}/lower1")));
            expected.extend(copy(dir.str("rw"), format!("{base}/rw")));
            expected.push(Call::Unmount {
                target: rootfs.display().to_string(),
                flags: 0,
            });
            expected.push(Call::Mount {
                source: "overlay".into(),
                target: rootfs.display().to_string(),
                fstype: "overlay".into(),
                flags: 0,
                data: format!(
                    "lowerdir={base}/lower0:{base}/lower1,upperdir={base}/rw/upper,workdir={base}/rw/work"
                ),
                as_ids: Some((100_000, 200_000)),
            });
            assert_eq!(sys.calls(), expected);
            assert!(Path::new(&format!("{base}/lower1")).is_dir());
        }

        #[test]
        fn a_root_without_a_writable_layer_is_refused_before_any_namespace() {
            let dir = TempDir::new("idmap-ro");
            let sys = Recording::new();
            let rootfs = dir.path().join("rootfs");
            sys.set_mountinfo(&format!(
                "32 22 0:30 / {} ro - overlay overlay ro,lowerdir=/a\n",
                rootfs.display()
            ));
            let err = idmap_rootfs(&sys, &rootfs, &user_namespace(), || {
                panic!("no user namespace is made for a root that cannot be idmapped")
            })
            .unwrap_err();
            assert!(matches!(err, UsernsError::Invalid(_)), "{err}");
            assert!(sys.calls().is_empty());
        }

        #[test]
        fn a_refused_idmap_is_the_error_and_the_overlay_stays() {
            let dir = TempDir::new("idmap-fail");
            let sys = Recording::new();
            let rootfs = overlay_root(&dir, &sys);
            sys.fail_when(|call| (*call == Call::SetMountIdmap).then_some(libc::EINVAL));
            let err = idmap_rootfs(&sys, &rootfs, &user_namespace(), userns).unwrap_err();
            assert!(
                matches!(&err, UsernsError::Io { what, source }
                    if what.starts_with("idmap ") && source.raw_os_error() == Some(libc::EINVAL)),
                "{err:?}"
            );
            assert!(!sys
                .calls()
                .iter()
                .any(|c| matches!(c, Call::Unmount { .. } | Call::Mount { .. })));
        }
    }
}
