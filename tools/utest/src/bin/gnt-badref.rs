//! A mapping with grants that were never granted to us, as a broken or
//! hostile peer would publish: four of dom0's references, the third
//! beyond any grant table. `MAP_GRANT_REF` records them (no hypercall);
//! the first touch of the mapping makes the populate's one batched map,
//! which fails; the kernel must undo whatever did map, fail the fault
//! (SIGSEGV, as FreeBSD's `vm_fault_populate`) and tear everything down
//! at exit (the `gntdev-bad` scenario expects status 139 and the baseline
//! back).
#![no_std]
#![no_main]

use gnttab::Gnttab;
use urt::println;

urt::entry!(main);

/// A grant reference beyond any grant table.
const BAD_REF: u32 = 0x7fff_fff0;

fn main(_arg: u64) -> i32 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            println!("gnt-badref: FAIL {e}");
            1
        }
    }
}

fn run() -> Result<(), &'static str> {
    let gnt = Gnttab::open().map_err(|_| "open /dev/xen/gntdev")?;
    let refs = [8, 9, BAD_REF, 10];
    let addr = gnt
        .map_grant_refs(&[0], &refs, false, None)
        .map_err(|_| "map_grant_refs (records only: must succeed)")?;
    println!("gnt-badref: touching a mapping of 4 of dom0's grants never granted to us");
    // SAFETY: word 0 of the mapping; the fault that maps it must fail.
    let v = unsafe { (addr as *const u32).read_volatile() };
    println!("gnt-badref: read {v:#x} through a mapping of bad grants");
    Err("the fault on a mapping of bad grants succeeded")
}
