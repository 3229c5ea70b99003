//! What a network device of hull-vmm stands on: a tap, or nothing yet. A
//! placeholder is a slot a template VM boots with (virtio-mmio has no
//! hotplug): frames the guest sends are dropped and none arrive, until a
//! clone restored from the template gives the slot its own tap.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{tap, Net};
use crate::devices::virtio::DeviceError;

/// A network device's backing.
pub enum NetBacking {
    /// An open tap device.
    Tap(File),
    /// No tap: an eventfd nobody writes stands in for its fd, so the event
    /// loop can watch it like a tap that never has a frame.
    Placeholder(EventFd),
}

impl NetBacking {
    /// Opens the existing tap `name`.
    pub fn tap(name: &str) -> Result<Self, DeviceError> {
        tap::open_tap(name)
            .map(NetBacking::Tap)
            .map_err(DeviceError::Tap)
    }

    /// A placeholder.
    pub fn placeholder() -> Result<Self, DeviceError> {
        EventFd::new(libc::EFD_NONBLOCK)
            .map(NetBacking::Placeholder)
            .map_err(DeviceError::EventFd)
    }

    /// Whether this is a placeholder.
    pub fn is_placeholder(&self) -> bool {
        matches!(self, NetBacking::Placeholder(_))
    }
}

impl Read for NetBacking {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            NetBacking::Tap(f) => f.read(buf),
            NetBacking::Placeholder(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for NetBacking {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            NetBacking::Tap(f) => f.write(buf),
            NetBacking::Placeholder(_) => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for NetBacking {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            NetBacking::Tap(f) => f.as_raw_fd(),
            NetBacking::Placeholder(e) => e.as_raw_fd(),
        }
    }
}

impl Net<NetBacking> {
    /// Whether the device stands on a placeholder.
    pub fn is_placeholder(&self) -> bool {
        self.tap.is_placeholder()
    }

    /// A device on `backing` with guest MAC `mac` (offered as
    /// VIRTIO_NET_F_MAC when given).
    pub fn with_backing(
        mem: Arc<GuestMemoryMmap>,
        backing: NetBacking,
        mac: Option<[u8; 6]>,
    ) -> Result<Self, DeviceError> {
        Net::with_tap(mem, backing, mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placeholder_never_has_a_frame_and_drops_what_is_sent() {
        let mut p = NetBacking::placeholder().unwrap();
        assert!(p.is_placeholder());
        let mut buf = [0u8; 64];
        assert_eq!(
            p.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(p.write(b"frame").is_err());
        assert!(p.as_raw_fd() >= 0);
        assert!(NetBacking::tap("no/such").is_err());
    }
}
