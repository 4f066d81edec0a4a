//! Scheduler operations: yield, block and shutdown.

use crate::abi::op::SCHED_OP;
use crate::abi::sched::{
    SCHEDOP_block, SCHEDOP_shutdown, SCHEDOP_yield, SchedShutdown, ShutdownReason,
};
use crate::hypercall;

/// Gives up the CPU to other vCPUs (`SCHEDOP_yield`).
pub fn yield_now() {
    // SAFETY: SCHEDOP_yield takes no argument.
    unsafe { hypercall::raw(SCHED_OP, u64::from(SCHEDOP_yield), 0, 0, 0, 0) };
}

/// Sleeps until an event is pending (`SCHEDOP_block`); events must be
/// deliverable (the caller enabled interrupts or polls the pending bits).
pub fn block() {
    // SAFETY: SCHEDOP_block takes no argument.
    unsafe { hypercall::raw(SCHED_OP, u64::from(SCHEDOP_block), 0, 0, 0, 0) };
}

/// Stops this domain for `reason`; the toolstack then applies the
/// domain's `on_poweroff`/`on_crash` policy.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let mut arg = SchedShutdown {
        reason: reason as u32,
    };
    loop {
        // SAFETY: `arg` is a valid `sched_shutdown` for the whole call.
        unsafe { hypercall::op_arg(SCHED_OP, SCHEDOP_shutdown, &raw mut arg) };
        // Only reached if Xen refused; try again rather than run on.
    }
}

/// How a suspend ended ([`suspend`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// The toolstack cancelled it, or took a checkpoint (`xl save -c`, a
    /// failed save or migration): the same domain runs on, with all its
    /// state valid.
    Cancelled,
    /// Restored or migrated: a new domain, with a new id, holding our RAM
    /// and vCPU state only (`shared/notes/lifecycle.md` §3).
    NewDomain,
}

/// Suspends this domain for `xl save`/`xl migrate`
/// (`SCHEDOP_shutdown(SHUTDOWN_suspend)`) and returns when it runs
/// again. `start_info` is 0 for PVH; a PV guest passes its start info's
/// machine frame, which the toolstack reads from vCPU 0's `rdx` to find
/// the page (its ring frames canonicalised to pfns by the guest) and
/// rewrite it for the new domain. The toolstack reports a cancel by
/// setting the call's return value to 1 (`xc_domain_resume`), which for
/// PVH it can only do while `HVM_PARAM_CALLBACK_IRQ` is set. Call it on
/// vCPU 0 with interrupts off and the other vCPUs parked. `Err`: Xen
/// refused.
pub fn suspend(start_info: u64) -> Result<Resumed, crate::hypercall::XenErrno> {
    let mut arg = SchedShutdown {
        reason: ShutdownReason::Suspend as u32,
    };
    // SAFETY: `arg` is a valid `sched_shutdown` for the whole call; the
    // third argument is only read by the toolstack.
    let r = unsafe {
        hypercall::raw(
            SCHED_OP,
            u64::from(SCHEDOP_shutdown),
            &raw mut arg as u64,
            start_info,
            0,
            0,
        )
    };
    match r {
        0 => Ok(Resumed::NewDomain),
        r if r > 0 => Ok(Resumed::Cancelled),
        r => Err(crate::hypercall::XenErrno((-r) as i32)),
    }
}
