//! Xen's CPUID leaves (`arch-x86/cpuid.h`): how a guest finds the
//! hypervisor, its version, the hypercall-page MSR and its own domain id.

use core::arch::x86_64::{__cpuid, __cpuid_count};

/// The signature Xen puts in ebx, ecx, edx of its base leaf.
const SIGNATURE: &[u8; 12] = b"XenVMMXenVMM";

/// `XEN_HVM_CPUID_DOMID_PRESENT`: leaf base+4's ecx holds the domain id.
const HVM_DOMID_PRESENT: u32 = 1 << 4;

/// The Xen CPUID leaves of this CPU.
#[derive(Clone, Copy, Debug)]
pub struct XenLeaves {
    base: u32,
    max: u32,
}

impl XenLeaves {
    /// Finds Xen's leaves: they start at 0x4000_0000 or at a multiple of
    /// 0x100 above it when another hypervisor interface comes first.
    pub fn find() -> Option<Self> {
        (0x4000_0000..0x4001_0000).step_by(0x100).find_map(|base| {
            let r = __cpuid(base);
            let mut sig = [0u8; 12];
            sig[0..4].copy_from_slice(&r.ebx.to_le_bytes());
            sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
            sig[8..12].copy_from_slice(&r.edx.to_le_bytes());
            (&sig == SIGNATURE && r.eax >= base + 2).then_some(Self { base, max: r.eax })
        })
    }

    /// Xen's version as (major, minor).
    pub fn version(&self) -> (u16, u16) {
        let eax = __cpuid(self.base + 1).eax;
        ((eax >> 16) as u16, eax as u16)
    }

    /// The MSR that takes the hypercall page's physical address.
    pub fn hypercall_msr(&self) -> u32 {
        __cpuid(self.base + 2).ebx
    }

    /// Our own domain id, when this Xen reports it (leaf base+4, ecx).
    pub fn domid(&self) -> Option<u16> {
        if self.max < self.base + 4 {
            return None;
        }
        let r = __cpuid_count(self.base + 4, 0);
        (r.eax & HVM_DOMID_PRESENT != 0).then_some(r.ecx as u16)
    }
}
