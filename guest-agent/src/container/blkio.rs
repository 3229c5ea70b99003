//! The container's disks in its block I/O limits. The host names them in
//! `linux.resources.blockIO` with a placeholder major number
//! (`hull_protocol::blockio`): minor 0 is the image disk under the
//! overlay's lower layer, minor 1 the writable-layer disk under its upper
//! layer. Here they become the major:minor of the block devices those
//! layers live on, found from the root's overlay mount. A layer that is
//! not on a block device (a tmpfs writable layer) has no disk to limit: its
//! entries are dropped. Entries with a real major:minor pass unchanged.

use std::io;
use std::path::{Path, PathBuf};

use hull_protocol::blockio::{CONTAINER_DISK_MAJOR, IMAGE_DISK_MINOR, WRITABLE_DISK_MINOR};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxResources, LinuxThrottleDevice, LinuxThrottleDeviceBuilder,
    LinuxWeightDevice, LinuxWeightDeviceBuilder,
};
use thiserror::Error;

use crate::syscall::Syscall;

#[derive(Debug, Error)]
pub enum BlkioError {
    #[error("block I/O limit for device {major}:{minor}: no such disk of the container")]
    UnknownDisk { major: i64, minor: i64 },
    #[error("the container's root {0} is not an overlay mount")]
    NoOverlay(PathBuf),
    #[error("read {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// The layers of an overlay mount: (lower dirs, upper dir, work dir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayLayers {
    pub lower: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The layers of the overlay mounted last at `mount_point`, from the text
/// of /proc/self/mountinfo.
pub fn overlay_layers(mountinfo: &str, mount_point: &Path) -> Option<OverlayLayers> {
    let mut found = None;
    for line in mountinfo.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let target = mount.split(' ').nth(4).map(unescape);
        if target.as_deref() != Some(&*mount_point.to_string_lossy()) {
            continue;
        }
        let mut fields = fs.split(' ');
        if fields.next() != Some("overlay") {
            found = None;
            continue;
        }
        let options = fields.nth(1).unwrap_or_default();
        let mut layers = OverlayLayers {
            lower: Vec::new(),
            upper: None,
            work: None,
        };
        for option in options.split(',') {
            match option.split_once('=') {
                Some(("lowerdir", dirs)) => {
                    layers.lower = dirs
                        .split(':')
                        .map(|d| PathBuf::from(unescape(d)))
                        .collect()
                }
                Some(("upperdir", dir)) => layers.upper = Some(PathBuf::from(unescape(dir))),
                Some(("workdir", dir)) => layers.work = Some(PathBuf::from(unescape(dir))),
                _ => {}
            }
        }
        found = Some(layers);
    }
    found
}

/// The layers of the container's root overlay.
pub fn root_layers(sys: &dyn Syscall, rootfs: &Path) -> Result<OverlayLayers, BlkioError> {
    let mountinfo = sys.mountinfo().map_err(|source| BlkioError::Io {
        what: "/proc/self/mountinfo".into(),
        source,
    })?;
    overlay_layers(&mountinfo, rootfs).ok_or_else(|| BlkioError::NoOverlay(rootfs.to_path_buf()))
}

/// The block device (major, minor) a directory lives on; `None` for a
/// filesystem without one (tmpfs, overlay: major 0).
fn block_device(sys: &dyn Syscall, dir: &Path) -> Result<Option<(i64, i64)>, BlkioError> {
    let dev = sys.device_of(dir).map_err(|source| BlkioError::Io {
        what: dir.display().to_string(),
        source,
    })?;
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Ok((major != 0).then_some((i64::from(major), i64::from(minor))))
}

/// What the placeholder minors stand for in one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerDisks {
    pub image: Option<(i64, i64)>,
    pub writable: Option<(i64, i64)>,
}

impl ContainerDisks {
    /// The disks under the root overlay at `rootfs`.
    pub fn find(sys: &dyn Syscall, rootfs: &Path) -> Result<Self, BlkioError> {
        let layers = root_layers(sys, rootfs)?;
        let image = match layers.lower.first() {
            Some(dir) => block_device(sys, dir)?,
            None => None,
        };
        let writable = match &layers.upper {
            Some(dir) => block_device(sys, dir)?,
            None => None,
        };
        Ok(Self { image, writable })
    }

    /// The real device for (major, minor): `Ok(None)` for a disk the
    /// container does not have.
    fn map(&self, major: i64, minor: i64) -> Result<Option<(i64, i64)>, BlkioError> {
        match (major, minor) {
            (CONTAINER_DISK_MAJOR, IMAGE_DISK_MINOR) => Ok(self.image),
            (CONTAINER_DISK_MAJOR, WRITABLE_DISK_MINOR) => Ok(self.writable),
            (major, minor) if major < 0 || minor < 0 => {
                Err(BlkioError::UnknownDisk { major, minor })
            }
            real => Ok(Some(real)),
        }
    }
}

/// `resources` with the container's disks' real numbers in its blockIO
/// section.
pub fn resolve(
    resources: Option<&LinuxResources>,
    disks: &ContainerDisks,
) -> Result<Option<LinuxResources>, BlkioError> {
    let Some(resources) = resources else {
        return Ok(None);
    };
    let Some(block_io) = resources.block_io() else {
        return Ok(Some(resources.clone()));
    };
    let throttles = |entries: &Option<Vec<LinuxThrottleDevice>>| {
        let mut out = Vec::new();
        for entry in entries.iter().flatten() {
            if let Some((major, minor)) = disks.map(entry.major(), entry.minor())? {
                out.push(
                    LinuxThrottleDeviceBuilder::default()
                        .major(major)
                        .minor(minor)
                        .rate(entry.rate())
                        .build()
                        .map_err(|_| BlkioError::UnknownDisk { major, minor })?,
                );
            }
        }
        Ok::<_, BlkioError>(out)
    };
    let mut weights: Vec<LinuxWeightDevice> = Vec::new();
    for entry in block_io.weight_device().iter().flatten() {
        if let (Some((major, minor)), Some(weight)) =
            (disks.map(entry.major(), entry.minor())?, entry.weight())
        {
            weights.push(
                LinuxWeightDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .weight(weight)
                    .build()
                    .map_err(|_| BlkioError::UnknownDisk { major, minor })?,
            );
        }
    }
    let mut resolved = LinuxBlockIo::default();
    resolved.set_weight(block_io.weight());
    resolved.set_leaf_weight(block_io.leaf_weight());
    resolved.set_weight_device(Some(weights));
    resolved.set_throttle_read_bps_device(Some(throttles(block_io.throttle_read_bps_device())?));
    resolved.set_throttle_write_bps_device(Some(throttles(block_io.throttle_write_bps_device())?));
    resolved.set_throttle_read_iops_device(Some(throttles(block_io.throttle_read_iops_device())?));
    resolved
        .set_throttle_write_iops_device(Some(throttles(block_io.throttle_write_iops_device())?));
    let mut out = resources.clone();
    out.set_block_io(Some(resolved));
    Ok(Some(out))
}

/// Resolves the container's disks under `rootfs` in `resources`, when its
/// blockIO section has any entry to resolve.
pub fn resolve_for_root(
    sys: &dyn Syscall,
    resources: Option<&LinuxResources>,
    rootfs: &Path,
) -> Result<Option<LinuxResources>, BlkioError> {
    let needs_disks = resources
        .and_then(|r| r.block_io().as_ref())
        .is_some_and(|b| {
            let placeholder = |major: i64| major == CONTAINER_DISK_MAJOR;
            [
                b.throttle_read_bps_device(),
                b.throttle_write_bps_device(),
                b.throttle_read_iops_device(),
                b.throttle_write_iops_device(),
            ]
            .iter()
            .any(|list| list.iter().flatten().any(|d| placeholder(d.major())))
                || b.weight_device()
                    .iter()
                    .flatten()
                    .any(|d| placeholder(d.major()))
        });
    let disks = if needs_disks {
        ContainerDisks::find(sys, rootfs)?
    } else {
        ContainerDisks::default()
    };
    resolve(resources, &disks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:20 / / rw - tmpfs tmpfs rw
30 22 254:0 / /run/hull/image ro,relatime - erofs /dev/vda ro
31 22 254:16 / /run/hull/rw rw,relatime - ext4 /dev/vdb rw
32 22 0:30 / /run/hull/rootfs rw,relatime - overlay overlay rw,lowerdir=/run/hull/image,upperdir=/run/hull/rw/upper,workdir=/run/hull/rw/work
33 22 0:31 / /with\\040space rw - overlay overlay rw,lowerdir=/a:/b,upperdir=/u\\040x,workdir=/w
";

    #[test]
    fn overlay_layers_come_from_mountinfo() {
        let layers = overlay_layers(MOUNTINFO, Path::new("/run/hull/rootfs")).unwrap();
        assert_eq!(layers.lower, vec![PathBuf::from("/run/hull/image")]);
        assert_eq!(layers.upper, Some(PathBuf::from("/run/hull/rw/upper")));
        assert_eq!(layers.work, Some(PathBuf::from("/run/hull/rw/work")));
        let layers = overlay_layers(MOUNTINFO, Path::new("/with space")).unwrap();
        assert_eq!(layers.lower, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(layers.upper, Some(PathBuf::from("/u x")));
        assert!(overlay_layers(MOUNTINFO, Path::new("/run/hull/image")).is_none());
        assert!(overlay_layers(MOUNTINFO, Path::new("/nowhere")).is_none());
    }

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn placeholders_become_the_disks_numbers() {
        let disks = ContainerDisks {
            image: Some((254, 0)),
            writable: None,
        };
        let r = resources(
            r#"{"blockIO":{"weight":500,
                "throttleReadBpsDevice":[{"major":-1,"minor":0,"rate":1048576},{"major":-1,"minor":1,"rate":1048576}],
                "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":10}]}}"#,
        );
        let out = resolve(Some(&r), &disks).unwrap().unwrap();
        let b = out.block_io().as_ref().unwrap();
        assert_eq!(b.weight(), Some(500));
        let read = b.throttle_read_bps_device().as_ref().unwrap();
        assert_eq!(read.len(), 1, "no writable disk: its entry is dropped");
        assert_eq!(
            (read[0].major(), read[0].minor(), read[0].rate()),
            (254, 0, 1 << 20)
        );
        let iops = b.throttle_write_iops_device().as_ref().unwrap();
        assert_eq!((iops[0].major(), iops[0].minor()), (8, 0));
    }

    #[test]
    fn unknown_placeholders_are_errors() {
        let r =
            resources(r#"{"blockIO":{"throttleReadBpsDevice":[{"major":-1,"minor":7,"rate":1}]}}"#);
        assert!(matches!(
            resolve(Some(&r), &ContainerDisks::default()),
            Err(BlkioError::UnknownDisk {
                major: -1,
                minor: 7
            })
        ));
        let r =
            resources(r#"{"blockIO":{"throttleReadBpsDevice":[{"major":-5,"minor":0,"rate":1}]}}"#);
        assert!(resolve(Some(&r), &ContainerDisks::default()).is_err());
    }

    mod through_the_fake {
        use super::*;
        use crate::syscall::test::Recording;

        fn placeholders() -> LinuxResources {
            resources(
                r#"{"blockIO":{"throttleReadBpsDevice":[{"major":-1,"minor":0,"rate":1},{"major":-1,"minor":1,"rate":2}]}}"#,
            )
        }

        fn read_devices(out: &LinuxResources) -> Vec<(i64, i64, u64)> {
            out.block_io()
                .as_ref()
                .unwrap()
                .throttle_read_bps_device()
                .iter()
                .flatten()
                .map(|d| (d.major(), d.minor(), d.rate()))
                .collect()
        }

        #[test]
        fn placeholders_become_the_disks_under_the_root_overlay() {
            let sys = Recording::new();
            sys.set_mountinfo(MOUNTINFO);
            sys.set_device("/run/hull/image", libc::makedev(254, 0));
            sys.set_device("/run/hull/rw/upper", libc::makedev(254, 16));
            let out = resolve_for_root(&sys, Some(&placeholders()), Path::new("/run/hull/rootfs"))
                .unwrap()
                .unwrap();
            assert_eq!(read_devices(&out), vec![(254, 0, 1), (254, 16, 2)]);
        }

        #[test]
        fn a_writable_layer_without_a_disk_drops_its_limits() {
            let sys = Recording::new();
            sys.set_mountinfo(MOUNTINFO);
            sys.set_device("/run/hull/image", libc::makedev(254, 0));
            sys.set_device("/run/hull/rw/upper", libc::makedev(0, 44));
            let out = resolve_for_root(&sys, Some(&placeholders()), Path::new("/run/hull/rootfs"))
                .unwrap()
                .unwrap();
            assert_eq!(read_devices(&out), vec![(254, 0, 1)]);
        }

        #[test]
        fn a_root_that_is_no_overlay_is_an_error_only_when_placeholders_need_it() {
            let sys = Recording::new();
            sys.set_mountinfo(MOUNTINFO);
            let err = resolve_for_root(&sys, Some(&placeholders()), Path::new("/run/hull/image"))
                .unwrap_err();
            assert!(matches!(err, BlkioError::NoOverlay(_)), "{err}");
            let plain = resources(r#"{"blockIO":{"weight":100}}"#);
            assert!(resolve_for_root(&sys, Some(&plain), Path::new("/run/hull/image")).is_ok());
        }
    }
}
