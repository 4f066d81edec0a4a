//! `scenario=pmap`: the page-table operations on address spaces that are
//! not active: enter, extract, extract-and-hold (and its refusal without
//! write access), protect, remove-all through the mapping lists of a page
//! mapped in two address spaces, a 2 MiB mapping demoted by a partial
//! remove; the free page count must come back.

use vm::Prot;
use vm::grab::{GrabFlags, grab};
use vm::object::VmObject;
use vm::page::PageQueue;

use super::Outcome;
use crate::arch::pmap::{self, LARGE, PAGE, Pmap, PmapFlags, USER_MIN};
use crate::{kprintln, mem};

fn ensure(cond: bool, what: &'static str) -> Outcome {
    if cond { Ok(()) } else { Err(what) }
}

/// Runs the checks.
pub fn run() -> Outcome {
    let before = mem::free_pages();
    let d = mem::domain();
    let rw = Prot::READ | Prot::WRITE;
    {
        let (a, b) = (
            Pmap::new().map_err(|_| "no memory")?,
            Pmap::new().map_err(|_| "no memory")?,
        );
        let obj = VmObject::allocate_default(d.clone(), 4);
        let id = grab(&obj, 0, GrabFlags::ZERO)
            .ok()
            .flatten()
            .ok_or("no page")?;
        let pa = d.page(id).phys_addr();
        let (va, vb) = (USER_MIN + 0x5000, USER_MIN + (7 << 30));
        a.enter(va, id, pa, rw, PmapFlags::MANAGED)
            .map_err(|_| "enter")?;
        b.enter(vb, id, pa, Prot::READ, PmapFlags::MANAGED)
            .map_err(|_| "enter")?;
        ensure(a.extract(va + 0x123) == Some(pa + 0x123), "extract")?;
        ensure(pmap::mapping_count(id) == 2, "two mappings listed")?;
        ensure(
            a.extract_and_hold(va, Prot::WRITE) == Some(id),
            "hold for write",
        )?;
        ensure(d.page(id).wire_count() == 1, "held page wired")?;
        d.unwire(id, PageQueue::Active);
        ensure(
            b.extract_and_hold(vb, Prot::WRITE).is_none(),
            "no hold for write of a read-only mapping",
        )?;
        a.protect(va, va + PAGE, Prot::READ);
        ensure(
            a.extract_and_hold(va, Prot::WRITE).is_none(),
            "protect removed write",
        )?;
        pmap::remove_all(id);
        ensure(pmap::mapping_count(id) == 0, "remove_all emptied the list")?;
        ensure(
            a.extract(va).is_none() && b.extract(vb).is_none(),
            "remove_all unmapped both",
        )?;
        ensure(a.resident() == 0 && b.resident() == 0, "resident counts")?;
        d.page(id).xunbusy(d.wait());

        let first = d
            .phys
            .alloc_contig(512, 0, 1 << 32, LARGE, 0)
            .ok_or("no contiguous 2 MiB")?;
        let lpa = d.page(first).phys_addr();
        let lva = USER_MIN + 3 * LARGE;
        let demotions = pmap::tlb_stats().demotions;
        ensure(
            a.enter_large(lva, first, lpa, rw, PmapFlags::empty()) == Ok(true),
            "enter_large",
        )?;
        ensure(
            a.extract(lva + 5 * PAGE + 7) == Some(lpa + 5 * PAGE + 7),
            "extract in a large page",
        )?;
        a.remove(lva + PAGE, lva + 2 * PAGE);
        ensure(
            pmap::tlb_stats().demotions == demotions + 1,
            "partial remove demoted",
        )?;
        ensure(a.extract(lva + PAGE).is_none(), "removed page gone")?;
        ensure(
            a.extract(lva + 2 * PAGE) == Some(lpa + 2 * PAGE),
            "neighbour kept",
        )?;
        ensure(a.resident() == 511, "511 pages left")?;
        a.remove(lva, lva + LARGE);
        ensure(a.resident() == 0, "all removed")?;
        d.phys.free_contig(first, 512);
        kprintln!(
            "pmap: enter/extract/hold/protect/remove_all over two address spaces, 2 MiB entry demoted by a partial remove"
        );
    }
    let after = mem::free_pages();
    kprintln!("pmap: free pages {before} before, {after} after");
    ensure(before == after, "free page count did not return")
}
