//! A container's mount plan from its OCI spec: each mount's flags and data
//! parsed the way runc parses them, targets checked to stay inside the
//! root, and everything turned into C strings before the clone (the child
//! may not allocate).

use std::ffi::CString;
use std::path::{Component, Path};

use thiserror::Error;

use hull_protocol::SHARE_SOURCE_PREFIX;

use super::rootfs;
use crate::process::MountOp;

#[derive(Debug, Error)]
pub enum MountError {
    #[error("mount destination {0:?} must be an absolute path without '..'")]
    BadDestination(String),
    #[error("mount {0:?}: a path contains a NUL byte")]
    Nul(String),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error("mount {destination:?}: the host's share {name:?} is not there")]
    NoShare { destination: String, name: String },
}

/// Flags and filesystem data of an OCI mount's options (runc's table).
pub fn parse_options(options: &[String]) -> (libc::c_ulong, String) {
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for option in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match option.as_str() {
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "defaults" => (0, 0),
            // Propagation: every container mount is private already.
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => (0, 0),
            other => {
                data.push(other.to_string());
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}

fn check_destination(destination: &str) -> Result<(), MountError> {
    let path = Path::new(destination);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(MountError::BadDestination(destination.to_string()));
    }
    Ok(())
}

fn c(s: &str, what: &str) -> Result<CString, MountError> {
    CString::new(s).map_err(|_| MountError::Nul(what.to_string()))
}

/// Plans the spec's mounts under `rootfs`, creating on the image's layer the
/// directories (and, for a bind of a file, the file) they need, refusing
/// symlinks. Targets inside an earlier mount of the plan (like /dev/pts
/// inside /dev) are made by the child. Sources `hull-share:<n>` are
/// entries of the container's share tree at `shares`.
pub fn plan(
    rootfs: &Path,
    mounts: &[oci_spec::runtime::Mount],
    shares: Option<&Path>,
) -> Result<Vec<MountOp>, MountError> {
    let mut planned: Vec<MountOp> = Vec::new();
    let mut destinations: Vec<String> = Vec::new();
    for mount in mounts {
        let destination = mount.destination().to_string_lossy().into_owned();
        check_destination(&destination)?;
        let inside_earlier = destinations
            .iter()
            .any(|d| destination.starts_with(&format!("{}/", d.trim_end_matches('/'))));
        let mut source = mount
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned());
        if let Some(named) = source
            .as_deref()
            .filter(|s| s.starts_with(SHARE_SOURCE_PREFIX))
        {
            let missing = || MountError::NoShare {
                destination: destination.clone(),
                name: named.to_string(),
            };
            let path = super::shares::source_path(shares, named).ok_or_else(missing)?;
            source = Some(path.to_string_lossy().into_owned());
        }
        // A bind of a file needs a file to mount on.
        let file_target = source
            .as_deref()
            .and_then(|s| std::fs::metadata(s).ok())
            .is_some_and(|m| !m.is_dir());
        if !inside_earlier {
            let rel = destination.trim_start_matches('/');
            if file_target {
                rootfs::safe_file(rootfs, rel)?;
            } else {
                rootfs::safe_dir(rootfs, rel)?;
            }
        }
        let fstype = match mount.typ().as_deref() {
            // We are cgroup v2 only.
            Some("cgroup") => "cgroup2",
            Some(other) => other,
            None => "",
        };
        let (flags, data) = parse_options(mount.options().as_deref().unwrap_or_default());
        let is_bind = flags & libc::MS_BIND != 0;
        let remount_flags = (is_bind && flags & !(libc::MS_BIND | libc::MS_REC) != 0)
            .then_some(flags | libc::MS_REMOUNT | libc::MS_BIND);
        let is_bind_source = is_bind && source.is_some();
        let source = source.unwrap_or_else(|| fstype.to_string());
        let target = rootfs.join(destination.trim_start_matches('/'));
        planned.push(MountOp {
            source: c(&source, &destination)?,
            target: c(&target.to_string_lossy(), &destination)?,
            fstype: c(if is_bind { "" } else { fstype }, &destination)?,
            flags: if is_bind {
                flags & (libc::MS_BIND | libc::MS_REC)
            } else {
                flags
            },
            data: c(&data, &destination)?,
            remount_flags,
            populate_dev: destination == "/dev" && fstype == "tmpfs",
            file_target: is_bind_source && file_target,
        });
        destinations.push(destination);
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_like_runc() {
        let (flags, data) =
            parse_options(&opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]));
        assert_eq!(flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(data, "mode=755,size=65536k");
        let (flags, _) = parse_options(&opts(&["ro", "rw", "rbind", "rprivate"]));
        assert_eq!(flags, libc::MS_BIND | libc::MS_REC);
    }

    #[test]
    fn destinations_must_stay_inside() {
        assert!(check_destination("/proc").is_ok());
        assert!(check_destination("relative").is_err());
        assert!(check_destination("/a/../../etc").is_err());
    }

    #[test]
    fn plan_builds_targets_and_binds() {
        let root = std::env::temp_dir().join(format!("hull-mounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mounts: Vec<oci_spec::runtime::Mount> = serde_json::from_str(
            r#"[{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","mode=755"]},
                {"destination":"/dev/pts","type":"devpts","source":"devpts","options":["newinstance"]},
                {"destination":"/data","type":"bind","source":"/srv","options":["rbind","ro"]},
                {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro"]}]"#,
        )
        .unwrap();
        let plan = plan(&root, &mounts, None).unwrap();
        assert!(plan[0].populate_dev);
        assert!(root.join("dev").is_dir() && !root.join("dev/pts").exists());
        assert_eq!(plan[2].flags, libc::MS_BIND | libc::MS_REC);
        assert!(plan[2].remount_flags.unwrap() & libc::MS_RDONLY != 0);
        assert_eq!(plan[3].fstype.to_str().unwrap(), "cgroup2");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
