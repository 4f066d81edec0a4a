//! Per-vCPU operations (`vcpu.h`).

// The C names are kept (as xen-sys does) so a reader can grep the headers.
#![allow(non_upper_case_globals)]

/// `VCPUOP_initialise`.
pub const VCPUOP_initialise: u32 = 0;
/// `VCPUOP_up`.
pub const VCPUOP_up: u32 = 1;
/// `VCPUOP_down`.
pub const VCPUOP_down: u32 = 2;
/// `VCPUOP_is_up`.
pub const VCPUOP_is_up: u32 = 3;
/// `VCPUOP_set_periodic_timer`.
pub const VCPUOP_set_periodic_timer: u32 = 6;
/// `VCPUOP_stop_periodic_timer`.
pub const VCPUOP_stop_periodic_timer: u32 = 7;
/// `VCPUOP_set_singleshot_timer`.
pub const VCPUOP_set_singleshot_timer: u32 = 8;
/// `VCPUOP_stop_singleshot_timer`.
pub const VCPUOP_stop_singleshot_timer: u32 = 9;
/// `VCPUOP_register_vcpu_info`.
pub const VCPUOP_register_vcpu_info: u32 = 10;

/// `VCPU_SSHOTTMR_future`: fail with `ETIME` if the deadline has passed.
pub const VCPU_SSHOTTMR_future: u32 = 1;

/// `struct vcpu_set_singleshot_timer`: argument of
/// `VCPUOP_set_singleshot_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute Xen system time of the deadline, in nanoseconds.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
}

/// `VCPU_HVM_MODE_64B`: a [`VcpuHvmContext`] that starts the vCPU in long
/// mode with the 64-bit register set.
pub const VCPU_HVM_MODE_64B: u32 = 1;

/// `struct vcpu_hvm_x86_64`: the registers a vCPU starts with in long
/// mode (flat segments, busy TR: Xen sets the rest).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // register names
pub struct VcpuHvmX86_64 {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// Bytes of `struct vcpu_hvm_context`'s register union past the 64-bit
/// set: the 32-bit set (120 bytes) is the larger member.
const HVM_CONTEXT_TAIL: usize = 120 - size_of::<VcpuHvmX86_64>();

/// `struct vcpu_hvm_context`: argument of `VCPUOP_initialise` for an HVM
/// or PVH vCPU, here always with the 64-bit member of its union.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuHvmContext {
    /// `VCPU_HVM_MODE_*`.
    pub mode: u32,
    /// Zero.
    pub pad: u32,
    /// `cpu_regs.x86_64`.
    pub x86_64: VcpuHvmX86_64,
    /// The rest of the union.
    pub tail: [u8; HVM_CONTEXT_TAIL],
}

/// `struct vcpu_register_vcpu_info`: argument of
/// `VCPUOP_register_vcpu_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// The frame holding the `vcpu_info` (a guest frame on HVM/PVH).
    pub mfn: u64,
    /// Its offset in the frame (8-aligned, at most 4096 - 64).
    pub offset: u32,
    /// Zero.
    pub rsvd: u32,
}
