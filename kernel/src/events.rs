//! Event channels in the kernel: the shared info page, each vCPU's
//! `vcpu_info`, the upcall, per-port wake-up flags, waiting with a
//! deadline, and each vCPU's one-shot timer.
//!
//! Xen delivers event upcalls as interrupt [`UPCALL_VECTOR`] on the vCPU a
//! port notifies (the global callback vector reaches every vCPU with a
//! `vcpu_info`: `shared/notes/smp.md` §3). The upcall runs the 2-level scan
//! for the running vCPU over the ports it owns and each port's handler,
//! which by default sets the port's bit in [`FIRED`]. Waiters
//! test-and-clear their bit, and idle with `sti; hlt` (or poll:
//! [`set_idle_poll`]): Xen turns HLT into
//! a block of the vCPU that returns at once when an event is deliverable,
//! and the one-instruction interrupt shadow of `sti` closes the window
//! between the last check and the block. (`SCHEDOP_block` from a guest
//! with interrupts off would sleep through an event that arrived just
//! before it, since Xen sees the event as undeliverable.)
//!
//! Ports and vCPUs: the pending and mask words are shared by all vCPUs, so
//! each vCPU scans only the ports it owns ([`OWNED`], as Linux's
//! `cpu_evtchn_mask`). Per-vCPU ports (its `VIRQ_TIMER`, its IPIs) are
//! owned by their vCPU; every other port notifies vCPU 0, as Xen binds it,
//! and is owned by CPU 0.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | [`HANDLERS`] | (h) its reader-writer spin lock; written with interrupts off, read by the upcall |
//! | [`CURSORS`] | (c) each CPU's own, taken by its upcall only (interrupts off) |
//! | [`OWNED`], [`FIRED`], [`TIMER_PORT`], counters | (a) atomic |
//! | `VCPU_INFO` | (x) written by Xen and by the upcall of its vCPU: atomics |
//!
//! Lock order: `HANDLERS` is never held while a handler runs; a cursor is
//! held across its CPU's handlers, which take no cursor.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::arch::interrupts;
use spin::{Once, RwLock};
use xen::abi::Port;
use xen::abi::event_channel::VIRQ_TIMER;
use xen::abi::hvm::PARAM_CALLBACK_IRQ;
use xen::abi::shared_info::{
    BITS_PER_EVTCHN_WORD, EVTCHN_2L_NR_CHANNELS, EVTCHN_WORDS, SharedInfo, VcpuInfo,
};
use xen::abi::vcpu::VCPU_SSHOTTMR_future;
use xen::event_channel::{EventStats, Handler, ScanCursor};
use xen::hypercall::XenErrno;

use crate::arch::percpu::{self, MAX_CPUS};
use crate::arch::trap::UPCALL_VECTOR;
use crate::layout::{self, PAGE_SIZE};

static SHARED: Once<&'static SharedInfo> = Once::new();

/// Each vCPU's own `vcpu_info`, registered with Xen
/// (`VCPUOP_register_vcpu_info`): one 64-byte line each, in one page of
/// the image (RAM, never freed).
#[repr(C, align(4096))]
struct VcpuInfoPage([VcpuInfo; MAX_CPUS]);
static VCPU_INFO: VcpuInfoPage = VcpuInfoPage([const { VcpuInfo::new() }; MAX_CPUS]);
/// (a) Whether vCPU `i` uses its slot of [`VCPU_INFO`] (else the legacy
/// one in the shared info page).
static REGISTERED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// (h) The handler of each port.
static HANDLERS: RwLock<[Option<Handler>; EVTCHN_2L_NR_CHANNELS]> =
    RwLock::new([None; EVTCHN_2L_NR_CHANNELS]);
/// (a) The ports each vCPU serves, one bit per port.
static OWNED: [[AtomicU64; EVTCHN_WORDS]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; EVTCHN_WORDS] }; MAX_CPUS];
/// (c) Each vCPU's scan position.
static CURSORS: [spin::Mutex<ScanCursor>; MAX_CPUS] =
    [const { spin::Mutex::new(ScanCursor::new()) }; MAX_CPUS];
/// (a) Ports whose events arrived and were not yet taken; one bit per port.
static FIRED: [AtomicU64; EVTCHN_WORDS] = [const { AtomicU64::new(0) }; EVTCHN_WORDS];
/// (a) Each vCPU's `VIRQ_TIMER` port (0: none yet).
static TIMER_PORT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// (a) Per-vCPU counts.
struct CpuCounts {
    upcalls: AtomicU64,
    timer_events: AtomicU64,
    /// The deadline the vCPU's one-shot timer was last armed for.
    armed: AtomicU64,
    /// Arms Xen refused.
    arm_errors: AtomicU64,
    /// Deadlines taken as come without Xen ([`arm_timer`]).
    fired_here: AtomicU64,
    /// Halts that ended more than [`LATE_NS`] after the deadline the
    /// timer was armed for, and the most any ended after it (ns).
    late: AtomicU64,
    late_max: AtomicU64,
}
static COUNTS: [CpuCounts; MAX_CPUS] = [const {
    CpuCounts {
        upcalls: AtomicU64::new(0),
        timer_events: AtomicU64::new(0),
        armed: AtomicU64::new(0),
        arm_errors: AtomicU64::new(0),
        fired_here: AtomicU64::new(0),
        late: AtomicU64::new(0),
        late_max: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// A halt that ends this long after its timer's deadline is counted as
/// late: the timer was armed and the vCPU halted, so only its timer's
/// event can have been late (seen under the emulated host with a lone
/// guest, whose vCPU then stays halted until another event comes:
/// `scripts/lib/xl.sh` `run_case`, [`set_idle_poll`]).
const LATE_NS: u64 = 1_000_000_000;

/// After a halt of the running vCPU with its timer armed for `deadline`:
/// counts the halt if it ended late. A halt whose arm Xen refused (the
/// last deadline armed is another) says nothing of the timer.
fn note_wake(deadline: u64) {
    let c = &COUNTS[percpu::id()];
    if c.armed.load(Ordering::Relaxed) != deadline {
        return;
    }
    let late = now_ns().saturating_sub(deadline);
    c.late_max.fetch_max(late, Ordering::Relaxed);
    if late > LATE_NS {
        c.late.fetch_add(1, Ordering::Relaxed);
    }
}
/// (a) Whether idle vCPUs poll rather than halt (`idle=poll`).
static IDLE_POLL: AtomicBool = AtomicBool::new(false);

/// Makes idle vCPUs poll their clock and upcalls with interrupts on
/// instead of halting (the kernel's `idle=poll`, as Linux's): a vCPU then
/// needs no timer event from Xen to see its deadlines pass, at the cost of
/// its physical CPU. For runs that must not depend on Xen's timers: under
/// the emulated host, a lone guest's halted vCPU now and then stays halted
/// with its timer armed until another event comes (`scripts/scenarios/fuzz.sh`).
pub fn set_idle_poll(on: bool) {
    IDLE_POLL.store(on, Ordering::Relaxed);
}

/// Idles the running vCPU, interrupts off on entry and on at return, until
/// an interrupt came or (polling only) `deadline` passed: `sti; hlt`, or
/// with [`set_idle_poll`] a spin until an upcall ran or the time passed.
fn halt(deadline: u64) {
    if !IDLE_POLL.load(Ordering::Relaxed) {
        interrupts::enable_and_hlt();
        return;
    }
    let upcalls = &COUNTS[percpu::id()].upcalls;
    let seen = upcalls.load(Ordering::Relaxed);
    // An event Xen flagged but whose vector never came ends the spin too:
    // the caller's next `poll_upcall` takes it.
    let flagged = &vcpu_info(percpu::id()).evtchn_upcall_pending;
    interrupts::enable();
    // The clock is read once per `POLL_SPINS` spins only: under Xen a
    // guest's rdtsc may be emulated, a VM exit each, and the emulated host
    // corrupts a vCPU now and then at a VM exit (a guest at `idle=poll`
    // reading its clock every spin triple-faulted in both tries of a case).
    let mut spins = 0u32;
    while upcalls.load(Ordering::Relaxed) == seen && flagged.load(Ordering::Acquire) == 0 {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(POLL_SPINS) && now_ns() >= deadline {
            break;
        }
        core::hint::spin_loop();
    }
}

/// Spins between two clock reads of a polling idle vCPU ([`halt`]).
const POLL_SPINS: u32 = 4096;

static DISPATCHED: AtomicU64 = AtomicU64::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Why event channels could not be set up.
pub enum InitError {
    /// No hole frame for the shared info page.
    NoHoleFrame,
    /// PV: no page-table room to map the shared info page.
    MapSharedInfo,
    /// PV: the p2m tree could not be published.
    P2m,
    /// A hypercall failed.
    Xen(&'static str, XenErrno),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoHoleFrame => f.write_str("no hole frame for the shared info page"),
            Self::MapSharedInfo => f.write_str("no L1 table to map the shared info page"),
            Self::P2m => f.write_str("the p2m tree could not be published"),
            Self::Xen(what, e) => write!(f, "{what}: Xen error {}", e.0),
        }
    }
}

/// Maps the shared info page, moves the boot vCPU's `vcpu_info` to our
/// page, asks for upcalls on [`UPCALL_VECTOR`], binds the boot vCPU's
/// timer and enables interrupts.
pub fn init() -> Result<(), InitError> {
    let run = layout::alloc_hole(1).map_err(|_| InitError::NoHoleFrame)?;
    if crate::arch::is_pv() {
        let mfn = crate::arch::pv_suspend::start_info_now().shared_info_mfn;
        // SAFETY: the address is the hole frame's, unused by anything
        // else; the machine frame is Xen's shared info page.
        unsafe { crate::arch::pv::map_frame(run.gfn * PAGE_SIZE, mfn) }
            .map_err(|_| InitError::MapSharedInfo)?;
    } else {
        // SAFETY: the frame is in the hole, unused by anything else, and
        // identity-mapped; from now on it is Xen's shared info page.
        unsafe { xen::memory::map_shared_info(run.gfn) }
            .map_err(|e| InitError::Xen("map shared info", e))?;
    }
    // SAFETY: Xen placed the shared info page at this identity-mapped
    // address; it stays there for the domain's life, and `SharedInfo` is
    // all atomics, so shared access with Xen is sound.
    let shared: &'static SharedInfo = unsafe { &*((run.gfn * PAGE_SIZE) as *const SharedInfo) };
    SHARED.call_once(|| shared);
    if crate::arch::is_pv()
        && let Err(e) = crate::arch::pv_suspend::publish_p2m(&shared.arch)
    {
        log::warn!("p2m tree not published ({e}): the toolstack cannot save this domain");
    }
    register_vcpu_info(0);
    // PV: the event callback is registered with the traps (`arch::pv`).
    if !crate::arch::is_pv() {
        xen::hvm::set_param(PARAM_CALLBACK_IRQ, xen::hvm::callback_vector(UPCALL_VECTOR))
            .map_err(|e| InitError::Xen("set callback vector", e))?;
    }
    unmask_upcalls(0);
    bind_timer(0).map_err(|e| InitError::Xen("bind VIRQ_TIMER", e))?;
    interrupts::enable();
    Ok(())
}

/// (a) Resumes into a new domain so far ([`generation`]).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// How many times the domain resumed into a new domain (`xl restore`,
/// `xl migrate`): ports bound before the last change are gone.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// On vCPU 0, interrupts off, the other vCPUs parked, right after a
/// resume into a new domain (`shared/notes/lifecycle.md` §3): every port
/// is gone, so forget every handler, owner and fired flag; place the
/// shared info page at its old frame again (PV: map the new domain's at
/// the old address, and publish the p2m tree there) and mask every port
/// in it;
/// register vCPU 0's `vcpu_info` and the callback vector again, and bind
/// its timer. Each other vCPU then calls [`rejoin`]; the caller binds
/// their timers and IPIs, and the console's and xenstore's new ports.
/// Allocates nothing and logs nothing (a parked vCPU may hold the heap
/// or the console).
pub fn resume_new_domain() -> Result<(), InitError> {
    let shared = *SHARED.get().expect("events::init ran");
    let gfn = shared as *const SharedInfo as u64 / PAGE_SIZE;
    if crate::arch::is_pv() {
        let mfn = crate::arch::pv_suspend::start_info_now().shared_info_mfn;
        // SAFETY: the address is the one `init` mapped the shared info
        // page at, unmapped for the suspend; the machine frame is the new
        // domain's shared info page.
        unsafe { crate::arch::pv::map_frame(gfn * PAGE_SIZE, mfn) }
            .map_err(|_| InitError::MapSharedInfo)?;
        crate::arch::pv_suspend::publish_p2m(&shared.arch).map_err(|_| InitError::P2m)?;
    } else {
        // SAFETY: the frame is the one `init` took from the hole for the
        // shared info page; in the new domain it is a hole again.
        unsafe { xen::memory::map_shared_info(gfn) }
            .map_err(|e| InitError::Xen("map shared info", e))?;
    }
    for w in &shared.evtchn_mask {
        w.store(!0, Ordering::Release);
    }
    *HANDLERS.write() = [None; EVTCHN_2L_NR_CHANNELS];
    for owned in &OWNED {
        for w in owned {
            w.store(0, Ordering::Release);
        }
    }
    for w in &FIRED {
        w.store(0, Ordering::Release);
    }
    for p in &TIMER_PORT {
        p.store(0, Ordering::Release);
    }
    GENERATION.fetch_add(1, Ordering::AcqRel);
    rejoin(0);
    // PV: the callbacks are part of each vCPU's saved state.
    if !crate::arch::is_pv() {
        xen::hvm::set_param(PARAM_CALLBACK_IRQ, xen::hvm::callback_vector(UPCALL_VECTOR))
            .map_err(|e| InitError::Xen("set callback vector", e))?;
    }
    bind_timer(0).map_err(|e| InitError::Xen("bind VIRQ_TIMER", e))
}

/// On vCPU `cpu` itself, interrupts off, after a resume into a new
/// domain: registers its `vcpu_info` again (Xen accepts that only from
/// the vCPU itself while it is up) and lets upcalls in (PVH: the mask in
/// the `vcpu_info`; interrupts stay off by RFLAGS.IF). Under PV the mask
/// is the interrupt flag itself: it stays set, in the legacy slot Xen
/// copies from and in ours, and the caller's return (from its
/// `without_interrupts`, or the parked vCPU's upcall) clears it. A vCPU
/// parked inside an upcall holds its event cursor, and an upcall let in
/// there would wait for it for ever.
pub fn rejoin(cpu: usize) {
    REGISTERED[cpu].store(false, Ordering::Release);
    let pv = crate::arch::is_pv();
    if pv {
        SHARED.get().expect("events::init ran").vcpu_info[cpu]
            .evtchn_upcall_mask
            .store(1, Ordering::Release);
    }
    // Refused, the vCPU keeps its legacy slot, as at boot.
    let _ = register_vcpu_info_quiet(cpu);
    if pv {
        percpu::set_vcpu_info(cpu, vcpu_info(cpu));
        vcpu_info(cpu)
            .evtchn_upcall_mask
            .store(1, Ordering::Release);
    } else {
        unmask_upcalls(cpu);
    }
}

/// Moves vCPU `cpu`'s `vcpu_info` into [`VCPU_INFO`]; the boot vCPU calls
/// it for itself, and for each other vCPU before it starts. Without it
/// (Xen refused) the vCPU keeps its legacy slot.
pub fn register_vcpu_info(cpu: usize) {
    if let Err(e) = register_vcpu_info_quiet(cpu) {
        log::warn!("vCPU {cpu}: vcpu_info not registered (Xen error {})", e.0);
    }
}

/// [`register_vcpu_info`] without the log line.
fn register_vcpu_info_quiet(cpu: usize) -> Result<(), XenErrno> {
    let at = &VCPU_INFO.0[cpu] as *const VcpuInfo as u64;
    // PVH names the page by its frame, PV by its machine frame.
    let frame = if crate::arch::is_pv() {
        crate::arch::pv::mfn(at / PAGE_SIZE)
    } else {
        at / PAGE_SIZE
    };
    // SAFETY: the slot is 64 bytes of a page-aligned static of the image
    // (RAM, identity-mapped), kept for Xen for the domain's life and read
    // and written only through atomics.
    unsafe { xen::vcpu::register_vcpu_info(cpu as u32, frame, (at % PAGE_SIZE) as u32) }?;
    REGISTERED[cpu].store(true, Ordering::Release);
    Ok(())
}

/// Lets Xen deliver upcalls to vCPU `cpu` (its `vcpu_info` starts with
/// them masked).
pub fn unmask_upcalls(cpu: usize) {
    percpu::set_vcpu_info(cpu, vcpu_info(cpu));
    vcpu_info(cpu)
        .evtchn_upcall_mask
        .store(0, Ordering::Release);
}

/// vCPU `cpu`'s `vcpu_info`.
fn vcpu_info(cpu: usize) -> &'static VcpuInfo {
    if REGISTERED[cpu].load(Ordering::Acquire) {
        &VCPU_INFO.0[cpu]
    } else {
        &SHARED.get().expect("events::init ran").vcpu_info[cpu]
    }
}

/// Binds `VIRQ_TIMER` of vCPU `cpu` (owned by it). Before the vCPU arms
/// its timer: a tick with no port is dropped.
pub fn bind_timer(cpu: usize) -> Result<(), XenErrno> {
    let port = xen::event_channel::bind_virq(VIRQ_TIMER, cpu as u32)?;
    TIMER_PORT[cpu].store(port, Ordering::Release);
    bind_on(port, timer, cpu);
    Ok(())
}

/// The timer VIRQ's handler: count, and mark the port fired.
fn timer(port: Port, ctx: usize) {
    COUNTS[percpu::id()]
        .timer_events
        .fetch_add(1, Ordering::Relaxed);
    mark(port, ctx);
}

/// The default handler: remember that `port` fired.
pub fn mark(port: Port, _ctx: usize) {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    FIRED[p / 64].fetch_or(1 << (p % 64), Ordering::AcqRel);
}

/// Runs `handler` for events on `port`, a port that notifies vCPU 0 (every
/// port Xen binds by default), and unmasks it.
pub fn bind(port: Port, handler: Handler) {
    bind_on(port, handler, 0);
}

/// Runs `handler` for events on `port`, which notifies vCPU `cpu`, on that
/// vCPU, and unmasks it.
pub fn bind_on(port: Port, handler: Handler, cpu: usize) {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    interrupts::without_interrupts(|| HANDLERS.write()[p] = Some(handler));
    OWNED[cpu][p / BITS_PER_EVTCHN_WORD]
        .fetch_or(1 << (p % BITS_PER_EVTCHN_WORD), Ordering::AcqRel);
    let _ = take(port);
    // Owned now: an event that arrived before is reported again (an upcall
    // that saw it pending before it was ours left it stranded), and a port
    // reused after `unbind` delivers again.
    if let Some(shared) = SHARED.get() {
        let _ = xen::event_channel::rearm(shared, port, &xen::event_channel::Xen);
    }
}

/// Ports with a handler now (bound by the kernel or a process), for
/// baselines.
pub fn bound_ports() -> usize {
    interrupts::without_interrupts(|| HANDLERS.read().iter().filter(|h| h.is_some()).count())
}

/// Forgets `port`'s handler and closes the port.
pub fn unbind(port: Port) -> Result<(), XenErrno> {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    interrupts::without_interrupts(|| HANDLERS.write()[p] = None);
    let r = xen::event_channel::close(port);
    for owned in &OWNED {
        owned[p / BITS_PER_EVTCHN_WORD]
            .fetch_and(!(1 << (p % BITS_PER_EVTCHN_WORD)), Ordering::AcqRel);
    }
    let _ = take(port);
    r
}

/// The upcall on the running vCPU: called from the trap dispatcher on
/// [`UPCALL_VECTOR`], interrupts off.
pub fn upcall() {
    let Some(shared) = SHARED.get() else { return };
    let cpu = percpu::id();
    COUNTS[cpu].upcalls.fetch_add(1, Ordering::Relaxed);
    let owned = &OWNED[cpu];
    CURSORS[cpu].lock().scan(
        shared,
        vcpu_info(cpu),
        |w| owned[w].load(Ordering::Acquire),
        |p| {
            let h = HANDLERS.read()[p as usize];
            match h {
                Some(h) => {
                    DISPATCHED.fetch_add(1, Ordering::Relaxed);
                    h(p, 0);
                }
                None => {
                    SPURIOUS.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
    );
}

/// Whether `port` fired since the last call; clears the flag.
pub fn take(port: Port) -> bool {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    let bit = 1 << (p % 64);
    FIRED[p / 64].fetch_and(!bit, Ordering::AcqRel) & bit != 0
}

/// Xen system time now, in ns, from the running vCPU's clock.
pub fn now_ns() -> u64 {
    xen::time::now(&vcpu_info(percpu::id()).time)
}

/// The TSC frequency, Hz, of the running vCPU's pvclock scale.
pub fn tsc_hz() -> u64 {
    xen::time::tsc_hz(&vcpu_info(percpu::id()).time)
}

/// The running vCPU's timer port.
fn timer_port() -> Port {
    TIMER_PORT[percpu::id()].load(Ordering::Acquire)
}

/// A deadline this close is not handed to Xen but taken as come
/// ([`arm_timer`]): Xen fires a timer that is due within its slop (50 us
/// by default) at once.
const ARM_MARGIN_NS: u64 = 100_000;

/// Arms the running vCPU's one-shot timer for `deadline`. A deadline that
/// has passed, or is due within [`ARM_MARGIN_NS`], marks the timer's port
/// fired here instead (counted: [`TimerState::fired_here`]), and a
/// deadline that passes on the way to Xen comes back as `ETIME`
/// (`VCPU_SSHOTTMR_future`) and is marked so too. Xen would fire either
/// at once, and inject its event in the world switch that ends this very
/// hypercall: under the emulated host's SVM that switch, with an event to
/// inject, is where guests were seen to triple-fault at the hypercall's
/// return or to resume with Xen's own `rip`. Callers re-check the time,
/// so a deadline taken as come up to the margin early costs them a spin
/// of at most that long.
fn arm_timer(deadline: u64) {
    let cpu = percpu::id();
    let c = &COUNTS[cpu];
    let due = deadline <= now_ns().saturating_add(ARM_MARGIN_NS)
        || match xen::vcpu::set_singleshot_timer(cpu as u32, deadline, VCPU_SSHOTTMR_future) {
            Ok(()) => {
                c.armed.store(deadline, Ordering::Relaxed);
                false
            }
            Err(XenErrno::ETIME) => true,
            Err(_) => {
                c.arm_errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        };
    if due {
        c.fired_here.fetch_add(1, Ordering::Relaxed);
        mark(timer_port(), 0);
    }
}

/// Waits until `port` fires (returns true) or `timeout_ns` passes (false),
/// idling this vCPU meanwhile.
pub fn wait(port: Port, timeout_ns: u64) -> bool {
    let deadline = now_ns().saturating_add(timeout_ns);
    let timer = timer_port();
    loop {
        if take(port) {
            return true;
        }
        if now_ns() >= deadline {
            return false;
        }
        // Re-arm each round: the timer port may have fired for an earlier
        // deadline. A deadline already passed fires at once.
        arm_timer(deadline);
        interrupts::disable();
        poll_upcall();
        if peek(port) || peek(timer) {
            interrupts::enable();
        } else {
            halt(deadline);
            note_wake(deadline);
        }
        let _ = take(timer);
    }
}

/// Idles this vCPU for `ns` on its own one-shot timer; returns whether
/// that timer's event woke it (rather than the time passing unseen).
pub fn sleep_on_timer(ns: u64) -> bool {
    let timer = timer_port();
    let deadline = now_ns().saturating_add(ns);
    let _ = take(timer);
    loop {
        arm_timer(deadline);
        interrupts::disable();
        poll_upcall();
        if !peek(timer) {
            halt(deadline);
            note_wake(deadline);
        }
        interrupts::enable();
        if take(timer) && now_ns() >= deadline {
            return true;
        }
        if now_ns() >= deadline.saturating_add(ns) {
            return false;
        }
    }
}

/// Idles the vCPU until an event arrives or `deadline` (Xen system time,
/// ns) passes, unless `ready()`, checked with interrupts off, already
/// holds (the scheduler's idle loop; the same `sti; hlt` as [`wait`]).
/// Returns with interrupts off.
pub fn idle(deadline: u64, ready: &dyn Fn() -> bool) {
    let timer = timer_port();
    arm_timer(deadline);
    interrupts::disable();
    poll_upcall();
    if !ready() && !peek(timer) {
        halt(deadline);
        interrupts::disable();
        note_wake(deadline);
    }
    let _ = take(timer);
}

/// (a) Upcalls run by [`poll_upcall`].
static POLLED: AtomicU64 = AtomicU64::new(0);

/// Before a halt, interrupts off: runs the upcall here if Xen has one
/// pending for this vCPU (its flag, or a selector bit, set). Usually the callback vector comes as soon as
/// interrupts are on again, and a poll only takes what arrived in the
/// last instructions. But under the emulated host an injection of the
/// vector is now and then lost for good: a vCPU then spins with
/// interrupts on and its events pending (seen with xenctx and Xen's `e`
/// dump: port pending, selector set), since its halt returns at once. The
/// poll makes such a vCPU take its events anyway. Counted: [`polled`].
fn poll_upcall() {
    let vi = vcpu_info(percpu::id());
    // The selector too: a stall left a word's selector bit set with its
    // ports pending, which no upcall reported.
    if vi.evtchn_upcall_pending.load(Ordering::Acquire) != 0
        || vi.evtchn_pending_sel.load(Ordering::Acquire) != 0
    {
        POLLED.fetch_add(1, Ordering::Relaxed);
        upcall();
    }
}

/// Upcalls run by a poll before a halt rather than by the vector.
pub fn polled() -> u64 {
    POLLED.load(Ordering::Relaxed)
}

/// Arms the running vCPU's timer for `deadline` without waiting (the
/// scheduler's time slice).
pub fn set_timer(deadline: u64) {
    arm_timer(deadline);
}

/// Whether `port` fired and was not yet taken.
pub fn pending(port: Port) -> bool {
    peek(port)
}

fn peek(port: Port) -> bool {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    FIRED[p / 64].load(Ordering::Acquire) & (1 << (p % 64)) != 0
}

/// Upcall statistics, summed over the vCPUs.
pub fn stats() -> EventStats {
    EventStats {
        dispatched: DISPATCHED.load(Ordering::Relaxed),
        spurious: SPURIOUS.load(Ordering::Relaxed),
        upcalls: COUNTS
            .iter()
            .map(|c| c.upcalls.load(Ordering::Relaxed))
            .sum(),
    }
}

/// The state of vCPU `cpu`'s timer and event flags, for reports.
#[derive(Clone, Copy, Debug)]
pub struct TimerState {
    /// The deadline its one-shot timer was last armed for (Xen system
    /// time, ns).
    pub armed: u64,
    /// Arms Xen refused.
    pub arm_errors: u64,
    /// Deadlines taken as come without Xen, being due already.
    pub fired_here: u64,
    /// Timer events taken.
    pub timer_events: u64,
    /// Halts that ended more than a second after their timer's deadline.
    pub late: u64,
    /// The most any halt ended after its timer's deadline (ns).
    pub late_max: u64,
    /// Its `evtchn_upcall_pending`, `evtchn_upcall_mask` and
    /// `evtchn_pending_sel` now.
    pub flags: (u8, u8, u64),
}

/// vCPU `cpu`'s timer and event flags now.
pub fn timer_state(cpu: usize) -> TimerState {
    let c = &COUNTS[cpu];
    let vi = vcpu_info(cpu);
    TimerState {
        armed: c.armed.load(Ordering::Relaxed),
        arm_errors: c.arm_errors.load(Ordering::Relaxed),
        fired_here: c.fired_here.load(Ordering::Relaxed),
        timer_events: c.timer_events.load(Ordering::Relaxed),
        late: c.late.load(Ordering::Relaxed),
        late_max: c.late_max.load(Ordering::Relaxed),
        flags: (
            vi.evtchn_upcall_pending.load(Ordering::Relaxed),
            vi.evtchn_upcall_mask.load(Ordering::Relaxed),
            vi.evtchn_pending_sel.load(Ordering::Relaxed),
        ),
    }
}

/// Upcalls and timer events taken by vCPU `cpu`.
pub fn cpu_stats(cpu: usize) -> (u64, u64) {
    let c = &COUNTS[cpu];
    (
        c.upcalls.load(Ordering::Relaxed),
        c.timer_events.load(Ordering::Relaxed),
    )
}
