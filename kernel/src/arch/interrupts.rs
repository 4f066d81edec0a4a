//! Masking interrupts, in both guest types. Under PVH the hardware's IF
//! masks Xen's callback vector (`cli`, `sti`, `sti; hlt`). A PV kernel runs
//! in ring 3 and may not touch IF: its "interrupts" are event upcalls,
//! masked by `evtchn_upcall_mask` in the running vCPU's `vcpu_info`
//! ([`percpu::vcpu_info`]), and it idles with `SCHEDOP_block`, which
//! unmasks and checks for pending events atomically in Xen.
//!
//! Unmasking in PV cannot raise an upcall that became pending while
//! masked, as `sti` does: [`enable`] checks `evtchn_upcall_pending` after
//! the store and, if set, makes a no-op hypercall, on whose return Xen
//! delivers the callback.

use core::sync::atomic::{Ordering, compiler_fence};

use super::{is_pv, percpu};

/// Masks interrupts (PVH: `cli`; PV: sets the upcall mask).
pub fn disable() {
    if is_pv() {
        if let Some(vi) = percpu::vcpu_info() {
            vi.evtchn_upcall_mask.store(1, Ordering::Relaxed);
        }
        compiler_fence(Ordering::SeqCst);
    } else {
        x86_64::instructions::interrupts::disable();
    }
}

/// Unmasks interrupts; one pending meanwhile is taken at once.
pub fn enable() {
    if is_pv() {
        compiler_fence(Ordering::SeqCst);
        let Some(vi) = percpu::vcpu_info() else {
            return;
        };
        vi.evtchn_upcall_mask.store(0, Ordering::SeqCst);
        if vi.evtchn_upcall_pending.load(Ordering::SeqCst) != 0 {
            // Xen delivers the pending upcall on the way back.
            let _ = xen::pv::version();
        }
    } else {
        x86_64::instructions::interrupts::enable();
    }
}

/// Whether interrupts are unmasked.
pub fn are_enabled() -> bool {
    if is_pv() {
        percpu::vcpu_info().is_some_and(|vi| vi.evtchn_upcall_mask.load(Ordering::Relaxed) == 0)
    } else {
        x86_64::instructions::interrupts::are_enabled()
    }
}

/// Runs `f` with interrupts masked, restoring the state after.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let on = are_enabled();
    if on {
        disable();
    }
    let r = f();
    if on {
        enable();
    }
    r
}

/// Unmasks interrupts and idles the vCPU until one comes, with no window
/// between the two in which one could be missed (PVH: `sti; hlt`; PV:
/// `SCHEDOP_block`). Returns with interrupts unmasked.
pub fn enable_and_hlt() {
    if is_pv() {
        compiler_fence(Ordering::SeqCst);
        xen::sched::block();
    } else {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}
