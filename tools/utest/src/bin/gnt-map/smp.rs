//! gnt-map's SMP modes (5 and 6): threads on one mapping, and stress.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gnttab::Gnttab;
use urt::{PAGE, Thread, mman, println};

/// Threads that touch the mapping together.
pub const THREADS: u32 = 4;
/// Map, touch and unmap cycles of the stress mode, all threads together.
const STRESS_CYCLES: u64 = 10_000;
/// Pages per stress mapping.
const STRESS_PAGES: usize = 16;

static BASE: AtomicU64 = AtomicU64::new(0);
static PAGES: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU32 = AtomicU32::new(0);
static READY: AtomicU32 = AtomicU32::new(0);
static GO: AtomicU32 = AtomicU32::new(0);
static WRONG: AtomicU64 = AtomicU64::new(0);
static UNMAPPED: AtomicU32 = AtomicU32::new(0);

fn word(i: usize) -> u32 {
    // SAFETY: `i` is inside the mapping `BASE` names, which stays mapped
    // until `unmap_under_readers` unmaps it (readers after that fault).
    unsafe { ((BASE.load(Ordering::Acquire) as *const u32).add(i)).read_volatile() }
}

/// Waits until every thread is ready, then lets them all go at once.
fn start_together(started: u32) {
    READY.fetch_add(1, Ordering::AcqRel);
    while READY.load(Ordering::Acquire) < started {
        core::hint::spin_loop();
    }
    while GO.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
}

fn checker(_: u64) {
    start_together(THREADS);
    let n = PAGES.load(Ordering::Acquire) as usize;
    let seed = SEED.load(Ordering::Acquire);
    let mut bad = 0;
    for i in 0..n * 1024 {
        bad += u64::from(word(i) != seed.wrapping_add(i as u32));
    }
    WRONG.fetch_add(bad, Ordering::AcqRel);
}

/// Four threads (this one among them) check every word of the `n`-page
/// mapping at `words`, all starting at once; returns the wrong words.
pub fn touch_together(words: *mut u32, n: usize, seed: u32) -> usize {
    BASE.store(words as u64, Ordering::Release);
    PAGES.store(n as u64, Ordering::Release);
    SEED.store(seed, Ordering::Release);
    let mut others = [const { None }; THREADS as usize - 1];
    for t in others.iter_mut() {
        *t = Thread::spawn(checker, 0).ok();
    }
    if others.iter().any(Option::is_none) {
        println!("gnt-map: FAIL cannot start the threads");
        return usize::MAX / 2;
    }
    GO.store(1, Ordering::Release);
    checker(0);
    for t in others.iter_mut().filter_map(Option::take) {
        t.join();
    }
    WRONG.load(Ordering::Acquire) as usize
}

fn reader(_: u64) {
    let n = PAGES.load(Ordering::Acquire) as usize;
    let mut i = 0;
    loop {
        if UNMAPPED.load(Ordering::Acquire) != 0 {
            // After munmap returned: this read must fault.
            let _ = word(i % (n * 1024));
            println!("gnt-map: FAIL a thread read the mapping after munmap returned");
            urt::exit(1);
        }
        let _ = word(i % (n * 1024));
        i += 1021;
    }
}

/// Unmaps the mapping while three threads keep reading it; does not
/// return when all goes well (a reader's fault kills the process).
pub fn unmap_under_readers(gnt: &Gnttab, addr: u64, n: usize) -> Result<(), &'static str> {
    for _ in 1..THREADS {
        // Never joined: the process ends with them.
        let _reader = Thread::spawn(reader, 0).map_err(|_| "reader thread")?;
    }
    // Let the readers get going on their CPUs.
    let _ = urt::sleep(20_000_000);
    gnt.unmap(addr, n).map_err(|_| "unmap")?;
    UNMAPPED.store(1, Ordering::Release);
    println!("gnt-map: munmap returned with 3 threads reading the mapping");
    let _ = urt::sleep(5_000_000_000);
    Err("no reader faulted after the munmap")
}

struct StressArgs {
    gnt: *const Gnttab,
    peer: u32,
    refs: *const u32,
    count: usize,
}

static STRESS: AtomicU64 = AtomicU64::new(0);
static CYCLES: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

fn stress_worker(t: u64) {
    // SAFETY: `stress` keeps the arguments alive until every worker has
    // been joined.
    let a = unsafe { &*(STRESS.load(Ordering::Acquire) as *const StressArgs) };
    // SAFETY: as above.
    let gnt = unsafe { &*a.gnt };
    // SAFETY: `a.refs` has `a.count` entries, alive as above.
    let refs = unsafe { core::slice::from_raw_parts(a.refs, a.count) };
    let per = STRESS_CYCLES / u64::from(THREADS);
    let first = (t as usize * STRESS_PAGES) % (a.count - STRESS_PAGES + 1);
    let mine = &refs[first..first + STRESS_PAGES];
    for c in 0..per {
        let ok = if c % 2 == 0 {
            match gnt.map_domain_grant_refs(a.peer, mine, false) {
                Ok(addr) => {
                    let mut sum = 0u32;
                    for p in 0..STRESS_PAGES {
                        // SAFETY: inside the mapping just made.
                        sum ^=
                            unsafe { ((addr as usize + p * PAGE) as *const u32).read_volatile() };
                    }
                    core::hint::black_box(sum);
                    gnt.unmap(addr, STRESS_PAGES).is_ok()
                }
                Err(_) => false,
            }
        } else {
            let len = STRESS_PAGES * PAGE;
            match urt::mmap(
                0,
                len,
                mman::PROT_READ | mman::PROT_WRITE,
                mman::MAP_PRIVATE | mman::MAP_ANON,
                u64::MAX,
                0,
            ) {
                Ok(addr) => {
                    let mut good = true;
                    for p in 0..STRESS_PAGES {
                        let w = (addr as usize + p * PAGE) as *mut u64;
                        // SAFETY: inside the anonymous mapping just made.
                        unsafe { w.write_volatile(c ^ p as u64) };
                        // SAFETY: as above.
                        good &= unsafe { w.read_volatile() } == c ^ p as u64;
                    }
                    urt::munmap(addr, len).is_ok() && good
                }
                Err(_) => false,
            }
        };
        CYCLES.fetch_add(1, Ordering::Relaxed);
        if !ok {
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs the stress cycles on four threads (this one among them).
pub fn stress(gnt: &Gnttab, peer: u32, refs: &[u32]) -> Result<(), &'static str> {
    if refs.len() < STRESS_PAGES {
        return Err("the stress mode needs 16 grants");
    }
    let args = StressArgs {
        gnt,
        peer,
        refs: refs.as_ptr(),
        count: refs.len(),
    };
    STRESS.store(&args as *const StressArgs as u64, Ordering::Release);
    let t0 = urt::clock_ns();
    let mut others = [const { None }; THREADS as usize - 1];
    for (i, t) in others.iter_mut().enumerate() {
        *t = Some(Thread::spawn(stress_worker, i as u64 + 1).map_err(|_| "stress thread")?);
    }
    stress_worker(0);
    for t in others.iter_mut().filter_map(Option::take) {
        t.join();
    }
    let ms = (urt::clock_ns() - t0) / 1_000_000;
    let (cycles, failed) = (
        CYCLES.load(Ordering::Acquire),
        FAILED.load(Ordering::Acquire),
    );
    println!(
        "gnt-map: stress: {cycles} map/touch/unmap cycles ({} gntdev, {} anonymous) on {THREADS} threads in {ms} ms, {failed} failed",
        cycles.div_ceil(2),
        cycles / 2
    );
    if failed != 0 || cycles != STRESS_CYCLES {
        return Err("stress cycles failed");
    }
    Ok(())
}
