//! Traps, in the kernel proper: what an exception or the event upcall
//! means once `arch::trap` has saved the registers. The upcall runs the
//! event handlers and may preempt a user thread; a user fault goes to its
//! process (resolved or fatal to it); a kernel fault in a copy routine is
//! the copy's `EFAULT`; anything else crashes the domain with a register
//! dump (a kernel stack overflow named as such).

use vm::Prot;

use crate::arch::trap::{PF_WRITE, RFLAGS_IF, TrapFrame, UPCALL_VECTOR};
use crate::{proc, usercopy};

/// The kernel's side of every exception and of the event upcall: called
/// by `arch::trap`'s entry path (`trap_common`) with the saved frame,
/// interrupts off; returning resumes the frame.
#[unsafe(no_mangle)]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    if frame.vector == u64::from(UPCALL_VECTOR) {
        crate::events::upcall();
        if frame.is_user_mode() {
            // The upcall is done: an ending process's thread ends here.
            proc::exit_if_killed();
        }
        crate::sched::preempt_point(frame.is_user_mode());
        return;
    }
    // Read before interrupts may come back: a nested fault would change it.
    let cr2 = crate::arch::trap::fault_address();
    if frame.is_user_mode() {
        // Faults of user programs are theirs to resolve or die of, with
        // interrupts on, as in a system call: resolving may wait for other
        // CPUs (a TLB shootdown), which must be able to reach us too.
        crate::arch::interrupts::enable();
        proc::user_trap(frame, cr2);
        proc::exit_if_killed();
        crate::sched::return_to_user();
        crate::arch::interrupts::disable();
        return;
    }
    if frame.vector == 14 && usercopy::in_copy(frame) {
        // A copy routine's fault, resolved through the VM (a page not yet
        // touched, copy-on-write) so the copy resumes, or the copy's
        // EFAULT: interrupts as they were where it came.
        if frame.rflags & RFLAGS_IF != 0 {
            crate::arch::interrupts::enable();
        }
        let access = if frame.error & PF_WRITE != 0 {
            Prot::WRITE
        } else {
            Prot::READ
        };
        if usercopy::check_range(cr2, 1).is_err() || proc::resolve_fault(cr2, access).is_err() {
            usercopy::abort_copy(frame);
        }
        crate::arch::interrupts::disable();
        return;
    }
    // A kernel stack overflow: the page fault on the guard could not be
    // delivered on that stack, so it became this double fault (on its IST
    // stack); CR2 still names the guard.
    if frame.vector == 8
        && let Some(guard) = crate::kstack::guard_page(crate::arch::trap::fault_address())
    {
        let tid = crate::sched::try_current();
        crate::fatal(format_args!(
            "kernel stack overflow: thread {}, rip {:#x}, guard page {guard:#x}\n{frame}",
            tid.map_or(-1, i64::from),
            frame.rip
        ));
    }
    crate::fatal(format_args!("unhandled exception: {frame}"));
}
