//! Intel MultiProcessor Specification 1.4 table, so that a guest without
//! ACPI finds its CPUs, its IOAPIC and how the ISA IRQs are wired (what
//! Firecracker's `arch/x86_64/mptable.rs` writes, built here byte by byte).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{APIC_ADDR, IOAPIC_ADDR, IRQ_MAX, LOW_MEM_END, MPTABLE_START};

/// Errors while writing the MP table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More vCPUs than fit in the table.
    #[error("{0} vCPUs do not fit in the MP table (at most {MAX_CPUS})")]
    TooManyCpus(u8),
    /// Guest memory did not take the table.
    #[error("cannot write the MP table to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

/// Most vCPUs the table (which must fit below 640 KiB) describes.
pub const MAX_CPUS: u8 = 32;

const MP_PROCESSOR: u8 = 0;
const MP_BUS: u8 = 1;
const MP_IOAPIC: u8 = 2;
const MP_INTSRC: u8 = 3;
const MP_LINTSRC: u8 = 4;
const MP_INT: u8 = 0;
const MP_NMI: u8 = 1;
const MP_EXTINT: u8 = 3;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Builds the floating pointer and configuration table for `cpus` vCPUs,
/// to be placed at `base`.
pub fn build(cpus: u8, base: u64) -> Result<Vec<u8>, Error> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::TooManyCpus(cpus));
    }
    let ioapic_id = cpus;
    let table_addr = base + 16;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for i in 0..cpus {
        let flags = CPU_ENABLED | if i == 0 { CPU_BOOTPROCESSOR } else { 0 };
        entries.extend_from_slice(&[MP_PROCESSOR, i, APIC_VERSION, flags]);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // FPU, APIC
        entries.extend_from_slice(&[0u8; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[MP_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[MP_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    // Every ISA IRQ goes to the IOAPIC pin of the same number, as KVM's
    // default routing does (the in-kernel PIT raises GSI 0 on pin 0); the
    // 8259 reaches CPUs through LINT0 only (below).
    for irq in 0..=IRQ_MAX as u8 {
        entries.extend_from_slice(&[MP_INTSRC, MP_INT, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    entries.extend_from_slice(&[MP_LINTSRC, MP_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend_from_slice(&[MP_LINTSRC, MP_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut table: Vec<u8> = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"HULL    ");
    table.extend_from_slice(b"HULL-VMM    ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_ADDR.to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes()); // extended length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = 0u8.wrapping_sub(checksum(&table));

    let mut mpf: Vec<u8> = Vec::with_capacity(16);
    mpf.extend_from_slice(b"_MP_");
    mpf.extend_from_slice(&(table_addr as u32).to_le_bytes());
    mpf.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    mpf[10] = 0u8.wrapping_sub(checksum(&mpf));

    mpf.extend_from_slice(&table);
    Ok(mpf)
}

/// Writes the MP table for `cpus` vCPUs at its fixed place in low memory.
pub fn setup_mptable(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), Error> {
    let bytes = build(cpus, MPTABLE_START)?;
    debug_assert!(MPTABLE_START + bytes.len() as u64 <= LOW_MEM_END);
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(Error::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_zero_and_table_fits() {
        for cpus in [1u8, 2, MAX_CPUS] {
            let t = build(cpus, MPTABLE_START).unwrap();
            assert_eq!(checksum(&t[..16]), 0);
            assert_eq!(checksum(&t[16..]), 0);
            assert!(MPTABLE_START + t.len() as u64 <= LOW_MEM_END);
            let procs = t[16 + 44..]
                .chunks(20)
                .take(cpus as usize)
                .filter(|c| c[0] == 0)
                .count();
            assert_eq!(procs, cpus as usize);
        }
    }

    #[test]
    fn rejects_zero_and_too_many() {
        assert!(build(0, MPTABLE_START).is_err());
        assert!(build(MAX_CPUS + 1, MPTABLE_START).is_err());
    }
}
