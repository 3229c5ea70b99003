//! Guest RAM: anonymous mappings from vm-memory (or, on restore, private
//! mappings of a snapshot's memory file), registered with KVM.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::x86_64::arch_memory_regions;

/// Errors while creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host could not map the memory.
    #[error("cannot map {0} MiB of guest memory")]
    Mmap(u64, #[source] vm_memory::mmap::FromRangesError),
    /// KVM refused a memory slot.
    #[error("KVM refused guest memory slot {0}")]
    Slot(u32, #[source] kvm_ioctls::Error),
}

/// Maps `mib` MiB of guest RAM and registers every region with `vm`.
pub fn create_guest_memory(vm: &VmFd, mib: u64) -> Result<GuestMemoryMmap, Error> {
    let ranges = arch_memory_regions(mib << 20);
    let mem = GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(|e| Error::Mmap(mib, e))?;
    register_guest_memory(vm, &mem)?;
    Ok(mem)
}

/// Registers every region of `mem` with `vm`, one slot a region.
pub fn register_guest_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), Error> {
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: `userspace_addr` is a live mapping of `memory_size` bytes
        // owned by `mem`, which outlives the VM: the VMM keeps it until the
        // process exits, and slots never overlap (the ranges are disjoint).
        unsafe { vm.set_user_memory_region(r) }.map_err(|e| Error::Slot(slot as u32, e))?;
    }
    Ok(())
}
