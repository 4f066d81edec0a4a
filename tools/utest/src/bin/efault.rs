//! Bad pointers to every system call that takes one come back as EFAULT
//! (null, kernel, wrapping, unmapped, a string running into an unmapped
//! page, a read into a read-only page); an unknown call is ENOSYS; a user
//! page not yet touched is faulted in by the copy and works.
#![no_std]
#![no_main]

use urt::errno::{EFAULT, ENOSYS};
use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use urt::{PAGE, check, println};

urt::entry!(main);

/// `_IOR('P', 1, u64)`: an OUT ioctl, unknown to the device.
const PHYSOBJ_OUT: u32 = 0x4000_0000 | (8 << 16) | (b'P' as u32) << 8 | 9;

fn main(_arg: u64) -> i32 {
    let rw = PROT_READ | PROT_WRITE;
    let Ok(base) = urt::mmap(0, 2 * PAGE, rw, MAP_PRIVATE | MAP_ANON, u64::MAX, 0) else {
        println!("efault: mmap failed");
        return 1;
    };
    let unmapped = base + 2 * PAGE as u64;
    check!(
        urt::mprotect(base + PAGE as u64, PAGE, PROT_READ).is_ok(),
        "mprotect"
    );
    let bad: [(&str, u64); 5] = [
        ("null", 0),
        ("kernel", 0x10_0000),
        ("wrapping", u64::MAX - 7),
        ("non-canonical", 0x8000_0000_0000_0000),
        ("unmapped", unmapped),
    ];
    let null = urt::open(b"/dev/null\0", urt::fcntl::O_RDWR).unwrap_or(u64::MAX);
    let obj = urt::open(b"/dev/physobj\0", urt::fcntl::O_RDWR).unwrap_or(u64::MAX);
    let zero = urt::open(b"/dev/zero\0", urt::fcntl::O_RDONLY).unwrap_or(u64::MAX);
    let mut n = 0;
    for (what, p) in bad {
        let w = urt::syscall(urt::nr::WRITE, [null, p, 16, 0, 0, 0]);
        check!(w == -i64::from(EFAULT), "write from {what} pointer: {w}");
        let r = urt::syscall(urt::nr::READ, [zero, p, 16, 0, 0, 0]);
        check!(r == -i64::from(EFAULT), "read into {what} pointer: {r}");
        let o = urt::syscall(urt::nr::OPEN, [p, 0, 0, 0, 0, 0]);
        check!(o == -i64::from(EFAULT), "open of {what} path: {o}");
        let i = urt::syscall(
            urt::nr::IOCTL,
            [obj, u64::from(urt::physobj::PHYSOBJ_SET_SIZE), p, 0, 0, 0],
        );
        check!(i == -i64::from(EFAULT), "ioctl with {what} argument: {i}");
        n += 4;
    }
    // Nothing to copy: a zero-length write or read does not look at its
    // buffer (as on Linux).
    let w = urt::syscall(urt::nr::WRITE, [null, 0, 0, 0, 0, 0]);
    check!(w == 0, "zero-length write from a null pointer: {w}");
    let r = urt::syscall(urt::nr::READ, [zero, 0, 0, 0, 0, 0]);
    check!(r == 0, "zero-length read into a null pointer: {r}");
    n += 2;
    // An unknown ioctl is the device's error; an IN argument may straddle
    // two pages (the second read-only and untouched: zero).
    let ro = base + PAGE as u64;
    let i = urt::syscall(urt::nr::IOCTL, [obj, u64::from(PHYSOBJ_OUT), ro, 0, 0, 0]);
    check!(i == -i64::from(urt::errno::ENOTTY), "unknown ioctl: {i}");
    let end = ro - 4;
    // SAFETY: the last 4 bytes of the first (read-write) page.
    unsafe { (end as *mut u32).write_volatile(16) };
    let i = urt::syscall(
        urt::nr::IOCTL,
        [obj, u64::from(urt::physobj::PHYSOBJ_SET_SIZE), end, 0, 0, 0],
    );
    check!(i == 0, "ioctl argument across two pages: {i}");
    // A path crossing from one page into the next is read across both.
    // SAFETY: as above.
    unsafe { (end as *mut [u8; 4]).write_volatile(*b"/dev") };
    let o = urt::syscall(urt::nr::OPEN, [end, 0, 0, 0, 0, 0]);
    check!(
        o == -i64::from(urt::errno::ENOENT),
        "a path across two pages: {o}"
    );
    // A copy out into the read-only page, and across into it.
    let r = urt::syscall(urt::nr::READ, [zero, ro, 16, 0, 0, 0]);
    check!(r == -i64::from(EFAULT), "read into a read-only page: {r}");
    let r = urt::syscall(urt::nr::READ, [zero, end, 16, 0, 0, 0]);
    check!(
        r == -i64::from(EFAULT),
        "read across into a read-only page: {r}"
    );
    let r = urt::syscall(urt::nr::READ, [zero, base, 16, 0, 0, 0]);
    check!(r == 16, "read into a writable page: {r}");
    n += 5;
    // A fresh page of the first mapping is faulted in by the copy itself.
    let Ok(fresh) = urt::mmap(0, PAGE, rw, MAP_PRIVATE | MAP_ANON, u64::MAX, 0) else {
        println!("efault: mmap failed");
        return 1;
    };
    let w = urt::syscall(urt::nr::WRITE, [null, fresh, 64, 0, 0, 0]);
    check!(w == 64, "write from an untouched page: {w}");
    for nr in [urt::nr::FUTEX_WAKE + 1, 999, u64::MAX] {
        let r = urt::syscall(nr, [0; 6]);
        check!(r == -i64::from(ENOSYS), "system call {nr}: {r}");
    }
    let c = urt::syscall(urt::nr::CLOSE, [77, 0, 0, 0, 0, 0]);
    check!(c == -i64::from(urt::errno::EBADF), "close of a bad fd: {c}");
    println!(
        "efault: {n} bad-pointer calls gave EFAULT; unknown calls ENOSYS; untouched pages are faulted in by copies"
    );
    0
}
