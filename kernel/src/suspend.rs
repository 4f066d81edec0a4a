//! Suspend and resume, for `xl save`, `xl restore` and `xl migrate`
//! (`shared/notes/lifecycle.md` §3 and §4; Linux's `xen_suspend`,
//! FreeBSD's `xctrl_suspend`).
//!
//! The control thread runs [`run`] on vCPU 0 once it has acknowledged a
//! `suspend` request:
//!
//! 1. What cannot survive a move goes first, with everything running:
//!    processes holding foreign grant mappings are killed (the mapped
//!    frames are holes in a new domain, their handles mean nothing there),
//!    so their teardown unmaps with the unmap notify and their peers see
//!    the close. Our own grants stay.
//! 2. The xenstore connection is held (no request in flight) and the grant
//!    table frozen with a copy of its entries ([`xen::grant::Frozen`]).
//! 3. The other vCPUs are parked ([`smp::with_others_parked`]) and vCPU 0
//!    calls `SCHEDOP_shutdown(SHUTDOWN_suspend)` with interrupts off. A
//!    PV domain first unmaps Xen's frames and names its start info
//!    (`arch::pv_suspend`: the toolstack saves its page tables, which
//!    must map only its RAM, with their frames made pfns).
//! 4. Cancelled (`xl save -c`, a failed save or migration): the same
//!    domain runs on and nothing is redone (PV: Xen's frames are mapped
//!    back). A new domain: the shared info page (PV: and the p2m tree),
//!    `vcpu_info`s, callback vector, timers and IPIs are set up again
//!    while the others are still parked, the grant table's frames placed
//!    again and its entries rewritten (references keep their numbers, so
//!    peers can map them again; PV: each names its page's new machine
//!    frame), then the console and xenstore start over on their rings
//!    (cleared under PVH, as saved under PV) with their new ports,
//!    every xenstore watch is registered again and the control nodes are
//!    advertised again.
//!
//! What programs see of a move: event channels bound before it fail with
//! `ENOTCONN` (`dev::evtchn`), and the `DOMAIN_GENERATION` sysctl counts
//! the moves. Xen system time goes on across a save and restore or a
//! migration on one host; a move to another host would need the clock
//! rebased, which is not done.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use xen::sched::Resumed;

use crate::{console, events, grants, kprintln, proc, sched, smp, xenstore};

/// How long the processes holding foreign mappings have to end.
const GRACE_NS: u64 = 5_000_000_000;
/// How often their end is checked meanwhile.
const GRACE_POLL_NS: u64 = 20_000_000;

/// (a) Suspends that ended, by outcome.
static CANCELLED: AtomicU64 = AtomicU64::new(0);
static MOVED: AtomicU64 = AtomicU64::new(0);
/// (a) Whether a suspend is under way ([`settle`]).
static UNDER_WAY: AtomicBool = AtomicBool::new(false);
/// How often [`settle`] looks.
const SETTLE_POLL_NS: u64 = 20_000_000;
/// (a) Processes ended because they held foreign grant mappings.
static ENDED: AtomicU64 = AtomicU64::new(0);
/// (a) Our domain id, as CPUID reported it at boot and after the last
/// move ([`NO_DOMID`] if it did not): read often (every gntdev map), and
/// each CPUID is a VM exit.
static DOMID: AtomicU32 = AtomicU32::new(NO_DOMID);
/// [`DOMID`] when CPUID gave none.
const NO_DOMID: u32 = u32::MAX;

/// Reads our domain id from CPUID into the cache [`domid`] reads; at boot
/// and after each move.
pub fn refresh_domid() {
    let id = if crate::arch::is_pv() {
        // A PV guest's CPUID is the machine's unless Xen traps it: ask
        // xenstore, which names every domain's id under its home.
        xenstore::read_u64("domid")
            .ok()
            .and_then(|d| u16::try_from(d).ok())
    } else {
        xen::cpuid::XenLeaves::find().and_then(|l| l.domid())
    };
    DOMID.store(id.map_or(NO_DOMID, u32::from), Ordering::Release);
}

/// Our domain id now, if Xen reports it.
pub fn domid() -> Option<u16> {
    u16::try_from(DOMID.load(Ordering::Acquire)).ok()
}

/// Why a suspend failed; the domain runs on in every case.
#[derive(Debug)]
pub enum SuspendError {
    /// Xen refused the suspend.
    Refused(xen::hypercall::XenErrno),
    /// Resumed in a new domain, but a step of setting it up again failed.
    Resume(&'static str),
    /// PV: the Xen frames could not be unmapped (or mapped back).
    Pv(xen::hypercall::XenErrno),
}

impl core::fmt::Display for SuspendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "Xen refused the suspend (error {})", e.0),
            Self::Resume(what) => write!(f, "resumed, but {what} could not be set up again"),
            Self::Pv(e) => write!(f, "PV: mapping Xen's frames: Xen error {}", e.0),
        }
    }
}

/// Suspends the domain and brings it back (module doc). Runs on the
/// control thread, pinned to vCPU 0.
pub fn run() -> Result<Resumed, SuspendError> {
    UNDER_WAY.store(true, Ordering::Release);
    let outcome = suspend();
    UNDER_WAY.store(false, Ordering::Release);
    outcome
}

/// Waits until no suspend is under way. The boot thread calls it before
/// it shuts the domain down: a scenario whose process a suspend ended
/// must not power off the domain under the toolstack's save (it would
/// end as "not suspended"); it powers off after the resume instead.
pub fn settle() {
    while UNDER_WAY.load(Ordering::Acquire) {
        sched::sleep_until(events::now_ns().saturating_add(SETTLE_POLL_NS));
    }
}

/// [`run`]'s steps.
fn suspend() -> Result<Resumed, SuspendError> {
    let killed = proc::kill_holding(|f| f.dev.holds_foreign_maps());
    ENDED.fetch_add(killed as u64, Ordering::Relaxed);
    let t0 = events::now_ns();
    if killed != 0 {
        let deadline = t0.saturating_add(GRACE_NS);
        while proc::kill_holding(|f| f.dev.holds_foreign_maps()) != 0 && events::now_ns() < deadline
        {
            sched::sleep_until(events::now_ns().saturating_add(GRACE_POLL_NS));
        }
    }
    let (live, pending) = crate::dev::grant_refs();
    kprintln!(
        "suspend: {killed} process(es) holding foreign grant mappings ended; {live} grant(s) kept, {pending} waiting for their peers; suspending"
    );
    console::flush();
    let mut store = xenstore::hold();
    let table = grants::table();
    let mut frozen = table.freeze();
    let (frames, granted) = (frozen.frames(), frozen.granted());
    let outcome = smp::with_others_parked(|| {
        let r = suspend_here().and_then(|r| match r {
            Resumed::NewDomain => rebuild(&mut frozen).map(|()| Resumed::NewDomain),
            Resumed::Cancelled => Ok(Resumed::Cancelled),
        });
        let new = matches!(r, Ok(Resumed::NewDomain) | Err(SuspendError::Resume(_)));
        (r, new)
    });
    drop(frozen);
    let outcome = outcome.and_then(|r| {
        if r == Resumed::NewDomain {
            reconnect(&mut store)?;
        }
        Ok(r)
    });
    drop(store);
    match &outcome {
        Ok(Resumed::Cancelled) => {
            CANCELLED.fetch_add(1, Ordering::Relaxed);
            kprintln!("suspend: cancelled, the same domain runs on");
        }
        Ok(Resumed::NewDomain) => {
            MOVED.fetch_add(1, Ordering::Relaxed);
            refresh_domid();
            crate::control::advertise();
            kprintln!(
                "suspend: resumed in domain {}: {} vCPU(s), {frames} grant frame(s) placed again with {granted} grant(s), generation {}",
                domid().map_or(-1, i32::from),
                smp::online(),
                events::generation()
            );
        }
        Err(e) => kprintln!("suspend: failed: {e}"),
    }
    outcome
}

/// The suspend hypercall, on vCPU 0 with the other vCPUs parked and
/// interrupts off. A PV domain first hands the toolstack what its save
/// needs (`arch::pv_suspend`), and takes it back if the same domain runs
/// on.
fn suspend_here() -> Result<Resumed, SuspendError> {
    if !crate::arch::is_pv() {
        return xen::sched::suspend(0).map_err(SuspendError::Refused);
    }
    let start_info = crate::arch::pv_suspend::prepare().map_err(SuspendError::Pv)?;
    let r = xen::sched::suspend(start_info);
    if !matches!(r, Ok(Resumed::NewDomain)) {
        crate::arch::pv_suspend::resume_same().map_err(SuspendError::Pv)?;
    }
    r.map_err(SuspendError::Refused)
}

/// In the new domain, the other vCPUs parked, interrupts off: events,
/// every vCPU's timer and IPIs, the grant table. Allocates and logs
/// nothing (a parked vCPU may hold the heap or the console).
fn rebuild(frozen: &mut grants::Frozen<'_>) -> Result<(), SuspendError> {
    events::resume_new_domain().map_err(|_| SuspendError::Resume("event channels"))?;
    for cpu in (0..crate::arch::percpu::MAX_CPUS).filter(|&c| smp::is_online(c)) {
        smp::rebind(cpu).map_err(|_| SuspendError::Resume("timer and IPI ports"))?;
    }
    frozen
        .restore()
        .map_err(|_| SuspendError::Resume("grant table"))
}

/// In the new domain, everyone running again: the console and xenstore
/// on their new ports and cleared rings.
fn reconnect(store: &mut xen::xenstore::Xenstore<xenstore::Hooks>) -> Result<(), SuspendError> {
    let port = console::resume().map_err(|_| SuspendError::Resume("console"))?;
    events::bind(port, events::mark);
    xenstore::resume(store).map_err(|_| SuspendError::Resume("xenstore"))?;
    Ok(())
}

/// Processes that suspends ended because they held foreign grant
/// mappings.
pub fn ended() -> u64 {
    ENDED.load(Ordering::Relaxed)
}

/// Suspends that were cancelled, and that resumed in a new domain.
pub fn counts() -> (u64, u64) {
    (
        CANCELLED.load(Ordering::Relaxed),
        MOVED.load(Ordering::Relaxed),
    )
}
