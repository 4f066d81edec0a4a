//! `loan-grant`: granting memory the process already has
//! (`GRANT_USER`, `docs/user-mode.md`), checked in one domain, with dom0
//! as the grantee (it maps nothing: what is measured is the granting side).
//!
//! 1. A written 4 MiB buffer granted read-only: no page is allocated (the
//!    pages are lent, not copied); the owner's writes after it break the
//!    loans, one copy per page written; after `DEALLOC_GREF` the lent
//!    originals are freed, once: the free count is back.
//! 2. 4 MiB never touched, granted read-only: one page (the shared zero
//!    page) backs all 1024 grants.
//! 3. The benchmark: granting the written 4 MiB by loan against
//!    `ALLOC_GREF` + `mmap` + copying the same bytes in (what a program
//!    must do without `GRANT_USER`), best of 5 each, as a time ratio.
#![no_std]
#![no_main]

use gnttab::{Buf, Gnttab};
use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use urt::{PAGE, println, sysctl};

urt::entry!(main);

/// Pages granted: 4 MiB.
const PAGES: usize = 1024;
/// Tries of each side of the benchmark.
const TRIES: usize = 5;
/// The grantee: dom0.
const DOM0: u16 = 0;

fn free() -> u64 {
    urt::sysctl(sysctl::VM_FREE_PAGES, sysctl::READ_ONLY).unwrap_or(0)
}

/// A fresh anonymous 4 MiB mapping.
fn buffer() -> Result<u64, &'static str> {
    urt::mmap(
        0,
        PAGES * PAGE,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANON,
        u64::MAX,
        0,
    )
    .map_err(|_| "mmap")
}

/// Writes one word of each page of `buf` (`value + page`).
fn write_pages(buf: u64, value: u64) {
    for p in 0..PAGES {
        // SAFETY: the first word of a page of our read-write mapping.
        unsafe { ((buf + (p * PAGE) as u64) as *mut u64).write_volatile(value + p as u64) };
    }
}

fn main(_: u64) -> i32 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            println!("loan: FAIL {e}");
            1
        }
    }
}

fn run() -> Result<(), &'static str> {
    let gnt = Gnttab::open().map_err(|_| "open /dev/xen/gntdev")?;
    let mut refs = Buf::<u32>::new(PAGES).map_err(|_| "refs buffer")?;

    // 1. A written buffer, lent read-only. A first grant and its end, not
    // counted, give the library's reference array (an anonymous page, at
    // the same address each time) its page table.
    let buf = buffer()?;
    write_pages(buf, 0);
    let index = gnt
        .grant_user(DOM0, buf, refs.values(), false)
        .map_err(|_| "GRANT_USER of a written buffer")?;
    gnt.dealloc_grefs(index, PAGES)
        .map_err(|_| "DEALLOC_GREF")?;
    let f0 = free();
    let index = gnt
        .grant_user(DOM0, buf, refs.values(), false)
        .map_err(|_| "GRANT_USER of a written buffer")?;
    let f1 = free();
    write_pages(buf, 1);
    let f2 = free();
    gnt.dealloc_grefs(index, PAGES)
        .map_err(|_| "DEALLOC_GREF")?;
    let f3 = free();
    urt::munmap(buf, PAGES * PAGE).map_err(|_| "munmap")?;
    let (allocated, copies, freed) = (
        f0.saturating_sub(f1),
        f1.saturating_sub(f2),
        f3.saturating_sub(f2),
    );
    println!(
        "loan: {PAGES} written pages granted read-only: {allocated} page(s) allocated; {copies} copies when the owner wrote them all; {freed} lent original(s) freed at DEALLOC_GREF"
    );
    if allocated != 0 || copies != PAGES as u64 || freed != PAGES as u64 {
        return Err(
            "a loan allocated pages, or the owner's writes did not copy each page once, or the originals were not freed once",
        );
    }

    // 2. Never touched: the zero page.
    let buf = buffer()?;
    let f0 = free();
    let index = gnt
        .grant_user(DOM0, buf, refs.values(), false)
        .map_err(|_| "GRANT_USER of an untouched buffer")?;
    let used = f0.saturating_sub(free());
    gnt.dealloc_grefs(index, PAGES)
        .map_err(|_| "DEALLOC_GREF")?;
    urt::munmap(buf, PAGES * PAGE).map_err(|_| "munmap")?;
    println!("loan: {PAGES} untouched pages granted read-only: {used} page(s) back them all");
    if used > 1 {
        return Err("untouched pages were not lent as the one zero page");
    }

    // 3. Loan against allocate-and-copy.
    let buf = buffer()?;
    write_pages(buf, 2);
    let (mut loan_ns, mut copy_ns) = (u64::MAX, u64::MAX);
    for _ in 0..TRIES {
        let t0 = urt::clock_ns();
        let index = gnt
            .grant_user(DOM0, buf, refs.values(), false)
            .map_err(|_| "GRANT_USER")?;
        loan_ns = loan_ns.min(urt::clock_ns() - t0);
        gnt.dealloc_grefs(index, PAGES)
            .map_err(|_| "DEALLOC_GREF")?;

        let t0 = urt::clock_ns();
        let to = gnt
            .share_pages(DOM0, refs.values(), false, None)
            .map_err(|_| "ALLOC_GREF")?;
        // SAFETY: two distinct 4 MiB mappings of ours, both read-write.
        unsafe {
            core::ptr::copy_nonoverlapping(buf as *const u8, to as *mut u8, PAGES * PAGE);
        }
        copy_ns = copy_ns.min(urt::clock_ns() - t0);
        gnt.unshare(to, PAGES).map_err(|_| "unshare")?;
    }
    urt::munmap(buf, PAGES * PAGE).map_err(|_| "munmap")?;
    println!(
        "loan: granting 4 MiB: by loan {} us, by ALLOC_GREF and a copy {} us (best of {TRIES}): {}.{:02}x",
        loan_ns / 1000,
        copy_ns / 1000,
        loan_ns / copy_ns.max(1),
        loan_ns * 100 / copy_ns.max(1) % 100
    );
    Ok(())
}
