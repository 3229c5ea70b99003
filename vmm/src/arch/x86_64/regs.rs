//! Boot-time vCPU state: general registers, segments and control
//! registers, identity page tables, FPU and local APIC.
//!
//! Two entry conventions are supported, as in Firecracker's
//! `arch/x86_64/regs.rs`: 64-bit long mode with `rsi` pointing at the Linux
//! zero page, and the PVH entry (32-bit protected mode, paging off, `ebx`
//! pointing at `hvm_start_info`).

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
    PVH_INFO_START, ZERO_PAGE_START,
};

/// Errors while programming the boot CPU state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A KVM register ioctl failed.
    #[error("cannot {0} vCPU registers")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// Boot tables did not fit in guest memory.
    #[error("cannot write the boot {0} to guest memory")]
    Memory(&'static str, #[source] vm_memory::GuestMemoryError),
}

type Result<T> = std::result::Result<T, Error>;

/// How the guest is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMode {
    /// 64-bit Linux boot protocol: long mode, `rsi` = zero page.
    Linux64,
    /// PVH: 32-bit protected mode, `ebx` = start info.
    Pvh,
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// Builds a GDT entry from flags, base and limit (the layout of the
/// descriptor is in the Intel SDM, vol. 3, 3.4.5).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0xffff)
        | ((limit as u64 & 0xf_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
}

/// The `kvm_segment` that a GDT entry at `index` describes.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        padding: 0,
        unusable: u8::from(present == 0),
    }
}

fn gdt_for(mode: BootMode) -> [u64; 4] {
    match mode {
        BootMode::Linux64 => [
            gdt_entry(0, 0, 0),
            gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code
            gdt_entry(0xc093, 0, 0xfffff), // data
            gdt_entry(0x808b, 0, 0xfffff), // TSS
        ],
        BootMode::Pvh => [
            gdt_entry(0, 0, 0),
            gdt_entry(0xc09b, 0, 0xffff_ffff), // 32-bit flat code
            gdt_entry(0xc093, 0, 0xffff_ffff), // flat data
            gdt_entry(0x008b, 0, 0x67),        // TSS
        ],
    }
}

/// Writes identity page tables mapping the first 4 GiB with 2 MiB pages,
/// so that a 64-bit guest reaches RAM and the MMIO hole alike.
pub fn write_page_tables(mem: &GuestMemoryMmap) -> Result<()> {
    let w = |addr: u64, val: u64| {
        mem.write_obj(val, GuestAddress(addr))
            .map_err(|e| Error::Memory("page tables", e))
    };
    w(PML4_START, PDPTE_START | 0x03)?;
    for i in 0..4u64 {
        w(PDPTE_START + i * 8, (PDE_START + i * 0x1000) | 0x03)?;
    }
    // 2048 2 MiB pages; write them as one buffer to keep boot fast.
    let mut pd = vec![0u8; 4 * 4096];
    for (j, chunk) in pd.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&(((j as u64) << 21) | 0x83).to_le_bytes());
    }
    mem.write_slice(&pd, GuestAddress(PDE_START))
        .map_err(|e| Error::Memory("page tables", e))
}

/// Programs segments, descriptor tables and control registers for `mode`.
pub fn setup_sregs(mem: &GuestMemoryMmap, vcpu: &VcpuFd, mode: BootMode) -> Result<()> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(|e| Error::Kvm("get special", e))?;
    let gdt = gdt_for(mode);
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(|e| Error::Memory("GDT", e))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|e| Error::Memory("IDT", e))?;
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    let code = segment_from_gdt(gdt[1], 1);
    let data = segment_from_gdt(gdt[2], 2);
    let tss = segment_from_gdt(gdt[3], 3);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    match mode {
        BootMode::Linux64 => {
            write_page_tables(mem)?;
            sregs.cr3 = PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        BootMode::Pvh => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    vcpu.set_sregs(&sregs)
        .map_err(|e| Error::Kvm("set special", e))
}

/// Sets the general registers for entry at `entry`.
pub fn setup_regs(vcpu: &VcpuFd, entry: u64, mode: BootMode) -> Result<()> {
    let regs = match mode {
        BootMode::Linux64 => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        },
        BootMode::Pvh => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rbx: PVH_INFO_START,
            ..Default::default()
        },
    };
    vcpu.set_regs(&regs)
        .map_err(|e| Error::Kvm("set general", e))
}

/// Puts the FPU in its power-on state.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(|e| Error::Kvm("set FPU", e))
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(regs: &[std::os::raw::c_char; 1024], off: usize) -> u32 {
    let b: [u8; 4] = std::array::from_fn(|i| regs[off + i] as u8);
    u32::from_le_bytes(b)
}

fn set_lapic_reg(regs: &mut [std::os::raw::c_char; 1024], off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        regs[off + i] = *b as std::os::raw::c_char;
    }
}

/// Wires LINT0 as ExtINT (the PIC) and LINT1 as NMI, as a BIOS would.
pub fn setup_lint(vcpu: &VcpuFd) -> Result<()> {
    let mut lapic = vcpu.get_lapic().map_err(|e| Error::Kvm("get LAPIC", e))?;
    let lvt0 = lapic_reg(&lapic.regs, APIC_LVT0);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT0,
        (lvt0 & !0x700) | (APIC_MODE_EXTINT << 8),
    );
    let lvt1 = lapic_reg(&lapic.regs, APIC_LVT1);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT1,
        (lvt1 & !0x700) | (APIC_MODE_NMI << 8),
    );
    vcpu.set_lapic(&lapic)
        .map_err(|e| Error::Kvm("set LAPIC", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_the_expected_segments() {
        let code = segment_from_gdt(gdt_entry(0xa09b, 0, 0xfffff), 1);
        assert_eq!(
            (code.l, code.db, code.g, code.present, code.type_),
            (1, 0, 1, 1, 0xb)
        );
        assert_eq!(code.limit, 0xffff_ffff);
        assert_eq!(code.selector, 8);
        let data = segment_from_gdt(gdt_entry(0xc093, 0, 0xfffff), 2);
        assert_eq!((data.l, data.db, data.s, data.type_), (0, 1, 1, 3));
        let null = segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn page_tables_identity_map_4gib() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_page_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 3);
        let pdpte3: u64 = mem.read_obj(GuestAddress(PDPTE_START + 24)).unwrap();
        assert_eq!(pdpte3, (PDE_START + 0x3000) | 3);
        let last: u64 = mem.read_obj(GuestAddress(PDE_START + 2047 * 8)).unwrap();
        assert_eq!(last, (2047u64 << 21) | 0x83);
    }
}
