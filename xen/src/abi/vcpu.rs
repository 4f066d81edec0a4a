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
