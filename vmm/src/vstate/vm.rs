//! The KVM VM: `/dev/kvm`, the VM fd, the in-kernel irqchip and PIT.

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};

use crate::arch::x86_64::layout::KVM_TSS_ADDRESS;

/// Errors while creating the VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/dev/kvm` could not be opened.
    #[error("cannot open /dev/kvm (is KVM available and accessible?)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// KVM_CREATE_VM failed.
    #[error("KVM_CREATE_VM failed")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// A VM setup ioctl failed.
    #[error("{0} failed")]
    Setup(&'static str, #[source] kvm_ioctls::Error),
    /// The host KVM lacks something we need.
    #[error("KVM lacks {0}")]
    MissingCap(&'static str),
}

/// Opens KVM and creates a VM with an in-kernel irqchip (PIC, IOAPIC,
/// LAPICs). The PIT comes from `create_pit`, which is slow enough (up to
/// 5 ms here) to be worth running alongside the rest of the setup.
pub fn create_vm() -> Result<(Kvm, VmFd), Error> {
    let kvm = Kvm::new().map_err(Error::OpenKvm)?;
    for (cap, name) in [
        (kvm_ioctls::Cap::Irqchip, "an in-kernel irqchip"),
        (kvm_ioctls::Cap::Ioeventfd, "ioeventfd"),
        (kvm_ioctls::Cap::Irqfd, "irqfd"),
        (kvm_ioctls::Cap::UserMemory, "user memory"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(Error::MissingCap(name));
        }
    }
    let vm = kvm.create_vm().map_err(Error::CreateVm)?;
    vm.set_tss_address(KVM_TSS_ADDRESS as usize)
        .map_err(|e| Error::Setup("KVM_SET_TSS_ADDR", e))?;
    vm.create_irq_chip()
        .map_err(|e| Error::Setup("KVM_CREATE_IRQCHIP", e))?;
    Ok((kvm, vm))
}

/// Creates the in-kernel PIT (Linux uses it as its first timer); must be
/// done before the vCPUs run.
pub fn create_pit(vm: &VmFd) -> Result<(), Error> {
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit)
        .map_err(|e| Error::Setup("KVM_CREATE_PIT2", e))
}
