//! Anonymous memory: 1024 pages mapped private read-write, every page
//! written and read back, then unmapped.
#![no_std]
#![no_main]

use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use urt::{PAGE, check, println, sysctl};

urt::entry!(main);

const PAGES: usize = 1024;

fn main(_arg: u64) -> i32 {
    let Ok(base) = urt::mmap(
        0,
        PAGES * PAGE,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANON,
        u64::MAX,
        0,
    ) else {
        println!("anon: mmap failed");
        return 1;
    };
    let faults0 = urt::sysctl(sysctl::PROC_FAULTS, sysctl::READ_ONLY).unwrap_or(0);
    let words = base as *mut u64;
    for i in 0..PAGES {
        // SAFETY: inside the mapping just made, read-write.
        unsafe {
            check!(
                words.add(i * 512).read_volatile() == 0,
                "page {i} not zero-filled"
            );
            words.add(i * 512).write_volatile(i as u64 ^ 0x5a5a);
            words.add(i * 512 + 511).write_volatile(!(i as u64));
        }
    }
    for i in 0..PAGES {
        // SAFETY: as above.
        let (a, b) = unsafe {
            (
                words.add(i * 512).read_volatile(),
                words.add(i * 512 + 511).read_volatile(),
            )
        };
        check!(
            a == i as u64 ^ 0x5a5a && b == !(i as u64),
            "page {i} lost its words"
        );
    }
    let faults = urt::sysctl(sysctl::PROC_FAULTS, sysctl::READ_ONLY).unwrap_or(0) - faults0;
    println!("anon: {PAGES} pages at {base:#x} written and read back, {faults} page faults");
    check!(urt::munmap(base, PAGES * PAGE).is_ok(), "munmap");
    0
}
