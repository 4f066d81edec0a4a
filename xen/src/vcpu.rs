//! Per-vCPU operations (`VCPUOP_*`): the one-shot timer.

use crate::abi::op::VCPU_OP;
use crate::abi::vcpu::{
    VCPUOP_set_singleshot_timer, VCPUOP_stop_singleshot_timer, VcpuSetSingleshotTimer,
};
use crate::hypercall::{self, XenErrno};

/// Arms `vcpu`'s one-shot timer for Xen system time `deadline_ns`; it
/// raises `VIRQ_TIMER` then. `flags` is `VCPU_SSHOTTMR_future` (fail with
/// `ETIME` if the deadline has passed) or 0.
pub fn set_singleshot_timer(vcpu: u32, deadline_ns: u64, flags: u32) -> Result<(), XenErrno> {
    let mut arg = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline_ns,
        flags,
    };
    // SAFETY: `arg` is a valid `vcpu_set_singleshot_timer` for the call.
    let ret = unsafe {
        hypercall::raw(
            VCPU_OP,
            u64::from(VCPUOP_set_singleshot_timer),
            u64::from(vcpu),
            (&raw mut arg) as u64,
            0,
            0,
        )
    };
    XenErrno::check(ret).map(drop)
}

/// Disarms `vcpu`'s one-shot timer.
pub fn stop_singleshot_timer(vcpu: u32) -> Result<(), XenErrno> {
    // SAFETY: VCPUOP_stop_singleshot_timer takes no argument structure.
    let ret = unsafe {
        hypercall::raw(
            VCPU_OP,
            u64::from(VCPUOP_stop_singleshot_timer),
            u64::from(vcpu),
            0,
            0,
            0,
        )
    };
    XenErrno::check(ret).map(drop)
}
