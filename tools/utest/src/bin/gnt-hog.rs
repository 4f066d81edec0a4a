//! A process that maps without end: it allocates 256 granted pages
//! through gntdev (`ALLOC_GREF`, granted to dom0, never deallocated) and
//! maps that region again and again, touching every mapping (each adds 256
//! entries to the pmap's mapping lists, kernel heap). The kernel must
//! refuse before its heap runs out: `mmap` fails with `ENOMEM` (this
//! program then exits 0) or a fault of the process fails and kills it
//! (status 139); either way the kernel lives and everything comes back
//! (the `gntdev-bad` scenario checks the baseline).
#![no_std]
#![no_main]

use gnttab::abi::{AllocGref, IOCTL_GNTDEV_ALLOC_GREF};
use gnttab::{Buf, Gnttab};
use urt::mman::{MAP_SHARED, PROT_READ};
use urt::{PAGE, println};

urt::entry!(main);

/// Pages of the region.
const PAGES: usize = 256;
/// Mappings at most (far more than the heap of a 32 MiB domain holds).
const MAX_MAPPINGS: usize = 100_000;

fn main(_arg: u64) -> i32 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            println!("gnt-hog: FAIL {e}");
            1
        }
    }
}

fn run() -> Result<(), &'static str> {
    let gnt = Gnttab::open().map_err(|_| "open /dev/xen/gntdev")?;
    let ids = Buf::<u32>::new(PAGES).map_err(|_| "ids buffer")?;
    let mut a = AllocGref {
        domid: 0,
        flags: 0,
        count: PAGES as u32,
        index: 0,
        gref_ids: ids.addr(),
    };
    urt::ioctl(
        gnt.fd(),
        IOCTL_GNTDEV_ALLOC_GREF,
        &mut a as *mut AllocGref as u64,
    )
    .map_err(|_| "ALLOC_GREF")?;
    println!("gnt-hog: mapping {PAGES} pages again and again, touching each mapping");
    let mut sum = 0u32;
    for n in 0..MAX_MAPPINGS {
        let addr = match urt::mmap(0, PAGES * PAGE, PROT_READ, MAP_SHARED, gnt.fd(), a.index) {
            Ok(a) => a,
            Err(urt::errno::ENOMEM) => {
                println!("gnt-hog: mmap refused (ENOMEM) after {n} mappings");
                return Ok(());
            }
            Err(_) => return Err("mmap failed, but not with ENOMEM"),
        };
        if n % 128 == 0 {
            println!("gnt-hog: {n} mappings");
        }
        for i in 0..PAGES {
            // SAFETY: inside the mapping; a refused fault kills us.
            sum = sum.wrapping_add(unsafe {
                ((addr as usize + i * PAGE) as *const u32).read_volatile()
            });
        }
    }
    println!("gnt-hog: {MAX_MAPPINGS} mappings and never refused (sum {sum:#x})");
    Err("the kernel never refused")
}
