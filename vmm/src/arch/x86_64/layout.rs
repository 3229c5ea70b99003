//! Guest physical memory map of an x86_64 hull microVM.
//!
//! Modelled on Firecracker's `arch/x86_64/layout.rs`: low memory holds the
//! boot structures, the kernel goes at 1 MiB, and a 768 MiB hole below
//! 4 GiB holds the virtio-mmio devices.

/// Global descriptor table used for boot.
pub const BOOT_GDT_START: u64 = 0x500;
/// Interrupt descriptor table (empty) used for boot.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info` structure.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initramfs), right after the start info.
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map.
pub const PVH_MEMMAP_START: u64 = 0x7000;
/// Linux boot protocol zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack of the boot CPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity page tables for 64-bit boot: PML4, PDPT, then four PDs.
pub const PML4_START: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// First of four page directories (2 MiB pages covering 4 GiB).
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line we pass (Linux's x86 limit is 2048 on old kernels,
/// the boot header's `cmdline_size` on new ones).
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Start of the extended BIOS data area, where the MP table lives.
pub const EBDA_START: u64 = 0x9fc00;
/// The MP table (floating pointer then configuration table).
pub const MPTABLE_START: u64 = EBDA_START;
/// End of conventional low memory.
pub const LOW_MEM_END: u64 = 0xa0000;
/// Where the kernel and everything above it may live.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the hole below 4 GiB reserved for devices.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// End of that hole.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// IOAPIC MMIO base (the in-kernel irqchip answers there).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Local APIC MMIO base.
pub const APIC_ADDR: u32 = 0xfee0_0000;
/// KVM's TSS needs three pages in guest physical space.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// Legacy IRQ of the first serial port.
pub const SERIAL_IRQ: u32 = 4;
/// First IRQ handed to virtio-mmio devices.
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Last usable IRQ on the IOAPIC (24 pins).
pub const IRQ_MAX: u32 = 23;
