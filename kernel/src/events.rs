//! Event channels in the kernel: the shared info page, the upcall, per-port
//! wake-up flags, waiting with a deadline, and the one-shot timer.
//!
//! Xen delivers event upcalls as interrupt [`UPCALL_VECTOR`]; the upcall
//! runs the 2-level scan of `xen::event_channel::EventChannels` and each
//! bound port's handler, which by default sets the port's bit in [`FIRED`].
//! Waiters test-and-clear their bit, and idle with `sti; hlt`: Xen turns
//! HLT into a block of the vCPU that returns at once when an event is
//! deliverable, and the one-instruction interrupt shadow of `sti` closes
//! the window between the last check and the block. (`SCHEDOP_block` from
//! a guest with interrupts off would sleep through an event that arrived
//! just before it, since Xen sees the event as undeliverable.)
//!
//! Locking: `CHANNELS` (the handler table and scan position) is taken by
//! the upcall with interrupts off, so other code takes it only inside
//! `without_interrupts`. `FIRED` is atomic.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, Once};
use x86_64::instructions::interrupts;
use xen::abi::Port;
use xen::abi::event_channel::VIRQ_TIMER;
use xen::abi::hvm::PARAM_CALLBACK_IRQ;
use xen::abi::shared_info::{EVTCHN_2L_NR_CHANNELS, SharedInfo};
use xen::event_channel::{EventChannels, EventStats, Handler};
use xen::hypercall::XenErrno;

use crate::arch::trap::UPCALL_VECTOR;
use crate::layout::{self, PAGE_SIZE};

static SHARED: Once<&'static SharedInfo> = Once::new();
static CHANNELS: Mutex<Option<EventChannels>> = Mutex::new(None);
/// Ports whose events arrived and were not yet taken; one bit per port.
static FIRED: [AtomicU64; EVTCHN_2L_NR_CHANNELS / 64] =
    [const { AtomicU64::new(0) }; EVTCHN_2L_NR_CHANNELS / 64];
static TIMER_PORT: Once<Port> = Once::new();

/// Why event channels could not be set up.
pub enum InitError {
    /// No hole frame for the shared info page.
    NoHoleFrame,
    /// A hypercall failed.
    Xen(&'static str, XenErrno),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoHoleFrame => f.write_str("no hole frame for the shared info page"),
            Self::Xen(what, e) => write!(f, "{what}: Xen error {}", e.0),
        }
    }
}

/// Maps the shared info page, asks for upcalls on [`UPCALL_VECTOR`], binds
/// the timer VIRQ and enables interrupts.
pub fn init() -> Result<(), InitError> {
    let run = layout::alloc_hole(1).map_err(|_| InitError::NoHoleFrame)?;
    // SAFETY: the frame is in the hole, unused by anything else, and
    // identity-mapped; from now on it is Xen's shared info page.
    unsafe { xen::memory::map_shared_info(run.gfn) }
        .map_err(|e| InitError::Xen("map shared info", e))?;
    // SAFETY: Xen placed the shared info page at this identity-mapped
    // address; it stays there for the domain's life, and `SharedInfo` is
    // all atomics, so shared access with Xen is sound.
    let shared: &'static SharedInfo = unsafe { &*((run.gfn * PAGE_SIZE) as *const SharedInfo) };
    SHARED.call_once(|| shared);
    *CHANNELS.lock() = Some(EventChannels::new());
    xen::hvm::set_param(PARAM_CALLBACK_IRQ, xen::hvm::callback_vector(UPCALL_VECTOR))
        .map_err(|e| InitError::Xen("set callback vector", e))?;
    shared.vcpu_info[0]
        .evtchn_upcall_mask
        .store(0, Ordering::Release);
    let timer = xen::event_channel::bind_virq(VIRQ_TIMER, 0)
        .map_err(|e| InitError::Xen("bind VIRQ_TIMER", e))?;
    TIMER_PORT.call_once(|| timer);
    bind(timer, mark);
    interrupts::enable();
    Ok(())
}

/// The default handler: remember that `port` fired.
pub fn mark(port: Port, _ctx: usize) {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    FIRED[p / 64].fetch_or(1 << (p % 64), Ordering::AcqRel);
}

/// Runs `handler` for events on `port` and unmasks it.
pub fn bind(port: Port, handler: Handler) {
    interrupts::without_interrupts(|| {
        if let Some(ch) = CHANNELS.lock().as_mut() {
            ch.register(port, handler, 0);
        }
    });
    let _ = take(port);
    // A port fresh from Xen is unmasked; unmask anyway so a port reused
    // after `unbind` delivers again (and re-raises a pending event).
    let _ = xen::event_channel::unmask(port);
}

/// Forgets `port`'s handler and closes the port.
pub fn unbind(port: Port) -> Result<(), XenErrno> {
    interrupts::without_interrupts(|| {
        if let Some(ch) = CHANNELS.lock().as_mut() {
            ch.unregister(port);
        }
    });
    let r = xen::event_channel::close(port);
    let _ = take(port);
    r
}

/// Called from the trap dispatcher on [`UPCALL_VECTOR`], interrupts off.
pub fn upcall() {
    let Some(shared) = SHARED.get() else { return };
    if let Some(ch) = CHANNELS.lock().as_mut() {
        ch.handle_upcall(shared, 0);
    }
}

/// Whether `port` fired since the last call; clears the flag.
pub fn take(port: Port) -> bool {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    let bit = 1 << (p % 64);
    FIRED[p / 64].fetch_and(!bit, Ordering::AcqRel) & bit != 0
}

/// Xen system time now, in ns.
pub fn now_ns() -> u64 {
    let shared = SHARED.get().expect("events::init ran");
    xen::time::now(&shared.vcpu_info[0].time)
}

/// Waits until `port` fires (returns true) or `timeout_ns` passes (false).
pub fn wait(port: Port, timeout_ns: u64) -> bool {
    let deadline = now_ns().saturating_add(timeout_ns);
    let timer = *TIMER_PORT.get().expect("events::init ran");
    loop {
        if take(port) {
            return true;
        }
        if now_ns() >= deadline {
            return false;
        }
        // Re-arm each round: the timer port may have fired for an earlier
        // deadline. A deadline already passed fires at once.
        let _ = xen::vcpu::set_singleshot_timer(0, deadline, 0);
        interrupts::disable();
        if peek(port) || peek(timer) {
            interrupts::enable();
        } else {
            interrupts::enable_and_hlt();
        }
        let _ = take(timer);
    }
}

/// Idles the vCPU until an event arrives or `deadline` (Xen system time,
/// ns) passes, unless `ready()`, checked with interrupts off, already
/// holds (the scheduler's idle loop; the same `sti; hlt` as [`wait`]).
pub fn idle(deadline: u64, ready: &dyn Fn() -> bool) {
    let timer = *TIMER_PORT.get().expect("events::init ran");
    let _ = xen::vcpu::set_singleshot_timer(0, deadline, 0);
    interrupts::disable();
    if ready() || peek(timer) {
        interrupts::enable();
    } else {
        interrupts::enable_and_hlt();
    }
    let _ = take(timer);
}

/// Whether `port` fired and was not yet taken.
pub fn pending(port: Port) -> bool {
    peek(port)
}

fn peek(port: Port) -> bool {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    FIRED[p / 64].load(Ordering::Acquire) & (1 << (p % 64)) != 0
}

/// Upcall statistics.
pub fn stats() -> EventStats {
    interrupts::without_interrupts(|| {
        CHANNELS
            .lock()
            .as_ref()
            .map(|c| c.stats())
            .unwrap_or_default()
    })
}
