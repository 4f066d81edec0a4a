//! x86-64 specifics: entry, descriptor tables, traps, system call entry,
//! context switch, page tables; and the two ways Xen runs the kernel
//! (PVH, with the hardware's own rings and tables, or 64-bit PV: [`pv`]).

use core::sync::atomic::{AtomicU8, Ordering};

pub mod boot;
pub mod context;
pub mod gdt;
pub mod interrupts;
pub mod percpu;
pub mod pmap;
pub mod pv;
pub mod pv_grant;
pub mod pv_suspend;
pub mod syscall;
pub mod trap;

/// (i) 1 when the kernel runs as a PV guest, 0 under PVH: set by the PV
/// entry (`pv_start`) before anything else runs, read by the entry and
/// exit paths in assembly.
#[unsafe(no_mangle)]
static PV_MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the kernel runs as a 64-bit PV guest.
pub fn is_pv() -> bool {
    PV_MODE.load(Ordering::Relaxed) != 0
}

/// The guest type, for the banner.
pub fn mode_name() -> &'static str {
    if is_pv() { "PV" } else { "PVH" }
}
