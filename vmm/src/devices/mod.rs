//! Emulated devices and the buses vCPU exits are dispatched on.

pub mod legacy;
pub mod virtio;

use std::sync::{Arc, Mutex};

/// A device reached through port I/O or MMIO exits of a vCPU.
pub trait BusDevice: Send {
    /// Guest reads `data.len()` bytes at `offset` into the device window.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest writes `data` at `offset` into the device window.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors while building a bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Two devices claim overlapping windows.
    #[error("device window {base:#x}+{len:#x} overlaps another device")]
    Overlap {
        /// Base of the refused window.
        base: u64,
        /// Length of the refused window.
        len: u64,
    },
}

struct Entry {
    base: u64,
    len: u64,
    dev: Arc<Mutex<dyn BusDevice>>,
}

/// An address space (PIO or MMIO) of non-overlapping device windows.
#[derive(Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `dev` at `[base, base+len)`.
    pub fn insert(
        &mut self,
        dev: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overlap { base, len })?;
        if len == 0
            || self
                .entries
                .iter()
                .any(|e| base < e.base + e.len && e.base < end)
        {
            return Err(BusError::Overlap { base, len });
        }
        self.entries.push(Entry { base, len, dev });
        self.entries.sort_by_key(|e| e.base);
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&Entry, u64)> {
        let e = self
            .entries
            .iter()
            .find(|e| addr >= e.base && addr - e.base < e.len)?;
        let off = addr - e.base;
        // The whole access must lie inside the window.
        if off.checked_add(size as u64)? > e.len {
            return None;
        }
        Some((e, off))
    }

    /// Dispatches a read; returns false (and fills zeros, as Firecracker
    /// does: an all-ones read would make Linux spin on the absent CMOS
    /// clock's update-in-progress bit) when nothing is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((e, off)) => {
                lock(&e.dev).read(off, data);
                true
            }
            None => {
                data.fill(0);
                false
            }
        }
    }

    /// Dispatches a write; returns false when nothing is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((e, off)) => {
                lock(&e.dev).write(off, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device mutex, recovering it if another thread panicked while
/// holding it (the device state is still the best we have).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u8);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0 + offset as u8);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn dispatch_overlap_and_bounds() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Echo(1))), 0x100, 8).unwrap();
        assert!(bus.insert(Arc::new(Mutex::new(Echo(2))), 0x104, 8).is_err());
        assert!(bus
            .insert(Arc::new(Mutex::new(Echo(2))), u64::MAX, 8)
            .is_err());
        let mut d = [0u8; 1];
        assert!(bus.read(0x102, &mut d));
        assert_eq!(d[0], 3);
        assert!(bus.write(0x100, &[9]));
        assert!(bus.read(0x100, &mut d));
        assert_eq!(d[0], 9);
        let mut d4 = [0u8; 4];
        assert!(!bus.read(0x106, &mut d4)); // crosses the window's end
        assert_eq!(d4, [0; 4]);
        assert!(!bus.read(0x200, &mut d));
    }
}
