//! One vCPU's KVM state, saved while its thread is parked out of KVM_RUN
//! and set on a fresh vCPU at restore. The order of both follows KVM's
//! rules as Firecracker's `arch/x86_64/vcpu.rs` writes them down: MP state
//! first on save (reading it may change the LAPIC) and events last; on
//! restore CPUID first, registers before events (SET_REGS drops a pending
//! exception that SET_VCPU_EVENTS brings back), the LAPIC after the special
//! registers (which hold the APIC base) and before the MSRs (the TSC
//! deadline needs the LAPIC).

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs,
    kvm_sregs, kvm_vcpu_events, kvm_xcrs, CpuId, Msrs, Xsave, KVM_MAX_CPUID_ENTRIES,
    KVM_MAX_MSR_ENTRIES,
};
use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

/// Size of the legacy `kvm_xsave` area, in 32-bit words.
const XSAVE_LEGACY_WORDS: usize = 1024;

/// A failed vCPU state ioctl.
#[derive(Debug, thiserror::Error)]
pub enum VcpuStateError {
    /// KVM refused a get or set.
    #[error("{0} failed")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// KVM set only part of the MSRs.
    #[error("KVM refused MSR {0:#x}")]
    MsrRefused(u32),
    /// A list could not be built (too many entries).
    #[error("too many {0} entries")]
    TooMany(&'static str),
    /// The saved XSAVE area is smaller than this host's.
    #[error(
        "the snapshot's XSAVE area ({found} bytes) is smaller than this host's ({want} bytes)"
    )]
    XsaveSize {
        /// Saved bytes.
        found: usize,
        /// Bytes KVM uses here.
        want: usize,
    },
}

type Result<T> = std::result::Result<T, VcpuStateError>;

/// What KVM holds of one vCPU.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcpuState {
    /// The CPUID table the vCPU runs with (KVM_GET_CPUID2).
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// Every MSR KVM would read, of the list `msrs_to_save` gave.
    pub msrs: Vec<kvm_msr_entry>,
    /// General registers.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers.
    pub sregs: kvm_sregs,
    /// The XSAVE area (FPU, SSE, AVX, …), as 32-bit words.
    pub xsave: Vec<u32>,
    /// Extended control registers (XCR0).
    pub xcrs: kvm_xcrs,
    /// Debug registers.
    pub debugregs: kvm_debugregs,
    /// The local APIC.
    pub lapic: kvm_lapic_state,
    /// Running, halted, waiting for SIPI.
    pub mp_state: kvm_mp_state,
    /// Pending exceptions, interrupts, NMIs, SMIs.
    pub events: kvm_vcpu_events,
    /// TSC frequency in kHz, when KVM tells it.
    pub tsc_khz: Option<u32>,
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState")
            .field("rip", &self.regs.rip)
            .field("msrs", &self.msrs.len())
            .finish_non_exhaustive()
    }
}

/// Bytes of the XSAVE area KVM uses on this host (KVM_CAP_XSAVE2, or the
/// legacy 4 KiB).
fn xsave_bytes(xsave2_size: usize) -> usize {
    xsave2_size.max(XSAVE_LEGACY_WORDS * 4)
}

/// Reads the MSRs in `indices` that KVM can read: KVM_GET_MSRS stops at
/// the first it cannot, which is skipped, and the rest is read on.
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(KVM_MAX_MSR_ENTRIES)];
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| VcpuStateError::TooMany("MSR"))?;
        let n = fd
            .get_msrs(&mut msrs)
            .map_err(|e| VcpuStateError::Kvm("KVM_GET_MSRS", e))?
            .min(chunk.len());
        out.extend_from_slice(&msrs.as_slice()[..n]);
        // A short read stops at an MSR KVM cannot read: skip that one.
        let skip = if n < chunk.len() { n + 1 } else { n };
        rest = &rest[skip..];
    }
    Ok(out)
}

/// Saves the state of a vCPU that is out of KVM_RUN (and stays out until
/// this returns). `msrs_to_save` is the list from `msrs_to_save`;
/// `xsave2_size` KVM's KVM_CAP_XSAVE2 (0 when it lacks it).
pub fn save_vcpu(fd: &VcpuFd, msrs_to_save: &[u32], xsave2_size: usize) -> Result<VcpuState> {
    let kvm = |what| move |e| VcpuStateError::Kvm(what, e);
    let mp_state = fd.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?;
    let regs = fd.get_regs().map_err(kvm("KVM_GET_REGS"))?;
    let sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let xsave = if xsave2_size > 0 {
        let bytes = xsave_bytes(xsave2_size);
        let extra = (bytes - XSAVE_LEGACY_WORDS * 4).div_ceil(4);
        let mut x = Xsave::new(extra).map_err(|_| VcpuStateError::TooMany("XSAVE"))?;
        // SAFETY: `x` holds the 4 KiB legacy area plus `extra` words, at
        // least the KVM_CAP_XSAVE2 size the kernel writes.
        unsafe { fd.get_xsave2(&mut x) }.map_err(kvm("KVM_GET_XSAVE2"))?;
        let mut words = x.as_fam_struct_ref().xsave.region.to_vec();
        words.extend_from_slice(x.as_slice());
        words
    } else {
        fd.get_xsave()
            .map_err(kvm("KVM_GET_XSAVE"))?
            .region
            .to_vec()
    };
    let xcrs = fd.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?;
    let debugregs = fd.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?;
    let lapic = fd.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    let tsc_khz = fd.get_tsc_khz().ok();
    let cpuid = fd
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("KVM_GET_CPUID2"))?
        .as_slice()
        .to_vec();
    let msrs = read_msrs(fd, msrs_to_save)?;
    let events = fd.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?;
    Ok(VcpuState {
        cpuid,
        msrs,
        regs,
        sregs,
        xsave,
        xcrs,
        debugregs,
        lapic,
        mp_state,
        events,
        tsc_khz,
    })
}

/// Sets a saved state on a vCPU that has not run yet.
pub fn restore_vcpu(fd: &VcpuFd, s: &VcpuState, xsave2_size: usize) -> Result<()> {
    let kvm = |what| move |e| VcpuStateError::Kvm(what, e);
    let cpuid = CpuId::from_entries(&s.cpuid).map_err(|_| VcpuStateError::TooMany("CPUID"))?;
    fd.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
    if let Some(khz) = s.tsc_khz {
        // Same host, same frequency: nothing to do. Elsewhere, scale if KVM
        // can; if it cannot, the guest's clock runs at this host's rate.
        if fd.get_tsc_khz().ok() != Some(khz) && fd.set_tsc_khz(khz).is_err() {
            crate::logger::warn(format_args!(
                "the snapshot's TSC ran at {khz} kHz and KVM cannot scale this host's"
            ));
        }
    }
    fd.set_mp_state(s.mp_state)
        .map_err(kvm("KVM_SET_MP_STATE"))?;
    fd.set_regs(&s.regs).map_err(kvm("KVM_SET_REGS"))?;
    fd.set_sregs(&s.sregs).map_err(kvm("KVM_SET_SREGS"))?;
    let want = xsave_bytes(xsave2_size);
    if s.xsave.len() * 4 < want || s.xsave.len() < XSAVE_LEGACY_WORDS {
        return Err(VcpuStateError::XsaveSize {
            found: s.xsave.len() * 4,
            want,
        });
    }
    let mut x = Xsave::new(s.xsave.len() - XSAVE_LEGACY_WORDS)
        .map_err(|_| VcpuStateError::TooMany("XSAVE"))?;
    // SAFETY: only the fixed legacy area is written; the length of the
    // flexible array, which the wrapper relies on, is left as it is.
    unsafe { x.as_mut_fam_struct() }
        .xsave
        .region
        .copy_from_slice(&s.xsave[..XSAVE_LEGACY_WORDS]);
    x.as_mut_slice()
        .copy_from_slice(&s.xsave[XSAVE_LEGACY_WORDS..]);
    // SAFETY: `x` holds at least the XSAVE size KVM reads on this host
    // (checked above: the legacy 4 KiB, or KVM_CAP_XSAVE2's size).
    unsafe { fd.set_xsave2(&x) }.map_err(kvm("KVM_SET_XSAVE"))?;
    fd.set_xcrs(&s.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
    fd.set_debug_regs(&s.debugregs)
        .map_err(kvm("KVM_SET_DEBUGREGS"))?;
    fd.set_lapic(&s.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
    for chunk in s.msrs.chunks(KVM_MAX_MSR_ENTRIES) {
        let msrs = Msrs::from_entries(chunk).map_err(|_| VcpuStateError::TooMany("MSR"))?;
        let n = fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if n < chunk.len() {
            return Err(VcpuStateError::MsrRefused(chunk[n].index));
        }
    }
    fd.set_vcpu_events(&s.events)
        .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
    // Tells a kvmclock guest it was stopped, so that its watchdogs do not
    // take the gap for a lockup; fails harmlessly without kvmclock.
    let _ = fd.kvmclock_ctrl();
    Ok(())
}

/// The MSRs to save: KVM's list of MSRs to save and migrate
/// (KVM_GET_MSR_INDEX_LIST) and the ones hull-vmm sets at boot, without
/// duplicates. Those a vCPU cannot read are dropped when it is saved.
pub fn msrs_to_save(kvm: &kvm_ioctls::Kvm) -> Result<Vec<u32>> {
    let list = kvm
        .get_msr_index_list()
        .map_err(|e| VcpuStateError::Kvm("KVM_GET_MSR_INDEX_LIST", e))?;
    let mut out: Vec<u32> = list.as_slice().to_vec();
    for (index, _) in crate::arch::x86_64::msr::boot_msrs() {
        if !out.contains(&index) {
            out.push(index);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_ioctls::{Cap, Kvm};

    fn kvm() -> Kvm {
        Kvm::new().expect("/dev/kvm is needed by the vCPU state tests")
    }

    #[test]
    fn a_vcpu_state_moves_to_another_vm() {
        let kvm = kvm();
        let xsave2 = kvm.check_extension_int(Cap::Xsave2).max(0) as usize;
        let msrs = msrs_to_save(&kvm).unwrap();
        let supported = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
        let make = || {
            let vm = kvm.create_vm().unwrap();
            vm.create_irq_chip().unwrap();
            let fd = vm.create_vcpu(0).unwrap();
            fd.set_cpuid2(&supported).unwrap();
            (vm, fd)
        };
        let (_vm1, a) = make();
        let mut regs = a.get_regs().unwrap();
        regs.rip = 0x1234_5678;
        regs.rbx = 0xfeed;
        regs.rflags = 0x2;
        a.set_regs(&regs).unwrap();
        let star = kvm_msr_entry {
            index: 0xc000_0081,
            data: 0x0023_0010_0000_0000,
            ..Default::default()
        };
        a.set_msrs(&Msrs::from_entries(&[star]).unwrap()).unwrap();
        let saved = save_vcpu(&a, &msrs, xsave2).unwrap();
        assert!(saved.msrs.iter().any(|m| m.index == 0xc000_0081));

        // Through the state file's encoding and back.
        let json = serde_json::to_vec(&saved).unwrap();
        let back: VcpuState = serde_json::from_slice(&json).unwrap();

        let (_vm2, b) = make();
        restore_vcpu(&b, &back, xsave2).unwrap();
        let got = b.get_regs().unwrap();
        assert_eq!((got.rip, got.rbx), (0x1234_5678, 0xfeed));
        let mut m = Msrs::from_entries(&[kvm_msr_entry {
            index: 0xc000_0081,
            ..Default::default()
        }])
        .unwrap();
        b.get_msrs(&mut m).unwrap();
        assert_eq!(m.as_slice()[0].data, star.data);

        let mut short = back.clone();
        short.xsave.truncate(10);
        let (_vm3, c) = make();
        let e = restore_vcpu(&c, &short, xsave2).unwrap_err();
        assert!(matches!(e, VcpuStateError::XsaveSize { .. }), "{e}");
    }
}
