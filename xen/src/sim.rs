//! A simulated hypervisor for host tests: domains with grant tables,
//! guest-physical memory, foreign mappings and event channels, behind the
//! same traits as real Xen ([`GrantHypercalls`], [`EventOps`]).
//!
//! Each [`SimDomain`] runs the real [`GrantTable`] over [`SimHypercalls`],
//! so tests exercise the guest code that runs on Xen, and the simulator
//! plays Xen's part: it reads the granter's entries, sets and clears
//! `GTF_reading`/`GTF_writing` while frames are mapped (pin counts), puts
//! the granted page (shared, `Arc`-backed) at the mapper's guest-physical
//! address, and raises events in each domain's [`SharedInfo`] with the
//! 2-level rules.
//!
//! Injected failures: `GNTST_eagain` storms ([`SimDomain::inject_eagain`]),
//! a failing hypercall ([`SimDomain::inject_hypercall_error`]), unmap ops
//! that fail and leave the mapping ([`SimDomain::inject_unmap_failures`]),
//! any status for a map op ([`SimDomain::inject_map_status`]), a granter
//! that revokes an entry under its peer ([`SimDomain::revoke`]) and a
//! domain that dies ([`Sim::destroy`]: its mappings are torn down and the
//! pins it held released; pages it granted stay alive while mapped, as
//! with Xen's page references). Bad references need no injection.
//!
//! Statuses follow Xen 4.17's `grant_table.c`: a reference past the table
//! is `GNTST_bad_gntref`; an entry not granting to the mapper, or a
//! writable map of a read-only grant, is `GNTST_general_error`.
//!
//! Locking: one spin lock over the whole world; grant entries and the
//! shared info are atomics shared with the domains' own code.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};

use spin::Mutex;

use crate::abi::grant_table::{
    ENTRIES_PER_FRAME, GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_host_map, GNTMAP_readonly,
    GNTST_bad_copy_arg, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page,
    GNTST_bad_virt_addr, GNTST_eagain, GNTST_general_error, GNTST_okay, GNTTABOP_copy,
    GNTTABOP_map_grant_ref, GNTTABOP_query_size, GNTTABOP_unmap_grant_ref, GTF_permit_access,
    GTF_reading, GTF_readonly, GTF_type_mask, GTF_writing, GnttabCopy, GnttabCopyPtr,
    GnttabMapGrantRef, GnttabQuerySize, GnttabUnmapGrantRef, GrantEntry, GrantFrame, GrantRef,
};
use crate::abi::op::{EVENT_CHANNEL_OP, GRANT_TABLE_OP, MEMORY_OP};
use crate::abi::shared_info::{EVTCHN_2L_NR_CHANNELS, SharedInfo};
use crate::abi::{DOMID_SELF, DomId, PAGE_SHIFT, PAGE_SIZE, Port};
use crate::event_channel::{self, EventChannels, EventOps};
use crate::gnttab::QuerySizeError;
use crate::grant::{GrantFrameMemory, GrantHypercalls, GrantTable, Hole};
use crate::hypercall::{COUNTED_OPS, XenErrno};

/// First guest frame of a domain's RAM pages.
const RAM_BASE_GFN: u64 = 0x100;
/// First guest frame of a domain's grant-table frames.
const GRANT_BASE_GFN: u64 = 0xf_0000;
/// First guest frame of the holes handed out.
const HOLE_BASE_GFN: u64 = 0x10_0000;

/// One page of simulated memory.
type Page = Arc<[AtomicU8]>;

fn new_page() -> Page {
    (0..PAGE_SIZE).map(|_| AtomicU8::new(0)).collect()
}

/// What a guest frame holds.
enum Slot {
    /// The domain's own page.
    Ram(Page),
    /// A foreign page mapped by grant, under maptrack `handle`.
    Foreign { page: Page, handle: u32 },
    /// A frame of the domain's grant table.
    GrantFrame,
}

/// One foreign mapping held by a domain (Xen's maptrack entry).
struct MapTrack {
    granter: DomId,
    gref: GrantRef,
    gfn: u64,
    readonly: bool,
}

/// Pins of one of our grants held by mappers.
#[derive(Default)]
struct Pins {
    ro: u32,
    rw: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PortState {
    Free,
    Unbound { remote: DomId },
    Interdomain { remote: DomId, remote_port: Port },
    Virq(u32),
}

struct Domain {
    max_grant_frames: u32,
    grant_frames: Vec<Arc<GrantFrame>>,
    physmap: BTreeMap<u64, Slot>,
    maptrack: Vec<Option<MapTrack>>,
    pins: BTreeMap<GrantRef, Pins>,
    ports: Vec<PortState>,
    shared: Arc<SharedInfo>,
    next_ram: u64,
    next_hole: u64,
    eagain_left: u32,
    /// Unmap ops still to fail with `GNTST_general_error`.
    unmap_failures_left: u32,
    /// A status the next map op returns without mapping.
    next_map_status: Option<i16>,
    fail_next: Option<XenErrno>,
    hypercalls: [u64; COUNTED_OPS],
    gnttab_cmds: [u64; 16],
    events_sent: u64,
}

impl Domain {
    fn new(max_grant_frames: u32) -> Self {
        Self {
            max_grant_frames,
            grant_frames: Vec::new(),
            physmap: BTreeMap::new(),
            maptrack: Vec::new(),
            pins: BTreeMap::new(),
            // Port 0 is never allocated, as in Xen.
            ports: alloc::vec![PortState::Virq(u32::MAX)],
            shared: Arc::new(SharedInfo::default()),
            next_ram: RAM_BASE_GFN,
            next_hole: HOLE_BASE_GFN,
            eagain_left: 0,
            unmap_failures_left: 0,
            next_map_status: None,
            fail_next: None,
            hypercalls: [0; COUNTED_OPS],
            gnttab_cmds: [0; 16],
            events_sent: 0,
        }
    }

    fn entry(&self, gref: GrantRef) -> Option<&GrantEntry> {
        let (f, i) = (
            gref as usize / ENTRIES_PER_FRAME,
            gref as usize % ENTRIES_PER_FRAME,
        );
        self.grant_frames.get(f).map(|frame| &frame.entries[i])
    }

    fn page(&self, gfn: u64) -> Option<&Page> {
        match self.physmap.get(&gfn)? {
            Slot::Ram(p) | Slot::Foreign { page: p, .. } => Some(p),
            Slot::GrantFrame => None,
        }
    }

    fn new_port(&mut self, state: PortState) -> Result<Port, XenErrno> {
        let port = match self.ports.iter().position(|&p| p == PortState::Free) {
            Some(p) => p,
            None if self.ports.len() < EVTCHN_2L_NR_CHANNELS => {
                self.ports.push(PortState::Free);
                self.ports.len() - 1
            }
            None => return Err(XenErrno::ENOSPC),
        };
        self.ports[port] = state;
        Ok(port as Port)
    }

    fn port(&self, port: Port) -> Result<PortState, XenErrno> {
        match self.ports.get(port as usize) {
            Some(&s) if port != 0 => Ok(s),
            _ => Err(XenErrno::EINVAL),
        }
    }
}

#[derive(Default)]
struct World {
    domains: BTreeMap<DomId, Domain>,
    next_domid: DomId,
}

impl World {
    fn dom(&mut self, id: DomId) -> Result<&mut Domain, XenErrno> {
        self.domains.get_mut(&id).ok_or(XenErrno::ESRCH)
    }

    /// Counts a hypercall of `id`, failing it when one was injected.
    fn enter(&mut self, id: DomId, op: u32) -> Result<&mut Domain, XenErrno> {
        let d = self.dom(id)?;
        d.hypercalls[op as usize] += 1;
        match d.fail_next.take() {
            Some(e) => Err(e),
            None => Ok(d),
        }
    }

    /// Drops the pin `mapper` held on `granter`'s `gref`, clearing the
    /// entry's flags when the last pin of a kind goes.
    fn unpin(&mut self, granter: DomId, gref: GrantRef, readonly: bool) {
        let Some(g) = self.domains.get_mut(&granter) else {
            return;
        };
        let Some(p) = g.pins.get_mut(&gref) else {
            return;
        };
        if readonly {
            p.ro -= 1;
        } else {
            p.rw -= 1;
        }
        let (ro, rw) = (p.ro, p.rw);
        if ro + rw == 0 {
            g.pins.remove(&gref);
        }
        if let Some(e) = g.entry(gref) {
            if rw == 0 {
                e.flags.fetch_and(!GTF_writing, Ordering::AcqRel);
            }
            if ro + rw == 0 {
                e.flags.fetch_and(!GTF_reading, Ordering::AcqRel);
            }
        }
    }

    fn map_one(&mut self, me: DomId, op: &mut GnttabMapGrantRef) -> i16 {
        let d = self.domains.get_mut(&me).expect("caller exists");
        if d.eagain_left > 0 {
            d.eagain_left -= 1;
            return GNTST_eagain;
        }
        if let Some(status) = d.next_map_status.take() {
            return status;
        }
        if op.flags & GNTMAP_host_map == 0 {
            return GNTST_bad_gntref;
        }
        let gfn = op.host_addr >> PAGE_SHIFT;
        if op.host_addr & (PAGE_SIZE as u64 - 1) != 0 || d.physmap.contains_key(&gfn) {
            // Not a hole: the simulator is stricter than Xen, which would
            // replace what is there.
            return GNTST_bad_virt_addr;
        }
        let readonly = op.flags & GNTMAP_readonly != 0;
        let dom = if op.dom == DOMID_SELF { me } else { op.dom };
        let Some(g) = self.domains.get_mut(&dom) else {
            return GNTST_bad_domain;
        };
        let Some(entry) = g.entry(op.ref_) else {
            return GNTST_bad_gntref;
        };
        // Pin the entry the way Xen does: a compare-and-swap on the flags
        // that fails if the granter changed them meanwhile.
        let mut flags = entry.flags.load(Ordering::Acquire);
        loop {
            if flags & GTF_type_mask != GTF_permit_access
                || entry.domid.load(Ordering::Acquire) != me
                || (!readonly && flags & GTF_readonly != 0)
            {
                return GNTST_general_error;
            }
            let new = flags | GTF_reading | if readonly { 0 } else { GTF_writing };
            match entry
                .flags
                .compare_exchange(flags, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => flags = now,
            }
        }
        let frame = u64::from(entry.frame.load(Ordering::Acquire));
        let Some(page) = g.page(frame).cloned() else {
            // Undo the pin.
            let pins = g.pins.get(&op.ref_);
            if pins.is_none() {
                entry
                    .flags
                    .fetch_and(!(GTF_reading | GTF_writing), Ordering::AcqRel);
            }
            return GNTST_bad_page;
        };
        let p = g.pins.entry(op.ref_).or_default();
        if readonly {
            p.ro += 1;
        } else {
            p.rw += 1;
        }
        let d = self.domains.get_mut(&me).expect("caller exists");
        let track = MapTrack {
            granter: dom,
            gref: op.ref_,
            gfn,
            readonly,
        };
        let handle = match d.maptrack.iter().position(Option::is_none) {
            Some(h) => {
                d.maptrack[h] = Some(track);
                h
            }
            None => {
                d.maptrack.push(Some(track));
                d.maptrack.len() - 1
            }
        } as u32;
        d.physmap.insert(gfn, Slot::Foreign { page, handle });
        op.handle = handle;
        GNTST_okay
    }

    fn unmap_one(&mut self, me: DomId, op: &GnttabUnmapGrantRef) -> i16 {
        let d = self.domains.get_mut(&me).expect("caller exists");
        if d.unmap_failures_left > 0 {
            d.unmap_failures_left -= 1;
            return GNTST_general_error;
        }
        let Some(Some(t)) = d.maptrack.get(op.handle as usize) else {
            return GNTST_bad_handle;
        };
        if t.gfn != op.host_addr >> PAGE_SHIFT {
            return GNTST_general_error;
        }
        let t = d.maptrack[op.handle as usize].take().expect("checked");
        d.physmap.remove(&t.gfn);
        self.unpin(t.granter, t.gref, t.readonly);
        GNTST_okay
    }

    /// The page and offset of one side of a copy.
    fn copy_side(
        &self,
        me: DomId,
        p: &GnttabCopyPtr,
        gref: bool,
        write: bool,
    ) -> Result<Page, i16> {
        if !gref {
            if p.domid != DOMID_SELF && p.domid != me {
                // Only privileged domains copy by frame from others.
                return Err(GNTST_general_error);
            }
            let d = &self.domains[&me];
            return d.page(p.u).cloned().ok_or(GNTST_bad_page);
        }
        let g = self.domains.get(&p.domid).ok_or(GNTST_bad_domain)?;
        let e = g.entry(p.u as GrantRef).ok_or(GNTST_bad_gntref)?;
        let flags = e.flags.load(Ordering::Acquire);
        if flags & GTF_type_mask != GTF_permit_access
            || e.domid.load(Ordering::Acquire) != me
            || (write && flags & GTF_readonly != 0)
        {
            return Err(GNTST_general_error);
        }
        g.page(u64::from(e.frame.load(Ordering::Acquire)))
            .cloned()
            .ok_or(GNTST_bad_page)
    }

    fn copy_one(&mut self, me: DomId, op: &GnttabCopy) -> i16 {
        let d = self.domains.get_mut(&me).expect("caller exists");
        if d.eagain_left > 0 {
            d.eagain_left -= 1;
            return GNTST_eagain;
        }
        let len = usize::from(op.len);
        if usize::from(op.source.offset) + len > PAGE_SIZE
            || usize::from(op.dest.offset) + len > PAGE_SIZE
        {
            return GNTST_bad_copy_arg;
        }
        let src = match self.copy_side(me, &op.source, op.flags & GNTCOPY_source_gref != 0, false) {
            Ok(p) => p,
            Err(s) => return s,
        };
        let dst = match self.copy_side(me, &op.dest, op.flags & GNTCOPY_dest_gref != 0, true) {
            Ok(p) => p,
            Err(s) => return s,
        };
        for i in 0..len {
            let b = src[usize::from(op.source.offset) + i].load(Ordering::Relaxed);
            dst[usize::from(op.dest.offset) + i].store(b, Ordering::Relaxed);
        }
        GNTST_okay
    }

    fn raise(&mut self, dom: DomId, port: Port) {
        if let Some(d) = self.domains.get(&dom) {
            event_channel::raise(&d.shared, 0, port);
        }
    }
}

/// The simulated machine: a set of domains. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Sim {
    world: Arc<Mutex<World>>,
}

impl core::fmt::Debug for Sim {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sim").finish_non_exhaustive()
    }
}

/// The grant table a simulated domain runs: the real one, over the
/// simulator.
pub type SimGrantTable = GrantTable<SimHypercalls, SimFrames>;

impl Sim {
    /// An empty machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new domain (ids from 1) whose grant table may grow to 4 frames.
    pub fn create_domain(&self) -> SimDomain {
        self.create_domain_with(4)
    }

    /// A new domain whose grant table may grow to `max_grant_frames`.
    pub fn create_domain_with(&self, max_grant_frames: u32) -> SimDomain {
        let id = {
            let mut w = self.world.lock();
            w.next_domid += 1;
            let id = w.next_domid;
            w.domains.insert(id, Domain::new(max_grant_frames));
            id
        };
        let table = GrantTable::new(
            SimHypercalls {
                sim: self.clone(),
                dom: id,
            },
            SimFrames {
                sim: self.clone(),
                dom: id,
                max: max_grant_frames,
                held: Mutex::new(Vec::new()),
            },
        )
        .expect("a fresh simulated domain has a grant table");
        SimDomain {
            sim: self.clone(),
            id,
            table: Arc::new(table),
        }
    }

    /// Kills domain `id`: the mappings it held are torn down (releasing
    /// its pins on others' grants), its event channels closed (peers'
    /// ends become unbound), and it answers no more hypercalls. Pages it
    /// granted stay alive while others map them.
    pub fn destroy(&self, id: DomId) {
        let mut w = self.world.lock();
        let Some(d) = w.domains.remove(&id) else {
            return;
        };
        for t in d.maptrack.into_iter().flatten() {
            w.unpin(t.granter, t.gref, t.readonly);
        }
        for s in &d.ports {
            if let PortState::Interdomain {
                remote,
                remote_port,
            } = *s
                && let Some(r) = w.domains.get_mut(&remote)
            {
                r.ports[remote_port as usize] = PortState::Unbound { remote: id };
            }
        }
    }

    /// Whether domain `id` exists (has not been destroyed).
    pub fn is_alive(&self, id: DomId) -> bool {
        self.world.lock().domains.contains_key(&id)
    }
}

/// A simulated domain: its grant table ([`SimDomain::grants`], the real
/// [`GrantTable`]), its memory, its event channels ([`EventOps`]) and the
/// failure knobs. Cheap to clone (shared).
#[derive(Clone)]
pub struct SimDomain {
    sim: Sim,
    id: DomId,
    table: Arc<SimGrantTable>,
}

impl core::fmt::Debug for SimDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimDomain").field("id", &self.id).finish()
    }
}

impl SimDomain {
    /// The domain id.
    pub fn id(&self) -> DomId {
        self.id
    }

    /// The simulator.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The domain's grant table (`impl GrantOps`).
    pub fn grants(&self) -> &SimGrantTable {
        &self.table
    }

    /// A shared handle on the grant table, for code that keeps one.
    pub fn grants_arc(&self) -> Arc<SimGrantTable> {
        self.table.clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Domain) -> T) -> T {
        let mut w = self.sim.world.lock();
        f(w.domains.get_mut(&self.id).expect("domain was destroyed"))
    }

    /// A new zeroed RAM page; returns its frame.
    pub fn alloc_page(&self) -> u64 {
        self.with(|d| {
            let gfn = d.next_ram;
            d.next_ram += 1;
            d.physmap.insert(gfn, Slot::Ram(new_page()));
            gfn
        })
    }

    /// Gives RAM page `gfn` back. Pages granted and still mapped by a peer
    /// stay alive for the peer.
    pub fn free_page(&self, gfn: u64) {
        self.with(|d| {
            if matches!(d.physmap.get(&gfn), Some(Slot::Ram(_))) {
                d.physmap.remove(&gfn);
            }
        });
    }

    /// A fresh hole of `frames` unpopulated frames for foreign maps.
    pub fn alloc_hole(&self, frames: u64) -> Hole {
        let base = self.with(|d| {
            let b = d.next_hole;
            d.next_hole += frames + 1;
            b
        });
        // SAFETY: the simulator never populates hole frames itself and
        // hands each range out once.
        unsafe { Hole::new(base, frames) }
    }

    /// Whether frame `gfn` holds a page (RAM or a foreign mapping).
    pub fn is_populated(&self, gfn: u64) -> bool {
        self.with(|d| d.page(gfn).is_some())
    }

    /// Reads `buf.len()` bytes at guest-physical `gpa` (within one page).
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), XenErrno> {
        let off = (gpa as usize) & (PAGE_SIZE - 1);
        if off + buf.len() > PAGE_SIZE {
            return Err(XenErrno::EINVAL);
        }
        let page = self
            .with(|d| d.page(gpa >> PAGE_SHIFT).cloned())
            .ok_or(XenErrno::EFAULT)?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = page[off + i].load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes `bytes` at guest-physical `gpa` (within one page). Writing
    /// through a read-only foreign mapping fails with `EACCES`.
    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), XenErrno> {
        let off = (gpa as usize) & (PAGE_SIZE - 1);
        if off + bytes.len() > PAGE_SIZE {
            return Err(XenErrno::EINVAL);
        }
        let page = self.with(|d| {
            let gfn = gpa >> PAGE_SHIFT;
            match d.physmap.get(&gfn) {
                Some(Slot::Ram(p)) => Ok(p.clone()),
                Some(Slot::Foreign { page, handle }) => match &d.maptrack[*handle as usize] {
                    Some(t) if t.readonly => Err(XenErrno::EACCES),
                    _ => Ok(page.clone()),
                },
                _ => Err(XenErrno::EFAULT),
            }
        })?;
        for (i, &b) in bytes.iter().enumerate() {
            page[off + i].store(b, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The next `k` map or copy ops of this domain fail with
    /// `GNTST_eagain` (one per op, across hypercalls).
    pub fn inject_eagain(&self, k: u32) {
        self.with(|d| d.eagain_left = k);
    }

    /// The next `k` unmap ops of this domain fail with
    /// `GNTST_general_error`, the mapping left in place (one per op,
    /// across hypercalls).
    pub fn inject_unmap_failures(&self, k: u32) {
        self.with(|d| d.unmap_failures_left = k);
    }

    /// The next map op of this domain returns `status` and maps nothing:
    /// e.g. a positive one, as Xen's error paths did before XSA-316.
    pub fn inject_map_status(&self, status: i16) {
        self.with(|d| d.next_map_status = Some(status));
    }

    /// The next hypercall of this domain fails with `err`.
    pub fn inject_hypercall_error(&self, err: XenErrno) {
        self.with(|d| d.fail_next = Some(err));
    }

    /// Behaves as a granter that clears its entry `gref` behind its
    /// table's back (even while mapped): new maps fail, existing mappings
    /// stay, as on Xen.
    pub fn revoke(&self, gref: GrantRef) {
        self.with(|d| {
            if let Some(e) = d.entry(gref) {
                e.flags.store(0, Ordering::Release);
            }
        });
    }

    /// Hypercalls of operation `op` (`xen::abi::op::*`) issued so far.
    pub fn hypercalls(&self, op: u32) -> u64 {
        self.with(|d| d.hypercalls.get(op as usize).copied().unwrap_or(0))
    }

    /// Grant-table hypercalls of sub-operation `cmd` (`GNTTABOP_*`).
    pub fn gnttab_hypercalls(&self, cmd: u32) -> u64 {
        self.with(|d| d.gnttab_cmds.get(cmd as usize).copied().unwrap_or(0))
    }

    /// Foreign mappings this domain holds.
    pub fn mappings(&self) -> usize {
        self.with(|d| d.maptrack.iter().flatten().count())
    }

    /// Events this domain sent on connected channels.
    pub fn events_sent(&self) -> u64 {
        self.with(|d| d.events_sent)
    }

    /// The domain's shared info page, where its events are raised.
    pub fn shared_info(&self) -> Arc<SharedInfo> {
        self.with(|d| d.shared.clone())
    }

    /// Takes the pending, unmasked events (clearing them), in scan order.
    pub fn take_events(&self) -> Vec<Port> {
        let shared = self.shared_info();
        let mut ports = Vec::new();
        EventChannels::new().scan(&shared, 0, |p| ports.push(p));
        ports
    }

    /// Raises virtual IRQ `virq` on the ports bound to it.
    pub fn raise_virq(&self, virq: u32) {
        self.with(|d| {
            for (p, s) in d.ports.iter().enumerate() {
                if *s == PortState::Virq(virq) {
                    event_channel::raise(&d.shared, 0, p as Port);
                }
            }
        });
    }

    fn evtchn<T>(
        &self,
        f: impl FnOnce(&mut World, DomId) -> Result<T, XenErrno>,
    ) -> Result<T, XenErrno> {
        let mut w = self.sim.world.lock();
        w.enter(self.id, EVENT_CHANNEL_OP)?;
        f(&mut w, self.id)
    }
}

impl EventOps for SimDomain {
    fn send(&self, port: Port) -> Result<(), XenErrno> {
        self.evtchn(|w, me| match w.dom(me)?.port(port)? {
            PortState::Interdomain {
                remote,
                remote_port,
            } => {
                w.dom(me)?.events_sent += 1;
                w.raise(remote, remote_port);
                Ok(())
            }
            // Xen drops a notification on an unbound port silently.
            PortState::Unbound { .. } => Ok(()),
            _ => Err(XenErrno::EINVAL),
        })
    }

    fn alloc_unbound(&self, remote: DomId) -> Result<Port, XenErrno> {
        self.evtchn(|w, me| {
            let remote = if remote == DOMID_SELF { me } else { remote };
            w.dom(me)?.new_port(PortState::Unbound { remote })
        })
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, XenErrno> {
        self.evtchn(|w, me| {
            let remote = if remote == DOMID_SELF { me } else { remote };
            if w.dom(remote)?.port(remote_port)? != (PortState::Unbound { remote: me }) {
                return Err(XenErrno::EINVAL);
            }
            let local = w.dom(me)?.new_port(PortState::Interdomain {
                remote,
                remote_port,
            })?;
            w.dom(remote)?.ports[remote_port as usize] = PortState::Interdomain {
                remote: me,
                remote_port: local,
            };
            Ok(local)
        })
    }

    fn bind_virq(&self, virq: u32, _vcpu: u32) -> Result<Port, XenErrno> {
        self.evtchn(|w, me| w.dom(me)?.new_port(PortState::Virq(virq)))
    }

    fn close(&self, port: Port) -> Result<(), XenErrno> {
        self.evtchn(|w, me| {
            let state = w.dom(me)?.port(port)?;
            if state == PortState::Free {
                return Err(XenErrno::EINVAL);
            }
            if let PortState::Interdomain {
                remote,
                remote_port,
            } = state
                && let Ok(r) = w.dom(remote)
            {
                r.ports[remote_port as usize] = PortState::Unbound { remote: me };
            }
            w.dom(me)?.ports[port as usize] = PortState::Free;
            Ok(())
        })
    }

    fn unmask(&self, port: Port) -> Result<(), XenErrno> {
        self.evtchn(|w, me| {
            let d = w.dom(me)?;
            d.port(port)?;
            event_channel::unmask_2l(&d.shared, 0, port);
            Ok(())
        })
    }
}

/// The simulator's grant-table hypercalls for one domain.
#[derive(Debug)]
pub struct SimHypercalls {
    sim: Sim,
    dom: DomId,
}

impl SimHypercalls {
    fn gnttab<T>(&self, cmd: u32, f: impl FnOnce(&mut World) -> T) -> Result<T, XenErrno> {
        let mut w = self.sim.world.lock();
        w.enter(self.dom, GRANT_TABLE_OP)?.gnttab_cmds[cmd as usize] += 1;
        Ok(f(&mut w))
    }
}

// SAFETY: `add_grant_frame` creates the frame that `SimFrames::frame`
// returns for the same index.
unsafe impl GrantHypercalls for SimHypercalls {
    unsafe fn map_grant_ref(&self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenErrno> {
        self.gnttab(GNTTABOP_map_grant_ref, |w| {
            for op in ops {
                op.status = w.map_one(self.dom, op);
            }
        })
    }

    unsafe fn unmap_grant_ref(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenErrno> {
        self.gnttab(GNTTABOP_unmap_grant_ref, |w| {
            for op in ops {
                op.status = w.unmap_one(self.dom, op);
            }
        })
    }

    unsafe fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), XenErrno> {
        self.gnttab(GNTTABOP_copy, |w| {
            for op in ops {
                op.status = w.copy_one(self.dom, op);
            }
        })
    }

    fn query_size(&self) -> Result<GnttabQuerySize, QuerySizeError> {
        self.gnttab(GNTTABOP_query_size, |w| {
            let d = &w.domains[&self.dom];
            GnttabQuerySize {
                dom: DOMID_SELF,
                nr_frames: d.grant_frames.len() as u32,
                max_nr_frames: d.max_grant_frames,
                status: GNTST_okay,
            }
        })
        .map_err(QuerySizeError::Hypercall)
    }

    unsafe fn add_grant_frame(&self, index: u32, gfn: u64) -> Result<(), XenErrno> {
        let mut w = self.sim.world.lock();
        let d = w.enter(self.dom, MEMORY_OP)?;
        if index >= d.max_grant_frames {
            return Err(XenErrno::EINVAL);
        }
        while d.grant_frames.len() <= index as usize {
            d.grant_frames.push(Arc::new(GrantFrame::default()));
        }
        d.physmap.insert(gfn, Slot::GrantFrame);
        Ok(())
    }

    fn backoff(&self, _round: u32) {}
}

/// Where a simulated domain's grant frames are: the simulator's memory,
/// kept alive by this value.
#[derive(Debug)]
pub struct SimFrames {
    sim: Sim,
    dom: DomId,
    max: u32,
    held: Mutex<Vec<Arc<GrantFrame>>>,
}

// SAFETY: `frame(i)` returns the frame the simulator made for index `i`,
// and `held` keeps it alive as long as this value.
unsafe impl GrantFrameMemory for SimFrames {
    fn max_frames(&self) -> u32 {
        self.max
    }

    fn gfn(&self, index: u32) -> u64 {
        GRANT_BASE_GFN + u64::from(index)
    }

    fn frame(&self, index: u32) -> NonNull<GrantFrame> {
        let frame = self.sim.world.lock().domains[&self.dom].grant_frames[index as usize].clone();
        let ptr = NonNull::from(&*frame);
        self.held.lock().push(frame);
        ptr
    }
}
