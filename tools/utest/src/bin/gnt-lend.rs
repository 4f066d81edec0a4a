//! Domain A of the loan pair (`utest::lend`): grants `PAGES` pages of its
//! own memory read-only to the peer as they are (`GRANT_USER`: lent, not
//! copied) and checks, through the kernel's counters, what the grant
//! cost: one grant reference per page, no page allocated (one, the zero
//! page, for a buffer never touched), every page lent once (one page lent
//! for the untouched buffer, with `PAGES` loans of it). Then, by case:
//! - read-only: once B has verified, writes every page: each write breaks
//!   a loan by copy (`PAGES` copies, `PAGES` pages allocated), the lent
//!   originals stay lent to B, and our buffer reads what we wrote; B must
//!   still read the old words. Then, once B has unmapped, `DEALLOC_GREF`
//!   gives every loan back;
//! - zero: once B has read zeros and unmapped, `DEALLOC_GREF`; the zero
//!   page's loans are gone;
//! - owner-exits: once B has verified, exits with the grants live and
//!   the buffer mapped: the kernel ends the grants at the exit, keeps the
//!   lent pages for B until it unmaps, and (`gntdev-lend`) tells B.
//!
//! Argument: `case << 32 | peer` (`utest::lend::Case`).
#![no_std]
#![no_main]

use gnttab::xs::{Fmt, Xs};
use gnttab::{Buf, Gnttab};
use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use urt::{PAGE, println, sysctl};
use utest::lend::{self, Case, PAGES};

urt::entry!(main);

fn stat(key: u64) -> u64 {
    urt::sysctl(key, sysctl::READ_ONLY).unwrap_or(u64::MAX)
}

/// The kernel's counters a loan changes.
#[derive(Clone, Copy)]
struct Stats {
    free: u64,
    grant_refs: u64,
    lent: u64,
    zero_loans: u64,
    broken: u64,
}

fn stats() -> Stats {
    Stats {
        free: stat(sysctl::VM_FREE_PAGES),
        grant_refs: stat(sysctl::GRANT_REFS),
        lent: stat(sysctl::VM_LENT_PAGES),
        zero_loans: stat(sysctl::VM_ZERO_PAGE_LOANS),
        broken: stat(sysctl::VM_LOANS_BROKEN),
    }
}

fn main(arg: u64) -> i32 {
    let Some((case, peer)) = Case::from_arg(arg) else {
        println!("gnt-lend: FAIL bad argument");
        return 1;
    };
    match run(case, peer) {
        Ok(()) => 0,
        Err(e) => {
            println!("gnt-lend: FAIL {e}");
            lend::say_failed("share", e);
            1
        }
    }
}

/// Writes `value(i, k)` to every word of the `PAGES` pages at `addr`.
fn fill(addr: u64, value: impl Fn(usize, usize) -> u32) {
    let words = addr as *mut u32;
    for i in 0..PAGES {
        for k in 0..1024 {
            // SAFETY: inside our read-write mapping of `PAGES` pages.
            unsafe { words.add(i * 1024 + k).write_volatile(value(i, k)) };
        }
    }
}

fn run(case: Case, peer: u32) -> Result<(), &'static str> {
    let mut xs = Xs::open().map_err(|_| "open /dev/xen/xenstore")?;
    let me = xs.read_u64("domid").map_err(|_| "read domid")? as u32;
    // Our share/state, readable by the peer, before anything can fail.
    lend::set(&mut xs, me, peer, "share", true, "state", b"granting")?;
    let gnt = Gnttab::open().map_err(|_| "open /dev/xen/gntdev")?;
    let mut refs = Buf::<u32>::new(PAGES).map_err(|_| "refs buffer")?;
    refs.values().fill(0);
    let addr = urt::mmap(
        0,
        PAGES * PAGE,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANON,
        u64::MAX,
        0,
    )
    .map_err(|_| "mmap of the buffer")?;
    if case != Case::Zero {
        fill(addr, |i, k| case.word(i, k));
    }
    // A first grant and its end, not counted: the library's reference
    // array (an anonymous page mapped at each call) gets its page table
    // and the kernel its bookkeeping for this many grants.
    let index = gnt
        .grant_user(peer as u16, addr, refs.values(), false)
        .map_err(|_| "GRANT_USER")?;
    gnt.dealloc_grefs(index, PAGES)
        .map_err(|_| "DEALLOC_GREF")?;

    let s0 = stats();
    let t0 = urt::clock_ns();
    let index = gnt
        .grant_user(peer as u16, addr, refs.values(), false)
        .map_err(|_| "GRANT_USER")?;
    let grant_us = (urt::clock_ns() - t0) / 1000;
    let s1 = stats();
    let allocated = s0.free as i64 - s1.free as i64;
    let (granted, lent, zero) = (
        s1.grant_refs - s0.grant_refs,
        s1.lent - s0.lent,
        s1.zero_loans - s0.zero_loans,
    );
    println!(
        "gnt-lend: {PAGES} {} pages granted read-only by loan in {grant_us} us: {granted} grant reference(s), {allocated} page(s) allocated, {lent} page(s) lent, {zero} loan(s) of the zero page",
        if case == Case::Zero {
            "untouched"
        } else {
            "written"
        }
    );
    println!(
        "COUNTERS gnt-lend pages={PAGES} grant_refs={granted} allocated={allocated} lent_pages={lent} zero_page_loans={zero} grant_us={grant_us}"
    );
    let (want_allocated, want_lent, want_zero) = match case {
        Case::Zero => (1, 1, PAGES as u64),
        _ => (0, PAGES as u64, 0),
    };
    if granted != PAGES as u64
        || allocated != want_allocated
        || lent != want_lent
        || zero != want_zero
    {
        return Err(
            "the grant did not take one reference per page, lend each page once and allocate nothing (the zero page alone for untouched memory)",
        );
    }

    let mut val = Fmt::new();
    val.num(PAGES as u64);
    lend::set(&mut xs, me, peer, "share", false, "count", val.as_bytes())?;
    utest::refs::publish(&mut xs, lend::node(me, "share").as_str(), refs.values())?;
    lend::set(&mut xs, me, peer, "share", false, "state", b"ready")?;
    println!("gnt-lend: published {PAGES} references for domain {peer}");
    let map_state = lend::node(peer, "map/state");
    match case {
        Case::ReadOnly => {
            lend::wait(&mut xs, map_state.as_str(), "verified")?;
            let s2 = stats();
            fill(addr, |i, k| !case.word(i, k));
            let s3 = stats();
            let (copies, allocated) = (s3.broken - s2.broken, s2.free as i64 - s3.free as i64);
            // SAFETY: `addr` is our buffer of `PAGES` pages, readable.
            let mine =
                unsafe { lend::wrong_words(addr as *const u32, PAGES, |i, k| !case.word(i, k)) };
            println!(
                "gnt-lend: wrote every page after B verified: {copies} loan(s) broken by copy, {allocated} page(s) allocated, {} page(s) still lent; {mine} of our words wrong",
                s3.lent - s0.lent
            );
            println!(
                "COUNTERS gnt-lend-write copies={copies} allocated={allocated} still_lent={} wrong_words={mine}",
                s3.lent - s0.lent
            );
            if copies != PAGES as u64
                || allocated != PAGES as i64
                || s3.lent - s0.lent != PAGES as u64
                || mine != 0
            {
                return Err(
                    "our writes did not each copy one page, or the originals left the borrower, or our buffer lost our writes",
                );
            }
            lend::set(&mut xs, me, peer, "share", false, "state", b"written")?;
            lend::wait(&mut xs, map_state.as_str(), "kept")?;
        }
        Case::Zero => {}
        Case::OwnerExits => {
            lend::wait(&mut xs, map_state.as_str(), "verified")?;
            println!("gnt-lend: exiting with {PAGES} pages lent and granted, B mapping them");
            return Ok(());
        }
    }
    lend::wait(&mut xs, map_state.as_str(), "unmapped")?;
    gnt.dealloc_grefs(index, PAGES)
        .map_err(|_| "DEALLOC_GREF")?;
    let s4 = stats();
    println!(
        "gnt-lend: B unmapped; after DEALLOC_GREF: {} page(s) lent, {} loan(s) of the zero page, {} grant reference(s) (before the grant: {}, {}, {})",
        s4.lent, s4.zero_loans, s4.grant_refs, s0.lent, s0.zero_loans, s0.grant_refs
    );
    if (s4.lent, s4.zero_loans, s4.grant_refs) != (s0.lent, s0.zero_loans, s0.grant_refs) {
        return Err("loans or grant references left after DEALLOC_GREF");
    }
    urt::munmap(addr, PAGES * PAGE).map_err(|_| "munmap")?;
    Ok(())
}
