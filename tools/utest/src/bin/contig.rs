//! `contig-reclaim`: a 2 MiB contiguous run made by moving this process's
//! own pages away while a thread of it reads and writes them.
//!
//! It fills almost all free memory with the pages of two anonymous
//! mappings, touched in turn so that their pages alternate in RAM (each
//! kept page's first and last words hold its index), then unmaps the
//! second mapping: every 2 MiB stretch of RAM now holds pages in use, so
//! no free 2 MiB run is left, but half of that memory is free again. A thread then walks the
//! pages it kept, checking and rewriting both words, while the main thread
//! touches a fresh 2 MiB mapping of `/dev/physobj`: its populate wants one
//! contiguous 2 MiB run for a superpage entry, and contiguous reclaim
//! (`vm/src/reclaim.rs`) makes one by moving pages (ours) out of a
//! candidate run. Passes when the kernel moved pages to do it
//! (`VM_RECLAIM_PAGES`), the mapping got its 2 MiB entry, and no word the
//! thread or the final check read was wrong.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use urt::{PAGE, Thread, println, sysctl};

urt::entry!(main);

/// Free pages left untouched: fewer than a 2 MiB run (512), so none of
/// them can form one, and enough for page tables and the thread's stack.
const SLACK: u64 = 384;
/// Pages of the `/dev/physobj` mapping: one 2 MiB run.
const RUN: usize = 512;
/// Words per page.
const WORDS: usize = PAGE / 8;

/// The kept pages (the first mapping), as the thread sees them: base
/// address and page count.
static BASE: AtomicU64 = AtomicU64::new(0);
static PAGES: AtomicU64 = AtomicU64::new(0);
/// Set by the main thread once the run is made: the walker stops.
static STOP: AtomicBool = AtomicBool::new(false);
/// Words the walker checked, and how many were wrong.
static CHECKED: AtomicU64 = AtomicU64::new(0);
static WRONG: AtomicU64 = AtomicU64::new(0);

fn stat(key: u64) -> u64 {
    urt::sysctl(key, sysctl::READ_ONLY).unwrap_or(0)
}

/// The two words of kept page `i`.
fn words(i: u64) -> [*mut u64; 2] {
    let page = BASE.load(Ordering::Relaxed) + i * PAGE as u64;
    [page as *mut u64, (page as *mut u64).wrapping_add(WORDS - 1)]
}

/// Checks both words of every kept page: returns how many were wrong.
fn check_all(rewrite: bool) -> u64 {
    let mut wrong = 0;
    for i in 0..PAGES.load(Ordering::Relaxed) {
        let want = i;
        for w in words(i) {
            // SAFETY: a word of a kept page of our own read-write mapping.
            let v = unsafe { w.read_volatile() };
            if v != want {
                wrong += 1;
            }
            if rewrite {
                // SAFETY: as above.
                unsafe { w.write_volatile(want) };
            }
        }
        CHECKED.fetch_add(2, Ordering::Relaxed);
    }
    wrong
}

/// The walker thread: checks and rewrites the kept pages until stopped.
fn walker(_: u64) {
    while !STOP.load(Ordering::Acquire) {
        WRONG.fetch_add(check_all(true), Ordering::Relaxed);
    }
}

fn main(_: u64) -> i32 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            println!("contig: FAIL {e}");
            1
        }
    }
}

fn run() -> Result<(), &'static str> {
    let free = stat(sysctl::VM_FREE_PAGES);
    if free < SLACK + 2 * RUN as u64 {
        return Err("too little free memory");
    }
    let n = (free - SLACK) / 2;
    let len = n as usize * PAGE;
    let map = || {
        urt::mmap(
            0,
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANON,
            u64::MAX,
            0,
        )
        .map_err(|_| "mmap of the anonymous pages")
    };
    let (base, other) = (map()?, map()?);
    for p in 0..n {
        for (m, v) in [(base, p), (other, !p)] {
            let page = (m + p * PAGE as u64) as *mut u64;
            // SAFETY: the first and last words of a page of our mapping.
            unsafe {
                page.write_volatile(v);
                page.wrapping_add(WORDS - 1).write_volatile(v);
            }
        }
    }
    urt::munmap(other, len).map_err(|_| "munmap of the second mapping")?;
    BASE.store(base, Ordering::Relaxed);
    PAGES.store(n, Ordering::Relaxed);
    let free_after = stat(sysctl::VM_FREE_PAGES);
    let (moved0, passes0) = (
        stat(sysctl::VM_RECLAIM_PAGES),
        stat(sysctl::VM_RECLAIM_PASSES),
    );

    let thread = Thread::spawn(walker, 0).map_err(|_| "thread")?;
    // Let the walker start before the run is wanted.
    while CHECKED.load(Ordering::Relaxed) == 0 {
        let _ = urt::yield_now();
    }
    let obj = utest::physobj::PhysObj::map(RUN)?;
    let run = obj.addr;
    let large0 = stat(sysctl::PROC_LARGE_ENTRIES);
    // SAFETY: the first word of our read-write mapping of the object.
    unsafe { (run as *mut u64).write_volatile(0x5eed) };
    let large = stat(sysctl::PROC_LARGE_ENTRIES) - large0;
    STOP.store(true, Ordering::Release);
    thread.join();
    let (moved, passes) = (
        stat(sysctl::VM_RECLAIM_PAGES) - moved0,
        stat(sysctl::VM_RECLAIM_PASSES) - passes0,
    );
    let wrong = WRONG.load(Ordering::Relaxed) + check_all(false);
    println!(
        "contig: {} pages filled in turn from two mappings, the second unmapped ({free} -> {free_after} free); a 2 MiB run by reclaim: {moved} page(s) moved in {passes} pass(es), {large} 2 MiB entry; the walker checked {} words meanwhile, {wrong} wrong",
        2 * n,
        CHECKED.load(Ordering::Relaxed)
    );
    obj.close()?;
    let _ = urt::munmap(base, len);
    if wrong != 0 {
        return Err("a page moved under the walker read wrong");
    }
    if moved == 0 || passes == 0 {
        return Err("no page was moved: a free 2 MiB run was left, or reclaim did not run");
    }
    if large != 1 {
        return Err("the physobj mapping has no 2 MiB entry");
    }
    Ok(())
}
