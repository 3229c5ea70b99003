//! CPUID for a vCPU: `KVM_GET_SUPPORTED_CPUID` filtered for a small VM.
//!
//! Follows the normalisation Firecracker's `cpuid` module applies: the
//! host vendor is kept, the hypervisor bit is set, the topology leaves
//! (1, 4, 0xb, 0x1f, 0x80000008, 0x8000001e) describe `count` single-thread
//! cores in one package with APIC id = vCPU index, and the PMU is hidden.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// Errors while building a vCPU's CPUID.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The filtered table could not be turned back into a `CpuId`.
    #[error("cannot build the CPUID table")]
    Build,
}

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;

fn bits_for(count: u32) -> u32 {
    // Smallest shift such that 1 << shift >= count.
    32 - (count.max(1) - 1).leading_zeros()
}

/// Returns the CPUID table for vCPU `index` of `count`.
pub fn filter_cpuid(supported: &CpuId, index: u8, count: u8) -> Result<CpuId, Error> {
    let idx = u32::from(index);
    let n = u32::from(count.max(1));
    let mut out: Vec<kvm_cpuid_entry2> = Vec::new();
    let mut has_kvm_leaf = false;
    for e in supported.as_slice() {
        let mut e = *e;
        match e.function {
            0x1 => {
                e.ebx = (idx << 24) | (n << 16) | (8 << 8) | (e.ebx & 0xff);
                e.ecx |= ECX_HYPERVISOR;
                if n > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            0x4 => {
                // Deterministic cache parameters: one thread per core,
                // `n` cores per package; the L3 (level 3) is shared by all.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { n - 1 } else { 0 };
                e.eax = (e.eax & 0x3fff) | (sharing << 14) | ((n - 1) << 26);
            }
            0x6 => {
                // No turbo or energy-performance knobs in a VM.
                e.eax &= !(1 << 1);
                e.ecx &= !(1 << 3);
            }
            0xa => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xb | 0x1f => {
                e.edx = idx;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 1 << 8;
                    }
                    1 => {
                        e.eax = bits_for(n);
                        e.ebx = n;
                        e.ecx = (2 << 8) | 1;
                    }
                    i => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = i;
                    }
                }
            }
            0x8000_0008 => {
                e.ecx = (e.ecx & !0xf0ff) | (bits_for(n) << 12) | (n - 1);
            }
            0x8000_001e => {
                e.eax = idx;
                e.ebx = (e.ebx & !0xffff) | idx;
                e.ecx &= !0x7ff;
            }
            KVM_SIGNATURE_LEAF => has_kvm_leaf = true,
            _ => {}
        }
        out.push(e);
    }
    if !has_kvm_leaf {
        // "KVMKVMKVM\0\0\0": lets the guest find kvmclock and PV features.
        out.push(kvm_cpuid_entry2 {
            function: KVM_SIGNATURE_LEAF,
            eax: 0x4000_0001,
            ebx: 0x4b4d_564b,
            ecx: 0x564b_4d56,
            edx: 0x4d,
            ..Default::default()
        });
    }
    // Mark leaves whose sub-leaf matters, as KVM expects.
    for e in out.iter_mut() {
        if matches!(e.function, 0x4 | 0x7 | 0xb | 0xd | 0x1f | 0x8000_001d) {
            e.flags |= KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        }
    }
    CpuId::from_entries(&out).map_err(|_| Error::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    #[test]
    fn topology_and_hypervisor_bit() {
        let sup =
            CpuId::from_entries(&[leaf(0, 0), leaf(1, 0), leaf(0xb, 0), leaf(0xb, 1)]).unwrap();
        let c = filter_cpuid(&sup, 2, 4).unwrap();
        let s = c.as_slice();
        let l1 = s.iter().find(|e| e.function == 1).unwrap();
        assert_eq!(l1.ebx >> 24, 2);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        let core = s
            .iter()
            .find(|e| e.function == 0xb && e.index == 1)
            .unwrap();
        assert_eq!((core.eax, core.ebx, core.edx), (2, 4, 2));
        assert!(s.iter().any(|e| e.function == KVM_SIGNATURE_LEAF));
    }

    #[test]
    fn shift_widths() {
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(2), 1);
        assert_eq!(bits_for(3), 2);
        assert_eq!(bits_for(4), 2);
        assert_eq!(bits_for(5), 3);
    }
}
