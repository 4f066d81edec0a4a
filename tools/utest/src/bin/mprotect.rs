//! mprotect to read-only: reads still work; a write kills the process
//! (the scenario expects status 139).
#![no_std]
#![no_main]

use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use urt::{PAGE, check, println};

urt::entry!(main);

fn main(_arg: u64) -> i32 {
    let Ok(base) = urt::mmap(
        0,
        4 * PAGE,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANON,
        u64::MAX,
        0,
    ) else {
        println!("mprotect: mmap failed");
        return 1;
    };
    let p = base as *mut u64;
    // SAFETY: inside the mapping, read-write.
    unsafe { p.write_volatile(42) };
    check!(
        urt::mprotect(base, 4 * PAGE, PROT_READ).is_ok(),
        "mprotect read-only"
    );
    // SAFETY: still readable.
    check!(unsafe { p.read_volatile() } == 42, "value lost");
    // A read-only page cannot receive a read(2) either.
    let null = urt::open(b"/dev/null\0", urt::fcntl::O_RDWR).unwrap_or(u64::MAX);
    check!(urt::write(null, b"x") == Ok(1), "write to /dev/null");
    println!("mprotect: 4 pages now read-only, read back 42; writing now");
    // SAFETY: deliberately not: the page is read-only and this must kill us.
    unsafe { p.write_volatile(43) };
    println!("mprotect: FAIL the write to a read-only page went through");
    1
}
