//! The populate benchmark: a shared mapping of 1024 pages of a phys-pager
//! object touched end to end takes 1 page fault with populate, 1024 with
//! it switched off.
#![no_std]
#![no_main]

use urt::{PAGE, check, println, sysctl};

urt::entry!(main);

const PAGES: usize = 1024;

fn stat(key: u64) -> u64 {
    urt::sysctl(key, sysctl::READ_ONLY).unwrap_or(u64::MAX)
}

/// Page-table entries the kernel wrote through Xen, and the calls (PV;
/// both 0 under PVH).
fn mmu() -> (u64, u64) {
    (stat(sysctl::PV_MMU_UPDATES), stat(sysctl::PV_MMU_CALLS))
}

/// The change of [`mmu`] since `from`.
fn since(from: (u64, u64)) -> (u64, u64) {
    let now = mmu();
    (now.0 - from.0, now.1 - from.1)
}

/// What [`touch_all`] measured.
struct Touched {
    /// Page faults of the writes.
    faults: u64,
    /// PV page-table writes and calls of the writes.
    populated: (u64, u64),
    /// PV page-table writes and calls of the unmap.
    unmapped: (u64, u64),
}

/// Maps a fresh 1024-page object, writes every page, reads it back and
/// unmaps it.
fn touch_all() -> Result<Touched, &'static str> {
    let obj = utest::physobj::PhysObj::map(PAGES)?;
    let base = obj.addr;
    let m0 = mmu();
    let before = stat(sysctl::PROC_FAULTS);
    for i in 0..PAGES {
        // SAFETY: inside the mapping, read-write.
        unsafe { ((base as usize + i * PAGE) as *mut u64).write_volatile(i as u64) };
    }
    let faults = stat(sysctl::PROC_FAULTS) - before;
    let touched = since(m0);
    for i in 0..PAGES {
        // SAFETY: as above.
        if unsafe { ((base as usize + i * PAGE) as *const u64).read_volatile() } != i as u64 {
            return Err("a page lost its word");
        }
    }
    let m1 = mmu();
    obj.close()?;
    Ok(Touched {
        faults,
        populated: touched,
        unmapped: since(m1),
    })
}

fn main(_arg: u64) -> i32 {
    let large0 = stat(sysctl::PMAP_LARGE);
    let (inv0, full0) = (stat(sysctl::TLB_INVLPG), stat(sysctl::TLB_FULL));
    check!(
        urt::sysctl(sysctl::VM_POPULATE, 1).is_ok(),
        "enable populate"
    );
    let Touched {
        faults: with,
        populated,
        unmapped,
    } = match touch_all() {
        Ok(n) => n,
        Err(e) => {
            println!("populate: {e}");
            return 1;
        }
    };
    check!(
        urt::sysctl(sysctl::VM_POPULATE, 0).is_ok(),
        "disable populate"
    );
    let without = touch_all();
    let _ = urt::sysctl(sysctl::VM_POPULATE, 1);
    let without = match without {
        Ok(t) => t.faults,
        Err(e) => {
            println!("populate: {e}");
            return 1;
        }
    };
    println!(
        "populate: {PAGES} pages touched end to end: {with} page fault(s) with populate, {without} without"
    );
    println!(
        "populate: 2 MiB mappings {}, TLB: {} invlpg, {} full flushes",
        stat(sysctl::PMAP_LARGE) - large0,
        stat(sysctl::TLB_INVLPG) - inv0,
        stat(sysctl::TLB_FULL) - full0
    );
    if populated.1 != 0 {
        // PV: what the populate fault and the munmap cost in hypercalls.
        println!(
            "populate: PV page-table writes: the populate {} in {} mmu_update call(s), the munmap {} in {}",
            populated.0, populated.1, unmapped.0, unmapped.1
        );
        println!(
            "COUNTERS populate pv_populate_per_call={} pv_munmap_per_call={}",
            populated.0 / populated.1,
            unmapped.0.checked_div(unmapped.1).unwrap_or(0)
        );
    }
    check!(with == 1, "expected 1 fault with populate");
    check!(
        without == PAGES as u64,
        "expected {PAGES} faults without populate"
    );
    0
}
