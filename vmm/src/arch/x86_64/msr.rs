//! Model-specific registers set on every vCPU before boot (the set
//! Firecracker's `arch/x86_64/msr.rs` programs).

use kvm_bindings::{kvm_msr_entry, Msrs};
use kvm_ioctls::VcpuFd;

/// Errors while setting MSRs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MSR list could not be built.
    #[error("cannot build the MSR list")]
    Build,
    /// KVM_SET_MSRS failed.
    #[error("KVM_SET_MSRS failed")]
    Set(#[source] kvm_ioctls::Error),
    /// KVM accepted only a prefix of the list.
    #[error("KVM refused MSR {0:#x}")]
    Refused(u32),
}

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_MEM_TYPE_WB: u64 = 6;

/// The boot MSRs and their values.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_MEM_TYPE_WB),
    ]
}

/// Sets the boot MSRs on `vcpu`; fails naming the first MSR KVM refused.
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), Error> {
    let list = boot_msrs();
    let entries: Vec<kvm_msr_entry> = list
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| Error::Build)?;
    let n = vcpu.set_msrs(&msrs).map_err(Error::Set)?;
    if n < list.len() {
        return Err(Error::Refused(list[n].0));
    }
    Ok(())
}
