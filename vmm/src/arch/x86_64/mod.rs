//! x86_64 specifics: memory layout, CPUID, MSRs, MP table, boot registers.

pub mod cpuid;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod regs;

use layout::{HIMEM_START, LOW_MEM_END, MMIO_GAP_END, MMIO_GAP_START};
use vm_memory::GuestAddress;

/// The RAM ranges for a guest of `size` bytes: one below the MMIO hole and,
/// for large guests, one above 4 GiB.
pub fn arch_memory_regions(size: u64) -> Vec<(GuestAddress, usize)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// One entry of the e820 map: start, size, RAM or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Guest physical start.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// 1 = RAM, 2 = reserved.
    pub kind: u32,
}

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// The e820 map for a guest of `size` bytes: low RAM up to the EBDA, the
/// EBDA reserved, then RAM from 1 MiB (split around the MMIO hole).
pub fn e820_map(size: u64) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: layout::EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: layout::EBDA_START,
            size: LOW_MEM_END - layout::EBDA_START,
            kind: E820_RESERVED,
        },
    ];
    let low_end = size.min(MMIO_GAP_START);
    if low_end > HIMEM_START {
        map.push(E820Entry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820_RAM,
        });
    }
    if size > MMIO_GAP_START {
        map.push(E820Entry {
            addr: MMIO_GAP_END,
            size: size - MMIO_GAP_START,
            kind: E820_RAM,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_split_around_the_mmio_hole() {
        assert_eq!(
            arch_memory_regions(128 << 20),
            vec![(GuestAddress(0), 128 << 20)]
        );
        let r = arch_memory_regions(4 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0, GuestAddress(MMIO_GAP_END));
        assert_eq!(r[0].1 as u64 + r[1].1 as u64, 4 << 30);
    }

    #[test]
    fn e820_covers_ram_and_reserves_ebda() {
        let m = e820_map(64 << 20);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].kind, E820_RESERVED);
        assert_eq!(m[2].addr + m[2].size, 64 << 20);
        let m = e820_map(4 << 30);
        assert_eq!(m.len(), 4);
        assert_eq!(m[3].addr, MMIO_GAP_END);
    }
}
