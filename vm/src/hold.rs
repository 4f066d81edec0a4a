//! Holding the pages of a range of an address space for sharing
//! (FreeBSD `vm_fault_quick_hold_pages`): each page is faulted in with the
//! access asked for and wired, so that the kernel can share it as it is:
//! a writable hold shares the owner's own page, with no copy-on-write, and
//! both sides see each other's writes. The pages outlive the owner's
//! mappings; the holder's unwire frees them if the owner has let go.
//!
//! Unlike a loan ([`crate::loan`]) a hold never makes pages read-only, so
//! it takes only what a fault makes the owner's: a write hold of a page
//! lent out, or of a copy-on-write page, holds the owner's fresh copy.
//!
//! # Locking
//!
//! None of its own: the map lock for the lookup of each page, then the
//! fault handler's and [`Pmap::extract_and_hold`]'s.

use crate::fault::{FaultFlags, vm_fault};
use crate::loan::{Sharing, UserPages, errno, mapped_range};
use crate::map::VmMap;
use crate::object::ObjectType;
use crate::page::PageQueue;
use crate::pmap::Pmap;
use crate::{Errno, PAGE_SIZE, Prot};

/// Hold the pages of `[start, start + len)` of `map`, whose pages `pmap`
/// maps, for access `prot` (`vm_fault_quick_hold_pages`). `start` is
/// page-aligned; `len` is rounded up to pages.
///
/// Errors, with nothing held: `EINVAL` for a bad range, a range of which
/// nothing is mapped, or one that maps objects other than anonymous
/// memory; `EFAULT` if part of the range is unmapped; `EACCES` if the
/// mapping does not allow `prot`; `ENOMEM` when out of memory.
#[doc(alias = "vm_fault_quick_hold_pages")]
pub fn hold_pages(
    map: &VmMap,
    pmap: &dyn Pmap,
    start: u64,
    len: u64,
    prot: Prot,
) -> Result<UserPages, Errno> {
    let npages = mapped_range(map, start, len)?;
    let mut h = UserPages::new(map.domain(), Sharing::Hold, npages);
    for i in 0..npages {
        let va = start + i * PAGE_SIZE;
        let id = loop {
            let (guard, r) = map.lookup(va, prot).map_err(errno)?;
            map.lookup_done(guard);
            if r.object.otype() != ObjectType::Default {
                return Err(Errno::EINVAL);
            }
            match pmap.extract_and_hold(va, prot) {
                // Held while the map was as looked up: the page is the
                // anonymous memory's.
                Some(id) if map.timestamp() == r.timestamp => break id,
                Some(id) => {
                    map.domain().unwire(id, PageQueue::Active);
                }
                None => {
                    vm_fault(map, pmap, va, prot, FaultFlags::empty()).map_err(errno)?;
                }
            }
        };
        h.push(id);
    }
    Ok(h)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::loan::loan;
    use crate::loan::tests::{BASE, RW, env, written};

    #[test]
    fn a_writable_hold_shares_the_owners_page() {
        let (e, free0) = written(2, 0x61);
        let h = hold_pages(&e.map, &e.pmap, BASE, 2 * PAGE_SIZE, RW).unwrap();
        assert_eq!(h.pages()[0], e.pmap.pte(BASE).unwrap().page, "no copy");
        e.write(BASE, 0x62);
        assert_eq!(
            e.byte(h.pages()[0]),
            0x62,
            "the holder sees the owner's writes"
        );
        e.mem.fill(e.d.page(h.pages()[1]).phys_addr(), 0x63);
        assert_eq!(e.read(BASE + PAGE_SIZE), 0x63, "and the owner the holder's");
        assert_eq!(
            loan(&e.map, &e.pmap, BASE, PAGE_SIZE).err(),
            Some(Errno::EBUSY),
            "a held page is not lent"
        );
        e.map.remove(&e.pmap, BASE, BASE + 2 * PAGE_SIZE).unwrap();
        assert_eq!(e.byte(h.pages()[0]), 0x62, "alive after munmap");
        drop(h);
        assert_eq!(e.d.phys.free_count(), free0, "freed by the holder");
        assert_eq!(e.d.counters.wired.get(), 0);
    }

    #[test]
    fn a_write_hold_of_a_lent_page_takes_the_owners_copy() {
        let (e, _) = written(1, 0x71);
        let l = loan(&e.map, &e.pmap, BASE, PAGE_SIZE).unwrap();
        let h = hold_pages(&e.map, &e.pmap, BASE, PAGE_SIZE, RW).unwrap();
        assert_ne!(h.pages(), l.pages());
        assert_eq!(e.byte(h.pages()[0]), 0x71);
        assert_eq!(e.d.loans.counters.broken.get(), 1);
    }

    #[test]
    fn holds_refuse_what_loans_refuse() {
        let e = env(32);
        e.anon(BASE, 1);
        let phys = crate::pager::phys::phys_pager_allocate(e.d.clone(), 1);
        e.map
            .insert(crate::loan::tests::entry(
                BASE + PAGE_SIZE,
                1,
                Some(phys),
                crate::map::EntryFlags::empty(),
            ))
            .unwrap();
        let free0 = e.d.phys.free_count();
        let hold = |start, n| hold_pages(&e.map, &e.pmap, start, n * PAGE_SIZE, RW).err();
        assert_eq!(
            hold(BASE + 4 * PAGE_SIZE, 1),
            Some(Errno::EINVAL),
            "unmapped"
        );
        assert_eq!(hold(BASE, 3), Some(Errno::EFAULT), "partly unmapped");
        assert_eq!(hold(BASE, 2), Some(Errno::EINVAL), "not anonymous memory");
        // The first page was faulted in for the owner, and is its own.
        assert_eq!(e.d.phys.free_count(), free0 - 1);
        assert_eq!(e.d.counters.wired.get(), 0, "nothing held");
    }
}
