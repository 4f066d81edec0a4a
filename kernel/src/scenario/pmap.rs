//! `scenario=pmap`: the page-table operations on address spaces that are
//! not active: enter, extract, extract-and-hold (and its refusal without
//! write access), protect, remove-all through the mapping lists of a page
//! mapped in two address spaces, a page table of 512 contiguous pages
//! promoted to a 2 MiB mapping and demoted by a partial remove, and a
//! 2 MiB mapping entered directly (`enter_large`) through unwire,
//! remove-all of one of its pages, re-entry over a page table and a
//! partial protect; the free page count must come back.

use vm::Prot;
use vm::grab::{GrabFlags, grab};
use vm::object::VmObject;
use vm::page::{PageId, PageQueue};
use vm::pmap::{EnterFlags, Pmap as _};

use super::Outcome;
use crate::arch::pmap::{self, LARGE, LARGE_PAGES, PAGE, Pmap, USER_MIN};
use crate::{kprintln, mem};

fn ensure(cond: bool, what: &'static str) -> Outcome {
    if cond { Ok(()) } else { Err(what) }
}

/// `enter_large` of the 512 contiguous pages from `first` (at `lpa`) in
/// `a`, wired and managed: a whole unwire reports all 512 pages; a
/// `remove_all` of one page demotes the entry and takes that page only; a
/// second `enter_large` replaces the page table; a protect of two pages
/// demotes again.
/// 1 when the pmap makes 2 MiB entries, 0 under PV, which has none
/// without Xen's superpage support.
fn large_supported() -> u64 {
    u64::from(!crate::arch::is_pv())
}

fn large_entered(a: &Pmap, first: PageId, lpa: u64) -> Outcome {
    let rw = Prot::READ | Prot::WRITE;
    let va = USER_MIN + 5 * LARGE;
    let pages: alloc::vec::Vec<PageId> = (0..LARGE_PAGES as PageId).map(|i| first + i).collect();
    let flags = EnterFlags::MANAGED | EnterFlags::WIRED;
    let s0 = pmap::tlb_stats();
    // 2 MiB entries made, demotions: none under PV, whose pmap enters a
    // 2 MiB run as 512 entries.
    let big = large_supported();
    a.enter_large(va, &pages, lpa, rw, flags)
        .map_err(|_| "enter_large")?;
    ensure(
        a.large_entries() == big && a.resident() == LARGE_PAGES,
        "one 2 MiB entry of 512 pages",
    )?;
    ensure(
        pmap::tlb_stats().large_mappings == s0.large_mappings + big,
        "2 MiB mapping counted",
    )?;
    ensure(
        a.extract(va + 300 * PAGE + 5) == Some((lpa + 300 * PAGE + 5, rw)),
        "extract in the entered 2 MiB entry",
    )?;
    ensure(
        pmap::mapping_count(first + 300) == 1,
        "each page on its mapping list",
    )?;
    let mut unwired = 0;
    a.unwire(va, va + LARGE, &mut |_| unwired += 1);
    ensure(
        unwired == LARGE_PAGES,
        "a wired 2 MiB entry unwires 512 pages",
    )?;
    pmap::remove_all(first + 7);
    ensure(
        pmap::tlb_stats().demotions == s0.demotions + big,
        "remove_all of one page demoted",
    )?;
    ensure(
        a.large_entries() == 0 && a.resident() == LARGE_PAGES - 1,
        "one page removed",
    )?;
    ensure(
        a.extract(va + 7 * PAGE).is_none() && pmap::mapping_count(first + 7) == 0,
        "the page is gone",
    )?;
    ensure(
        a.extract(va + 8 * PAGE) == Some((lpa + 8 * PAGE, rw)),
        "its neighbour stays",
    )?;
    a.enter_large(va, &pages, lpa, rw, EnterFlags::MANAGED)
        .map_err(|_| "enter_large over a page table")?;
    ensure(
        a.large_entries() == big && a.resident() == LARGE_PAGES,
        "the page table replaced",
    )?;
    ensure(
        pmap::mapping_count(first + 8) == 1,
        "no mapping listed twice",
    )?;
    a.protect(va + 10 * PAGE, va + 12 * PAGE, Prot::READ);
    ensure(
        pmap::tlb_stats().demotions == s0.demotions + 2 * big,
        "partial protect demoted",
    )?;
    ensure(
        a.extract(va + 10 * PAGE).map(|t| t.1) == Some(Prot::READ)
            && a.extract(va + 12 * PAGE).map(|t| t.1) == Some(rw),
        "protect of two pages only",
    )?;
    a.remove(va, va + LARGE);
    ensure(
        a.resident() == 0 && a.large_entries() == 0 && pmap::mapping_count(first + 8) == 0,
        "all removed",
    )
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
        a.enter(va, id, pa, rw, EnterFlags::MANAGED)
            .map_err(|_| "enter")?;
        b.enter(vb, id, pa, Prot::READ, EnterFlags::MANAGED)
            .map_err(|_| "enter")?;
        ensure(a.extract(va + 0x123) == Some((pa + 0x123, rw)), "extract")?;
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
        let (demotions, large) = (
            pmap::tlb_stats().demotions,
            pmap::tlb_stats().large_mappings,
        );
        let big = large_supported();
        for i in 0..LARGE_PAGES {
            a.enter(
                lva + i * PAGE,
                first + i as PageId,
                lpa + i * PAGE,
                rw,
                EnterFlags::empty(),
            )
            .map_err(|_| "enter")?;
        }
        ensure(
            pmap::tlb_stats().large_mappings == large + big,
            "512 contiguous pages promoted",
        )?;
        ensure(
            a.extract(lva + 5 * PAGE + 7) == Some((lpa + 5 * PAGE + 7, rw)),
            "extract in a large page",
        )?;
        a.remove(lva + PAGE, lva + 2 * PAGE);
        ensure(
            pmap::tlb_stats().demotions == demotions + big,
            "partial remove demoted",
        )?;
        ensure(a.extract(lva + PAGE).is_none(), "removed page gone")?;
        ensure(
            a.extract(lva + 2 * PAGE) == Some((lpa + 2 * PAGE, rw)),
            "neighbour kept",
        )?;
        ensure(a.resident() == 511, "511 pages left")?;
        a.remove(lva, lva + LARGE);
        ensure(a.resident() == 0, "all removed")?;
        large_entered(&a, first, lpa)?;
        d.phys.free_contig(first, 512);
        if big == 0 {
            kprintln!(
                "pmap: enter/extract/hold/protect/remove_all over two address spaces; PV: 2 MiB runs entered as 512 entries, none promoted or demoted"
            );
        } else {
            kprintln!(
                "pmap: enter/extract/hold/protect/remove_all over two address spaces, 512 pages promoted to a 2 MiB entry, demoted by a partial remove; a 2 MiB entry entered directly, unwired whole, demoted by remove_all of one page, entered again over the page table, demoted by a partial protect"
            );
        }
    }
    let after = mem::free_pages();
    kprintln!("pmap: free pages {before} before, {after} after");
    ensure(before == after, "free page count did not return")
}
