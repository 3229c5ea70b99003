//! A container's host files and directories (bind mounts, volumes): one
//! 9P2000.L tree served by the host's share server over a stream, mounted
//! with the kernel's `trans=fd` at `<state>/<id>/shares`, where entry `n`
//! is what the spec's mounts name `hull-share:<n>`. A stream, not shared
//! memory, so a VM cloned from a template (its RAM private) gets them too;
//! see docs/ARCHITECTURE.md. [`super::rootfs::release`] unmounts it with the
//! rest of the container's state.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hull_protocol::{ShareChannel, SHARE_SOURCE_PREFIX};
use thiserror::Error;

use super::Layout;
use crate::syscall::Syscall;

/// The kernel allocates two buffers of this size per request in flight:
/// 256 KiB keeps them order-6 allocations while a read or write still
/// moves a quarter of a MiB per round trip.
const MSIZE: u32 = 256 << 10;
/// The host's vsock context id.
const HOST_CID: u32 = 2;

#[derive(Debug, Error)]
pub enum ShareError {
    #[error("the share port {0:?} did not appear")]
    PortNotFound(String),
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// Where the share tree of container `id` is mounted.
pub fn tree(layout: &Layout, id: &str) -> PathBuf {
    layout.state.join(id).join("shares")
}

/// Opens the stream `channel` names and mounts the share tree of
/// container `id` on it; returns the tree's path.
pub fn mount(
    sys: &dyn Syscall,
    layout: &Layout,
    id: &str,
    channel: &ShareChannel,
) -> Result<PathBuf, ShareError> {
    let stream = match channel {
        ShareChannel::SerialPort(name) => relay(open_port(name, layout)?)?,
        ShareChannel::Vsock(port) => crate::sys::vsock_connect(HOST_CID, *port)
            .map(File::from)
            .map_err(|source| ShareError::Io {
                what: format!("connect to the host's share server (vsock port {port})"),
                source,
            })?,
    };
    let target = tree(layout, id);
    fs::create_dir_all(&target).map_err(|source| ShareError::Io {
        what: format!("create {}", target.display()),
        source,
    })?;
    // The kernel takes its own reference to the stream; ours closes after.
    let fd = stream.as_raw_fd();
    let options = format!(
        "trans=fd,rfdno={fd},wfdno={fd},version=9p2000.L,msize={MSIZE},access=client,cache=mmap"
    );
    sys.mount("hull-share", &target, "9p", libc::MS_NODEV, &options)
        .map_err(|source| ShareError::Io {
            what: "mount the host's shared files (9p)".into(),
            source,
        })?;
    Ok(target)
}

/// The guest path of a spec mount source that names a share entry.
pub fn source_path(tree: Option<&Path>, source: &str) -> Option<PathBuf> {
    let entry = source.strip_prefix(SHARE_SOURCE_PREFIX)?;
    if entry.is_empty() || !entry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(tree?.join(entry))
}

/// The virtio-serial port named `name`, opened; the host hot-adds it just
/// before the request, so it may take a moment to appear.
fn open_port(name: &str, layout: &Layout) -> Result<File, ShareError> {
    let deadline = Instant::now() + layout.disk_wait;
    loop {
        if let Some(dev) = find_port(Path::new("/sys/class/virtio-ports"), name) {
            return OpenOptions::new()
                .read(true)
                .write(true)
                .open(layout.dev.join(&dev))
                .map_err(|source| ShareError::Io {
                    what: format!("open /dev/{dev}"),
                    source,
                });
        }
        if Instant::now() >= deadline {
            return Err(ShareError::PortNotFound(name.to_string()));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The kernel's `trans=fd` moves 9P messages with `kernel_read` and
/// `kernel_write`, which a virtio-serial port refuses (EINVAL: its driver
/// has no `read_iter`/`write_iter`). So the kernel gets one end of a unix
/// socket pair, and two threads relay between the other end and the port.
/// They end when the host closes the port (its share server stopped) and
/// when the kernel drops its end (the tree unmounted).
fn relay(port: File) -> Result<File, ShareError> {
    let io_err = |what: &str| {
        let what = what.to_string();
        move |source| ShareError::Io { what, source }
    };
    let (kernel_end, ours) =
        UnixStream::pair().map_err(io_err("make the share relay's sockets"))?;
    let ours_out = ours
        .try_clone()
        .map_err(io_err("clone the share relay's socket"))?;
    let port_out = port.try_clone().map_err(io_err("clone the share port"))?;
    std::thread::spawn(move || {
        pump(port, &ours);
        // The host hung up: the kernel's next read sees the end.
        let _ = ours.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || pump(ours_out, &port_out));
    Ok(File::from(std::os::fd::OwnedFd::from(kernel_end)))
}

/// Copies `from` to `to` until either ends; one message-sized buffer.
fn pump(mut from: impl Read, mut to: impl Write) {
    let mut buf = vec![0u8; MSIZE as usize];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The device name (`vport0p3`) of the port called `name`.
fn find_port(class: &Path, name: &str) -> Option<String> {
    fs::read_dir(class).ok()?.flatten().find_map(|entry| {
        let found = fs::read_to_string(entry.path().join("name")).ok()?;
        (found.trim_end() == name).then(|| entry.file_name().to_string_lossy().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::TempDir;

    #[test]
    fn share_sources_name_entries_of_the_tree() {
        let tree = Path::new("/run/hull/c1/shares");
        assert_eq!(
            source_path(Some(tree), "hull-share:3"),
            Some(tree.join("3"))
        );
        assert_eq!(source_path(Some(tree), "hull-share:../x"), None);
        assert_eq!(source_path(Some(tree), "hull-share:"), None);
        assert_eq!(source_path(Some(tree), "/srv"), None);
        assert_eq!(source_path(None, "hull-share:0"), None);
    }

    #[test]
    fn ports_are_found_by_name() {
        let dir = TempDir::new("share-ports");
        for (dev, name) in [
            ("vport0p1", "hull.agent\n"),
            ("vport0p2", "hull.share.abc\n"),
        ] {
            fs::create_dir_all(dir.path().join(dev)).unwrap();
            fs::write(dir.path().join(dev).join("name"), name).unwrap();
        }
        assert_eq!(
            find_port(dir.path(), "hull.share.abc").as_deref(),
            Some("vport0p2")
        );
        assert_eq!(find_port(dir.path(), "hull.share.x"), None);
    }
}
