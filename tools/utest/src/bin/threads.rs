//! `smp-threads`: four threads of one process fault the same anonymous
//! region (4096 pages) at the same moment, each writing its own word of
//! every page, then each checks every word of every page; then bad thread
//! and futex calls, and the thread limit; then the fault benchmark: 1, 2
//! and 4 threads each faulting 1024 anonymous pages of its own, and the
//! speed-up of 2 and 4 over 1 (pages faulted per second).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use urt::{Thread, errno, mman, sysctl};

urt::entry!(main);

const THREADS: u32 = 4;
const PAGES: u64 = 4096;
const WORDS: u64 = 1024;

static REGION: AtomicU64 = AtomicU64::new(0);
static READY: AtomicU32 = AtomicU32::new(0);
static GO: AtomicU32 = AtomicU32::new(0);
static WRITTEN: AtomicU32 = AtomicU32::new(0);
static WRONG: AtomicU64 = AtomicU64::new(0);
/// Word the limit test's threads wait on.
static PARK: AtomicU32 = AtomicU32::new(0);

fn tag(page: u64, t: u64) -> u32 {
    (page as u32) << 8 | (t as u32 + 1)
}

fn word(i: u64) -> &'static AtomicU32 {
    // SAFETY: `i` < PAGES * WORDS, inside the region `main` mapped for the
    // threads' whole life; every access is atomic.
    unsafe { &*((REGION.load(Ordering::Acquire) + i * 4) as *const AtomicU32) }
}

fn worker(t: u64) {
    READY.fetch_add(1, Ordering::AcqRel);
    while GO.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    for page in 0..PAGES {
        word(page * WORDS + t).store(tag(page, t), Ordering::Relaxed);
    }
    WRITTEN.fetch_add(1, Ordering::AcqRel);
    while WRITTEN.load(Ordering::Acquire) < THREADS {
        core::hint::spin_loop();
    }
    let mut wrong = 0;
    for page in 0..PAGES {
        for w in 0..WORDS {
            let want = if w < u64::from(THREADS) {
                tag(page, w)
            } else {
                0
            };
            wrong += u64::from(word(page * WORDS + w).load(Ordering::Relaxed) != want);
        }
    }
    WRONG.fetch_add(wrong, Ordering::AcqRel);
}

/// Pages each benchmark thread faults.
const BENCH_PAGES: u64 = 1024;
static BENCH_GO: AtomicU32 = AtomicU32::new(0);
static BENCH_READY: AtomicU32 = AtomicU32::new(0);

/// Faults `BENCH_PAGES` anonymous pages of its own, after the start.
fn bench_worker(_: u64) {
    let len = (BENCH_PAGES * WORDS * 4) as usize;
    let Ok(at) = urt::mmap(
        0,
        len,
        mman::PROT_READ | mman::PROT_WRITE,
        mman::MAP_PRIVATE | mman::MAP_ANON,
        u64::MAX,
        0,
    ) else {
        WRONG.fetch_add(1, Ordering::AcqRel);
        return;
    };
    BENCH_READY.fetch_add(1, Ordering::AcqRel);
    while BENCH_GO.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    for p in 0..BENCH_PAGES {
        // SAFETY: inside the mapping just made, used by this thread alone.
        unsafe { ((at + p * WORDS * 4) as *mut u64).write_volatile(p) };
    }
    let _ = urt::munmap(at, len);
}

/// Nanoseconds for `n` threads to fault their pages, all started at once.
fn bench(n: u32) -> u64 {
    BENCH_GO.store(0, Ordering::Release);
    BENCH_READY.store(0, Ordering::Release);
    let mut ts: [Option<Thread>; THREADS as usize] = [const { None }; THREADS as usize];
    for slot in ts.iter_mut().take(n as usize) {
        *slot = Thread::spawn(bench_worker, 0).ok();
    }
    while BENCH_READY.load(Ordering::Acquire) < n {
        let _ = urt::yield_now();
    }
    let t0 = urt::clock_ns();
    BENCH_GO.store(1, Ordering::Release);
    for th in ts.iter_mut().filter_map(Option::take) {
        th.join();
    }
    urt::clock_ns() - t0
}

fn parked(_: u64) {
    while PARK.load(Ordering::Acquire) == 0 {
        let _ = urt::futex_wait(&PARK, 0, 0);
    }
}

fn main(_arg: u64) -> i32 {
    let len = (PAGES * WORDS * 4) as usize;
    let Ok(region) = urt::mmap(
        0,
        len,
        mman::PROT_READ | mman::PROT_WRITE,
        mman::MAP_PRIVATE | mman::MAP_ANON,
        u64::MAX,
        0,
    ) else {
        urt::println!("threads: mmap failed");
        return 1;
    };
    REGION.store(region, Ordering::Release);
    let faults0 = urt::sysctl(sysctl::PROC_FAULTS, sysctl::READ_ONLY).unwrap_or(0);
    let mut ts: [Option<Thread>; THREADS as usize] = [const { None }; THREADS as usize];
    for (t, slot) in ts.iter_mut().enumerate() {
        match Thread::spawn(worker, t as u64) {
            Ok(th) => *slot = Some(th),
            Err(e) => {
                urt::println!("threads: spawn {t}: errno {e}");
                return 1;
            }
        }
    }
    while READY.load(Ordering::Acquire) < THREADS {
        let _ = urt::yield_now();
    }
    let t0 = urt::clock_ns();
    GO.store(1, Ordering::Release);
    for th in ts.iter_mut().filter_map(Option::take) {
        th.join();
    }
    let ms = (urt::clock_ns() - t0) / 1_000_000;
    let faults = urt::sysctl(sysctl::PROC_FAULTS, sysctl::READ_ONLY).unwrap_or(0) - faults0;
    let wrong = WRONG.load(Ordering::Acquire);
    urt::println!(
        "threads: {THREADS} threads faulted {PAGES} shared pages at once in {ms} ms: {faults} faults, {wrong} wrong words"
    );
    urt::check!(wrong == 0, "{wrong} wrong words");
    urt::check!(urt::munmap(region, len).is_ok(), "munmap");

    // Bad input.
    let stack = [0u64; 4];
    let top = (stack.as_ptr() as u64 + 32) & !15;
    let bad = [
        ("entry 0", urt::thread_create(0, top, 0, 0), errno::EFAULT),
        (
            "kernel entry",
            urt::thread_create(0x1000, top, 0, 0),
            errno::EFAULT,
        ),
        (
            "stack 0",
            urt::thread_create(parked as *const () as u64, 0, 0, 0),
            errno::EFAULT,
        ),
        (
            "misaligned stack",
            urt::thread_create(parked as *const () as u64, top - 8, 0, 0),
            errno::EINVAL,
        ),
        (
            "misaligned exit word",
            urt::thread_create(parked as *const () as u64, top, 0, top + 1),
            errno::EINVAL,
        ),
        (
            "futex on an unmapped word",
            urt::futex_wait_at(0x90_0000_0000, 0, 0),
            errno::EFAULT,
        ),
        (
            "futex on a kernel word",
            urt::futex_wait_at(0x1000, 0, 0),
            errno::EFAULT,
        ),
        (
            "futex value changed",
            urt::futex_wait(&PARK, 7, 0),
            errno::EAGAIN,
        ),
        (
            "futex timeout",
            urt::futex_wait(&PARK, 0, 5_000_000),
            errno::ETIMEDOUT,
        ),
    ];
    for (what, r, want) in bad {
        urt::check!(r == Err(want), "{what}: {r:?}, wanted errno {want}");
    }
    // The limit: this thread and 63 others, then EAGAIN.
    let mut parkers: [Option<Thread>; 64] = [const { None }; 64];
    let mut made = 0;
    let mut refused = None;
    for slot in parkers.iter_mut() {
        match Thread::spawn(parked, 0) {
            Ok(th) => {
                *slot = Some(th);
                made += 1;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    PARK.store(1, Ordering::Release);
    let _ = urt::futex_wake(&PARK, u64::MAX);
    for th in parkers.iter_mut().filter_map(Option::take) {
        th.join();
    }
    urt::println!("threads: {made} more threads made, then {refused:?}; bad calls refused");
    urt::check!(made == 63 && refused == Some(errno::EAGAIN), "thread limit");

    // The benchmark (a figure, not a check: the emulated host's CPUs set it).
    let cpus = urt::sysctl(sysctl::SMP_CPUS, sysctl::READ_ONLY).unwrap_or(1);
    let rate = |n: u32, ns: u64| u64::from(n) * BENCH_PAGES * 1_000_000_000 / ns.max(1);
    let counter = |key| urt::sysctl(key, sysctl::READ_ONLY).unwrap_or(0);
    let (t1, t2) = (bench(1), bench(2));
    // Each thread of the last run unmaps its region once, while the
    // others may still run on other CPUs: the shootdowns that cost.
    let (sd0, ipi0) = (
        counter(sysctl::TLB_SHOOTDOWNS),
        counter(sysctl::TLB_SHOOTDOWN_IPIS),
    );
    let t4 = bench(4);
    let (sd, ipi) = (
        counter(sysctl::TLB_SHOOTDOWNS) - sd0,
        counter(sysctl::TLB_SHOOTDOWN_IPIS) - ipi0,
    );
    let (r1, r2, r4) = (rate(1, t1), rate(2, t2), rate(4, t4));
    urt::println!(
        "threads: fault benchmark on {cpus} vCPUs, {BENCH_PAGES} pages per thread: 1 thread {r1} pages/s, 2 threads {r2} pages/s ({}.{:02}x), 4 threads {r4} pages/s ({}.{:02}x); 4 munmaps of the last run: {sd} shootdown(s), {ipi} IPI(s)",
        r2 / r1.max(1),
        r2 * 100 / r1.max(1) % 100,
        r4 / r1.max(1),
        r4 * 100 / r1.max(1) % 100
    );
    urt::check!(
        WRONG.load(Ordering::Acquire) == 0,
        "a benchmark mmap failed"
    );
    0
}
