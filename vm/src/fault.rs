//! The page fault handler (FreeBSD `vm_fault.c`).
//!
//! [`vm_fault`] resolves a fault at a user address in three ways, tried in
//! this order:
//!
//! 1. the fast path (`vm_fault_soft_fast`): the page is resident and fully
//!    valid in the entry's first object; it is shared-busied and entered
//!    while the map stays read-locked, with no paging work;
//! 2. the populate path (`vm_fault_populate`, FreeBSD r309710): the object
//!    has `POPULATE` and no shadows; its pager installs a whole run of
//!    pages around the fault and every page of the run that lies in the
//!    map entry is entered at once: each superpage-aligned stretch of 512
//!    physically contiguous, aligned pages with one superpage entry
//!    ([`Pmap::enter_large`]), the rest page by page. As in FreeBSD it runs only when the
//!    fast path could not: re-populating a whole run to re-enter one
//!    resident page would cost a run's work per fault;
//! 3. the full path: down the shadow chain to the first object that has
//!    the page or whose pager can supply it, zero-filling in the first
//!    object when none can; a write to a page found in a backing object
//!    copies it into the first object (copy-on-write), and a write to a
//!    page of the first object that is lent out breaks the loan by copying
//!    it in its place ([`crate::loan`]). Loaned pages are entered read-only.
//!
//! # Locking
//!
//! The map lock is a spin lock ([`crate::map`]), so the fault drops it
//! ([`VmMap::lookup_done`]) before anything that can sleep (pagers, busy
//! waits), keeping the object alive through its own reference and the
//! pages through their busy locks. It relocks ([`VmMap::lock_read`])
//! before entering pages into the pmap and retries the whole fault if the
//! map's timestamp moved meanwhile, unbusying what it holds. Pages are
//! entered while busied and with the map read-locked, so a concurrent
//! munmap either precedes the fault (which then retries) or removes the
//! new mappings after it.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::domain::VmDomain;
use crate::grab::{GrabFlags, grab, grab_valid};
use crate::loan::break_loan;
use crate::map::{KernResult, LookupResult, VmMap};
use crate::meter::Counter;
use crate::object::{ObjectFlags, ObjectType, VmObject};
use crate::page::{BusyMode, PageId, PageQueue};
use crate::pager::PagerResult;
use crate::pmap::{EnterFlags, Pmap};
use crate::{PAGE_SIZE, Prot, SUPERPAGE_PAGES, SUPERPAGE_SIZE};

bitflags::bitflags! {
    /// Fault flags (`VM_FAULT_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct FaultFlags: u8 {
        /// A wiring fault (`VM_FAULT_WIRE`, from mlock-style wiring): the
        /// pages are wired and entered with [`EnterFlags::WIRED`] instead
        /// of activated. The fast path is skipped.
        const WIRE = 1 << 0;
        /// Never use the populate path: one page per fault, as FreeBSD's
        /// gntdev does (for measurements, and as a fallback switch).
        const NOPOPULATE = 1 << 1;
    }
}

/// How a fault was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPath {
    /// The fast path: a resident valid page of the first object.
    Fast,
    /// The populate path.
    Populate,
    /// The full path; `copied` when a copy-on-write copy was made.
    Full {
        /// A page of a backing object was copied into the first object.
        copied: bool,
    },
}

/// The result of a successful [`vm_fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultOutcome {
    /// The path that resolved it.
    pub path: FaultPath,
    /// Pages entered into the pmap.
    pub pages: u64,
    /// Times the fault restarted because the map changed meanwhile.
    pub retries: u32,
}

/// Fault statistics of one map (after FreeBSD's per-process `ru_minflt`
/// and `ru_majflt`); the domain-wide fault count is
/// [`crate::meter::VmCounters::faults`].
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Calls of [`vm_fault`].
    pub faults: Counter,
    /// Faults resolved by the fast path.
    pub fast: Counter,
    /// Calls of a pager's populate.
    pub populate_calls: Counter,
    /// Superpage entries the populate path entered
    /// ([`Pmap::enter_large`]).
    pub large: Counter,
    /// Copy-on-write copies.
    pub cow: Counter,
    /// Restarts after a change of the map.
    pub retries: Counter,
}

/// Resolve a fault of type `fault_type` at `va` in `map`, entering the
/// page (or a run of pages) into `pmap` (`vm_fault`). `va` is rounded down
/// to its page.
///
/// Errors: `InvalidAddress` (no entry), `ProtectionFailure` (the entry
/// forbids the access), `OutOfBounds` (beyond what the object backs),
/// `ResourceShortage` (out of memory; the caller may wait and retry),
/// `Failure` (the pager failed).
#[doc(alias = "vm_fault_trap")]
pub fn vm_fault(
    map: &VmMap,
    pmap: &dyn Pmap,
    va: u64,
    fault_type: Prot,
    flags: FaultFlags,
) -> Result<FaultOutcome, KernResult> {
    let va = va & !(PAGE_SIZE - 1);
    map.domain().counters.faults.add(1);
    map.stats().faults.add(1);
    let mut retries = 0;
    loop {
        if let Some((path, pages)) = fault_once(map, pmap, va, fault_type, flags)? {
            return Ok(FaultOutcome {
                path,
                pages,
                retries,
            });
        }
        retries += 1;
        map.stats().retries.add(1);
    }
}

/// Enters the resident, fully valid pages that `map` maps in the ranges
/// `[start, end)` of `ranges` into `pmap` ahead of any fault, all in one
/// [`Pmap::batch`] (FreeBSD's `vm_map_pmap_enter`, its exec's prefault of
/// the image): one page-table hand-over for what would be a fault each.
/// Pages are entered as the fast path would (the entry's rights, less
/// write for a lent page) and stay shared-busy until the batch has
/// ended; a page busy, invalid or not resident is left for a fault.
/// For an address space no thread runs in yet: the map must not change
/// meanwhile. Returns how many pages it entered.
pub fn prefault(map: &VmMap, pmap: &dyn Pmap, ranges: &[(u64, u64)]) -> u64 {
    let f = Fault {
        map,
        pmap,
        fault_type: Prot::READ,
        wire: false,
    };
    let mut held: Vec<(Arc<VmObject>, PageId)> = Vec::new();
    let _ = pmap.batch(&mut || {
        let pages = ranges
            .iter()
            .flat_map(|&(start, end)| start / PAGE_SIZE..end.div_ceil(PAGE_SIZE));
        for va in pages.map(|p| p * PAGE_SIZE) {
            let Ok((guard, l)) = map.lookup(va, Prot::READ) else {
                continue;
            };
            if let Some(id) = f.enter_resident(&l, va) {
                held.push((l.object.clone(), id));
            }
            map.lookup_done(guard);
        }
    });
    for (obj, id) in &held {
        let d = obj.domain();
        d.page(*id).sunbusy(d.wait());
    }
    held.len() as u64
}

/// One attempt: `Ok(None)` means restart (the map changed, or a copy-on-write
/// copy appeared while a backing page was being mapped).
fn fault_once(
    map: &VmMap,
    pmap: &dyn Pmap,
    va: u64,
    fault_type: Prot,
    flags: FaultFlags,
) -> Result<Option<(FaultPath, u64)>, KernResult> {
    let (guard, l) = map.lookup(va, fault_type)?;
    let f = Fault {
        map,
        pmap,
        fault_type,
        wire: flags.contains(FaultFlags::WIRE),
    };
    if !f.wire && f.fast(&l, va) {
        map.lookup_done(guard);
        map.stats().fast.add(1);
        return Ok(Some((FaultPath::Fast, 1)));
    }
    let populate = !flags.contains(FaultFlags::NOPOPULATE) && {
        let g = l.object.lock();
        g.flags().contains(ObjectFlags::POPULATE) && g.shadow_count() == 0
    };
    map.lookup_done(guard);
    if populate {
        // One populate per object at a time, and none for a page that is
        // resident: a fault that finds the page busy (inserted by another
        // fault's populate, as FreeBSD's faulters sleep on) or a populate
        // in progress waits for it and retries, and then takes the fast
        // path.
        let d = l.object.domain();
        let resident = l.object.lock().lookup(l.pindex);
        if let Some(id) = resident {
            let m = d.page(id);
            if !m.try_sbusy() {
                m.busy_sleep(BusyMode::Shared, d.wait());
                return Ok(None);
            }
            m.sunbusy(d.wait());
        } else {
            let Some(_populating) = l.object.start_populate() else {
                d.wait().pause();
                return Ok(None);
            };
            // A populate that ended between the lookup above and our
            // start may have inserted the page: look again, or this fault
            // would populate the run a second time.
            if l.object.lock().lookup(l.pindex).is_some() {
                return Ok(None);
            }
            if let Some(done) = f.populate(&l)? {
                return Ok(done.map(|n| (FaultPath::Populate, n)));
            }
        }
    }
    f.full(&l, va)
}

/// The parameters of one fault.
struct Fault<'a> {
    map: &'a VmMap,
    pmap: &'a dyn Pmap,
    fault_type: Prot,
    wire: bool,
}

/// Whether mappings of `obj`'s pages are managed (on the pages' mapping
/// lists): all but plain device objects' (`VPO_UNMANAGED`).
fn managed(obj: &VmObject) -> bool {
    obj.otype() != ObjectType::Device
}

/// `vm_page_activate`: managed, unwired, real pages go on the active queue.
fn activate(d: &VmDomain, id: PageId, managed: bool) {
    let m = d.page(id);
    if managed && !m.is_fictitious() && m.wire_count() == 0 {
        m.set_queue(PageQueue::Active);
    }
}

impl Fault<'_> {
    /// The flags to enter a page with; a wiring fault first hands back
    /// the wirings of the wired mappings in `[va, end)` it replaces, so
    /// that a wired mapping always holds exactly one wiring of each page.
    fn enter_flags(&self, d: &VmDomain, va: u64, end: u64, managed: bool) -> EnterFlags {
        let mut ef = if managed {
            EnterFlags::MANAGED
        } else {
            EnterFlags::empty()
        };
        if self.wire {
            self.pmap.unwire(va, end, &mut |old| {
                d.unwire(old, PageQueue::Active);
            });
            ef |= EnterFlags::WIRED;
        }
        ef
    }

    /// What follows the entry of page `id` with `prot`: dirty it for a
    /// write, then wire or activate it.
    fn entered(&self, d: &VmDomain, id: PageId, prot: Prot, managed: bool) {
        if self.fault_type.contains(Prot::WRITE) && prot.contains(Prot::WRITE) {
            d.page(id).set_dirty();
        }
        if self.wire {
            d.wire(id);
        } else {
            activate(d, id, managed);
        }
    }

    /// Enter busied page `id` at `va`, then wire or activate it.
    fn enter(
        &self,
        d: &VmDomain,
        va: u64,
        id: PageId,
        prot: Prot,
        managed: bool,
    ) -> Result<(), KernResult> {
        let ef = self.enter_flags(d, va, va + PAGE_SIZE, managed);
        self.pmap.enter(va, id, d.page(id).phys_addr(), prot, ef)?;
        self.entered(d, id, prot, managed);
        Ok(())
    }

    /// Enter the busied pages `ids`, a superpage run from `pa`
    /// ([`superpage_run`]), at `va` with one superpage entry, then wire or
    /// activate them.
    fn enter_large(
        &self,
        d: &VmDomain,
        va: u64,
        ids: &[PageId],
        pa: u64,
        prot: Prot,
        managed: bool,
    ) -> Result<(), KernResult> {
        let ef = self.enter_flags(d, va, va + SUPERPAGE_SIZE, managed);
        self.pmap.enter_large(va, ids, pa, prot, ef)?;
        for &id in ids {
            self.entered(d, id, prot, managed);
        }
        self.map.stats().large.add(1);
        Ok(())
    }

    /// The fast path (`vm_fault_soft_fast`), with the map read-locked:
    /// enter a resident, fully valid page of the first object under a
    /// shared busy.
    fn fast(&self, l: &LookupResult, va: u64) -> bool {
        let Some(id) = self.enter_resident(l, va) else {
            return false;
        };
        let d = l.object.domain();
        d.page(id).sunbusy(d.wait());
        true
    }

    /// Enters the resident, fully valid page of the first object at `va`
    /// under a shared busy, which the caller then drops: `Some(page)`,
    /// still shared-busy; `None` when the page is missing, busy, invalid
    /// or loaned to a write, and nothing is held.
    fn enter_resident(&self, l: &LookupResult, va: u64) -> Option<PageId> {
        let d = l.object.domain();
        let id = l
            .object
            .lock()
            .lookup(l.pindex)
            .filter(|&id| d.page(id).try_sbusy())?;
        let m = d.page(id);
        // A write to a loaned page breaks the loan: the full path's work.
        let loaned = m.is_loaned();
        let ok = m.all_valid()
            && !(loaned && self.fault_type.contains(Prot::WRITE))
            && self
                .enter(d, va, id, loan_prot(l.prot, loaned), managed(&l.object))
                .is_ok();
        if !ok {
            m.sunbusy(d.wait());
        }
        ok.then_some(id)
    }

    /// The populate path (`vm_fault_populate`). `Ok(None)`: the pager
    /// said `Bad`, do a normal fault. `Ok(Some(None))`: the map changed,
    /// restart. `Ok(Some(Some(n)))`: `n` pages entered.
    fn populate(&self, l: &LookupResult) -> Result<Option<Option<u64>>, KernResult> {
        let obj = &l.object;
        let d = obj.domain();
        self.map.stats().populate_calls.add(1);
        // Report the entry's maximum protection: populate may not be
        // called again when a read fault is followed by a write.
        let r = {
            let _pip = obj.pip_guard();
            obj.pager()
                .populate(obj, l.pindex, self.fault_type, l.max_prot, l.entry_pindexes)
        };
        let (first, last) = match r {
            Ok(r) => r,
            Err(PagerResult::Bad) => return Ok(None),
            // Any other failure is fatal to the fault (SIGSEGV), but a
            // shortage lets the caller wait for memory.
            Err(PagerResult::Again) => return Err(KernResult::ResourceShortage),
            Err(_) => return Err(KernResult::Failure),
        };
        debug_assert!(
            first <= l.pindex && l.pindex <= last,
            "populate missed the faulting index"
        );
        let pages: Vec<(u64, PageId)> = {
            let g = obj.lock();
            (first..=last)
                .map(|p| (p, g.lookup(p).expect("populated page not resident")))
                .collect()
        };
        let guard = self.map.lock_read();
        if guard.timestamp() != l.timestamp {
            for &(_, id) in &pages {
                d.page(id).xunbusy(d.wait());
            }
            return Ok(Some(None));
        }
        // The pager may have populated beyond the entry: clip.
        let (lo, hi) = l.entry_pindexes;
        let managed = managed(obj);
        let mut entered = 0;
        let mut err = None;
        let mut i = 0;
        // One batch for the run (`Pmap::batch`): the pages stay busy, and
        // the map read-locked, until every entry is in the tables.
        let handed = self.pmap.batch(&mut || {
            while i < pages.len() {
                let (p, id) = pages[i];
                let va = l.va_of(p);
                // A superpage run inside the entry goes in with one entry.
                let run = (lo..=hi).contains(&p) && p.saturating_add(SUPERPAGE_PAGES - 1) <= hi;
                let run = run.then(|| superpage_run(d, va, &pages[i..])).flatten();
                let n = if run.is_some() {
                    SUPERPAGE_PAGES as usize
                } else {
                    1
                };
                if err.is_none() && (lo..=hi).contains(&p) {
                    let r = match run {
                        Some(pa) => {
                            let ids: Vec<PageId> =
                                pages[i..i + n].iter().map(|&(_, id)| id).collect();
                            self.enter_large(d, va, &ids, pa, l.prot, managed)
                        }
                        None => self.enter(d, va, id, l.prot, managed),
                    };
                    match r {
                        Ok(()) => entered += n as u64,
                        Err(e) => err = Some(e),
                    }
                }
                i += n;
            }
        });
        if let Err(e) = handed {
            err.get_or_insert(e);
        }
        for &(_, id) in &pages {
            d.page(id).xunbusy(d.wait());
        }
        self.map.lookup_done(guard);
        match err {
            Some(e) => Err(e),
            None => Ok(Some(Some(entered))),
        }
    }

    /// The full path: find or make the page down the shadow chain, copy it
    /// on a write from a backing object, relock and enter it.
    fn full(&self, l: &LookupResult, va: u64) -> Result<Option<(FaultPath, u64)>, KernResult> {
        let first = &l.object;
        let d = first.domain();
        let _pip = first.pip_guard();
        let (obj, id) = find_page(first, l.pindex)?;
        let mut copied = false;
        let (id, prot, in_first, managed) = if Arc::ptr_eq(&obj, first) {
            let loaned = d.page(id).is_loaned();
            // A write, or a wiring (a loaned page never has a wired
            // mapping), takes the owner's page back from its borrowers.
            if loaned && (self.fault_type.contains(Prot::WRITE) || self.wire) {
                let id = break_loan(self.pmap, first, l.pindex, id)?;
                (id, l.prot, true, managed(first))
            } else {
                (id, loan_prot(l.prot, loaned), true, managed(first))
            }
        } else if self.fault_type.contains(Prot::WRITE) {
            let dst = match grab(first, l.pindex, GrabFlags::empty()) {
                Ok(Some(dst)) => dst,
                Ok(None) => unreachable!("grab without NOCREAT or NOWAIT returns a page"),
                Err(e) => {
                    d.page(id).xunbusy(d.wait());
                    return Err(pager_error(PagerResult::from_errno(e)));
                }
            };
            // Another fault may have made the copy while we slept in grab.
            if !d.page(dst).all_valid() {
                d.copy_page(id, dst);
                d.page(dst).set_all_valid();
                self.map.stats().cow.add(1);
                copied = true;
            }
            d.page(id).xunbusy(d.wait());
            (dst, l.prot, true, managed(first))
        } else {
            // Read from a backing object: map it read-only, so that a
            // later write faults and copies it.
            (id, l.prot - Prot::WRITE, false, managed(&obj))
        };
        let guard = self.map.lock_read();
        if guard.timestamp() != l.timestamp {
            d.page(id).xunbusy(d.wait());
            return Ok(None);
        }
        let r = if in_first {
            self.enter(d, va, id, prot, managed)
        } else {
            // A backing page is entered under the first object's lock, and
            // only while the first object still has no page there: a
            // concurrent write fault inserts its copy under that lock
            // before entering it, so the stale backing page can never
            // replace the copy's mapping.
            let g = first.lock();
            if g.lookup(l.pindex).is_some() {
                drop(g);
                d.page(id).xunbusy(d.wait());
                return Ok(None);
            }
            self.enter(d, va, id, prot, managed)
        };
        d.page(id).xunbusy(d.wait());
        self.map.lookup_done(guard);
        r.map(|()| Some((FaultPath::Full { copied }, 1)))
    }
}

/// The rights to map a page with: never `WRITE` while it is loaned.
fn loan_prot(prot: Prot, loaned: bool) -> Prot {
    if loaned { prot - Prot::WRITE } else { prot }
}

/// The physical address of the first of `pages` (pindex, page) when the
/// first [`SUPERPAGE_PAGES`] of them can be entered at `va` with one
/// superpage entry: `va` and the physical address superpage-aligned, the
/// pages consecutive in the object, physically contiguous, fully valid
/// and of one cache mode. The caller checks that they lie in the entry.
fn superpage_run(d: &VmDomain, va: u64, pages: &[(u64, PageId)]) -> Option<u64> {
    let run = pages.get(..SUPERPAGE_PAGES as usize)?;
    let (p0, id0) = run[0];
    let first = d.page(id0);
    let pa = first.phys_addr();
    if !va.is_multiple_of(SUPERPAGE_SIZE) || !pa.is_multiple_of(SUPERPAGE_SIZE) {
        return None;
    }
    let fits = run.iter().zip(0..).all(|(&(p, id), k)| {
        let m = d.page(id);
        p == p0 + k
            && m.phys_addr() == pa + k * PAGE_SIZE
            && m.all_valid()
            && m.memattr() == first.memattr()
    });
    fits.then_some(pa)
}

/// The error of a failed pager operation in the full path.
fn pager_error(e: PagerResult) -> KernResult {
    match e {
        PagerResult::Bad => KernResult::OutOfBounds,
        PagerResult::Again => KernResult::ResourceShortage,
        _ => KernResult::Failure,
    }
}

/// The page at `pindex` of `first` or of the first object down its shadow
/// chain that has it or whose pager can supply it, exclusively busied and
/// valid; zero-filled in `first` when none can. Returns the object that
/// holds it.
fn find_page(first: &Arc<VmObject>, pindex: u64) -> Result<(Arc<VmObject>, PageId), KernResult> {
    let mut obj = first.clone();
    let mut p = pindex;
    loop {
        if let Some(id) = grab_valid(&obj, p, GrabFlags::NOCREAT).map_err(pager_error)? {
            return Ok((obj, id));
        }
        if obj.pager().haspage(&obj, p).is_some() {
            let id = grab_valid(&obj, p, GrabFlags::empty()).map_err(pager_error)?;
            return Ok((
                obj,
                id.expect("grab_valid without NOCREAT or NOWAIT returns a page"),
            ));
        }
        match obj.backing_pindex(p) {
            Some((b, bp)) => (obj, p) = (b, bp),
            None => {
                let id = grab_valid(first, pindex, GrabFlags::empty()).map_err(pager_error)?;
                return Ok((
                    first.clone(),
                    id.expect("grab_valid without NOCREAT or NOWAIT returns a page"),
                ));
            }
        }
    }
}
