//! Answers to the toolstack: `xl shutdown`, `xl reboot` and `xl sysrq`
//! through the domain's `control/` nodes in xenstore (the values and the
//! protocol are `xen::control`'s; `shared/notes/lifecycle.md` §1).
//!
//! At boot the kernel advertises `feature-poweroff`, `feature-reboot` and
//! `feature-suspend` ("1"), watches `control/shutdown` and `control/sysrq`, and
//! starts the control thread. The thread looks at both nodes whenever an
//! event of the kernel's own watches has been dispatched (by it or any
//! other thread: [`xenstore::kernel_watch_events`]), polling the ring every
//! [`POLL_NS`]. It never blocks on the store's event channel, so it takes
//! no wake-up from a thread waiting for a xenstore reply.
//!
//! A shutdown request (`poweroff`, `halt`, `reboot`) is acknowledged by
//! clearing the node in a transaction (libxl waits up to 60 s for that),
//! then every process is killed (our programs have no signal handlers, so
//! there is no gentler notice to give: the kill is SIGKILL's), and their
//! teardown unmaps every gntdev mapping with its unmap notify, closes
//! their event channels and ends or defers their grants, as at any exit.
//! After at most [`GRACE_NS`] the domain shuts down with reason poweroff or
//! reboot, so that the config's `on_poweroff`/`on_reboot` applies. A value
//! no toolstack writes is logged once and ignored, unacknowledged, as
//! Linux does. `suspend` (`xl save`, `xl migrate`) is acknowledged the
//! same way and handed to [`suspend::run`], which returns when the domain
//! runs again, cancelled or in a new domain.
//!
//! `control/sysrq` keys: `c` crashes the domain through a kernel page
//! fault (the register dump and crash shutdown of any kernel fault, as
//! Linux's sysrq-c), `t` or `m` prints [`report`], anything else the keys
//! known. Each key is acknowledged by clearing the node.
//!
//! Locking: [`REQUESTED`] is atomic; everything else is the control
//! thread's own.

use core::sync::atomic::{AtomicU32, Ordering};

use xen::abi::sched::ShutdownReason;
use xen::control::{self, ShutdownRequest, SysrqRequest};
use xen::xenstore::TxId;

use crate::{
    console, dev, events, heap, kprintln, layout, mem, proc, sched, smp, suspend, xenstore,
};

/// How often the control thread looks for watch events.
pub const POLL_NS: u64 = 200_000_000;
/// How long the processes have to end after a shutdown request.
const GRACE_NS: u64 = 5_000_000_000;
/// How often the end of the processes is checked meanwhile.
const GRACE_POLL_NS: u64 = 20_000_000;
/// The token of the kernel's watches of the control nodes.
const TOKEN: &str = "control";
/// Transaction attempts for an acknowledgement.
const ACK_TRIES: u32 = 8;
/// An address no page table maps (below the kernel stacks' region, above
/// the identity map): [`fault_on_purpose`] reads it.
const UNMAPPED: u64 = 0x40_0000_0000;
/// [`REQUESTED`] when no shutdown was asked for.
const NONE: u32 = u32::MAX;

/// (a) The reason of the shutdown the toolstack asked for, or [`NONE`].
static REQUESTED: AtomicU32 = AtomicU32::new(NONE);

/// The shutdown the toolstack asked for, if any: the scenario that was
/// running reports it instead of a result, and the boot thread shuts down
/// with this reason.
pub fn requested() -> Option<ShutdownReason> {
    match REQUESTED.load(Ordering::Acquire) {
        r if r == ShutdownReason::Poweroff as u32 => Some(ShutdownReason::Poweroff),
        r if r == ShutdownReason::Reboot as u32 => Some(ShutdownReason::Reboot),
        _ => None,
    }
}

/// Advertises what the kernel answers, watches the control nodes and
/// starts the control thread. A failure is logged: the domain then
/// answers nothing, as before.
pub fn init() {
    let set_up = advertise_features().and_then(|()| {
        xenstore::with(|xs| {
            xs.watch(control::SHUTDOWN, TOKEN)?;
            xs.watch(control::SYSRQ, TOKEN)
        })
    });
    match set_up {
        Ok(()) => {
            // On vCPU 0: a suspend is made from there.
            sched::spawn_kernel(control_main, 0, Some(0));
        }
        Err(e) => log::error!("control: cannot watch the control nodes: {e:?}"),
    }
}

/// Writes the `control/feature-*` nodes the kernel answers.
fn advertise_features() -> Result<(), xen::hypercall::XenErrno> {
    xenstore::with(|xs| {
        for f in control::FEATURES_ANSWERED {
            xs.write(TxId::NONE, f, b"1")?;
        }
        Ok(())
    })
}

/// Advertises the features again in a new domain (after a restore or a
/// migration, the toolstack made the domain's nodes anew); the watches
/// were registered again with every other.
pub fn advertise() {
    if let Err(e) = advertise_features() {
        log::error!("control: cannot advertise the features: {e:?}");
    }
}

/// The control thread.
extern "C" fn control_main(_: usize) -> ! {
    let mut seen = None;
    let mut ignored: Option<alloc::vec::Vec<u8>> = None;
    loop {
        if let Err(e) = xenstore::dispatch_watches() {
            log::warn!("control: xenstore: {e:?}");
        }
        let n = xenstore::kernel_watch_events();
        if seen != Some(n) {
            seen = Some(n);
            sysrq();
            shutdown(&mut ignored);
        }
        sched::sleep_until(events::now_ns().saturating_add(POLL_NS));
    }
}

/// Reads `node` and, when `answer` accepts its value, clears it, in one
/// transaction; returns the value read (empty: no node or no request).
fn take(node: &str, answer: impl Fn(&[u8]) -> bool) -> alloc::vec::Vec<u8> {
    let r = xenstore::with(|xs| {
        xs.transaction(ACK_TRIES, |xs, tx| {
            let v = match xs.read(tx, node) {
                Ok(v) => v,
                Err(xen::hypercall::XenErrno::ENOENT) => alloc::vec::Vec::new(),
                Err(e) => return Err(e),
            };
            if answer(&v) {
                xs.write(tx, node, b"")?;
            }
            Ok(v)
        })
    });
    r.unwrap_or_else(|e| {
        log::warn!("control: {node}: {e:?}");
        alloc::vec::Vec::new()
    })
}

/// Answers `control/sysrq`.
fn sysrq() {
    let v = take(control::SYSRQ, |v| SysrqRequest::parse(v).is_some());
    match SysrqRequest::parse(&v) {
        None => {}
        Some(SysrqRequest::Crash) => {
            kprintln!("sysrq: c: crashing the domain by a kernel page fault");
            console::flush();
            let v = fault_on_purpose();
            crate::fatal(format_args!(
                "sysrq c: read {v:#x} from {UNMAPPED:#x} without a fault"
            ));
        }
        Some(SysrqRequest::Report) => report(),
        Some(SysrqRequest::Help(k)) => kprintln!(
            "sysrq: unknown key {:?}; keys: {}",
            char::from(k),
            control::SYSRQ_HELP
        ),
    }
}

/// Answers `control/shutdown`; `ignored` is the last value ignored, so
/// that it is logged once.
fn shutdown(ignored: &mut Option<alloc::vec::Vec<u8>>) {
    let known = |v: &[u8]| matches!(ShutdownRequest::parse(v), Some(Ok(_)));
    let v = take(control::SHUTDOWN, known);
    let (reason, what) = match ShutdownRequest::parse(&v) {
        None => {
            *ignored = None;
            return;
        }
        Some(Ok(ShutdownRequest::Poweroff)) => (ShutdownReason::Poweroff, "poweroff"),
        Some(Ok(ShutdownRequest::Reboot)) => (ShutdownReason::Reboot, "reboot"),
        Some(Ok(ShutdownRequest::Suspend)) => {
            kprintln!("control: suspend requested by the toolstack");
            // The outcome is logged; the domain runs on in every case.
            let _ = suspend::run();
            return;
        }
        Some(Err(text)) => {
            if ignored.as_deref() != Some(&v[..]) {
                kprintln!(
                    "control: unknown shutdown request {:?} ignored",
                    alloc::string::String::from_utf8_lossy(text)
                );
                *ignored = Some(v);
            }
            return;
        }
    };
    REQUESTED.store(reason as u32, Ordering::Release);
    let n = proc::kill_all();
    kprintln!("control: {what} requested by the toolstack: ending {n} process(es)");
    let t0 = events::now_ns();
    let deadline = t0.saturating_add(GRACE_NS);
    while proc::live() > 0 && events::now_ns() < deadline {
        sched::sleep_until(events::now_ns().saturating_add(GRACE_POLL_NS));
    }
    let (live, pending) = dev::grant_refs();
    kprintln!(
        "control: {} process(es) left after {} ms; {live} grant(s) live, {pending} waiting for their peers; {what}",
        proc::live(),
        (events::now_ns() - t0) / 1_000_000
    );
    console::flush();
    xen::sched::shutdown(reason)
}

/// Reads [`UNMAPPED`]: a kernel page fault, which the trap handler reports
/// with a register dump and a crash shutdown (sysrq `c` and the harness's
/// self-test); returns only if the address was mapped after all.
pub fn fault_on_purpose() -> u64 {
    let unmapped = UNMAPPED as *const u64;
    // SAFETY: deliberately unsound - this read is meant to fault, and the
    // fault handler never returns here.
    unsafe { unmapped.read_volatile() }
}

/// Prints the kernel's state for sysrq `t`/`m`: processes, scheduler,
/// memory, grants and gntdev mappings, and a COUNTERS line of the same.
pub fn report() {
    let procs = proc::list();
    kprintln!(
        "sysrq report at {} ms of Xen system time: {} process(es)",
        events::now_ns() / 1_000_000,
        procs.len()
    );
    for p in &procs {
        kprintln!(
            "  pid {} {}: {} thread(s), {} fault(s), {} descriptor(s){}",
            p.pid,
            p.name,
            p.threads,
            p.faults,
            p.files,
            if p.killed { ", ending" } else { "" }
        );
    }
    let now = events::now_ns();
    for t in sched::threads() {
        let owner = t.pid.map_or(alloc::string::String::from("kernel"), |p| {
            alloc::format!("pid {p}")
        });
        let port = t
            .wait
            .and_then(|w| w.port)
            .map_or(alloc::string::String::new(), |p| {
                alloc::format!(", port {p}")
            });
        let deadline = t
            .wait
            .and_then(|w| w.deadline)
            .map_or(alloc::string::String::new(), |d| {
                alloc::format!(
                    ", deadline {} ms ahead",
                    (d as i128 - now as i128) / 1_000_000
                )
            });
        let what = t.wait.map_or(alloc::string::String::new(), |w| {
            alloc::format!(" ({})", w.what)
        });
        kprintln!(
            "  thread {} ({owner}): {}{what}{port}{deadline}, vCPU {}",
            t.tid,
            t.state,
            t.cpu
        );
        if !t.stack.is_empty() {
            let frames: alloc::vec::Vec<alloc::string::String> =
                t.stack.iter().map(|a| alloc::format!("{a:#x}")).collect();
            kprintln!("    return addresses: {}", frames.join(" "));
        }
    }
    let sc = sched::stats();
    let sleepers = crate::sleepq::sleepers();
    kprintln!(
        "  scheduler: {} live thread(s), {} switches, {} preemptions, {} steals on {} vCPU(s); {} asleep on a sleep queue (busy pages)",
        sc.live_threads,
        sc.switches,
        sc.preemptions,
        sc.steals,
        smp::online(),
        sleepers.len()
    );
    // What each sleeper waits for: a page still busy is held by someone
    // (a busy never released); an unbusied one lost its wake-up.
    let d = mem::domain();
    for &(key, tid) in &sleepers {
        match d.phys.page_at(key) {
            Some(id) => {
                let m = d.page(id);
                kprintln!(
                    "  thread {tid} asleep on page {id} (pa {:#x}, pindex {}): busy word {:#x}, ref_count {:#x}, queue {:?}",
                    m.phys_addr(),
                    m.pindex(),
                    m.busy_word(),
                    m.ref_count(),
                    m.queue()
                );
            }
            None => kprintln!("  thread {tid} asleep on key {key:#x}"),
        }
    }
    kprintln!(
        "  events: {} upcall(s), {} delivered with interrupts masked and put off, {} run by a poll before a halt",
        events::stats().upcalls,
        crate::arch::trap::masked_upcalls(),
        events::polled(),
    );
    let (mut late, mut late_max) = (0, 0);
    for cpu in 0..smp::online() {
        let t = events::timer_state(cpu);
        let (pending, mask, sel) = t.flags;
        kprintln!(
            "  vCPU {cpu}: timer last armed for {} ms ahead, {} timer event(s), {} deadline(s) due at their arming, {} arm(s) refused, {} halt(s) over a second past their deadline (at most {} ms past); upcall pending {pending}, mask {mask}, selector {sel:#x}",
            (t.armed as i128 - now as i128) / 1_000_000,
            t.timer_events,
            t.fired_here,
            t.arm_errors,
            t.late,
            t.late_max / 1_000_000,
        );
        late += t.late;
        late_max = late_max.max(t.late_max);
    }
    let (cancelled, moved) = suspend::counts();
    kprintln!(
        "  suspends: {cancelled} cancelled, {moved} resumed in a new domain (generation {})",
        events::generation()
    );
    // Each figure read once: the prose and the COUNTERS line agree.
    let (size, peak) = heap::usage();
    let free = mem::free_pages();
    let holes = layout::hole_in_use();
    let (live, pending) = dev::grant_refs();
    let g = dev::gntdev_stats();
    kprintln!(
        "  memory: {free} free page(s); kernel heap {} KiB, peak {} KiB",
        size / 1024,
        peak / 1024
    );
    kprintln!(
        "  kernel heap classes (size:in use/cached/slabs): {}",
        heap::classes()
    );
    kprintln!(
        "  grants: {live} live, {pending} waiting for their peers to unmap; {holes} hole frame(s) in use"
    );
    kprintln!(
        "  gntdev: {} hole(s) of {} frame(s) mapped now, {} unmap(s) to retry; {} mapping(s), {} map and {} unmap hypercall(s) so far",
        g.live_holes,
        g.live_hole_frames,
        g.pending_unmaps,
        g.mappings,
        g.map_hypercalls,
        g.unmap_hypercalls
    );
    kprintln!(
        "COUNTERS sysrq processes={} free_pages={free} grant_refs={live} pending_grants={pending} hole_frames={holes} gntdev_holes={} heap_peak_kib={} suspends_cancelled={cancelled} suspends_moved={moved} generation={} late_halts={late} late_max_ms={}",
        procs.len(),
        g.live_holes,
        peak / 1024,
        events::generation(),
        late_max / 1_000_000
    );
}
