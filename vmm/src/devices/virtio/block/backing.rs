//! What a block device of hull-vmm stands on: a host file, or nothing yet.
//! A placeholder is a slot a template VM boots with (virtio-mmio has no
//! hotplug): the guest sees a disk of capacity 0 that refuses every read
//! and write, until a clone restored from the template gives the slot a
//! file and the device announces its new capacity.

use std::fs::File;
use std::io;
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;

use super::device::{Block, DiskBackend};
use super::{ID_BYTES, SECTOR_SIZE};
use crate::devices::virtio::DeviceError;

/// A block device's backing.
pub enum Backing {
    /// A host file or block device.
    File(File),
    /// No backing yet.
    Placeholder,
}

impl Backing {
    /// Whether this is a placeholder.
    pub fn is_placeholder(&self) -> bool {
        matches!(self, Backing::Placeholder)
    }

    /// Bytes the guest may use (0 for a placeholder).
    pub fn size(&self) -> io::Result<u64> {
        match self {
            Backing::File(f) => Ok(f.metadata()?.len()),
            Backing::Placeholder => Ok(0),
        }
    }
}

fn no_backing() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "placeholder disk has no backing")
}

impl DiskBackend for Backing {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Backing::File(f) => DiskBackend::read_at(f, buf, offset),
            Backing::Placeholder => Err(no_backing()),
        }
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self {
            Backing::File(f) => DiskBackend::write_at(f, buf, offset),
            Backing::Placeholder => Err(no_backing()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Backing::File(f) => DiskBackend::flush(f),
            // Nothing was written: nothing to make durable.
            Backing::Placeholder => Ok(()),
        }
    }
}

impl Block<Backing> {
    /// A device on `backing` (a file's size, rounded down to sectors, is
    /// the capacity; a placeholder's is 0).
    pub fn with_backing(
        mem: Arc<GuestMemoryMmap>,
        backing: Backing,
        read_only: bool,
        id: &[u8],
    ) -> Result<Self, DeviceError> {
        let size = backing.size().map_err(DeviceError::Backing)?;
        Self::with_backend(mem, backing, size, read_only, id)
    }

    /// Whether the device stands on a placeholder.
    pub fn is_placeholder(&self) -> bool {
        self.disk.backend.is_placeholder()
    }

    /// What GET_ID returns, without its padding.
    pub fn id(&self) -> &[u8] {
        let end = self
            .disk
            .id
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(ID_BYTES);
        &self.disk.id[..end]
    }

    /// Whether the guest may only read it.
    pub fn read_only(&self) -> bool {
        self.disk.read_only
    }

    /// Gives a placeholder its file (a running clone of a template that
    /// waited for its disks); the caller announces the new capacity.
    pub fn attach(&mut self, file: File) -> Result<(), AttachError> {
        if !self.is_placeholder() {
            return Err(AttachError::NotPlaceholder);
        }
        let size = file.metadata().map_err(AttachError::Backing)?.len();
        self.disk.backend = Backing::File(file);
        self.disk.capacity = size / SECTOR_SIZE;
        Ok(())
    }
}

/// Why a placeholder could not take a file.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the disk already has a backing")]
    NotPlaceholder,
    #[error("cannot read the backing's size")]
    Backing(#[source] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placeholder_takes_a_file_once_and_reads_it() {
        use std::io::Write;
        let mut blk =
            Block::with_backing(guest_memory(), Backing::Placeholder, true, b"hull-rootfs")
                .unwrap();
        assert_eq!(blk.id(), b"hull-rootfs");
        assert!(blk.read_only());
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; 4096]).unwrap();
        blk.attach(f.try_clone().unwrap()).unwrap();
        assert!(!blk.is_placeholder());
        assert_eq!(blk.capacity(), 8);
        let mut buf = [0u8; 512];
        blk.disk.backend.read_at(&mut buf, 512).unwrap();
        assert_eq!(buf, [7u8; 512]);
        assert!(matches!(blk.attach(f), Err(AttachError::NotPlaceholder)));
    }
    use crate::devices::virtio::test_utils::guest_memory;
    use crate::devices::virtio::VirtioDevice;

    #[test]
    fn a_placeholder_has_no_capacity_and_refuses_io() {
        let blk =
            Block::with_backing(guest_memory(), Backing::Placeholder, false, b"slot").unwrap();
        assert!(blk.is_placeholder());
        assert_eq!(blk.capacity(), 0);
        let mut cap = [0xffu8; 8];
        blk.read_config(0, &mut cap);
        assert_eq!(cap, [0; 8]);
        let mut b = Backing::Placeholder;
        assert!(b.read_at(&mut [0u8; 4], 0).is_err());
        assert!(b.write_at(&[0u8; 4], 0).is_err());
        assert!(b.flush().is_ok());
        let f = tempfile::tempfile().unwrap();
        f.set_len(4096).unwrap();
        let blk = Block::with_backing(guest_memory(), Backing::File(f), true, b"d").unwrap();
        assert!(!blk.is_placeholder());
        assert_eq!(blk.capacity(), 8);
    }
}
