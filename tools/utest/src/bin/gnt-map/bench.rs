//! Mode 12, the benchmark of `scripts/bench` (`docs/benchmarks.md`): before
//! the usual check, this process times the peer's grants three ways and
//! prints one `BENCH` line per round, which the host's `benchplot` reads:
//! - `BENCH clock`: the time source, the pvclock behind `clock()`: its TSC
//!   frequency, the cost of one read and the smallest step seen;
//! - `BENCH map`: for each N of [`SWEEP`] up to the share's size, map the
//!   first N grants (libxengnttab's `map_domain_grant_refs` shape), read
//!   one word of every page, unmap: once with populate and 2 MiB entries
//!   (`vm.populate` = 1), once with one fault per page (`vm.populate` =
//!   0, FreeBSD's way); with the hypercalls, the faults of the mapping,
//!   the page-table entries it used and the ns the kernel spent inside the
//!   map and unmap hypercalls;
//! - `BENCH transfer`: the first `transfer` pages copied into a buffer of
//!   ours through a mapping of them (map, copy, unmap), with `GRANT_COPY`,
//!   and the same bytes copied between two buffers of ours (`memcpy`).
//!
//! Rounds and the transfer's size come from our xenstore home
//! (`data/bench/rounds`, `data/bench/transfer-pages`; 5 and 16384 pages,
//! 64 MiB, when absent), written by the script that starts us.

use gnttab::abi::{CopySideArg, GNTCOPY_SOURCE_GREF, GrantCopySegment};
use gnttab::xs::Xs;
use gnttab::{Buf, Gnttab};
use urt::{PAGE, println, sysctl};

use super::stat;

/// The sizes of the map sweep, in grants.
const SWEEP: [usize; 7] = [1, 16, 256, 1024, 4096, 16384, 65536];
/// Clock reads per round of the clock figure.
const CLOCK_READS: u64 = 1000;

/// The benchmark against `peer`'s grants `refs` (the pattern of
/// `gnt-share` from `seed`).
pub fn run(
    xs: &mut Xs,
    gnt: &Gnttab,
    peer: u32,
    refs: &[u32],
    seed: u32,
) -> Result<(), &'static str> {
    let rounds = xs.read_u64("data/bench/rounds").unwrap_or(5);
    let transfer = xs
        .read_u64("data/bench/transfer-pages")
        .unwrap_or(16384)
        .min(refs.len() as u64) as usize;
    if rounds == 0 {
        return Err("data/bench/rounds is 0");
    }
    clock(rounds);
    // The two ways take turns in every round, so that both see the same
    // conditions.
    for &n in SWEEP.iter().filter(|&&n| n <= refs.len()) {
        for round in 0..rounds {
            for (way, populate) in [("populate", 1), ("per-page", 0)] {
                urt::sysctl(sysctl::VM_POPULATE, populate).map_err(|_| "set vm.populate")?;
                let s = map_round(gnt, peer, &refs[..n]);
                if s.is_err() {
                    let _ = urt::sysctl(sysctl::VM_POPULATE, 1);
                }
                let s = s?;
                println!(
                    "BENCH map way={way} n={n} round={round} ns={} map_hypercalls={} unmap_hypercalls={} faults={} ptes={} large={} hypercall_ns={}",
                    s.ns, s.map_calls, s.unmap_calls, s.faults, s.ptes, s.large, s.hypercall_ns
                );
            }
        }
    }
    urt::sysctl(sysctl::VM_POPULATE, 1).map_err(|_| "set vm.populate")?;
    transfer_rounds(gnt, peer, &refs[..transfer], seed, rounds)
}

/// The time source: the TSC frequency of the pvclock's scale, and per
/// round the mean cost of a `clock()` read and the smallest non-zero step
/// between two reads.
fn clock(rounds: u64) {
    let hz = stat(sysctl::CLOCK_TSC_HZ);
    for round in 0..rounds {
        let t0 = urt::clock_ns();
        let (mut last, mut step) = (t0, u64::MAX);
        for _ in 0..CLOCK_READS {
            let t = urt::clock_ns();
            if t > last {
                step = step.min(t - last);
            }
            last = t;
        }
        println!(
            "BENCH clock round={round} tsc_hz={hz} read_ns={} step_ns={step}",
            (last - t0) / CLOCK_READS
        );
    }
}

/// One map + touch + unmap of a map sweep.
struct MapSample {
    /// ns of the map, the touches and the unmap (counter reads left out).
    ns: u64,
    map_calls: u64,
    unmap_calls: u64,
    /// Faults the mapping took (pager populates and single-page faults).
    faults: u64,
    /// Leaf page-table entries it stood in, and how many were 2 MiB ones.
    ptes: u64,
    large: u64,
    /// ns inside the map and unmap hypercalls.
    hypercall_ns: u64,
}

/// The kernel's counters a [`MapSample`] is the difference of.
#[derive(Clone, Copy)]
struct Counters {
    map_calls: u64,
    unmap_calls: u64,
    faults: u64,
    ptes: u64,
    large: u64,
    hypercall_ns: u64,
}

impl Counters {
    fn now() -> Self {
        Self {
            map_calls: stat(sysctl::GNTDEV_MAP_HYPERCALLS),
            unmap_calls: stat(sysctl::GNTDEV_UNMAP_HYPERCALLS),
            faults: stat(sysctl::GNTDEV_POPULATES) + stat(sysctl::GNTDEV_FAULTS),
            ptes: stat(sysctl::PROC_LEAF_ENTRIES),
            large: stat(sysctl::PROC_LARGE_ENTRIES),
            hypercall_ns: stat(sysctl::GRANT_MAP_NS) + stat(sysctl::GRANT_UNMAP_NS),
        }
    }
}

/// Maps `refs` writable, reads word 0 of every page, unmaps them.
fn map_round(gnt: &Gnttab, peer: u32, refs: &[u32]) -> Result<MapSample, &'static str> {
    let n = refs.len();
    let c0 = Counters::now();
    let t0 = urt::clock_ns();
    let addr = gnt
        .map_grant_refs(&[peer], refs, true, None)
        .map_err(|_| "map_grant_refs")?;
    let words = addr as *const u32;
    let mut sum = 0u32;
    for i in 0..n {
        // SAFETY: word 0 of page `i` of the mapping of `n` pages.
        sum = sum.wrapping_add(unsafe { words.add(i * 1024).read_volatile() });
    }
    let t1 = urt::clock_ns();
    let mapped = Counters::now();
    let t2 = urt::clock_ns();
    gnt.unmap(addr, n).map_err(|_| "unmap")?;
    let t3 = urt::clock_ns();
    let c = Counters::now();
    core::hint::black_box(sum);
    Ok(MapSample {
        ns: (t1 - t0) + (t3 - t2),
        map_calls: c.map_calls - c0.map_calls,
        unmap_calls: c.unmap_calls - c0.unmap_calls,
        faults: c.faults - c0.faults,
        ptes: mapped.ptes - c0.ptes,
        large: mapped.large - c0.large,
        hypercall_ns: c.hypercall_ns - c0.hypercall_ns,
    })
}

/// The transfer of `refs.len()` pages of the peer's into a buffer of
/// ours, three ways, `rounds` times each: through a mapping (`mapped`:
/// map, copy, unmap; `copy_ns` the copy alone, once the first read has
/// mapped the grants), with `GRANT_COPY`
/// (`grant-copy`), and between two buffers of ours (`memcpy`). Each
/// way's result is checked against the pattern.
fn transfer_rounds(
    gnt: &Gnttab,
    peer: u32,
    refs: &[u32],
    seed: u32,
    rounds: u64,
) -> Result<(), &'static str> {
    let n = refs.len();
    let bytes = n * PAGE;
    let mut dst = Buf::<u8>::new(bytes).map_err(|_| "transfer buffer")?;
    let mut src = Buf::<u8>::new(bytes).map_err(|_| "transfer buffer")?;
    let words = |b: &mut Buf<u8>| b.addr() as *mut u32;
    // Our copy of the peer's pattern, and every page of both buffers
    // touched before any round.
    for i in 0..n * 1024 {
        // SAFETY: word `i` of the `bytes` of `src`.
        unsafe {
            words(&mut src)
                .add(i)
                .write_volatile(seed.wrapping_add(i as u32))
        };
    }
    dst.values().fill(0);
    let check = |b: &mut Buf<u8>| {
        (0..n).all(|i| {
            let k = i * 1024 + 7;
            // SAFETY: word `k` of the `bytes` of `b`.
            unsafe { words(b).add(k).read_volatile() == seed.wrapping_add(k as u32) }
        })
    };
    let mut segs = Buf::<GrantCopySegment>::new(n).map_err(|_| "segments buffer")?;
    for round in 0..rounds {
        dst.values().fill(0);
        let t0 = urt::clock_ns();
        let addr = gnt
            .map_grant_refs(&[peer], refs, false, None)
            .map_err(|_| "map_grant_refs")?;
        // The first read faults and maps every grant (populate): the copy
        // alone starts after it.
        // SAFETY: word 0 of the mapping's first page.
        core::hint::black_box(unsafe { (addr as *const u32).read_volatile() });
        let t1 = urt::clock_ns();
        // SAFETY: the mapping holds `bytes` readable bytes, `dst` is ours
        // and as long; they do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, dst.addr() as *mut u8, bytes) };
        let t2 = urt::clock_ns();
        gnt.unmap(addr, n).map_err(|_| "unmap")?;
        let t3 = urt::clock_ns();
        if !check(&mut dst) {
            return Err("the copy through the mapping read wrong words");
        }
        println!(
            "BENCH transfer way=mapped round={round} bytes={bytes} ns={} copy_ns={}",
            t3 - t0,
            t2 - t1
        );

        dst.values().fill(0);
        for (i, s) in segs.values().iter_mut().enumerate() {
            *s = GrantCopySegment {
                source: CopySideArg::Foreign {
                    gref: refs[i],
                    offset: 0,
                    domid: peer as u16,
                }
                .encode(),
                dest: dst.addr() + (i * PAGE) as u64,
                len: PAGE as u16,
                flags: GNTCOPY_SOURCE_GREF,
                status: 1,
            };
        }
        let h0 = stat(sysctl::GRANT_HYPERCALLS);
        let t0 = urt::clock_ns();
        gnt.grant_copy(segs.values()).map_err(|_| "GRANT_COPY")?;
        let t1 = urt::clock_ns();
        let hypercalls = stat(sysctl::GRANT_HYPERCALLS) - h0;
        if segs.values().iter().any(|s| s.status != 0) || !check(&mut dst) {
            return Err("GRANT_COPY failed or read wrong words");
        }
        println!(
            "BENCH transfer way=grant-copy round={round} bytes={bytes} ns={} hypercalls={hypercalls}",
            t1 - t0
        );

        dst.values().fill(0);
        let t0 = urt::clock_ns();
        // SAFETY: two buffers of ours, `bytes` long each, apart.
        unsafe {
            core::ptr::copy_nonoverlapping(src.addr() as *const u8, dst.addr() as *mut u8, bytes)
        };
        let t1 = urt::clock_ns();
        if !check(&mut dst) {
            return Err("memcpy copied wrong words");
        }
        println!(
            "BENCH transfer way=memcpy round={round} bytes={bytes} ns={}",
            t1 - t0
        );
    }
    Ok(())
}
