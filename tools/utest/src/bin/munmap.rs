//! Partial munmap: the pages left stay usable; touching an unmapped one
//! kills the process (the scenario expects status 139).
#![no_std]
#![no_main]

use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use urt::{PAGE, check, println};

urt::entry!(main);

fn main(_arg: u64) -> i32 {
    let Ok(base) = urt::mmap(
        0,
        8 * PAGE,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANON,
        u64::MAX,
        0,
    ) else {
        println!("munmap: mmap failed");
        return 1;
    };
    let page = |i: u64| (base + i * PAGE as u64) as *mut u64;
    for i in 0..8 {
        // SAFETY: inside the mapping.
        unsafe { page(i).write_volatile(i) };
    }
    check!(
        urt::munmap(base + 2 * PAGE as u64, 2 * PAGE).is_ok(),
        "munmap of pages 2-3"
    );
    // SAFETY: pages 1 and 4 are still mapped.
    let (a, b) = unsafe { (page(1).read_volatile(), page(4).read_volatile()) };
    check!(a == 1 && b == 4, "pages around the hole changed");
    println!("munmap: pages 2-3 of 8 unmapped, 1 and 4 intact; touching page 3 now");
    // SAFETY: deliberately not: page 3 is unmapped and this must kill us.
    unsafe { page(3).write_volatile(3) };
    println!("munmap: FAIL the write to an unmapped page went through");
    1
}
