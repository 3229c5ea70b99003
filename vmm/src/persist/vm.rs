//! The VM-wide KVM state: the in-kernel PIC pair and IOAPIC, the PIT and
//! the KVM clock (Firecracker's `arch/x86_64/vm.rs` saves the same).

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

/// A failed VM state ioctl, or a saved chip in the wrong place.
#[derive(Debug, thiserror::Error)]
pub enum VmStateError {
    /// KVM refused a get or set.
    #[error("{0} failed")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// A saved irqchip names another chip than its field.
    #[error("the saved {0} is another chip")]
    ChipId(&'static str),
}

/// The VM's interrupt controllers, timer and clock.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmState {
    /// The master 8259.
    pub pic_master: kvm_irqchip,
    /// The slave 8259.
    pub pic_slave: kvm_irqchip,
    /// The IOAPIC.
    pub ioapic: kvm_irqchip,
    /// The 8254 PIT.
    pub pit: kvm_pit_state2,
    /// The KVM clock (kvmclock's time base).
    pub clock: kvm_clock_data,
}

fn chip(vm: &VmFd, id: u32) -> Result<kvm_irqchip, VmStateError> {
    let mut c = kvm_irqchip {
        chip_id: id,
        ..Default::default()
    };
    vm.get_irqchip(&mut c)
        .map_err(|e| VmStateError::Kvm("KVM_GET_IRQCHIP", e))?;
    Ok(c)
}

/// Saves the VM state; every vCPU must be out of KVM_RUN.
pub fn save_vm(vm: &VmFd) -> Result<VmState, VmStateError> {
    Ok(VmState {
        pic_master: chip(vm, KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: chip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: chip(vm, KVM_IRQCHIP_IOAPIC)?,
        pit: vm
            .get_pit2()
            .map_err(|e| VmStateError::Kvm("KVM_GET_PIT2", e))?,
        clock: vm
            .get_clock()
            .map_err(|e| VmStateError::Kvm("KVM_GET_CLOCK", e))?,
    })
}

/// Sets a saved state on a VM with its irqchip and PIT created, before
/// any vCPU runs. The clock continues from the saved value (the guest does
/// not see the time the snapshot spent on disk).
pub fn restore_vm(vm: &VmFd, s: &VmState) -> Result<(), VmStateError> {
    for (c, id, name) in [
        (&s.pic_master, KVM_IRQCHIP_PIC_MASTER, "PIC master"),
        (&s.pic_slave, KVM_IRQCHIP_PIC_SLAVE, "PIC slave"),
        (&s.ioapic, KVM_IRQCHIP_IOAPIC, "IOAPIC"),
    ] {
        if c.chip_id != id {
            return Err(VmStateError::ChipId(name));
        }
    }
    vm.set_pit2(&s.pit)
        .map_err(|e| VmStateError::Kvm("KVM_SET_PIT2", e))?;
    let clock = kvm_clock_data {
        clock: s.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock)
        .map_err(|e| VmStateError::Kvm("KVM_SET_CLOCK", e))?;
    for c in [&s.pic_master, &s.pic_slave, &s.ioapic] {
        vm.set_irqchip(c)
            .map_err(|e| VmStateError::Kvm("KVM_SET_IRQCHIP", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> VmFd {
        let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm is needed by the VM state tests");
        let vm = kvm.create_vm().unwrap();
        vm.create_irq_chip().unwrap();
        vm.create_pit2(Default::default()).unwrap();
        vm
    }

    #[test]
    fn vm_state_moves_to_another_vm_and_misplaced_chips_are_refused() {
        let a = vm();
        // Program IOAPIC pin 5 so the state is not all defaults.
        let mut io = chip(&a, KVM_IRQCHIP_IOAPIC).unwrap();
        // SAFETY: the IOAPIC member of the union is the one KVM fills for
        // chip KVM_IRQCHIP_IOAPIC.
        unsafe { io.chip.ioapic.redirtbl[5].bits = 0x1_0035 };
        a.set_irqchip(&io).unwrap();
        let saved = save_vm(&a).unwrap();
        let back: VmState = serde_json::from_slice(&serde_json::to_vec(&saved).unwrap()).unwrap();
        let b = vm();
        restore_vm(&b, &back).unwrap();
        let got = chip(&b, KVM_IRQCHIP_IOAPIC).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { got.chip.ioapic.redirtbl[5].bits }, 0x1_0035);
        let mut bad = back.clone();
        bad.ioapic.chip_id = KVM_IRQCHIP_PIC_MASTER;
        assert!(matches!(
            restore_vm(&b, &bad),
            Err(VmStateError::ChipId("IOAPIC"))
        ));
    }
}
