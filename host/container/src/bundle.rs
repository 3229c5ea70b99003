//! An OCI bundle turned into what a hull VM can run: the spec, trimmed to
//! what exists inside the guest, and the rootfs directory as a disk.
//!
//! The rootfs (`root.path`, already mounted by the caller) reaches the guest
//! as an EROFS image built from it into the container's record directory,
//! not shared: this host offers no virtio-fs (no vhost-user daemon is
//! installed, and QEMU's 9p is slow and a large attack surface), and the
//! busybox image builds in about 30 ms. It is per container rather than
//! cached, because the tree is the caller's (podman's overlay mount,
//! containerd's snapshot): nothing cheap names its content, and hashing
//! the tree would cost as much as building it. Writes go to the scratch
//! disk's overlay inside the guest, so they do not show in `root.path`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec};

use crate::error::Error;
use crate::record::Share;

/// The bundle's spec, and where its rootfs is on the host.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let bad = |dir: &Path, reason: String| Error::Bundle {
            dir: dir.to_path_buf(),
            reason,
        };
        let dir = std::path::absolute(dir).map_err(|e| bad(dir, e.to_string()))?;
        let config = dir.join("config.json");
        let spec = Spec::load(&config).map_err(|e| bad(&dir, format!("read config.json: {e}")))?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| bad(&dir, "config.json has no root".into()))?;
        let rootfs = dir.join(root.path());
        if !rootfs.is_dir() {
            let reason = format!("the rootfs {} is not a directory", rootfs.display());
            return Err(bad(&dir, reason));
        }
        if spec.process().is_none() {
            return Err(bad(&dir, "config.json has no process".into()));
        }
        Ok(Self { dir, spec, rootfs })
    }
}

/// hull's own annotations (the guest hooks' id and bundle), which the
/// container's state leaves out.
pub const OWN_ANNOTATIONS: &str = "org.hull.";

/// Gives the guest's hooks (createContainer, startContainer) the caller's
/// id and bundle path for the state they read: the agent knows neither.
pub fn name_for_guest_hooks(spec: &mut Spec, id: &str, dir: &Path) {
    if spec.hooks().is_none() {
        return;
    }
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert("org.hull.id".into(), id.into());
    annotations.insert("org.hull.bundle".into(), dir.display().to_string());
    spec.set_annotations(Some(annotations));
}

/// The spec's annotations without hull's own.
pub fn user_annotations(spec: &Spec) -> std::collections::HashMap<String, String> {
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.retain(|k, _| !k.starts_with(OWN_ANNOTATIONS));
    annotations
}

/// The spec as the guest agent gets it, and the host files and
/// directories its VM serves it: host-side things replaced or dropped.
///
/// - bind mounts name host paths (podman's /etc/hosts, /etc/resolv.conf,
///   /etc/hostname, /run/.containerenv and `-v`; CRI's volumes): each
///   becomes a share entry the guest binds instead, with its options
///   (`crate::mounts`); one that cannot be shared is an error. /dev/shm
///   becomes a tmpfs of its own (the VM's memory is not the host's);
/// - namespaces to join by path are host namespaces: dropped (the VM is
///   the boundary), except in a pod (`pod_host` is the guest pid of the
///   main process of the container whose VM this one joins): there the
///   IPC, UTS and network namespaces that CRI has every container of a
///   pod join become that container's, in the guest;
/// - user namespaces and their maps are host ones: dropped; so are the
///   block I/O limits of host devices (major:minor numbers);
/// - of the hooks only `createContainer` and `startContainer` are kept:
///   the runtime spec runs them in the container's namespaces, so the
///   agent runs them in the guest, resolving their paths inside the
///   container's root (the only root with programs in a VM); the host
///   hooks (prestart, createRuntime, poststart, poststop) run on the
///   host (`crate::hooks`) and are not the guest's.
pub fn guest_spec(spec: &Spec, pod_host: Option<u32>) -> Result<(Spec, Vec<Share>), Error> {
    let mut spec = spec.clone();
    let mut shares = Vec::new();
    if let Some(mounts) = spec.mounts().clone() {
        let mut kept = Vec::with_capacity(mounts.len());
        for mount in mounts {
            kept.push(guest_mount(mount, &mut shares)?);
        }
        spec.set_mounts(Some(kept));
    }
    if let Some(mut linux) = spec.linux().clone() {
        if let Some(namespaces) = linux.namespaces().clone() {
            let kept = namespaces
                .into_iter()
                .filter(|ns| ns.typ() != LinuxNamespaceType::User)
                .filter_map(|mut ns| {
                    if ns.path().is_none() {
                        return Some(ns);
                    }
                    let kind = match ns.typ() {
                        LinuxNamespaceType::Ipc => "ipc",
                        LinuxNamespaceType::Uts => "uts",
                        LinuxNamespaceType::Network => "net",
                        _ => return None,
                    };
                    let host = pod_host?;
                    ns.set_path(Some(format!("/proc/{host}/ns/{kind}").into()));
                    Some(ns)
                })
                .collect();
            linux.set_namespaces(Some(kept));
        }
        linux.set_uid_mappings(None);
        linux.set_gid_mappings(None);
        if let Some(mut resources) = linux.resources().clone() {
            if let Some(mut block_io) = resources.block_io().clone() {
                // Host block devices (major:minor): the guest has other ones.
                block_io.set_weight_device(None);
                block_io.set_throttle_read_bps_device(None);
                block_io.set_throttle_write_bps_device(None);
                block_io.set_throttle_read_iops_device(None);
                block_io.set_throttle_write_iops_device(None);
                resources.set_block_io(Some(block_io));
            }
            linux.set_resources(Some(resources));
        }
        spec.set_linux(Some(linux));
    }
    let guest_hooks = spec.hooks().as_ref().and_then(|hooks| {
        let create = hooks.create_container().clone().filter(|h| !h.is_empty());
        let start = hooks.start_container().clone().filter(|h| !h.is_empty());
        if create.is_none() && start.is_none() {
            return None;
        }
        let mut kept = oci_spec::runtime::Hooks::default();
        kept.set_create_container(create);
        kept.set_start_container(start);
        Some(kept)
    });
    spec.set_hooks(guest_hooks);
    Ok((spec, shares))
}

fn guest_mount(mount: Mount, shares: &mut Vec<Share>) -> Result<Mount, Error> {
    let is_bind = mount.typ().as_deref() == Some("bind")
        || mount
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind");
    if !is_bind {
        return Ok(mount);
    }
    if mount.destination() == Path::new("/dev/shm") {
        let mut shm = mount;
        shm.set_typ(Some("tmpfs".into()));
        shm.set_source(Some("shm".into()));
        shm.set_options(Some(
            ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
                .map(String::from)
                .to_vec(),
        ));
        return Ok(shm);
    }
    let (share, guest) = crate::mounts::from_bundle_bind(&mount, shares.len())?;
    shares.push(share);
    Ok(guest)
}

/// Fails as runc's `create` does when the process's executable is not in
/// the rootfs, so callers map it the same way (podman: exit 127). Paths
/// are resolved inside `rootfs`, absolute symlinks included.
pub fn check_executable(rootfs: &Path, process: &Process) -> Result<(), Error> {
    let Some(arg0) = process.args().as_ref().and_then(|a| a.first()) else {
        return Err(Error::Unsupported("the process has no args"));
    };
    if arg0.contains('/') {
        let path = Path::new("/").join(process.cwd()).join(arg0);
        return match resolve_in(rootfs, &path) {
            Some(_) => Ok(()),
            None => Err(Error::NoSuchFile(arg0.clone())),
        };
    }
    let path_var = process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::spec::DEFAULT_PATH);
    let found = path_var
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .any(|dir| resolve_in(rootfs, &Path::new(dir).join(arg0)).is_some());
    if found {
        Ok(())
    } else {
        Err(Error::NotInPath(arg0.clone()))
    }
}

/// The host path of the absolute container path `path` inside `rootfs`,
/// if it exists, following symlinks as the container would see them.
fn resolve_in(rootfs: &Path, path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut current = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            current.pop();
            continue;
        }
        let next = current.join(&part);
        let meta = std::fs::symlink_metadata(rootfs.join(&next)).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(rootfs.join(&next)).ok()?;
            if target.is_absolute() {
                current = PathBuf::new();
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => pending.push(n.to_owned()),
                    Component::ParentDir => pending.push("..".into()),
                    _ => {}
                }
            }
        } else {
            current = next;
        }
    }
    Some(rootfs.join(current))
}

/// VM memory for a spec: its memory limit plus the guest's own needs, or
/// `default_mib` without a limit.
pub fn vm_memory_mib(spec: &Spec, default_mib: u64, overhead_mib: u64) -> u64 {
    spec.linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|limit| *limit > 0)
        .map_or(default_mib, |limit| {
            (limit as u64).div_ceil(1 << 20) + overhead_mib
        })
}

/// vCPUs for a spec: its CPU quota rounded up, at least one.
pub fn vcpus(spec: &Spec) -> u32 {
    let cpu = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.cpu().as_ref());
    match cpu.and_then(|c| Some((c.quota()?, c.period()?))) {
        Some((quota, period)) if quota > 0 && period > 0 => {
            (quota as u64).div_ceil(period).clamp(1, 256) as u32
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn host_binds_become_shares_namespace_paths_and_host_hooks_are_dropped() {
        let host = tempfile::tempdir().unwrap();
        let hosts = host.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": hosts, "options": ["rbind", "ro"]},
                {"destination": "/srv", "source": host.path(), "options": ["bind"]},
                {"destination": "/dev/shm", "type": "bind", "source": "/x/shm", "options": ["bind"]}
            ],
            "hooks": {"prestart": [{"path": "/bin/true"}]},
            "linux": {
                "resources": {"blockIO": {"weight": 300,
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]}},
                "namespaces": [
                    {"type": "pid"}, {"type": "mount"},
                    {"type": "network", "path": "/proc/1/ns/net"},
                    {"type": "user"}
                ],
                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
            }
        }));
        let (g, shares) = guest_spec(&s, None).unwrap();
        let mounts = g.mounts().clone().unwrap();
        let dests: Vec<_> = mounts.iter().map(|m| m.destination().clone()).collect();
        assert_eq!(
            dests,
            ["/proc", "/etc/hosts", "/srv", "/dev/shm"].map(PathBuf::from)
        );
        let sources: Vec<_> = mounts.iter().map(|m| m.source().clone().unwrap()).collect();
        assert_eq!(sources[1], PathBuf::from("hull-share:0"));
        assert_eq!(sources[2], PathBuf::from("hull-share:1"));
        assert_eq!(mounts[3].typ().as_deref(), Some("tmpfs"));
        assert_eq!(shares.len(), 2);
        assert!(shares[0].read_only && !shares[1].read_only);
        assert_eq!(
            shares[1].source,
            std::fs::canonicalize(host.path()).unwrap()
        );
        let missing = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "mounts": [{"destination": "/data", "type": "bind", "source": "/nonexistent/x", "options": ["rbind"]}]
        }));
        assert!(guest_spec(&missing, None).is_err());
        let ns: Vec<_> = g
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert_eq!(ns, [LinuxNamespaceType::Pid, LinuxNamespaceType::Mount]);
        assert!(g.hooks().is_none(), "only host hooks: none for the guest");
        assert!(g.linux().as_ref().unwrap().uid_mappings().is_none());
        let block_io = g
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .clone()
            .unwrap()
            .block_io()
            .clone()
            .unwrap();
        assert_eq!(block_io.weight(), Some(300));
        assert!(block_io.throttle_read_bps_device().is_none());
    }

    #[test]
    fn a_pod_members_shared_namespaces_become_its_hosts_in_the_guest() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [
                {"type": "pid", "path": "/proc/77/ns/pid"}, {"type": "mount"},
                {"type": "ipc", "path": "/proc/77/ns/ipc"},
                {"type": "uts", "path": "/proc/77/ns/uts"},
                {"type": "network", "path": "/var/run/netns/cni-1"}
            ]}
        }));
        let (g, _) = guest_spec(&s, Some(9)).unwrap();
        let ns: Vec<_> = g.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let shown: Vec<_> = ns
            .iter()
            .map(|n| (n.typ(), n.path().clone().map(|p| p.display().to_string())))
            .collect();
        assert_eq!(
            shown,
            [
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Ipc, Some("/proc/9/ns/ipc".into())),
                (LinuxNamespaceType::Uts, Some("/proc/9/ns/uts".into())),
                (LinuxNamespaceType::Network, Some("/proc/9/ns/net".into())),
            ]
        );
    }

    #[test]
    fn executables_are_found_through_path_and_symlinks_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/busybox"), b"").unwrap();
        std::os::unix::fs::symlink("/usr/bin", r.join("bin")).unwrap();
        std::os::unix::fs::symlink("busybox", r.join("usr/bin/sh")).unwrap();
        let process = |args: &[&str], env: &[&str]| -> Process {
            serde_json::from_value(serde_json::json!({
                "args": args, "env": env, "cwd": "/", "user": {"uid": 0, "gid": 0}
            }))
            .unwrap()
        };
        assert!(check_executable(r, &process(&["sh"], &["PATH=/bin"])).is_ok());
        assert!(check_executable(r, &process(&["/bin/sh", "-c", "x"], &[])).is_ok());
        assert!(check_executable(r, &process(&["busybox"], &[])).is_ok());
        let missing = check_executable(r, &process(&["nope"], &[])).unwrap_err();
        assert!(missing
            .to_string()
            .contains("executable file not found in $PATH"));
        assert!(check_executable(r, &process(&["/bin/nope"], &[])).is_err());
    }

    #[test]
    fn limits_size_the_vm() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"resources": {
                "memory": {"limit": 268435456},
                "cpu": {"quota": 150000, "period": 100000}
            }}
        }));
        assert_eq!(vm_memory_mib(&s, 512, 96), 256 + 96);
        assert_eq!(vcpus(&s), 2);
        let none = spec(serde_json::json!({"ociVersion": "1.0.2"}));
        assert_eq!(vm_memory_mib(&none, 512, 96), 512);
        assert_eq!(vcpus(&none), 1);
    }

    #[test]
    fn the_guests_hooks_are_kept() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "hooks": {
                "prestart": [{"path": "/bin/true"}],
                "createRuntime": [{"path": "/bin/true"}],
                "createContainer": [{"path": "/bin/c", "args": ["c", "x"], "timeout": 5}],
                "startContainer": [{"path": "/bin/s"}],
                "poststart": [{"path": "/bin/true"}],
                "poststop": [{"path": "/bin/true"}]
            }
        }));
        let (g, _) = guest_spec(&s, None).unwrap();
        let hooks = g.hooks().clone().unwrap();
        let kept = serde_json::to_value(&hooks).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({
                "createContainer": [{"path": "/bin/c", "args": ["c", "x"], "timeout": 5}],
                "startContainer": [{"path": "/bin/s"}]
            })
        );
    }
}
