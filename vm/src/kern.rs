//! Contiguous kernel memory with a memory attribute (FreeBSD `vm_kern.c`,
//! `kmem_alloc_contig` and `kmem_free`): DMA buffers, rings shared with
//! Xen, anything the kernel maps with a cache mode other than write-back.
//! The kernel maps the returned pages (its direct map with the attribute);
//! the VM only allocates, wires and tags them.

use crate::Errno;
use crate::domain::VmDomain;
use crate::page::{MemAttr, PageId};
use crate::phys::ContigRequest;
use crate::reclaim;

/// A contiguous run of wired kernel pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmemRange {
    /// The first page; the others follow it in the page array.
    pub first: PageId,
    /// Number of pages.
    pub npages: u64,
    /// Physical address of the first page.
    pub phys_addr: u64,
    /// Cache mode of every page.
    pub memattr: MemAttr,
}

/// Allocate `npages` physically contiguous pages within `[low, high)`,
/// `alignment`-aligned and not crossing a multiple of `boundary` (0: none),
/// wired, tagged with `memattr`, zeroed if `zero` (`kmem_alloc_contig`).
/// When no such run is free, the pages of a run are moved away
/// ([`crate::reclaim::alloc_contig`]). `EINVAL` for a request no run can satisfy (see
/// [`ContigRequest::new`]), `ENOMEM` when no run can be had.
#[allow(clippy::too_many_arguments)]
pub fn kmem_alloc_contig(
    domain: &VmDomain,
    npages: u64,
    low: u64,
    high: u64,
    alignment: u64,
    boundary: u64,
    memattr: MemAttr,
    zero: bool,
) -> Result<KmemRange, Errno> {
    let req = ContigRequest::new(npages, low, high, alignment, boundary).ok_or(Errno::EINVAL)?;
    let first = reclaim::alloc_contig(domain, &req).ok_or(Errno::ENOMEM)?;
    for id in first..first + npages as PageId {
        domain.wire(id);
        domain.page(id).set_memattr(memattr);
        if zero {
            domain.zero_page(id);
        }
    }
    domain.counters.kmem.add(npages);
    Ok(KmemRange {
        first,
        npages,
        phys_addr: domain.page(first).phys_addr(),
        memattr,
    })
}

/// Free a range from [`kmem_alloc_contig`] (`kmem_free`).
pub fn kmem_free(domain: &VmDomain, range: KmemRange) {
    for id in range.first..range.first + range.npages as PageId {
        let m = domain.page(id);
        let last = m.unwire_noq();
        assert!(last, "kmem page still referenced");
        domain.counters.wired.sub(1);
        m.set_memattr(MemAttr::WriteBack);
    }
    domain.counters.kmem.sub(range.npages);
    domain.phys.free_contig(range.first, range.npages);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::PAGE_SIZE;
    use crate::testutil::domain_with;

    #[test]
    fn contig_with_attribute() {
        let (d, mem) = domain_with(256);
        for id in 0..256 {
            mem.fill(d.page(id).phys_addr(), 0x11);
        }
        let r = kmem_alloc_contig(
            &d,
            5,
            PAGE_SIZE,
            1 << 20,
            8 * PAGE_SIZE,
            0,
            MemAttr::Uncacheable,
            true,
        )
        .unwrap();
        assert_eq!(r.phys_addr % (8 * PAGE_SIZE), 0);
        assert!(r.phys_addr >= PAGE_SIZE);
        for id in r.first..r.first + 5 {
            let m = d.page(id);
            assert_eq!(m.memattr(), MemAttr::Uncacheable);
            assert_eq!(m.wire_count(), 1);
            assert_eq!(mem.byte(m.phys_addr() + 4095), 0);
        }
        assert_eq!(d.counters.wired.get(), 5);
        assert_eq!(d.counters.kmem.get(), 5);
        assert_eq!(d.phys.free_count(), 251);
        assert_eq!(
            kmem_alloc_contig(&d, 300, 0, 2 << 20, PAGE_SIZE, 0, MemAttr::WriteBack, false),
            Err(Errno::ENOMEM)
        );
        assert_eq!(
            kmem_alloc_contig(
                &d,
                3,
                0,
                2 * PAGE_SIZE,
                PAGE_SIZE,
                0,
                MemAttr::WriteBack,
                false
            ),
            Err(Errno::EINVAL),
            "no room in the range"
        );
        kmem_free(&d, r);
        assert_eq!(d.phys.free_count(), 256);
        assert_eq!(d.counters.wired.get(), 0);
        assert_eq!(d.page(r.first).memattr(), MemAttr::WriteBack);
        assert_eq!(d.phys.free_blocks(), [(0, 8)]);
    }

    #[test]
    fn contig_moves_object_pages_when_memory_is_fragmented() {
        use crate::grab::{GrabFlags, grab};
        let (d, _mem) = domain_with(32);
        let o = crate::object::VmObject::allocate_default(d.clone(), 32);
        for p in 0..32 {
            let id = grab(&o, p, GrabFlags::ZERO).unwrap().unwrap();
            d.page(id).xunbusy(d.wait());
        }
        // Free every other frame: no two free pages touch.
        for p in 0..32 {
            let mut g = o.lock();
            let id = g.lookup(p).unwrap();
            if id % 2 == 1 {
                assert!(d.page(id).try_xbusy());
                g.remove(p);
            }
        }
        let pmap = alloc::sync::Arc::new(crate::pmap::SoftPmap::new(d.clone()));
        d.set_mappings(pmap.mappings());
        let ask = |n| kmem_alloc_contig(&d, n, 0, 1 << 20, PAGE_SIZE, 0, MemAttr::WriteBack, true);
        let r = ask(8).unwrap();
        assert_eq!(d.counters.reclaim.pages_relocated.get(), 4);
        assert!((r.first..r.first + 8).all(|id| d.page(id).wire_count() == 1));
        assert_eq!(o.lock().resident_count(), 16, "the object kept its pages");
        assert_eq!(ask(9), Err(Errno::ENOMEM), "8 pages left");
        kmem_free(&d, r);
        drop(o);
        assert_eq!(d.phys.free_count(), 32);
    }
}
