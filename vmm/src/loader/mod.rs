//! Loads the guest kernel and initramfs and writes the boot information
//! the guest reads first: the Linux zero page or the PVH start info, the
//! e820 map and the command line.
//!
//! ELF kernels with a PVH note (`XEN_ELFNOTE_PHYS32_ENTRY`) are entered
//! through PVH; other ELF kernels and bzImages through the 64-bit Linux
//! boot protocol, as Firecracker's `vstate`/`arch` code does.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use linux_loader::loader::bootparam::{boot_params, setup_header};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::arch::x86_64::layout::{
    CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, MMIO_GAP_START, PVH_INFO_START, PVH_MEMMAP_START,
    PVH_MODLIST_START, ZERO_PAGE_START,
};
use crate::arch::x86_64::regs::BootMode;
use crate::arch::x86_64::{e820_map, E820Entry};

/// Errors while loading the guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel file could not be read.
    #[error("cannot read the kernel")]
    ReadKernel(#[source] std::io::Error),
    /// The kernel is neither an ELF file nor a bzImage.
    #[error("kernel is neither an ELF vmlinux nor a bzImage")]
    UnknownFormat,
    /// linux-loader refused the ELF kernel.
    #[error("cannot load the ELF kernel")]
    Elf(#[source] linux_loader::loader::Error),
    /// linux-loader refused the bzImage.
    #[error("cannot load the bzImage")]
    BzImage(#[source] linux_loader::loader::Error),
    /// The bzImage's boot protocol is too old for a 64-bit entry.
    #[error("bzImage boot protocol {0:#x} is older than 2.06")]
    OldBootProtocol(u16),
    /// The initramfs file could not be read.
    #[error("cannot read the initramfs")]
    ReadInitrd(#[source] std::io::Error),
    /// The initramfs does not fit between the kernel and the end of RAM.
    #[error("initramfs of {0} bytes does not fit in guest memory")]
    InitrdTooLarge(u64),
    /// The command line is too long or holds a NUL byte.
    #[error("kernel command line is {0} bytes; the limit is {max}", max = CMDLINE_MAX_SIZE - 1)]
    CmdlineTooLong(usize),
    /// The command line holds a NUL byte.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// Boot structures could not be written.
    #[error("cannot write the {0} to guest memory")]
    Memory(&'static str, #[source] vm_memory::GuestMemoryError),
}

type Result<T> = std::result::Result<T, Error>;

/// Where and how to enter the loaded kernel.
#[derive(Clone, Copy, Debug)]
pub struct KernelEntry {
    /// Entry point (guest physical).
    pub entry: GuestAddress,
    /// Entry convention.
    pub mode: BootMode,
    /// First byte past the loaded kernel.
    pub kernel_end: u64,
    /// The bzImage setup header, to copy into the zero page.
    pub setup_header: Option<setup_header>,
}

/// Loads an ELF vmlinux or a bzImage from `file` into `mem`.
pub fn load_kernel(mem: &GuestMemoryMmap, file: &mut File) -> Result<KernelEntry> {
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0)).map_err(Error::ReadKernel)?;
    file.read_exact(&mut magic).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::UnknownFormat,
        _ => Error::ReadKernel(e),
    })?;
    if magic == *b"\x7fELF" {
        let r = Elf::load(mem, None, file, Some(GuestAddress(HIMEM_START))).map_err(Error::Elf)?;
        let (entry, mode) = match r.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(addr) => (addr, BootMode::Pvh),
            _ => (r.kernel_load, BootMode::Linux64),
        };
        return Ok(KernelEntry {
            entry,
            mode,
            kernel_end: r.kernel_end,
            setup_header: None,
        });
    }
    let mut hdr_magic = [0u8; 4];
    file.seek(SeekFrom::Start(0x202))
        .map_err(Error::ReadKernel)?;
    if file.read_exact(&mut hdr_magic).is_err() || hdr_magic != *b"HdrS" {
        return Err(Error::UnknownFormat);
    }
    let r =
        BzImage::load(mem, None, file, Some(GuestAddress(HIMEM_START))).map_err(Error::BzImage)?;
    let hdr = r.setup_header.ok_or(Error::UnknownFormat)?;
    if hdr.version < 0x0206 {
        return Err(Error::OldBootProtocol(hdr.version));
    }
    // The 64-bit entry point sits 0x200 bytes into the protected-mode kernel.
    let entry = r
        .kernel_load
        .checked_add(0x200)
        .ok_or(Error::UnknownFormat)?;
    Ok(KernelEntry {
        entry,
        mode: BootMode::Linux64,
        kernel_end: r.kernel_end,
        setup_header: Some(hdr),
    })
}

/// Loads the initramfs at the top of low RAM (below the MMIO hole), page
/// aligned and above the kernel. Returns its address and size.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    file: &mut File,
    kernel_end: u64,
) -> Result<(GuestAddress, u64)> {
    let size = file.metadata().map_err(Error::ReadInitrd)?.len();
    let low_top = mem
        .last_addr()
        .raw_value()
        .saturating_add(1)
        .min(MMIO_GAP_START);
    let addr = low_top
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .ok_or(Error::InitrdTooLarge(size))?;
    if addr < kernel_end.max(HIMEM_START) {
        return Err(Error::InitrdTooLarge(size));
    }
    file.seek(SeekFrom::Start(0)).map_err(Error::ReadInitrd)?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, size as usize)
        .map_err(|e| Error::Memory("initramfs", e))?;
    Ok((GuestAddress(addr), size))
}

/// Checks and writes the NUL-terminated command line.
pub fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<()> {
    if cmdline.len() >= CMDLINE_MAX_SIZE {
        return Err(Error::CmdlineTooLong(cmdline.len()));
    }
    if cmdline.bytes().any(|b| b == 0) {
        return Err(Error::CmdlineNul);
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|e| Error::Memory("command line", e))
}

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;
const E820_MAX_ZEROPAGE: usize = 128;

/// Writes the Linux zero page (`boot_params`).
pub fn write_zero_page(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    cmdline_len: usize,
    initrd: Option<(GuestAddress, u64)>,
    header: Option<setup_header>,
) -> Result<()> {
    let mut params = boot_params::default();
    if let Some(h) = header {
        params.hdr = h;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if header.is_none() {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    }
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr.raw_value() as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820_map(mem_size);
    for (slot, e) in params
        .e820_table
        .iter_mut()
        .zip(map.iter())
        .take(E820_MAX_ZEROPAGE)
    {
        slot.addr = e.addr;
        slot.size = e.size;
        slot.r#type = e.kind;
    }
    params.e820_entries = map.len().min(E820_MAX_ZEROPAGE) as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
        .map_err(|e| Error::Memory("zero page", e))
}

/// Writes the PVH start info, module list (the initramfs) and memory map.
pub fn write_pvh_info(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    initrd: Option<(GuestAddress, u64)>,
) -> Result<()> {
    let map: Vec<E820Entry> = e820_map(mem_size);
    let mut info = hvm_start_info {
        magic: linux_loader::loader::elf::start_info::XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some((addr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr: addr.raw_value(),
            size,
            ..Default::default()
        };
        mem.write_obj(module, GuestAddress(PVH_MODLIST_START))
            .map_err(|e| Error::Memory("PVH module list", e))?;
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST_START;
    }
    for (i, e) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        };
        let at = PVH_MEMMAP_START + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_obj(entry, GuestAddress(at))
            .map_err(|e| Error::Memory("PVH memory map", e))?;
    }
    mem.write_obj(info, GuestAddress(PVH_INFO_START))
        .map_err(|e| Error::Memory("PVH start info", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mem(size: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).unwrap()
    }

    #[test]
    fn garbage_kernel_is_rejected() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0x55u8; 4096]).unwrap();
        assert!(matches!(
            load_kernel(&mem(16 << 20), &mut f),
            Err(Error::UnknownFormat)
        ));
        let mut empty = tempfile::tempfile().unwrap();
        assert!(load_kernel(&mem(16 << 20), &mut empty).is_err());
    }

    #[test]
    fn initrd_goes_to_the_top_and_must_fit() {
        let m = mem(16 << 20);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 10000]).unwrap();
        let (addr, size) = load_initrd(&m, &mut f, 2 << 20).unwrap();
        assert_eq!(size, 10000);
        assert_eq!(addr.raw_value() & 0xfff, 0);
        assert!(addr.raw_value() + size <= 16 << 20);
        let b: u8 = m.read_obj(addr).unwrap();
        assert_eq!(b, 7);
        assert!(matches!(
            load_initrd(&m, &mut f, 16 << 20),
            Err(Error::InitrdTooLarge(_))
        ));
    }

    #[test]
    fn cmdline_limits() {
        let m = mem(1 << 20);
        write_cmdline(&m, "console=ttyS0").unwrap();
        assert!(matches!(
            write_cmdline(&m, &"x".repeat(CMDLINE_MAX_SIZE)),
            Err(Error::CmdlineTooLong(_))
        ));
        assert!(matches!(write_cmdline(&m, "a\0b"), Err(Error::CmdlineNul)));
    }

    #[test]
    fn pvh_info_reads_back() {
        let m = mem(64 << 20);
        write_pvh_info(&m, 64 << 20, Some((GuestAddress(0x300_0000), 42))).unwrap();
        let info: hvm_start_info = m.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(info.magic, 0x336e_c578);
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.memmap_entries, 3);
        let module: hvm_modlist_entry = m.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((module.paddr, module.size), (0x300_0000, 42));
    }

    #[test]
    fn zero_page_has_e820_and_cmdline() {
        let m = mem(64 << 20);
        write_zero_page(&m, 64 << 20, 12, None, None).unwrap();
        let p: boot_params = m.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!(p.e820_entries, 3);
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ p.hdr.boot_flag }, 0xaa55);
    }
}
