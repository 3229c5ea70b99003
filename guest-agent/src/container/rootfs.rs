//! Builds a container's root: the image disk read-only, under an overlay
//! whose upper layer is the scratch disk (or a tmpfs), with the files Docker provides
//! (/etc/hostname, /etc/hosts). The spec's mounts come later, in the
//! container's own mount namespace. The image is hostile: nothing is
//! created or mounted through a symlink it planted.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use hull_protocol::{GuestNetwork, RootfsSource};
use thiserror::Error;

use super::Layout;
use crate::syscall::Syscall;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("no disk with serial {0:?} appeared")]
    DiskNotFound(String),
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("refusing to use {0}: it is a symlink in the image")]
    Symlink(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RootfsError {
    let what = what.into();
    move |source| RootfsError::Io { what, source }
}

/// Mounts the image and assembles the root of container `id` (a plain
/// name, checked by the caller) under `layout.state`; returns its path.
pub fn prepare(
    sys: &dyn Syscall,
    layout: &Layout,
    id: &str,
    disks: &RootfsSource,
    hostname: &str,
    network: Option<&GuestNetwork>,
) -> Result<PathBuf, RootfsError> {
    let fs_type = &disks.fs_type;
    let state = layout.state.join(id);
    let (image, rw, rootfs) = (state.join("image"), state.join("rw"), state.join("rootfs"));
    for dir in [&image, &rw, &rootfs] {
        fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }

    let disk = find_disk(layout, &disks.disk_serial)?;
    sys.mount(
        &disk.to_string_lossy(),
        &image,
        fs_type,
        libc::MS_RDONLY,
        "",
    )
    .map_err(io_err(format!(
        "mount {} ({fs_type}) read-only",
        disk.display()
    )))?;
    match disks.scratch_serial.as_deref() {
        // noinit_itable: the disk is made with lazy inode tables, and the
        // kernel must not spend the container's I/O zeroing them.
        Some(serial) => {
            let scratch = find_disk(layout, serial)?;
            sys.mount(&scratch.to_string_lossy(), &rw, "ext4", 0, "noinit_itable")
                .map_err(io_err(format!(
                    "mount the scratch disk {}",
                    scratch.display()
                )))?
        }
        None => sys
            .mount("tmpfs", &rw, "tmpfs", 0, "mode=0755")
            .map_err(io_err("mount the writable layer"))?,
    }
    crate::steps::mark("disks");
    let (upper, work) = writable_layer(&rw)?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        image.display(),
        upper.display(),
        work.display()
    );
    sys.mount("overlay", &rootfs, "overlay", 0, &options)
        .map_err(io_err("mount the overlay root"))?;

    debug!("overlay mounted");
    crate::steps::mark("overlay");
    write_identity_files(&rootfs, hostname, network)?;
    Ok(rootfs)
}

/// Unmounts what [`prepare`] mounted for container `id` (lazily: its
/// processes are dead, but a mount may still be held by a dying one) and
/// removes its directory, so its disks can be unplugged.
pub fn release(sys: &dyn Syscall, layout: &Layout, id: &str) {
    let state = layout.state.join(id);
    let mountinfo = sys.mountinfo().unwrap_or_default();
    // Innermost first: the overlay, then what it was made of (with a user
    // namespace, also its idmapped layers under `rootfs-idmapped/`).
    for target in mounts_under(&mountinfo, &state).iter().rev() {
        let _ = sys.unmount(target, libc::MNT_DETACH);
    }
    let _ = fs::remove_dir_all(&state);
}

/// Mount points at or below `dir`, in mount order, from mountinfo text.
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        // mountinfo escapes spaces and the like as \ooo; ours have none.
        .map(PathBuf::from)
        .filter(|target| target.starts_with(dir))
        .collect()
}

/// The overlay's upper and work directories on the writable layer `rw`.
/// A scratch disk may come from an earlier boot of the same container
/// (`hull start` after a stop): its upper layer, with every file the
/// container wrote, is kept; the work directory, which overlayfs wants
/// empty and may have left entries in, is made anew.
fn writable_layer(rw: &Path) -> Result<(PathBuf, PathBuf), RootfsError> {
    let (upper, work) = (rw.join("upper"), rw.join("work"));
    match fs::symlink_metadata(&upper) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(RootfsError::Io {
                what: format!("use {} as the upper layer", upper.display()),
                source: io::Error::from(io::ErrorKind::NotADirectory),
            })
        }
        Err(_) => fs::create_dir(&upper).map_err(io_err(format!("create {}", upper.display())))?,
    }
    match fs::symlink_metadata(&work) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(&work),
        Ok(_) => fs::remove_file(&work),
        Err(_) => Ok(()),
    }
    .map_err(io_err(format!("clear {}", work.display())))?;
    fs::create_dir(&work).map_err(io_err(format!("create {}", work.display())))?;
    Ok((upper, work))
}

/// Creates `rel` under `root` if missing, refusing symlinks on the way, and
/// returns the full path.
pub fn safe_dir(root: &Path, rel: &str) -> Result<PathBuf, RootfsError> {
    let mut path = root.to_path_buf();
    for component in Path::new(rel).components() {
        let Component::Normal(name) = component else {
            continue;
        };
        path.push(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(RootfsError::Symlink(format!("/{rel}")))
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(RootfsError::Io {
                    what: format!("use /{rel} as a directory"),
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                })
            }
            Err(_) => fs::create_dir(&path).map_err(io_err(format!("create /{rel}")))?,
        }
    }
    Ok(path)
}

/// Creates the file `rel` under `root` if missing (and the directories to
/// it), refusing symlinks on the way, and returns the full path: the
/// mount point of a bind of a file.
pub fn safe_file(root: &Path, rel: &str) -> Result<PathBuf, RootfsError> {
    let path = Path::new(rel);
    let parent = path.parent().map(|p| p.to_string_lossy().into_owned());
    let dir = safe_dir(root, parent.as_deref().unwrap_or(""))?;
    let Some(name) = path.file_name() else {
        return Err(RootfsError::Io {
            what: format!("use /{rel} as a file"),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        });
    };
    let file = dir.join(name);
    match fs::symlink_metadata(&file) {
        Ok(meta) if meta.file_type().is_symlink() => Err(RootfsError::Symlink(format!("/{rel}"))),
        Ok(meta) if meta.is_dir() => Err(RootfsError::Io {
            what: format!("bind a file on /{rel}"),
            source: io::Error::from(io::ErrorKind::IsADirectory),
        }),
        Ok(_) => Ok(file),
        Err(_) => OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&file)
            .map(|_| file.clone())
            .map_err(io_err(format!("create /{rel}"))),
    }
}

/// The device node of the disk with `serial`, waiting up to
/// `layout.disk_wait` for it to appear.
fn find_disk(layout: &Layout, serial: &str) -> Result<PathBuf, RootfsError> {
    let deadline = Instant::now() + layout.disk_wait;
    loop {
        if let Ok(entries) = fs::read_dir(&layout.sys_block) {
            for entry in entries.flatten() {
                let path = entry.path();
                if disk_serial(&path).as_deref() == Some(serial) && has_capacity(&path) {
                    return Ok(layout.dev.join(entry.file_name()));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(RootfsError::DiskNotFound(serial.to_string()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the disk at `/sys/block/NAME` has sectors. A hull-vmm clone's
/// disks were empty slots in its template; the capacity the clone gave
/// them reaches the kernel's view by a configuration-change interrupt,
/// handled on a workqueue, so a disk found by its serial may still show 0
/// for a moment. (No `size` to read: taken as there.)
fn has_capacity(sys_block: &Path) -> bool {
    match fs::read_to_string(sys_block.join("size")) {
        Ok(size) => size
            .trim()
            .parse::<u64>()
            .map_or(true, |sectors| sectors > 0),
        Err(_) => true,
    }
}

/// The serial of the disk at `/sys/block/NAME`: virtio-blk shows it in
/// `serial`; a SCSI disk (hot-added to a running VM) in its unit serial
/// number VPD page (0x80): a 4-byte header, then the serial.
fn disk_serial(sys_block: &Path) -> Option<String> {
    let plain = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string()
    };
    if let Ok(serial) = fs::read(sys_block.join("serial")) {
        return Some(plain(&serial));
    }
    let page = fs::read(sys_block.join("device/vpd_pg80")).ok()?;
    let len = u16::from_be_bytes([*page.get(2)?, *page.get(3)?]) as usize;
    Some(plain(page.get(4..4 + len).unwrap_or(&page[4..])))
}

fn write_identity_files(
    rootfs: &Path,
    hostname: &str,
    network: Option<&GuestNetwork>,
) -> Result<(), RootfsError> {
    let etc = safe_dir(rootfs, "etc")?;
    write_no_follow(&etc.join("hostname"), format!("{hostname}\n").as_bytes())?;
    write_no_follow(
        &etc.join("hosts"),
        crate::net::hosts_file(hostname, network).as_bytes(),
    )?;
    if let Some(resolv) = crate::net::resolv_conf(network) {
        write_no_follow(&etc.join("resolv.conf"), resolv.as_bytes())?;
    }
    Ok(())
}

fn write_no_follow(path: &Path, contents: &[u8]) -> Result<(), RootfsError> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(path).map_err(io_err(format!("replace {}", path.display())))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(format!("write {}", path.display())))?;
    file.write_all(contents)
        .map_err(io_err(format!("write {}", path.display())))
}

/// Creates the working directory inside the container if it is missing, as
/// Docker does, unless the path crosses a symlink (the process's own chdir
/// resolves those inside the container).
pub fn ensure_workdir(rootfs: &Path, cwd: &str) {
    let _ = safe_dir(rootfs, cwd.trim_start_matches('/'));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_dir_creates_and_refuses_symlinks() {
        let root = std::env::temp_dir().join(format!("hull-agent-rootfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let made = safe_dir(&root, "a/b/c").unwrap();
        assert!(made.is_dir());
        std::os::unix::fs::symlink("/", root.join("evil")).unwrap();
        assert!(matches!(
            safe_dir(&root, "evil/x"),
            Err(RootfsError::Symlink(_))
        ));
        assert!(!Path::new("/x").exists() || Path::new("/x").is_dir());
        fs::write(root.join("file"), b"").unwrap();
        assert!(safe_dir(&root, "file/x").is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_second_boot_keeps_the_upper_layer_and_resets_work() {
        let rw = std::env::temp_dir().join(format!("hull-agent-rw-{}", std::process::id()));
        let _ = fs::remove_dir_all(&rw);
        fs::create_dir_all(&rw).unwrap();
        let (upper, work) = writable_layer(&rw).unwrap();
        assert!(upper.is_dir() && work.is_dir());
        // What a first run leaves: the container's files, and overlayfs's
        // own entries in work/ (work/work, mode 000).
        fs::create_dir_all(upper.join("data")).unwrap();
        fs::write(upper.join("data/kept"), b"written by the container").unwrap();
        fs::create_dir(work.join("work")).unwrap();
        fs::write(work.join("work/leftover"), b"").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(work.join("work"), fs::Permissions::from_mode(0o000)).unwrap();
        let (upper, work) = writable_layer(&rw).unwrap();
        assert_eq!(
            fs::read(upper.join("data/kept")).unwrap(),
            b"written by the container"
        );
        assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
        fs::remove_dir_all(&rw).unwrap();
    }

    #[test]
    fn a_containers_mounts_are_found_in_mount_order() {
        let mountinfo = "\
22 1 0:20 / / rw - tmpfs none rw
30 22 254:0 / /run/hull/abc/image ro - erofs /dev/vda ro
31 22 254:16 / /run/hull/abc/rw rw - ext4 /dev/vdb rw
32 22 0:30 / /run/hull/abc/rootfs rw - overlay overlay rw
33 22 0:31 / /run/hull/abcd/rootfs rw - overlay overlay rw
34 22 254:0 / /run/hull/abc/rootfs-idmapped/l0 ro - erofs /dev/vda ro
";
        let found = mounts_under(mountinfo, Path::new("/run/hull/abc"));
        let found: Vec<_> = found.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            found,
            [
                "/run/hull/abc/image",
                "/run/hull/abc/rw",
                "/run/hull/abc/rootfs",
                "/run/hull/abc/rootfs-idmapped/l0"
            ]
        );
    }

    #[test]
    fn serials_come_from_virtio_blk_or_the_scsi_vpd_page() {
        let dir = std::env::temp_dir().join(format!("hull-agent-serial-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (vda, sda, bare) = (dir.join("vda"), dir.join("sda"), dir.join("loop0"));
        fs::create_dir_all(&vda).unwrap();
        fs::create_dir_all(sda.join("device")).unwrap();
        fs::create_dir_all(&bare).unwrap();
        fs::write(vda.join("serial"), b"hull-rootfs\n").unwrap();
        let mut page = vec![0u8, 0x80, 0, 9];
        page.extend_from_slice(b"hr-abc123");
        page.extend_from_slice(b"\0\0junk");
        fs::write(sda.join("device/vpd_pg80"), &page).unwrap();
        assert_eq!(disk_serial(&vda).as_deref(), Some("hull-rootfs"));
        assert_eq!(disk_serial(&sda).as_deref(), Some("hr-abc123"));
        assert_eq!(disk_serial(&bare), None);
        fs::write(sda.join("device/vpd_pg80"), [0u8, 0x80]).unwrap();
        assert_eq!(disk_serial(&sda), None, "a short page is no serial");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_disk_slot_is_not_found_until_it_has_sectors() {
        let dir = std::env::temp_dir().join(format!("hull-agent-size-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("vda")).unwrap();
        let vda = dir.join("vda");
        assert!(has_capacity(&vda), "no size file: taken as there");
        fs::write(vda.join("size"), b"0\n").unwrap();
        assert!(!has_capacity(&vda));
        fs::write(vda.join("size"), b"2048\n").unwrap();
        assert!(has_capacity(&vda));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn identity_files_do_not_follow_symlinks() {
        let root = std::env::temp_dir().join(format!("hull-agent-ident-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("etc")).unwrap();
        let outside = root.with_extension("outside");
        fs::write(&outside, b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/hosts")).unwrap();
        write_identity_files(&root, "box", None).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"keep");
        assert!(fs::read_to_string(root.join("etc/hosts"))
            .unwrap()
            .contains("box"));
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "box\n"
        );
        fs::remove_dir_all(&root).unwrap();
        fs::remove_file(&outside).unwrap();
    }

    mod through_the_fake {
        use super::*;
        use crate::syscall::test::{mount, Call, Recording};
        use crate::test_utils::TempDir;

        /// A layout in `dir` with disks vda (serial "img") and vdb
        /// ("scratch").
        fn layout(dir: &TempDir) -> Layout {
            for (name, serial) in [("vda", "img"), ("vdb", "scratch")] {
                let block = dir.path().join("sys/block").join(name);
                fs::create_dir_all(&block).unwrap();
                fs::write(block.join("serial"), format!("{serial}\n")).unwrap();
            }
            Layout {
                state: dir.path().join("run/hull"),
                sys_block: dir.path().join("sys/block"),
                dev: PathBuf::from("/dev"),
                cgroup: dir.path().join("cgroup"),
                disk_wait: Duration::ZERO,
            }
        }

        fn disks(scratch: Option<&str>) -> RootfsSource {
            RootfsSource {
                disk_serial: "img".into(),
                fs_type: "erofs".into(),
                scratch_serial: scratch.map(str::to_string),
            }
        }

        #[test]
        fn the_image_the_writable_layer_and_the_overlay_are_mounted_in_order() {
            let dir = TempDir::new("prepare");
            let layout = layout(&dir);
            let sys = Recording::new();
            let rootfs =
                prepare(&sys, &layout, "c1", &disks(Some("scratch")), "box", None).unwrap();
            let state = dir.str("run/hull/c1");
            assert_eq!(rootfs, PathBuf::from(format!("{state}/rootfs")));
            assert_eq!(
                sys.calls(),
                vec![
                    mount(
                        "/dev/vda",
                        &format!("{state}/image"),
                        "erofs",
                        libc::MS_RDONLY,
                        ""
                    ),
                    mount(
                        "/dev/vdb",
                        &format!("{state}/rw"),
                        "ext4",
                        0,
                        "noinit_itable"
                    ),
                    mount(
                        "overlay",
                        &format!("{state}/rootfs"),
                        "overlay",
                        0,
                        &format!(
                            "lowerdir={state}/image,upperdir={state}/rw/upper,workdir={state}/rw/work"
                        )
                    ),
                ]
            );
            assert_eq!(
                fs::read_to_string(rootfs.join("etc/hostname")).unwrap(),
                "box\n"
            );
        }

        #[test]
        fn without_a_scratch_disk_the_writable_layer_is_a_tmpfs() {
            let dir = TempDir::new("prepare-tmpfs");
            let sys = Recording::new();
            prepare(&sys, &layout(&dir), "c2", &disks(None), "box", None).unwrap();
            let mounts = sys.mounts();
            assert_eq!(mounts.len(), 3);
            assert_eq!(
                mounts[1],
                mount("tmpfs", &dir.str("run/hull/c2/rw"), "tmpfs", 0, "mode=0755")
            );
        }

        #[test]
        fn a_failed_mount_stops_the_set_up_with_its_error() {
            let dir = TempDir::new("prepare-fail");
            let sys = Recording::new();
            sys.fail_when(|call| match call {
                Call::Mount { fstype, .. } if fstype == "overlay" => Some(libc::EINVAL),
                _ => None,
            });
            let err = prepare(&sys, &layout(&dir), "c3", &disks(None), "box", None).unwrap_err();
            match &err {
                RootfsError::Io { what, source } => {
                    assert_eq!(what, "mount the overlay root");
                    assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
                }
                other => panic!("{other:?}"),
            }
            assert!(
                !dir.path().join("run/hull/c3/rootfs/etc/hostname").exists(),
                "nothing is written into a root that was not mounted"
            );
        }

        #[test]
        fn a_missing_disk_is_named_and_nothing_is_mounted() {
            let dir = TempDir::new("prepare-nodisk");
            let sys = Recording::new();
            let mut source = disks(None);
            source.disk_serial = "elsewhere".into();
            let err = prepare(&sys, &layout(&dir), "c4", &source, "box", None).unwrap_err();
            assert!(
                matches!(&err, RootfsError::DiskNotFound(s) if s == "elsewhere"),
                "{err:?}"
            );
            assert!(sys.calls().is_empty());
        }

        #[test]
        fn release_detaches_innermost_first_and_removes_the_state() {
            let dir = TempDir::new("release");
            let layout = layout(&dir);
            let state = dir.str("run/hull/c5");
            fs::create_dir_all(format!("{state}/rootfs")).unwrap();
            let sys = Recording::new();
            sys.set_mountinfo(&format!(
                "30 22 254:0 / {state}/image ro - erofs /dev/vda ro\n\
                 31 22 0:30 / {state}/rw rw - tmpfs tmpfs rw\n\
                 32 22 0:31 / {state}/rootfs rw - overlay overlay rw\n\
                 33 22 0:32 / {state}x/rootfs rw - overlay overlay rw\n"
            ));
            release(&sys, &layout, "c5");
            let detach = |rel: &str| Call::Unmount {
                target: format!("{state}/{rel}"),
                flags: libc::MNT_DETACH,
            };
            assert_eq!(
                sys.calls(),
                vec![detach("rootfs"), detach("rw"), detach("image")]
            );
            assert!(!Path::new(&state).exists());
        }
    }
}
