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
