//! The phys pager (FreeBSD `phys_pager.c`): anonymous memory that is never
//! paged out, zero-filled and populated a cluster at a time. A populate
//! fills each empty, superpage-aligned stretch of the object with one
//! physically contiguous, aligned block when the allocator has one, or
//! can make one by moving other pages away (contiguous reclaim), so that
//! the fault handler can map it with one superpage entry (what FreeBSD's
//! superpage reservations, `vm_reserv`, achieve).

use alloc::boxed::Box;
use alloc::sync::Arc;

use super::{PagerOps, PagerResult, PindexRange, zero_fill};
use crate::domain::VmDomain;
use crate::grab::{GrabFlags, grab};
use crate::object::{ObjectFlags, ObjectType, VmObject};
use crate::page::PageId;
use crate::phys::{ContigRequest, FreePool};
use crate::reclaim;
use crate::{Prot, SUPERPAGE_PAGES, SUPERPAGE_SHIFT, SUPERPAGE_SIZE};

/// Pages per populate cluster (`phys_pager_cluster`, FreeBSD's maximum).
pub const PHYS_PAGER_CLUSTER: u64 = 1024;

/// The phys pager.
#[derive(Debug, Default)]
pub struct PhysPager;

/// A phys object of `size` pages, with `POPULATE` set (`phys_pager_allocate`).
pub fn phys_pager_allocate(domain: Arc<VmDomain>, size: u64) -> Arc<VmObject> {
    VmObject::new(
        domain,
        ObjectType::Phys,
        size,
        ObjectFlags::POPULATE,
        Box::new(PhysPager),
    )
}

impl PagerOps for PhysPager {
    fn getpages(
        &self,
        obj: &VmObject,
        pindex: u64,
        page: Option<PageId>,
    ) -> Result<PageId, PagerResult> {
        zero_fill(obj, pindex, page)
    }

    /// Every index can be supplied; the cluster around it bounds the counts.
    fn haspage(&self, _obj: &VmObject, pindex: u64) -> Option<(u64, u64)> {
        let base = pindex - pindex % PHYS_PAGER_CLUSTER;
        Some((pindex - base, base + PHYS_PAGER_CLUSTER - 1 - pindex))
    }

    /// `phys_pager_populate`: the cluster-aligned window of up to
    /// `PHYS_PAGER_CLUSTER` pages around `pindex`, clipped to the object
    /// and to `bounds`, every page grabbed and zero-filled if invalid.
    fn populate(
        &self,
        obj: &VmObject,
        pindex: u64,
        _fault_type: Prot,
        _max_prot: Prot,
        bounds: PindexRange,
    ) -> Result<PindexRange, PagerResult> {
        let size = obj.lock().size();
        if pindex >= size || pindex < bounds.0 || pindex > bounds.1 {
            return Err(PagerResult::Bad);
        }
        let base = (pindex - pindex % PHYS_PAGER_CLUSTER).max(bounds.0);
        let last = (pindex - pindex % PHYS_PAGER_CLUSTER + PHYS_PAGER_CLUSTER - 1)
            .min(size - 1)
            .min(bounds.1);
        let d = obj.domain();
        let mut i = base;
        while i <= last {
            if i.is_multiple_of(SUPERPAGE_PAGES)
                && i + SUPERPAGE_PAGES - 1 <= last
                && insert_superpage(obj, i)
            {
                i += SUPERPAGE_PAGES;
                continue;
            }
            let got = grab(obj, i, GrabFlags::empty()).map_err(PagerResult::from_errno);
            let id = match got {
                Ok(Some(id)) => id,
                Ok(None) => unreachable!("grab without NOCREAT or NOWAIT returns a page"),
                Err(e) => {
                    // Give back what we busied; the pages stay in the object.
                    let g = obj.lock();
                    for j in base..i {
                        let id = g.lookup(j).expect("populated page vanished while busy");
                        d.page(id).xunbusy(d.wait());
                    }
                    return Err(e);
                }
            };
            zero_fill(obj, i, Some(id))?;
            i += 1;
        }
        d.counters.populated.add(last - base + 1);
        Ok((base, last))
    }
}

/// Fills `[first, first + SUPERPAGE_PAGES)` of `obj` with one physically
/// contiguous, aligned block, zeroed, valid and exclusively busied, if
/// none of those indexes holds a page and the allocator has such a block
/// free or can make one by moving pages out of the way
/// ([`reclaim::alloc_contig`]); returns whether it did. Else leaves them to
/// the page-by-page path.
fn insert_superpage(obj: &VmObject, first: u64) -> bool {
    let d = obj.domain();
    let last = first + SUPERPAGE_PAGES - 1;
    if !obj.lock().pages_in(first, last).is_empty() {
        return false;
    }
    let order = (SUPERPAGE_SHIFT - crate::PAGE_SHIFT) as u8;
    let block = d.phys.alloc_pages(FreePool::Default, order).or_else(|| {
        // Reclaim takes the locks of other objects: not with ours held.
        let req = ContigRequest::new(SUPERPAGE_PAGES, 0, u64::MAX, SUPERPAGE_SIZE, 0)
            .expect("a superpage is a valid request");
        reclaim::alloc_contig(d, &req)
    });
    let Some(block) = block else {
        return false;
    };
    let mut g = obj.lock();
    if !g.pages_in(first, last).is_empty() {
        drop(g);
        d.phys.free_contig(block, SUPERPAGE_PAGES);
        return false;
    }
    for (k, id) in (0..SUPERPAGE_PAGES).zip(block..) {
        let m = d.page(id);
        let busied = m.try_xbusy();
        debug_assert!(busied, "fresh page busy");
        d.zero_page(id);
        m.set_all_valid();
        g.insert(first + k, id)
            .expect("index checked empty and in range");
    }
    d.counters.zfod.add(SUPERPAGE_PAGES);
    true
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::testutil::{check_populated, domain, domain_with, unbusy_all};

    #[test]
    fn populate_cluster_window() {
        let (d, mem) = domain_with(4096);
        for i in 0..4096 {
            mem.fill(d.page(i).phys_addr(), 0xee);
        }
        let o = phys_pager_allocate(d.clone(), 3000);
        assert!(o.lock().flags().contains(ObjectFlags::POPULATE));
        let bounds = (0, 2999);
        let r = o
            .pager()
            .populate(&o, 1500, Prot::READ, Prot::all(), bounds)
            .unwrap();
        assert_eq!(r, (1024, 2047));
        check_populated(&o, 1500, r, bounds);
        assert_eq!(
            mem.byte(d.page(o.lock().lookup(1500).unwrap()).phys_addr() + 9),
            0
        );
        unbusy_all(&o, r);
        // Clipped by the object's end and by the map entry.
        let r = o
            .pager()
            .populate(&o, 2100, Prot::WRITE, Prot::all(), (2050, 2999))
            .unwrap();
        assert_eq!(r, (2050, 2999));
        check_populated(&o, 2100, r, (2050, 2999));
        unbusy_all(&o, r);
        // Resident pages are reused, not replaced.
        let before = o.lock().lookup(1024);
        let r = o
            .pager()
            .populate(&o, 1030, Prot::READ, Prot::all(), (1025, 1030))
            .unwrap();
        assert_eq!(r, (1025, 1030));
        assert_eq!(o.lock().lookup(1024), before);
        unbusy_all(&o, r);
        assert_eq!(d.counters.populated.get(), 1024 + 950 + 6);
        assert_eq!(
            o.pager()
                .populate(&o, 3000, Prot::READ, Prot::all(), (0, 5000)),
            Err(PagerResult::Bad)
        );
        drop(o);
        assert_eq!(d.phys.free_count(), 4096);
    }

    #[test]
    fn populate_fills_aligned_stretches_contiguously() {
        let d = domain(4096);
        let o = phys_pager_allocate(d.clone(), 1024);
        // A page already there keeps its stretch on the page-by-page path.
        let id = grab(&o, 600, GrabFlags::ZERO).unwrap().unwrap();
        d.page(id).xunbusy(d.wait());
        let r = o
            .pager()
            .populate(&o, 5, Prot::READ, Prot::all(), (0, 1023))
            .unwrap();
        assert_eq!(r, (0, 1023));
        check_populated(&o, 5, r, (0, 1023));
        let pa = |i| d.page(o.lock().lookup(i).unwrap()).phys_addr();
        assert!(pa(0).is_multiple_of(crate::SUPERPAGE_SIZE));
        assert!((0..SUPERPAGE_PAGES).all(|k| pa(k) == pa(0) + k * crate::PAGE_SIZE));
        assert_eq!(o.lock().lookup(600), Some(id));
        unbusy_all(&o, r);
        drop(o);
        assert_eq!(d.phys.free_count(), 4096);
    }

    #[test]
    fn populate_out_of_memory_unbusies() {
        let d = domain(10);
        let o = phys_pager_allocate(d.clone(), 64);
        assert_eq!(
            o.pager().populate(&o, 3, Prot::READ, Prot::READ, (0, 63)),
            Err(PagerResult::Again)
        );
        let g = o.lock();
        assert_eq!(g.resident_count(), 10);
        for (_, id) in g.pages_in(0, 63) {
            assert!(!d.page(id).is_busied());
        }
    }

    #[test]
    fn haspage_reports_cluster() {
        let d = domain(4);
        let o = phys_pager_allocate(d, 4096);
        assert_eq!(o.pager().haspage(&o, 1030), Some((6, 1017)));
        assert_eq!(o.pager().putpages(&o, &[]), Err(PagerResult::Error));
        let id = crate::grab::grab_valid(&o, 7, GrabFlags::empty())
            .unwrap()
            .unwrap();
        assert!(o.domain().page(id).all_valid());
        o.domain().page(id).xunbusy(o.domain().wait());
    }
}
