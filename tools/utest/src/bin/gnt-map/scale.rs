//! gnt-map's scaling benchmark (mode 13, issue 10): the same fault-heavy
//! work on 1, 2 and 4 threads. Each thread faults its own 4096-page
//! anonymous mapping in (one write per page), unmaps it, then maps the
//! peer's grants once through gntdev (one fault: one populate, one map
//! hypercall), reads a word of every page and unmaps it. Work grows with
//! the threads, so the speed-up of `t` threads is `t * T(1) / T(t)`; each
//! time is the median of `ROUNDS`. Also counted: TLB shootdown IPIs per
//! munmap.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gnttab::Gnttab;
use urt::{PAGE, Thread, mman, println, sysctl};

/// Pages of each thread's anonymous mapping.
const ANON_PAGES: usize = 4096;
/// Rounds per thread count; the median is kept.
const ROUNDS: usize = 3;
/// The thread counts.
const COUNTS: [usize; 3] = [1, 2, 4];

struct Args {
    gnt: *const Gnttab,
    peer: u32,
    refs: *const u32,
    count: usize,
}

static ARGS: AtomicU64 = AtomicU64::new(0);
static READY: AtomicU32 = AtomicU32::new(0);
static GO: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// One thread's work; counts a failure in `FAILED`.
fn work(_: u64) {
    // SAFETY: `scale` keeps the arguments alive until every thread of the
    // round has been joined.
    let a = unsafe { &*(ARGS.load(Ordering::Acquire) as *const Args) };
    // SAFETY: as above.
    let gnt = unsafe { &*a.gnt };
    // SAFETY: `a.refs` has `a.count` entries, alive as above.
    let refs = unsafe { core::slice::from_raw_parts(a.refs, a.count) };
    READY.fetch_add(1, Ordering::AcqRel);
    while GO.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    if !anon() || !grants(gnt, a.peer, refs) {
        FAILED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Faults a new anonymous mapping in page by page and unmaps it.
fn anon() -> bool {
    let len = ANON_PAGES * PAGE;
    let Ok(addr) = urt::mmap(
        0,
        len,
        mman::PROT_READ | mman::PROT_WRITE,
        mman::MAP_PRIVATE | mman::MAP_ANON,
        u64::MAX,
        0,
    ) else {
        return false;
    };
    for p in 0..ANON_PAGES {
        // SAFETY: inside the anonymous mapping just made.
        unsafe { ((addr as usize + p * PAGE) as *mut u64).write_volatile(p as u64) };
    }
    urt::munmap(addr, len).is_ok()
}

/// Maps the peer's grants, reads a word of each page, unmaps them.
fn grants(gnt: &Gnttab, peer: u32, refs: &[u32]) -> bool {
    let Ok(addr) = gnt.map_domain_grant_refs(peer, refs, false) else {
        return false;
    };
    let mut sum = 0u32;
    for p in 0..refs.len() {
        // SAFETY: inside the mapping just made.
        sum ^= unsafe { ((addr as usize + p * PAGE) as *const u32).read_volatile() };
    }
    core::hint::black_box(sum);
    gnt.unmap(addr, refs.len()).is_ok()
}

/// One round on `threads` threads (this one among them); its time in ns.
fn round(threads: usize) -> Result<u64, &'static str> {
    READY.store(0, Ordering::Release);
    GO.store(0, Ordering::Release);
    let mut others = [const { None }; 3];
    for t in others.iter_mut().take(threads - 1) {
        *t = Some(Thread::spawn(work, 0).map_err(|_| "scale thread")?);
    }
    while READY.load(Ordering::Acquire) < threads as u32 - 1 {
        core::hint::spin_loop();
    }
    let t0 = urt::clock_ns();
    GO.store(1, Ordering::Release);
    work(0);
    for t in others.iter_mut().filter_map(Option::take) {
        t.join();
    }
    Ok(urt::clock_ns() - t0)
}

fn stat(key: u64) -> u64 {
    urt::sysctl(key, sysctl::READ_ONLY).unwrap_or(0)
}

/// Runs the benchmark over the peer's grants `refs`.
pub fn scale(gnt: &Gnttab, peer: u32, refs: &[u32]) -> Result<(), &'static str> {
    let args = Args {
        gnt,
        peer,
        refs: refs.as_ptr(),
        count: refs.len(),
    };
    ARGS.store(&args as *const Args as u64, Ordering::Release);
    let ipis0 = stat(sysctl::TLB_SHOOTDOWN_IPIS);
    let mut munmaps = 0;
    let mut median = [0u64; COUNTS.len()];
    for (i, &threads) in COUNTS.iter().enumerate() {
        let mut times = [0u64; ROUNDS];
        for t in times.iter_mut() {
            *t = round(threads)?;
            munmaps += 2 * threads as u64;
        }
        times.sort_unstable();
        median[i] = times[ROUNDS / 2];
    }
    let ipis = stat(sysctl::TLB_SHOOTDOWN_IPIS) - ipis0;
    let failed = FAILED.load(Ordering::Acquire);
    let speedup = |i: usize| COUNTS[i] as u64 * median[0] * 100 / median[i].max(1);
    println!(
        "gnt-map: scale: {} anonymous pages and {} grants per thread: 1 thread {} ms, 2 threads {} ms (speed-up {}.{:02}x), 4 threads {} ms ({}.{:02}x); {} shootdown IPI(s) over {munmaps} munmaps; {failed} failed",
        ANON_PAGES,
        refs.len(),
        median[0] / 1_000_000,
        median[1] / 1_000_000,
        speedup(1) / 100,
        speedup(1) % 100,
        median[2] / 1_000_000,
        speedup(2) / 100,
        speedup(2) % 100,
        ipis
    );
    println!(
        "COUNTERS gnt-map-scale t1_ns={} t2_ns={} t4_ns={} speedup2_pct={} speedup4_pct={} shootdown_ipis={ipis} munmaps={munmaps} failed={failed}",
        median[0],
        median[1],
        median[2],
        speedup(1),
        speedup(2)
    );
    if failed != 0 {
        return Err("a thread's map, touch or unmap failed");
    }
    Ok(())
}
