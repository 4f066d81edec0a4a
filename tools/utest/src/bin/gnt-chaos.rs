//! The peer domain of the fuzzer's peer mode (`fuzz-peer` cases in
//! `scripts/scenarios/fuzz.sh`): shares pages with domain `peer` and ends
//! the shares at random, while the fuzzer there maps, copies and reads
//! whatever references it finds live. Until `ms` milliseconds have passed
//! it shares 1 to 32 new pages (read-only or writable, some with an unmap
//! notify byte), at most 16 shares at once (512 references live), ends
//! shares the peer may still map (the kernel revokes each grant once the
//! peer lets go), rewrites words of its pages, and sleeps up to a
//! millisecond now and then. One time in 4096 it exits on the spot with
//! its shares live (the kernel ends them at the exit; the scenario starts
//! the next process). Prints what it did.
//!
//! Argument: the peer's domain id in bits 0-15, the seed in bits 16-39,
//! `ms` in bits 40-63.
#![no_std]
#![no_main]

use gnttab::{Gnttab, Notify};
use urt::{PAGE, println};
use utest::rng::Rng;

urt::entry!(main);

/// Shares it keeps at most, and pages in one.
const MAX_SHARES: usize = 16;
const MAX_PAGES: usize = 32;

/// One share: its address here and its page count.
#[derive(Clone, Copy, Default)]
struct Share {
    addr: u64,
    pages: usize,
}

/// What a process did.
#[derive(Default)]
struct Counts {
    shared: u64,
    pages: u64,
    ended: u64,
    refused: u64,
    writes: u64,
}

fn main(arg: u64) -> i32 {
    let peer = (arg & 0xffff) as u16;
    let seed = (arg >> 16) & 0xff_ffff;
    let ms = arg >> 40;
    let Ok(gnt) = Gnttab::open() else {
        println!("chaos: cannot open /dev/xen/gntdev");
        return 1;
    };
    let mut rng = Rng::new(seed);
    let mut shares = [Share::default(); MAX_SHARES];
    let mut n = 0;
    let mut c = Counts::default();
    let end = urt::clock_ns().saturating_add(ms.saturating_mul(1_000_000));
    let mut live_at_exit = false;
    while urt::clock_ns() < end {
        match rng.below(16) {
            0..=5 if n < MAX_SHARES => {
                let pages = 1 + rng.below(MAX_PAGES as u64) as usize;
                let mut refs = [0; MAX_PAGES];
                let notify = rng.chance(4).then_some(Notify {
                    offset: Some(rng.below((pages * PAGE) as u64)),
                    port: None,
                });
                match gnt.share_pages(peer, &mut refs[..pages], rng.chance(2), notify) {
                    Ok(addr) => {
                        shares[n] = Share { addr, pages };
                        n += 1;
                        c.shared += 1;
                        c.pages += pages as u64;
                    }
                    Err(_) => c.refused += 1,
                }
            }
            6..=9 if n > 0 => {
                let i = rng.below(n as u64) as usize;
                let s = shares[i];
                n -= 1;
                shares[i] = shares[n];
                if gnt.unshare(s.addr, s.pages).is_err() {
                    println!("chaos: FAIL: munmap of a share of {} page(s)", s.pages);
                    return 1;
                }
                c.ended += 1;
            }
            10..=12 if n > 0 => {
                let s = shares[rng.below(n as u64) as usize];
                let words = (s.pages * PAGE / 8) as u64;
                let at = (s.addr + rng.below(words) * 8) as *mut u64;
                // SAFETY: a word of one of our shares, mapped read-write
                // until we unshare it.
                unsafe { at.write_volatile(rng.bits()) };
                c.writes += 1;
            }
            13 | 14 => {
                let _ = urt::sleep(rng.below(1_000_000));
            }
            15 if rng.chance(4096) => {
                live_at_exit = true;
                break;
            }
            _ => {
                let _ = urt::yield_now();
            }
        }
    }
    if !live_at_exit {
        for s in &shares[..n] {
            if gnt.unshare(s.addr, s.pages).is_err() {
                println!("chaos: FAIL: munmap of a share of {} page(s)", s.pages);
                return 1;
            }
        }
    }
    println!(
        "chaos: {} share(s) of {} page(s) with domain {peer}, {} ended, {} refused, {} write(s); {}",
        c.shared,
        c.pages,
        c.ended,
        c.refused,
        c.writes,
        if live_at_exit {
            "exiting with its shares live"
        } else {
            "all ended"
        }
    );
    0
}
