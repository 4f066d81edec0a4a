//! The shared info page and per-vCPU info (`xen.h`, x86_64 layout).
//!
//! Xen writes these fields while the guest reads and clears them, so the
//! types use atomics (same size and alignment as the C integers on
//! x86_64); a `&SharedInfo` over the page placed with
//! `XENMAPSPACE_shared_info`, or over plain memory in a test, is all the
//! event-channel code needs.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};

/// `XEN_LEGACY_MAX_VCPUS`: vCPUs with a [`VcpuInfo`] in the shared page.
pub const LEGACY_MAX_VCPUS: usize = 32;
/// Bits in an `xen_ulong_t`, the word of the 2-level event bitmaps.
pub const BITS_PER_EVTCHN_WORD: usize = 64;
/// Words in `evtchn_pending` and `evtchn_mask`.
pub const EVTCHN_WORDS: usize = BITS_PER_EVTCHN_WORD;
/// Ports the 2-level ABI can name (4096 on x86_64).
pub const EVTCHN_2L_NR_CHANNELS: usize = EVTCHN_WORDS * BITS_PER_EVTCHN_WORD;

/// `struct vcpu_time_info`: Xen's per-vCPU clock parameters, under the
/// seqlock in `version`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct VcpuTimeInfo {
    /// Odd while Xen updates the fields.
    pub version: AtomicU32,
    /// Padding.
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: AtomicU64,
    /// Xen system time (ns since boot) at the last update.
    pub system_time: AtomicU64,
    /// TSC to ns multiplier (32.32 fixed point).
    pub tsc_to_system_mul: AtomicU32,
    /// TSC shift before the multiply.
    pub tsc_shift: AtomicU8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: AtomicU8,
    /// Padding.
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` (x86_64).
#[repr(C)]
#[derive(Debug, Default)]
pub struct ArchVcpuInfo {
    /// Fault address (PV guests only).
    pub cr2: u64,
    /// Padding to 64 bytes of `vcpu_info`.
    pub pad: u64,
}

/// `struct vcpu_info`: one vCPU's event-delivery state.
#[repr(C)]
#[derive(Debug, Default)]
pub struct VcpuInfo {
    /// Set by Xen when an event is pending for this vCPU.
    pub evtchn_upcall_pending: AtomicU8,
    /// Set by the guest to stop upcalls (PV; HVM masks the vector).
    pub evtchn_upcall_mask: AtomicU8,
    /// Bit `w` set: word `w` of `evtchn_pending` may have work.
    pub evtchn_pending_sel: AtomicU64,
    /// Architecture-specific part.
    pub arch: ArchVcpuInfo,
    /// Clock parameters.
    pub time: VcpuTimeInfo,
}

impl VcpuInfo {
    /// A zeroed `vcpu_info` (as Xen's dummy area, but for the mask): for
    /// a guest's own copy before `VCPUOP_register_vcpu_info` fills it.
    pub const fn new() -> Self {
        Self {
            evtchn_upcall_pending: AtomicU8::new(0),
            evtchn_upcall_mask: AtomicU8::new(0),
            evtchn_pending_sel: AtomicU64::new(0),
            arch: ArchVcpuInfo { cr2: 0, pad: 0 },
            time: VcpuTimeInfo {
                version: AtomicU32::new(0),
                pad0: 0,
                tsc_timestamp: AtomicU64::new(0),
                system_time: AtomicU64::new(0),
                tsc_to_system_mul: AtomicU32::new(0),
                tsc_shift: AtomicU8::new(0),
                flags: AtomicU8::new(0),
                pad1: [0; 2],
            },
        }
    }
}

/// `struct arch_shared_info` (x86_64): a PV guest's p2m as the
/// toolstack finds it to save the domain. Atomics, as the rest of the
/// page: the toolstack and Xen read and write it too.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ArchSharedInfo {
    /// PV p2m size: the entries of the p2m list (its highest pfn + 1).
    pub max_pfn: AtomicU64,
    /// PV p2m frame list list: the machine frame of a page of machine
    /// frames of pages of machine frames of the p2m list's pages.
    pub pfn_to_mfn_frame_list_list: AtomicU64,
    /// NMI reason bits.
    pub nmi_reason: AtomicU64,
    /// PV p2m root (a linear p2m list instead of the tree; 0: none).
    pub p2m_cr3: AtomicU64,
    /// PV linear p2m address.
    pub p2m_vaddr: AtomicU64,
    /// PV p2m generation count.
    pub p2m_generation: AtomicU64,
}

/// `struct shared_info`: the page shared with Xen.
#[repr(C)]
#[derive(Debug)]
pub struct SharedInfo {
    /// Per-vCPU event state of the first [`LEGACY_MAX_VCPUS`] vCPUs.
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    /// Bit `p` set: port `p` has an event (set by Xen, cleared by us).
    pub evtchn_pending: [AtomicU64; EVTCHN_WORDS],
    /// Bit `p` set: port `p` does not raise upcalls.
    pub evtchn_mask: [AtomicU64; EVTCHN_WORDS],
    /// Wall clock seqlock.
    pub wc_version: AtomicU32,
    /// Wall clock seconds since the epoch (low 32 bits).
    pub wc_sec: AtomicU32,
    /// Wall clock nanoseconds.
    pub wc_nsec: AtomicU32,
    /// Wall clock seconds (high 32 bits).
    pub wc_sec_hi: AtomicU32,
    /// Architecture-specific part.
    pub arch: ArchSharedInfo,
}

impl Default for SharedInfo {
    fn default() -> Self {
        Self {
            vcpu_info: Default::default(),
            evtchn_pending: core::array::from_fn(|_| AtomicU64::new(0)),
            evtchn_mask: core::array::from_fn(|_| AtomicU64::new(0)),
            wc_version: AtomicU32::new(0),
            wc_sec: AtomicU32::new(0),
            wc_nsec: AtomicU32::new(0),
            wc_sec_hi: AtomicU32::new(0),
            arch: ArchSharedInfo::default(),
        }
    }
}
