//! Contiguous reclaim: contiguous runs under memory pressure, by moving
//! the pages in the way (FreeBSD's `vm_page_reclaim_contig` and
//! `vm_page_reclaim_run`, after the contigmalloc rewrite that laundered a
//! candidate range).
//!
//! When no free run satisfies a request, [`alloc_contig`] sweeps the
//! request's range for a candidate run whose every page is free or
//! movable: in a default (anonymous) object, unwired, unbusied (wired
//! covers loaned pages). It sets the run's free pages aside, then moves
//! each movable page to a free page outside the run ([`relocate`]): copy,
//! replace it in its object, and take every mapping of it away with
//! `remove_all` semantics, so that the next access faults the new page in
//! and no one sees a half-copied page. The first page that cannot be moved
//! fails the candidate at once; the sweep goes on past it. A request gets
//! [`RECLAIM_PASSES`] sweeps, as the three laundering passes of the
//! contigmalloc rewrite, in case a page was busy only for a moment; each
//! sweep starts at the allocator's reclaim cursor, past the last run
//! reclaimed, so that repeated requests do not sweep the same frames again.
//!
//! # Locking
//!
//! A page is moved with its object locked and the page exclusively busied,
//! and `BLOCKED` ([`crate::page::VmPage::try_block`]) while its mappings
//! are removed, so that `pmap_extract_and_hold` takes no new wiring:
//! lookups busy pages under the object lock, so a user either holds a busy
//! lock (the move fails) or finds the new page. Busy locks are only tried:
//! nothing sleeps. Lock order: the domain's object table (to find a page's
//! object, [`crate::owner`]) is released before the object lock is taken,
//! and the object lock before the allocator's locks and the pmaps' (as
//! everywhere); the caller holds no object lock. The sweep runs under the
//! allocator's `free` lock, released before any page is moved, and reads
//! page state lock-free; every fact it saw is checked again under the
//! object lock and busy before a page is moved.
//!
//! Users: [`crate::kern::kmem_alloc_contig`], and the phys pager's
//! superpage populate when no free 2 MiB block exists.

use crate::domain::{PageMappings, VmDomain};
use crate::object::ObjectType;
use crate::page::{PageId, VPRC_BLOCKED, VPRC_OBJREF, VPRC_WIRE_COUNT_MASK};
use crate::phys::{ContigCandidate, ContigRequest, FreePool};

/// Sweeps of a request's range before [`alloc_contig`] gives up.
pub const RECLAIM_PASSES: u32 = 3;

/// Allocate a contiguous run for `req` (see [`ContigRequest::new`]), as
/// [`crate::phys::PhysAllocator::alloc_contig_req`], moving the pages in
/// the way when no free run exists (`vm_page_alloc_contig` with
/// `vm_page_reclaim_contig`). A moved page's mappings are removed through
/// the domain's [`crate::domain::PageMappings`] hook; without one, only
/// free runs are used. Returns the first page; the others follow it in
/// the array. The caller holds no object lock (reclaim takes those of the
/// pages' objects).
pub fn alloc_contig(domain: &VmDomain, req: &ContigRequest) -> Option<PageId> {
    if let Some(id) = domain.phys.alloc_contig_req(req) {
        return Some(id);
    }
    let mappings = domain.mappings()?;
    // Each moved page needs a free page outside the run: with fewer free
    // pages than the run has, no candidate can succeed, and the sweeps
    // (under the `free` lock) would be wasted.
    if domain.phys.free_count() < req.npages() {
        return None;
    }
    for _ in 0..RECLAIM_PASSES {
        if let Some(id) = reclaim_pass(domain, mappings, req) {
            return Some(id);
        }
        // Users may have freed pages meanwhile.
        if let Some(id) = domain.phys.alloc_contig_req(req) {
            return Some(id);
        }
    }
    None
}

/// One sweep of the request's range, from the reclaim cursor round to it.
fn reclaim_pass(
    domain: &VmDomain,
    mappings: &dyn PageMappings,
    req: &ContigRequest,
) -> Option<PageId> {
    let phys = &domain.phys;
    let counters = &domain.counters.reclaim;
    counters.passes.add(1);
    let start = phys.reclaim_cursor().clamp(req.lo(), req.hi());
    let movable = |id| movable_hint(domain, id);
    for (mut from, limit) in [(start, req.hi()), (req.lo(), start)] {
        while let Some(mut cand) = phys.take_candidate(req, from, limit, &movable) {
            match relocate_run(domain, mappings, &mut cand) {
                Ok(()) => {
                    phys.set_reclaim_cursor(cand.pfn() + cand.npages());
                    counters.runs.add(1);
                    return Some(phys.finish_candidate(cand));
                }
                Err(bad) => {
                    counters.candidates_failed.add(1);
                    from = cand.pfn() + bad + 1;
                    phys.release_candidate(cand);
                }
            }
        }
    }
    None
}

/// Whether page `id`, not free, looks movable: in a default object, with
/// no wiring, not blocked, not busied. Lock-free, so only a hint.
fn movable_hint(domain: &VmDomain, id: PageId) -> bool {
    let m = domain.page(id);
    let rc = m.ref_count();
    rc & VPRC_OBJREF != 0
        && rc & (VPRC_WIRE_COUNT_MASK | VPRC_BLOCKED) == 0
        && !m.is_busied()
        && domain.owners.movable(id)
}

/// Move every page of the candidate that is not the reclaimer's yet;
/// `Err(i)` names the first page of the run that could not be moved.
fn relocate_run(
    domain: &VmDomain,
    mappings: &dyn PageMappings,
    cand: &mut ContigCandidate,
) -> Result<(), u64> {
    let run = cand.first()..cand.first() + cand.npages() as PageId;
    for i in 0..cand.npages() {
        if cand.owns(i) {
            continue;
        }
        let id = cand.first() + i as PageId;
        let new = domain.alloc_page(FreePool::Default).ok_or(i)?;
        if run.contains(&new) {
            // A page of the run freed since the sweep, handed back by a
            // CPU's cache: not a replacement.
            domain.phys.free_page(new);
            return Err(i);
        }
        match relocate(domain, mappings, id, new) {
            None => {
                domain.phys.free_page(new);
                return Err(i);
            }
            Some(owned) => {
                domain.counters.reclaim.pages_relocated.add(1);
                if !owned {
                    return Err(i);
                }
                cand.adopt(i);
            }
        }
    }
    Ok(())
}

/// Move page `id` of an object to the free page `new`
/// (`vm_page_reclaim_run` for one page): `new` takes its contents, valid
/// and dirty state (dirty as a whole page) and place in the object, and
/// every mapping of `id` is removed. Returns `None`, having changed
/// nothing, if `id` cannot be moved: not in a default object, busied or
/// wired. Otherwise `Some(owned)`: whether the caller now owns `id`
/// (unreferenced, unbusied); it always should, as the object's reference
/// was the last, but a reference taken against the protocol stays with
/// its holder, who frees the page.
#[doc(alias = "vm_page_reclaim_run")]
pub fn relocate(
    domain: &VmDomain,
    mappings: &dyn PageMappings,
    id: PageId,
    new: PageId,
) -> Option<bool> {
    let object = domain.owners.object(id)?;
    if object.otype() != ObjectType::Default {
        return None;
    }
    let (m, mn) = (domain.page(id), domain.page(new));
    let mut g = object.lock();
    let pindex = m.pindex();
    if g.lookup(pindex) != Some(id) || !m.try_xbusy() {
        return None;
    }
    // Under the object lock and busy no one wires the page; BLOCKED stops
    // pmap_extract_and_hold through the mappings until they are gone.
    if !m.try_block() {
        m.xunbusy(domain.wait());
        return None;
    }
    mappings.remove_all(id);
    m.unblock();
    let busied = mn.try_xbusy();
    debug_assert!(busied, "free page busy");
    domain.copy_page(id, new);
    if m.valid() != 0 {
        mn.set_valid_bits(m.valid());
    }
    if m.dirty() != 0 {
        mn.set_dirty();
    }
    mn.set_queue(m.queue());
    mn.set_memattr(m.memattr());
    let last = g
        .replace(pindex, id, new)
        .expect("page checked at its index under the lock");
    // Unbusied under the lock, as a remove does: whoever takes the lock
    // next (a collapse busies every page it moves) finds them idle.
    mn.xunbusy(domain.wait());
    m.xunbusy(domain.wait());
    drop(g);
    // With the object lock and busy held and no mapping left, no one could
    // take a reference: the object's was the last.
    debug_assert!(last, "relocated page still referenced");
    Some(last)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::grab::{GrabFlags, grab};
    use crate::object::VmObject;
    use crate::pmap::{EnterFlags, Pmap, SoftPmap};
    use crate::testutil::{FakeMem, domain_with};
    use crate::{PAGE_SIZE, Prot};
    use alloc::sync::Arc;
    use alloc::vec::Vec;

    const VA: u64 = 0x4000_0000;

    fn req(npages: u64, low: u64, high: u64, alignment: u64, boundary: u64) -> ContigRequest {
        ContigRequest::new(npages, low, high, alignment, boundary).unwrap()
    }

    /// A domain of `npages` pages, all in one default object whose page
    /// at pindex `i` holds the byte `i + 1` and is mapped at `VA + i`
    /// pages; then the pages of odd frame number are removed, so that no
    /// two free pages are adjacent. The caller installs the mappings hook.
    fn fragmented(npages: u64) -> (Arc<VmDomain>, Arc<FakeMem>, Arc<VmObject>, Arc<SoftPmap>) {
        let (d, mem) = domain_with(npages);
        let o = VmObject::allocate_default(d.clone(), npages);
        let pmap = Arc::new(SoftPmap::new(d.clone()));
        for i in 0..npages {
            let id = grab(&o, i, GrabFlags::ZERO).unwrap().unwrap();
            mem.fill(d.page(id).phys_addr(), i as u8 + 1);
            d.page(id).xunbusy(d.wait());
        }
        for i in 0..npages {
            let mut g = o.lock();
            let id = g.lookup(i).unwrap();
            let pa = d.page(id).phys_addr();
            if pa / PAGE_SIZE % 2 == 1 {
                assert!(d.page(id).try_xbusy());
                g.remove(i);
            } else {
                pmap.enter(VA + i * PAGE_SIZE, id, pa, Prot::READ, EnterFlags::MANAGED)
                    .unwrap();
            }
        }
        assert_eq!(d.phys.free_count(), npages / 2);
        (d, mem, o, pmap)
    }

    #[test]
    fn moves_object_pages_out_of_the_way() {
        let (d, mem, o, pmap) = fragmented(64);
        d.set_mappings(pmap.mappings());
        assert_eq!(
            d.phys.alloc_contig(4, 0, 64 * PAGE_SIZE, PAGE_SIZE, 0),
            None
        );
        let before: Vec<_> = (0..64).map(|i| o.lock().lookup(i)).collect();
        let first = alloc_contig(&d, &req(8, 0, 64 * PAGE_SIZE, 8 * PAGE_SIZE, 0)).unwrap();
        let run = first..first + 8;
        assert_eq!(d.page(first).phys_addr() % (8 * PAGE_SIZE), 0);
        let c = &d.counters.reclaim;
        assert_eq!((c.runs.get(), c.pages_relocated.get()), (1, 4));
        assert_eq!(d.phys.free_count(), 32 - 8);
        for (i, old) in before.iter().enumerate() {
            let Some(old) = *old else { continue };
            let now = o.lock().lookup(i as u64).unwrap();
            let m = d.page(now);
            let va = VA + i as u64 * PAGE_SIZE;
            assert_eq!(mem.byte(m.phys_addr() + 100), i as u8 + 1, "contents kept");
            assert_eq!(m.pindex(), i as u64);
            assert!(m.all_valid() && !m.is_busied());
            if run.contains(&old) {
                assert!(!run.contains(&now), "moved out of the run");
                assert!(pmap.pte(va).is_none(), "mapping of the old page removed");
                assert!(pmap.mappings_of(old).is_empty());
            } else {
                assert_eq!(now, old, "pages outside the run stay");
                assert_eq!(pmap.pte(va).unwrap().page, old);
            }
        }
        for id in run.clone() {
            let m = d.page(id);
            assert!(m.ref_count() == 0 && !m.is_busied() && m.valid() == 0);
        }
        assert_eq!(
            d.phys.reclaim_cursor(),
            d.page(first).phys_addr() / PAGE_SIZE + 8
        );
        d.phys.free_contig(first, 8);
        pmap.remove(VA, VA + 64 * PAGE_SIZE);
        drop(o);
        assert_eq!(d.phys.free_count(), 64, "nothing leaked");
        assert_eq!(d.phys.free_blocks(), [(0, 6)]);
    }

    #[test]
    fn wired_and_busy_pages_are_not_moved() {
        let (d, _mem, o, pmap) = fragmented(16);
        d.set_mappings(pmap.mappings());
        let ids: Vec<_> = (0..16).filter_map(|i| o.lock().lookup(i)).collect();
        let (wired, busy) = (ids[1], ids[5]);
        d.wire(wired);
        assert!(d.page(busy).try_sbusy());
        // Two aligned runs of 8: one holds the wired page, the other the busy one.
        let ask = || alloc_contig(&d, &req(8, 0, 16 * PAGE_SIZE, 8 * PAGE_SIZE, 0));
        let (lo, hi) = (wired.min(busy), wired.max(busy));
        assert!(lo < 8 && hi >= 8, "one in each run");
        assert_eq!(ask(), None);
        let c = &d.counters.reclaim;
        assert_eq!(c.passes.get(), u64::from(RECLAIM_PASSES));
        assert_eq!(c.candidates_failed.get(), 0, "the sweep saw them");
        assert_eq!(d.phys.free_count(), 8);
        // Moving them directly fails too, and changes nothing.
        let spare = d.alloc_page(FreePool::Default).unwrap();
        for id in [wired, busy] {
            assert_eq!(relocate(&d, &*pmap.mappings(), id, spare), None);
            assert_eq!(o.lock().lookup(d.page(id).pindex()), Some(id));
        }
        assert!(!d.page(spare).is_busied());
        d.phys.free_page(spare);
        d.page(busy).sunbusy(d.wait());
        let first = ask().unwrap();
        assert_eq!(first, busy & !7, "the run without the wired page");
        assert_eq!(o.lock().lookup(d.page(wired).pindex()), Some(wired));
        d.unwire(wired, crate::page::PageQueue::Active);
        d.phys.free_contig(first, 8);
        pmap.remove(VA, VA + 16 * PAGE_SIZE);
        drop(o);
        assert_eq!(d.phys.free_count(), 16);
    }

    #[test]
    fn without_the_mappings_hook_only_free_runs_are_used() {
        let (d, _mem) = domain_with(8);
        let o = VmObject::allocate_default(d.clone(), 8);
        let ids: Vec<_> = (0..8)
            .map(|i| grab(&o, i, GrabFlags::ZERO).unwrap().unwrap())
            .collect();
        for (i, id) in (0..8).zip(ids) {
            if id % 2 == 1 {
                o.lock().remove(i);
            } else {
                d.page(id).xunbusy(d.wait());
            }
        }
        let ask = || alloc_contig(&d, &req(2, 0, 8 * PAGE_SIZE, 2 * PAGE_SIZE, 0));
        assert_eq!(ask(), None);
        assert_eq!(d.counters.reclaim.passes.get(), 0);
        let pmap = Arc::new(SoftPmap::new(d.clone()));
        d.set_mappings(pmap.mappings());
        let first = ask().unwrap();
        assert_eq!(d.counters.reclaim.pages_relocated.get(), 1);
        d.phys.free_contig(first, 2);
        drop(o);
        assert_eq!(d.phys.free_count(), 8);
    }

    #[test]
    fn no_sweep_without_room_to_move() {
        let (d, _mem) = domain_with(16);
        let o = VmObject::allocate_default(d.clone(), 16);
        for i in 0..16 {
            let id = grab(&o, i, GrabFlags::ZERO).unwrap().unwrap();
            d.page(id).xunbusy(d.wait());
        }
        let pmap = Arc::new(SoftPmap::new(d.clone()));
        d.set_mappings(pmap.mappings());
        let ask = || alloc_contig(&d, &req(8, 0, 16 * PAGE_SIZE, 8 * PAGE_SIZE, 0));
        assert_eq!(ask(), None);
        let c = &d.counters.reclaim;
        assert_eq!(c.passes.get(), 0, "every page is movable, but none is free");
        // Free pages 0 and 9..16: no free run, but room for the seven
        // object pages of run [0, 8).
        for i in 0..16 {
            let mut g = o.lock();
            let id = g.lookup(i).unwrap();
            if id == 0 || id > 8 {
                assert!(d.page(id).try_xbusy());
                g.remove(i);
            }
        }
        let first = ask().unwrap();
        assert_eq!(first, 0);
        assert_eq!(c.pages_relocated.get(), 7);
        assert_eq!(o.lock().resident_count(), 8);
        assert!((0..16).all(|i| o.lock().lookup(i).is_none_or(|id| id >= 8)));
        d.phys.free_contig(first, 8);
        drop(o);
        assert_eq!(d.phys.free_count(), 16);
    }

    /// The mappings hook of [`a_page_busied_meanwhile_fails_its_candidate`]:
    /// on its first call, while the first page is being moved, it
    /// shared-busies every other page of `pages`, as concurrent faults
    /// would.
    struct BusyOthers {
        pmap: Arc<dyn PageMappings>,
        d: alloc::sync::Weak<VmDomain>,
        pages: Vec<PageId>,
        fired: core::sync::atomic::AtomicBool,
    }

    impl PageMappings for BusyOthers {
        fn remove_all(&self, page: PageId) {
            self.pmap.remove_all(page);
            if !self.fired.swap(true, core::sync::atomic::Ordering::Relaxed) {
                let d = self.d.upgrade().unwrap();
                for &id in self.pages.iter().filter(|&&id| id != page) {
                    assert!(d.page(id).try_sbusy());
                }
            }
        }
    }

    #[test]
    fn a_page_busied_meanwhile_fails_its_candidate() {
        let (d, mem, o, pmap) = fragmented(16);
        let pages: Vec<_> = (0..16).filter_map(|i| o.lock().lookup(i)).collect();
        d.set_mappings(Arc::new(BusyOthers {
            pmap: pmap.mappings(),
            d: Arc::downgrade(&d),
            pages: pages.clone(),
            fired: false.into(),
        }));
        let ask = || alloc_contig(&d, &req(8, 0, 16 * PAGE_SIZE, 8 * PAGE_SIZE, 0));
        assert_eq!(ask(), None);
        let c = &d.counters.reclaim;
        assert_eq!(c.pages_relocated.get(), 1, "the first page moved");
        assert_eq!(c.candidates_failed.get(), 1, "then the second was busy");
        assert_eq!(d.phys.free_count(), 8, "the moved page's frame given back");
        let moved = pages.iter().find(|&&id| !d.page(id).is_busied()).unwrap();
        assert_eq!(d.page(*moved).ref_count(), 0, "left its object");
        for i in 0..16 {
            let Some(id) = o.lock().lookup(i) else {
                continue;
            };
            assert_eq!(mem.byte(d.page(id).phys_addr()), i as u8 + 1);
            if id != *moved && pages.contains(&id) {
                d.page(id).sunbusy(d.wait());
            }
        }
        let first = ask().unwrap();
        d.phys.free_contig(first, 8);
        pmap.remove(VA, VA + 16 * PAGE_SIZE);
        drop(o);
        assert_eq!(d.phys.free_count(), 16);
    }

    #[test]
    fn pages_of_other_objects_and_kernel_pages_stay() {
        let (d, _mem) = domain_with(8);
        let pmap = Arc::new(SoftPmap::new(d.clone()));
        d.set_mappings(pmap.mappings());
        let phys = crate::pager::phys::phys_pager_allocate(d.clone(), 4 * PAGE_SIZE);
        let p = grab(&phys, 0, GrabFlags::ZERO).unwrap().unwrap();
        d.page(p).xunbusy(d.wait());
        let k = d.alloc_page(FreePool::Default).unwrap();
        let ask = || alloc_contig(&d, &req(8, 0, 8 * PAGE_SIZE, PAGE_SIZE, 0));
        assert_eq!(ask(), None);
        assert!(!movable_hint(&d, k) && !movable_hint(&d, p));
        d.phys.free_page(k);
        assert_eq!(ask(), None, "a page of a phys object is not moved");
        assert_eq!(d.counters.reclaim.pages_relocated.get(), 0);
        drop(phys);
        let first = ask().unwrap();
        d.phys.free_contig(first, 8);
        assert_eq!(d.phys.free_count(), 8);
    }
}
