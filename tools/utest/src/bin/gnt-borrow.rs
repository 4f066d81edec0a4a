//! Domain B of the loan pair (`utest::lend`): maps the `PAGES` pages the
//! peer lent read-only (one mapping, one map hypercall) and checks every
//! word: the peer's pattern, or zeros for the untouched buffer. Then, by
//! case: once the peer has written every page (read-only) or its process
//! has exited (owner-exits), reads every word again and must find what it
//! read first; then unmaps.
//!
//! Argument: `case << 32 | peer` (`utest::lend::Case`).
#![no_std]
#![no_main]

use gnttab::Buf;
use gnttab::Gnttab;
use gnttab::xs::Xs;
use urt::{println, sysctl};
use utest::lend::{self, Case, PAGES};

urt::entry!(main);

fn main(arg: u64) -> i32 {
    let Some((case, peer)) = Case::from_arg(arg) else {
        println!("gnt-borrow: FAIL bad argument");
        return 1;
    };
    match run(case, peer) {
        Ok(()) => 0,
        Err(e) => {
            println!("gnt-borrow: FAIL {e}");
            lend::say_failed("map", e);
            1
        }
    }
}

fn run(case: Case, peer: u32) -> Result<(), &'static str> {
    let mut xs = Xs::open().map_err(|_| "open /dev/xen/xenstore")?;
    let me = xs.read_u64("domid").map_err(|_| "read domid")? as u32;
    // Our map/state, readable by the peer, before it can look for it.
    lend::set(&mut xs, me, peer, "map", true, "state", b"waiting")?;
    let share_state = lend::node(peer, "share/state");
    lend::wait(&mut xs, share_state.as_str(), "ready")?;
    let count = xs
        .read_u64(lend::node(peer, "share/count").as_str())
        .map_err(|_| "read share/count")?;
    if count != PAGES as u64 {
        return Err("share/count is not the loan pair's page count");
    }
    let mut refs = Buf::<u32>::new(PAGES).map_err(|_| "refs buffer")?;
    utest::refs::read(&mut xs, lend::node(peer, "share").as_str(), refs.values())?;
    let gnt = Gnttab::open().map_err(|_| "open /dev/xen/gntdev")?;
    let calls0 = urt::sysctl(sysctl::GNTDEV_MAP_HYPERCALLS, sysctl::READ_ONLY).unwrap_or(0);
    let addr = gnt
        .map_grant_refs(&[peer], refs.values(), false, None)
        .map_err(|_| "map_grant_refs (read-only)")?;
    let words = addr as *const u32;
    let t0 = urt::clock_ns();
    // SAFETY: `words` is our read-only mapping of the `PAGES` grants.
    let bad = unsafe { lend::wrong_words(words, PAGES, |i, k| case.word(i, k)) };
    let us = (urt::clock_ns() - t0) / 1000;
    let calls = urt::sysctl(sysctl::GNTDEV_MAP_HYPERCALLS, sysctl::READ_ONLY).unwrap_or(0) - calls0;
    println!(
        "gnt-borrow: mapped {PAGES} lent pages read-only ({calls} map hypercall(s)), read them in {us} us: {bad} wrong words ({})",
        if case == Case::Zero {
            "all must be zero"
        } else {
            "the lender's pattern"
        }
    );
    let verdict: &[u8] = if bad == 0 {
        b"verified"
    } else {
        b"failed: wrong words"
    };
    lend::set(&mut xs, me, peer, "map", false, "state", verdict)?;
    let mut kept = 0;
    let after = match case {
        Case::ReadOnly => Some("written"),
        Case::OwnerExits => Some("exited"),
        Case::Zero => None,
    };
    if let Some(step) = after.filter(|_| bad == 0) {
        lend::wait(&mut xs, share_state.as_str(), step)?;
        // SAFETY: as above; the mapping is still ours.
        kept = unsafe { lend::wrong_words(words, PAGES, |i, k| case.word(i, k)) };
        println!(
            "gnt-borrow: the lender {step}: {kept} of our words changed (the loan must keep what we read)"
        );
        let verdict: &[u8] = if kept == 0 {
            b"kept"
        } else {
            b"failed: the lent pages changed under the borrower"
        };
        lend::set(&mut xs, me, peer, "map", false, "state", verdict)?;
    }
    println!(
        "COUNTERS gnt-borrow pages={PAGES} map_hypercalls={calls} wrong_words={bad} changed_words={kept}"
    );
    if bad != 0 || kept != 0 {
        return Err("wrong words");
    }
    gnt.unmap(addr, PAGES).map_err(|_| "unmap")?;
    lend::set(&mut xs, me, peer, "map", false, "state", b"unmapped")?;
    println!("gnt-borrow: unmapped");
    Ok(())
}
