//! Copy-on-write: a private mapping of a phys-pager object sees the shared
//! mapping's contents until it writes, and its writes stay its own.
#![no_std]
#![no_main]

use urt::mman::{MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use urt::{PAGE, check, println};

urt::entry!(main);

const PAGES: usize = 16;

fn word(base: u64, page: usize) -> *mut u64 {
    (base as usize + page * PAGE) as *mut u64
}

fn main(_arg: u64) -> i32 {
    let Ok(fd) = urt::open(b"/dev/physobj\0", urt::fcntl::O_RDWR) else {
        println!("cow: open /dev/physobj failed");
        return 1;
    };
    let size = PAGES as u64;
    check!(
        urt::ioctl(
            fd,
            urt::physobj::PHYSOBJ_SET_SIZE,
            &size as *const u64 as u64
        )
        .is_ok(),
        "set size"
    );
    let rw = PROT_READ | PROT_WRITE;
    let Ok(shared) = urt::mmap(0, PAGES * PAGE, rw, MAP_SHARED, fd, 0) else {
        println!("cow: shared mmap failed");
        return 1;
    };
    for i in 0..PAGES {
        // SAFETY: inside the shared mapping, read-write.
        unsafe { word(shared, i).write_volatile(1000 + i as u64) };
    }
    let Ok(private) = urt::mmap(0, PAGES * PAGE, rw, MAP_PRIVATE, fd, 0) else {
        println!("cow: private mmap failed");
        return 1;
    };
    // SAFETY: every access below is inside one of the two mappings.
    unsafe {
        for i in 0..PAGES {
            check!(
                word(private, i).read_volatile() == 1000 + i as u64,
                "private page {i} differs before any write"
            );
        }
        for i in (0..PAGES).step_by(2) {
            word(private, i).write_volatile(7000 + i as u64);
        }
        for i in 0..PAGES {
            let want_private = if i % 2 == 0 { 7000 } else { 1000 } + i as u64;
            check!(
                word(shared, i).read_volatile() == 1000 + i as u64,
                "shared page {i} saw a private write"
            );
            check!(
                word(private, i).read_volatile() == want_private,
                "private page {i} wrong after writes"
            );
        }
    }
    println!(
        "cow: {PAGES} pages shared, private copy of every other page after its write; the shared pages kept theirs"
    );
    check!(urt::munmap(private, PAGES * PAGE).is_ok(), "munmap private");
    check!(urt::munmap(shared, PAGES * PAGE).is_ok(), "munmap shared");
    check!(urt::close(fd).is_ok(), "close");
    0
}
