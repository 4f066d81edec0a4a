//! Per-vCPU operations (`VCPUOP_*`): bringing a vCPU up, its `vcpu_info`
//! and its one-shot timer.

use crate::abi::op::VCPU_OP;
use crate::abi::vcpu::{
    VCPUOP_initialise, VCPUOP_is_up, VCPUOP_register_vcpu_info, VCPUOP_set_singleshot_timer,
    VCPUOP_stop_singleshot_timer, VCPUOP_up, VcpuHvmContext, VcpuRegisterVcpuInfo,
    VcpuSetSingleshotTimer,
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

/// Whether `vcpu` is up (`VCPUOP_is_up`); `ENOENT` past the domain's last
/// vCPU, which is how a guest counts them.
pub fn is_up(vcpu: u32) -> Result<bool, XenErrno> {
    // SAFETY: VCPUOP_is_up takes no argument structure.
    let ret = unsafe { hypercall::raw(VCPU_OP, u64::from(VCPUOP_is_up), u64::from(vcpu), 0, 0, 0) };
    XenErrno::check(ret).map(|r| r != 0)
}

/// Gives down vCPU `vcpu` its first register state (`VCPUOP_initialise`
/// with a `vcpu_hvm_context`, the PVH form).
///
/// # Safety
/// `ctx` must start the vCPU at code that can run with those registers
/// (its stack, page tables and instructions valid), and nothing else may
/// use that stack.
pub unsafe fn initialise(vcpu: u32, ctx: &VcpuHvmContext) -> Result<(), XenErrno> {
    // SAFETY: `ctx` is a valid `vcpu_hvm_context`; the caller vouches for
    // what it starts.
    let ret = unsafe {
        hypercall::raw(
            VCPU_OP,
            u64::from(VCPUOP_initialise),
            u64::from(vcpu),
            ctx as *const VcpuHvmContext as u64,
            0,
            0,
        )
    };
    XenErrno::check(ret).map(drop)
}

/// Gives down vCPU `vcpu` of a PV guest its first state
/// (`VCPUOP_initialise` with a `vcpu_guest_context`).
///
/// # Safety
/// As [`initialise`]: `ctx` must start the vCPU at code that can run
/// with that state (stack, page tables, selectors).
pub unsafe fn initialise_pv(
    vcpu: u32,
    ctx: &crate::abi::pv::VcpuGuestContext,
) -> Result<(), XenErrno> {
    // SAFETY: `ctx` is a valid `vcpu_guest_context`; the caller vouches
    // for what it starts.
    let ret = unsafe {
        hypercall::raw(
            VCPU_OP,
            u64::from(VCPUOP_initialise),
            u64::from(vcpu),
            ctx as *const crate::abi::pv::VcpuGuestContext as u64,
            0,
            0,
        )
    };
    XenErrno::check(ret).map(drop)
}

/// Starts initialised vCPU `vcpu` (`VCPUOP_up`).
pub fn up(vcpu: u32) -> Result<(), XenErrno> {
    // SAFETY: VCPUOP_up takes no argument structure; what the vCPU runs was
    // vouched for at `initialise`.
    let ret = unsafe { hypercall::raw(VCPU_OP, u64::from(VCPUOP_up), u64::from(vcpu), 0, 0, 0) };
    XenErrno::check(ret).map(drop)
}

/// Moves `vcpu`'s `vcpu_info` to `offset` in guest frame `gfn`
/// (`VCPUOP_register_vcpu_info`); Xen copies the old contents and raises
/// one upcall. Once per vCPU, by itself or while it is down.
///
/// # Safety
/// The 64 bytes at `gfn`:`offset` must be RAM kept for Xen's writes for
/// the domain's life.
pub unsafe fn register_vcpu_info(vcpu: u32, gfn: u64, offset: u32) -> Result<(), XenErrno> {
    let mut arg = VcpuRegisterVcpuInfo {
        mfn: gfn,
        offset,
        rsvd: 0,
    };
    // SAFETY: `arg` is a valid `vcpu_register_vcpu_info`; the caller keeps
    // the area for Xen.
    let ret = unsafe {
        hypercall::raw(
            VCPU_OP,
            u64::from(VCPUOP_register_vcpu_info),
            u64::from(vcpu),
            (&raw mut arg) as u64,
            0,
            0,
        )
    };
    XenErrno::check(ret).map(drop)
}
