//! The task's rootfs as containerd hands it over: a list of mounts (the
//! snapshot, usually one overlay) for the shim to mount at
//! `<bundle>/rootfs`. hull only needs the tree long enough to build the
//! VM's disk from it, and unmounts it right after.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use containerd_shim_protos::api::Mount;
use rustix::mount::{MountFlags, UnmountFlags};

/// Mounts `mounts` at `target` in order; returns what to unmount later.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<Vec<PathBuf>> {
    let mut mounted = Vec::new();
    if mounts.is_empty() {
        return Ok(mounted);
    }
    std::fs::create_dir_all(target).with_context(|| format!("create {}", target.display()))?;
    for m in mounts {
        let (flags, data) = parse_options(&m.options);
        let data = CString::new(data).map_err(|_| anyhow!("mount options hold a NUL byte"))?;
        let result = rustix::mount::mount(
            m.source.as_str(),
            target,
            m.type_.as_str(),
            flags,
            Some(data.as_c_str()),
        );
        if let Err(e) = result {
            unmount_all(&mounted);
            return Err(anyhow!(
                "mount {} ({}) at {}: {e}",
                m.source,
                m.type_,
                target.display()
            ));
        }
        mounted.push(target.to_path_buf());
    }
    Ok(mounted)
}

/// Unmounts what `mount_all` mounted, last first.
pub fn unmount_all(mounted: &[PathBuf]) {
    for target in mounted.iter().rev() {
        if let Err(e) = rustix::mount::unmount(target, UnmountFlags::DETACH) {
            log::warn!("unmount {}: {e}", target.display());
        }
    }
}

/// Unmounts `<bundle>/rootfs` if something is mounted there (cleanup
/// after a shim that died between mounting and unmounting).
pub fn unmount_if_mounted(target: &Path) {
    while is_mount_point(target) {
        if rustix::mount::unmount(target, UnmountFlags::DETACH).is_err() {
            return;
        }
    }
}

fn is_mount_point(path: &Path) -> bool {
    let Some(path) = path.to_str() else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path))
}

/// Mount flags and filesystem data of containerd mount options.
fn parse_options(options: &[String]) -> (MountFlags, String) {
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MountFlags::RDONLY,
            "rw" | "defaults" => {}
            "bind" => flags |= MountFlags::BIND,
            "rbind" => flags |= MountFlags::BIND | MountFlags::REC,
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "noatime" => flags |= MountFlags::NOATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_are_data_and_flags_are_flags() {
        let options: Vec<String> = ["ro", "index=off", "lowerdir=/a:/b", "nosuid"]
            .map(String::from)
            .to_vec();
        let (flags, data) = parse_options(&options);
        assert_eq!(flags, MountFlags::RDONLY | MountFlags::NOSUID);
        assert_eq!(data, "index=off,lowerdir=/a:/b");
    }
}
