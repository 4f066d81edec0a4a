//! Event channels: the hypercalls, and delivery with the 2-level ABI.
//!
//! [`EventOps`] is the set of channel operations drivers use (real Xen:
//! [`Xen`]; simulated: `xen::sim`). [`EventChannels`] is the upcall side:
//! the 2-level scan of a [`SharedInfo`] and a table of handlers, on any
//! memory (the page placed with `XENMAPSPACE_shared_info`, or a test's).
//!
//! Scan (as Linux's `evtchn_2l_handle_events`): clear
//! `evtchn_upcall_pending`, swap `evtchn_pending_sel` to 0, and for each
//! selected word take `pending & !mask`, clearing each pending bit
//! atomically before running its handler. The scan resumes after the last
//! port it served, so a busy low port cannot starve higher ones.
//!
//! Locking: `EventChannels` is `&mut self` (the kernel keeps one per vCPU
//! or behind its own lock); the shared page is only touched atomically.

#[cfg(any(test, feature = "alloc"))]
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::abi::event_channel::{
    EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_ipi, EVTCHNOP_bind_virq,
    EVTCHNOP_close, EVTCHNOP_send, EVTCHNOP_status, EVTCHNOP_unmask, EvtchnAllocUnbound,
    EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVirq, EvtchnClose, EvtchnSend, EvtchnStatus,
    EvtchnUnmask,
};
use crate::abi::op::EVENT_CHANNEL_OP;
use crate::abi::shared_info::{BITS_PER_EVTCHN_WORD, EVTCHN_2L_NR_CHANNELS, SharedInfo, VcpuInfo};
use crate::abi::{DOMID_SELF, DomId, Port};
use crate::hypercall::{self, XenErrno};

/// Issues event-channel op `cmd` on `arg`.
fn op<T>(cmd: u32, arg: &mut T) -> Result<(), XenErrno> {
    // SAFETY: every caller passes the structure `cmd` expects, valid for
    // the call; none of these ops touches other memory.
    XenErrno::check(unsafe { hypercall::op_arg(EVENT_CHANNEL_OP, cmd, arg as *mut T) }).map(drop)
}

/// Signals the remote end of local `port` (`EVTCHNOP_send`).
pub fn send(port: Port) -> Result<(), XenErrno> {
    op(EVTCHNOP_send, &mut EvtchnSend { port })
}

/// A new port that `remote` may bind to (`EVTCHNOP_alloc_unbound`).
pub fn alloc_unbound(remote: DomId) -> Result<Port, XenErrno> {
    let mut arg = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    op(EVTCHNOP_alloc_unbound, &mut arg)?;
    Ok(arg.port)
}

/// Connects a new local port to `remote`'s unbound `remote_port`
/// (`EVTCHNOP_bind_interdomain`).
pub fn bind_interdomain(remote: DomId, remote_port: Port) -> Result<Port, XenErrno> {
    let mut arg = EvtchnBindInterdomain {
        remote_dom: remote,
        remote_port,
        local_port: 0,
    };
    op(EVTCHNOP_bind_interdomain, &mut arg)?;
    Ok(arg.local_port)
}

/// A port for virtual IRQ `virq` (`VIRQ_*`) on `vcpu`
/// (`EVTCHNOP_bind_virq`).
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<Port, XenErrno> {
    let mut arg = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    op(EVTCHNOP_bind_virq, &mut arg)?;
    Ok(arg.port)
}

/// A port that notifies `vcpu` when any vCPU of ours sends on it
/// (`EVTCHNOP_bind_ipi`): an inter-processor interrupt.
pub fn bind_ipi(vcpu: u32) -> Result<Port, XenErrno> {
    let mut arg = EvtchnBindIpi { vcpu, port: 0 };
    op(EVTCHNOP_bind_ipi, &mut arg)?;
    Ok(arg.port)
}

/// Closes `port` (`EVTCHNOP_close`).
pub fn close(port: Port) -> Result<(), XenErrno> {
    op(EVTCHNOP_close, &mut EvtchnClose { port })
}

/// Unmasks `port`, re-raising it if it is pending (`EVTCHNOP_unmask`).
pub fn unmask(port: Port) -> Result<(), XenErrno> {
    op(EVTCHNOP_unmask, &mut EvtchnUnmask { port })
}

/// The state of local `port`, an `EVTCHNSTAT_*` value (`EVTCHNOP_status`):
/// an interdomain port whose peer closed it, or whose domain died, is
/// unbound again.
pub fn status(port: Port) -> Result<u32, XenErrno> {
    let mut arg = EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    };
    op(EVTCHNOP_status, &mut arg)?;
    Ok(arg.status)
}

/// Event-channel operations, as drivers use them.
pub trait EventOps {
    /// See [`send`].
    fn send(&self, port: Port) -> Result<(), XenErrno>;
    /// See [`alloc_unbound`].
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, XenErrno>;
    /// See [`bind_interdomain`].
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, XenErrno>;
    /// See [`bind_virq`].
    fn bind_virq(&self, virq: u32, vcpu: u32) -> Result<Port, XenErrno>;
    /// See [`close`].
    fn close(&self, port: Port) -> Result<(), XenErrno>;
    /// See [`unmask`].
    fn unmask(&self, port: Port) -> Result<(), XenErrno>;
}

/// Real Xen's event channels.
#[derive(Clone, Copy, Debug, Default)]
pub struct Xen;

impl EventOps for Xen {
    fn send(&self, port: Port) -> Result<(), XenErrno> {
        send(port)
    }
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, XenErrno> {
        alloc_unbound(remote)
    }
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, XenErrno> {
        bind_interdomain(remote, remote_port)
    }
    fn bind_virq(&self, virq: u32, vcpu: u32) -> Result<Port, XenErrno> {
        bind_virq(virq, vcpu)
    }
    fn close(&self, port: Port) -> Result<(), XenErrno> {
        close(port)
    }
    fn unmask(&self, port: Port) -> Result<(), XenErrno> {
        unmask(port)
    }
}

/// A port's handler: called with the port and the context given at
/// registration.
pub type Handler = fn(Port, usize);

/// Masks `port` in `shared` (no upcall while pending).
pub fn mask(shared: &SharedInfo, port: Port) {
    let (w, b) = split(port);
    shared.evtchn_mask[w].fetch_or(1 << b, Ordering::AcqRel);
}

/// Clears `port`'s mask bit in `shared` without a hypercall. An event
/// that arrived while masked is not re-raised: use [`unmask`] (or
/// [`EventOps::unmask`]) for that.
pub fn clear_mask(shared: &SharedInfo, port: Port) {
    let (w, b) = split(port);
    shared.evtchn_mask[w].fetch_and(!(1 << b), Ordering::AcqRel);
}

/// Marks `port` pending the way Xen does: the pending bit, then (unless
/// masked) the selector bit and `evtchn_upcall_pending` of `vcpu`.
/// Returns whether an upcall is due. Used by the simulator and tests.
pub fn raise(shared: &SharedInfo, vcpu: usize, port: Port) -> bool {
    let (w, b) = split(port);
    let was = shared.evtchn_pending[w].fetch_or(1 << b, Ordering::AcqRel);
    if was & (1 << b) != 0 || shared.evtchn_mask[w].load(Ordering::Acquire) & (1 << b) != 0 {
        return false;
    }
    let vi = &shared.vcpu_info[vcpu];
    let sel = vi.evtchn_pending_sel.fetch_or(1 << w, Ordering::AcqRel);
    sel & (1 << w) == 0 && vi.evtchn_upcall_pending.swap(1, Ordering::AcqRel) == 0
}

/// Xen's 2-level `EVTCHNOP_unmask` on `shared`: clears `port`'s mask bit
/// and, if it was masked and is pending, raises it on `vcpu` (the selector
/// bit and `evtchn_upcall_pending`). Returns whether an upcall is due.
/// Used by the simulator and tests.
pub fn unmask_2l(shared: &SharedInfo, vcpu: usize, port: Port) -> bool {
    let (w, b) = split(port);
    let was = shared.evtchn_mask[w].fetch_and(!(1 << b), Ordering::AcqRel);
    if was & (1 << b) == 0 || shared.evtchn_pending[w].load(Ordering::Acquire) & (1 << b) == 0 {
        return false;
    }
    let vi = &shared.vcpu_info[vcpu];
    let sel = vi.evtchn_pending_sel.fetch_or(1 << w, Ordering::AcqRel);
    sel & (1 << w) == 0 && vi.evtchn_upcall_pending.swap(1, Ordering::AcqRel) == 0
}

/// Makes Xen report `port` once more if it is pending, for a port that
/// just got its owner: masks it in `shared`, then unmasks it through
/// `ops` (`EVTCHNOP_unmask` raises a masked port that is pending). A port
/// that an upcall's scan saw pending before it had an owner stays
/// pending with its word's selector bit consumed, and Xen raises a port
/// only when its pending bit goes from 0 to 1: without this it would
/// swallow every later event of its word.
pub fn rearm(shared: &SharedInfo, port: Port, ops: &dyn EventOps) -> Result<(), XenErrno> {
    mask(shared, port);
    ops.unmask(port)
}

fn split(port: Port) -> (usize, usize) {
    let p = port as usize % EVTCHN_2L_NR_CHANNELS;
    (p / BITS_PER_EVTCHN_WORD, p % BITS_PER_EVTCHN_WORD)
}

/// Counts of the upcall side.
#[cfg(any(test, feature = "alloc"))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events handed to a handler.
    pub dispatched: u64,
    /// Events on a port with no handler (dropped).
    pub spurious: u64,
    /// Calls of [`EventChannels::handle_upcall`].
    pub upcalls: u64,
}

/// The handler table and the 2-level scan.
#[cfg(any(test, feature = "alloc"))]
#[derive(Debug, Default)]
pub struct EventChannels {
    handlers: Vec<Option<(Handler, usize)>>,
    cursor: ScanCursor,
    stats: EventStats,
}

/// One vCPU's 2-level scan: where its next scan starts, the word and bit
/// after the last port it served (a fair order: no port starves another).
#[derive(Debug, Default)]
pub struct ScanCursor {
    next_word: usize,
    next_bit: usize,
}

#[cfg(any(test, feature = "alloc"))]
impl EventChannels {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `handler(port, ctx)` for each event on `port` from now on,
    /// replacing any earlier handler.
    pub fn register(&mut self, port: Port, handler: Handler, ctx: usize) {
        let i = port as usize;
        if self.handlers.len() <= i {
            self.handlers.resize(i + 1, None);
        }
        self.handlers[i] = Some((handler, ctx));
    }

    /// Forgets `port`'s handler.
    pub fn unregister(&mut self, port: Port) {
        if let Some(h) = self.handlers.get_mut(port as usize) {
            *h = None;
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> EventStats {
        self.stats
    }

    /// The upcall: scans `shared` for `vcpu`'s pending, unmasked events
    /// and runs their handlers. Returns the number of events seen. It
    /// does not allocate, so it may run in interrupt context.
    pub fn handle_upcall(&mut self, shared: &SharedInfo, vcpu: usize) -> usize {
        let Self {
            handlers,
            cursor,
            stats,
        } = self;
        stats.upcalls += 1;
        let mut seen = 0;
        cursor.scan(
            shared,
            &shared.vcpu_info[vcpu],
            |_| !0,
            |p| {
                seen += 1;
                match handlers.get(p as usize).copied().flatten() {
                    Some((h, ctx)) => {
                        stats.dispatched += 1;
                        h(p, ctx);
                    }
                    None => stats.spurious += 1,
                }
            },
        );
        seen
    }

    /// The 2-level scan alone: calls `found(port)` for each pending,
    /// unmasked port (its pending bit already cleared), fairly ordered.
    pub fn scan(&mut self, shared: &SharedInfo, vcpu: usize, found: impl FnMut(Port)) {
        self.cursor
            .scan(shared, &shared.vcpu_info[vcpu], |_| !0, found);
    }
}

impl ScanCursor {
    /// A cursor at port 0.
    pub const fn new() -> Self {
        Self {
            next_word: 0,
            next_bit: 0,
        }
    }

    /// The upcall's scan for the vCPU whose `vcpu_info` is `vi`: calls
    /// `found(port)` for each pending, unmasked port of word `w` whose bit
    /// is set in `owned(w)` (the ports this vCPU serves: the shared words
    /// hold every vCPU's ports), its pending bit cleared first. Ports of
    /// other vCPUs are left pending for them.
    pub fn scan(
        &mut self,
        shared: &SharedInfo,
        vi: &VcpuInfo,
        owned: impl Fn(usize) -> u64,
        mut found: impl FnMut(Port),
    ) {
        const W: usize = BITS_PER_EVTCHN_WORD;
        while vi.evtchn_upcall_pending.swap(0, Ordering::AcqRel) != 0
            || vi.evtchn_pending_sel.load(Ordering::Acquire) != 0
        {
            let sel = vi.evtchn_pending_sel.swap(0, Ordering::AcqRel);
            let (start_word, start_bit) = (self.next_word, self.next_bit);
            // Words from `next_word` on, then wrap (the start word twice:
            // its bits before `next_bit` come last).
            for k in 0..=W {
                let w = (start_word + k) % W;
                if sel & (1 << w) == 0 {
                    continue;
                }
                let (lo, hi) = match k {
                    0 => (start_bit, W),
                    k if k == W => (0, start_bit),
                    _ => (0, W),
                };
                let range = if hi == W { !0u64 } else { (1u64 << hi) - 1 } & !((1u64 << lo) - 1);
                let mut bits = shared.evtchn_pending[w].load(Ordering::Acquire)
                    & !shared.evtchn_mask[w].load(Ordering::Acquire)
                    & owned(w)
                    & range;
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    // Clear before handling: an event raised while the
                    // handler runs is seen by the next scan. A port that
                    // was cleared meanwhile (a concurrent scan after a
                    // move to another vCPU) is not reported twice.
                    let was = shared.evtchn_pending[w].fetch_and(!(1 << b), Ordering::AcqRel);
                    if was & (1 << b) == 0 {
                        continue;
                    }
                    self.next_word = if b + 1 == W { (w + 1) % W } else { w };
                    self.next_bit = (b + 1) % W;
                    found((w * W + b) as Port);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    fn shared() -> Box<SharedInfo> {
        Box::default()
    }

    fn drain(ev: &mut EventChannels, s: &SharedInfo) -> Vec<Port> {
        let mut v = Vec::new();
        ev.scan(s, 0, |p| v.push(p));
        v
    }

    /// `unmask` through `unmask_2l`, as Xen's `EVTCHNOP_unmask`.
    struct Unmask2l<'a>(&'a SharedInfo);

    impl EventOps for Unmask2l<'_> {
        fn send(&self, _: Port) -> Result<(), XenErrno> {
            unreachable!()
        }
        fn alloc_unbound(&self, _: DomId) -> Result<Port, XenErrno> {
            unreachable!()
        }
        fn bind_interdomain(&self, _: DomId, _: Port) -> Result<Port, XenErrno> {
            unreachable!()
        }
        fn bind_virq(&self, _: u32, _: u32) -> Result<Port, XenErrno> {
            unreachable!()
        }
        fn close(&self, _: Port) -> Result<(), XenErrno> {
            unreachable!()
        }
        fn unmask(&self, port: Port) -> Result<(), XenErrno> {
            unmask_2l(self.0, 0, port);
            Ok(())
        }
    }

    #[test]
    fn a_port_left_pending_by_a_scan_that_did_not_own_it_is_rearmed() {
        let s = shared();
        let vi = &s.vcpu_info[0];
        let mut cursor = ScanCursor::new();
        assert!(raise(&s, 0, 70));
        // The scan runs before the port is ours: it stays pending, its
        // word's selector bit consumed.
        let mut seen = Vec::new();
        cursor.scan(&s, vi, |_| 0, |p| seen.push(p));
        assert!(seen.is_empty());
        // Later events on it raise nothing.
        assert!(!raise(&s, 0, 70));
        assert_eq!(vi.evtchn_pending_sel.load(Relaxed), 0);
        // A plain unmask of an unmasked port raises nothing either.
        assert!(!unmask_2l(&s, 0, 70));
        // Owned now and rearmed: the next scan reports it, once.
        rearm(&s, 70, &Unmask2l(&s)).unwrap();
        assert_eq!(vi.evtchn_upcall_pending.load(Relaxed), 1);
        assert_eq!(s.evtchn_mask[1].load(Relaxed), 0);
        cursor.scan(&s, vi, |_| !0, |p| seen.push(p));
        assert_eq!(seen, [70]);
        // Nothing pending: rearming raises nothing.
        vi.evtchn_upcall_pending.store(0, Relaxed);
        rearm(&s, 70, &Unmask2l(&s)).unwrap();
        assert_eq!(vi.evtchn_upcall_pending.load(Relaxed), 0);
        assert_eq!(vi.evtchn_pending_sel.load(Relaxed), 0);
    }

    #[test]
    fn two_level_scan_finds_and_clears() {
        let s = shared();
        let mut ev = EventChannels::new();
        for p in [3, 64, 130, 4095] {
            assert!(raise(&s, 0, p) || p != 3);
        }
        assert_eq!(drain(&mut ev, &s), [3, 64, 130, 4095]);
        assert!(s.evtchn_pending.iter().all(|w| w.load(Relaxed) == 0));
        assert_eq!(s.vcpu_info[0].evtchn_pending_sel.load(Relaxed), 0);
        assert_eq!(s.vcpu_info[0].evtchn_upcall_pending.load(Relaxed), 0);
        assert!(drain(&mut ev, &s).is_empty());
    }

    #[test]
    fn masked_ports_stay_pending() {
        let s = shared();
        let mut ev = EventChannels::new();
        mask(&s, 5);
        assert!(!raise(&s, 0, 5), "masked: no upcall");
        raise(&s, 0, 6);
        assert_eq!(drain(&mut ev, &s), [6]);
        assert_ne!(s.evtchn_pending[0].load(Relaxed) & (1 << 5), 0);
        clear_mask(&s, 5);
        // Unmasking in Xen re-raises; emulate its selector update.
        s.vcpu_info[0].evtchn_pending_sel.fetch_or(1, Relaxed);
        assert_eq!(drain(&mut ev, &s), [5]);
    }

    #[test]
    fn scan_resumes_after_last_port() {
        let s = shared();
        let mut ev = EventChannels::new();
        raise(&s, 0, 100);
        assert_eq!(drain(&mut ev, &s), [100]);
        for p in [1, 99, 101, 200] {
            raise(&s, 0, p);
        }
        // After 100: 101 first, then 200, then wrap to 1 and 99.
        assert_eq!(drain(&mut ev, &s), [101, 200, 1, 99]);
    }

    #[test]
    fn scan_serves_only_owned_ports() {
        let s = shared();
        let mut cpu0 = ScanCursor::new();
        let mut cpu1 = ScanCursor::new();
        // Ports 3 and 70 belong to vCPU 1; 4 and 71 to vCPU 0.
        let owned1 = |w: usize| [1u64 << 3, 1 << 6][w.min(1)] * u64::from(w < 2);
        let owned0 = |w: usize| [1u64 << 4, 1 << 7][w.min(1)] * u64::from(w < 2);
        for p in [3, 4, 70, 71] {
            raise(&s, 0, p);
        }
        let mut got = Vec::new();
        cpu0.scan(&s, &s.vcpu_info[0], owned0, |p| got.push(p));
        assert_eq!(got, [4, 71]);
        // vCPU 1's ports stay pending for it.
        assert_ne!(s.evtchn_pending[0].load(Relaxed) & (1 << 3), 0);
        s.vcpu_info[1].evtchn_pending_sel.fetch_or(0b11, Relaxed);
        got.clear();
        cpu1.scan(&s, &s.vcpu_info[1], owned1, |p| got.push(p));
        assert_eq!(got, [3, 70]);
        assert!(s.evtchn_pending.iter().all(|w| w.load(Relaxed) == 0));
    }

    static HITS: AtomicUsize = AtomicUsize::new(0);
    fn count(port: Port, ctx: usize) {
        HITS.fetch_add(port as usize * ctx, Relaxed);
    }

    #[test]
    fn handlers_get_port_and_context() {
        let s = shared();
        let mut ev = EventChannels::new();
        ev.register(7, count, 10);
        raise(&s, 0, 7);
        raise(&s, 0, 8);
        assert_eq!(ev.handle_upcall(&s, 0), 2);
        assert_eq!(HITS.load(Relaxed), 70);
        let st = ev.stats();
        assert_eq!((st.dispatched, st.spurious, st.upcalls), (1, 1, 1));
        ev.unregister(7);
        raise(&s, 0, 7);
        ev.handle_upcall(&s, 0);
        assert_eq!(ev.stats().spurious, 2);
    }
}
