//! Bad input to `/dev/xen/gntdev`: every case must fail with its errno and
//! leave the kernel and the device as they were (the `gntdev-bad`
//! scenario checks the free page count afterwards).
#![no_std]
#![no_main]

use gnttab::abi::{
    self, GrantCopySegment, GrantRefArg as GrantRef, IOCTL_GNTDEV_MAP_GRANT_REF,
    IOCTL_GNTDEV_UNMAP_GRANT_REF, MapGrantRef, UnmapGrantRef,
};
use gnttab::xs::Xs;
use gnttab::{Buf, Gnttab};
use urt::errno::{EFAULT, EINVAL, ENOSPC, ENOSYS};
use urt::mman::{MAP_SHARED, PROT_READ};
use urt::{PAGE, check, println};

urt::entry!(main);

/// `DOMID_SELF`.
const DOMID_SELF: u32 = 0x7ff0;

fn ioctl<T>(fd: u64, cmd: u32, arg: &mut T) -> Result<u64, i32> {
    urt::ioctl(fd, cmd, arg as *mut T as u64)
}

fn map(fd: u64, count: u32, refs: u64) -> Result<u64, i32> {
    let mut m = MapGrantRef {
        count,
        pad0: 0,
        index: 0,
        refs,
    };
    ioctl(fd, IOCTL_GNTDEV_MAP_GRANT_REF, &mut m).map(|_| m.index)
}

fn unmap(fd: u64, index: u64, count: u32) -> Result<u64, i32> {
    let mut u = UnmapGrantRef { index, count };
    ioctl(fd, IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut u)
}

fn main(_arg: u64) -> i32 {
    let Ok(g) = Gnttab::open() else {
        println!("gnt-bad: cannot open /dev/xen/gntdev");
        return 1;
    };
    let fd = g.fd();
    let Ok(mut refs) = Buf::<GrantRef>::new(2) else {
        return 1;
    };
    let ok = refs.addr();
    let cases: [(&str, u64, i32); 4] = [
        ("null array", 0, EFAULT),
        ("unmapped array", 0x7000_0000_0000, EFAULT),
        ("kernel array", 0x10_0000, EFAULT),
        ("upper-half array", 0xffff_8000_0000_0000, EFAULT),
    ];
    for (what, ptr, want) in cases {
        let r = map(fd, 2, ptr);
        check!(r == Err(want), "{what}: {r:?}, expected errno {want}");
    }
    let r = urt::ioctl(fd, IOCTL_GNTDEV_MAP_GRANT_REF, 0);
    check!(r == Err(EFAULT), "null struct: {r:?}");
    let r = map(fd, 0, ok);
    check!(r == Err(EINVAL), "count 0: {r:?}");
    let r = map(fd, 65537, ok);
    check!(r == Err(ENOSPC), "count above the limit: {r:?}");
    let r = unmap(fd, u64::MAX - 4095, 2);
    check!(r == Err(EINVAL), "index + count overflows: {r:?}");
    let r = unmap(fd, 0x1000_0000, 1);
    check!(r == Err(EINVAL), "unknown index: {r:?}");
    refs.values()[0] = GrantRef { domid: 0, gref: 1 };
    refs.values()[1] = GrantRef { domid: 0, gref: 2 };
    let index = match map(fd, 2, ok) {
        Ok(i) => i,
        Err(e) => {
            println!("gnt-bad: a valid MAP_GRANT_REF failed: {e}");
            return 1;
        }
    };
    let r = urt::mmap(0, PAGE, PROT_READ, MAP_SHARED, fd, index + PAGE as u64);
    check!(r == Err(EINVAL), "mmap at a non-index offset: {r:?}");
    let r = urt::mmap(0, 3 * PAGE, PROT_READ, MAP_SHARED, fd, index);
    check!(r == Err(EINVAL), "mmap longer than the run: {r:?}");
    check!(unmap(fd, index, 2).is_ok(), "unmap");
    let r = unmap(fd, index, 2);
    check!(r == Err(EINVAL), "double unmap: {r:?}");
    let r = urt::ioctl(fd, urt::ioc::ioc(urt::ioc::IOC_IN, b'E', 42, 8), ok);
    check!(r == Err(ENOSYS), "unknown ioctl: {r:?}");
    // Our own grants, by our id or DOMID_SELF.
    let me = Xs::open().and_then(|mut xs| xs.read_u64("domid"));
    let Ok(me) = me else {
        println!("gnt-bad: cannot read our domain id");
        return 1;
    };
    for domid in [me as u32, DOMID_SELF] {
        refs.values()[0] = GrantRef { domid, gref: 8 };
        refs.values()[1] = GrantRef { domid, gref: 9 };
        let r = map(fd, 2, ok);
        check!(
            r == Err(EINVAL),
            "our own grants (domain {domid:#x}): {r:?}"
        );
    }
    // Zero-length GRANT_COPY segments (issue 14 defect 5): accepted with
    // nothing copied, a null buffer and a junk reference and domain alike.
    let junk = abi::CopySideArg::Foreign {
        gref: 0xdead_beef,
        offset: 0xffff,
        domid: DOMID_SELF as u16,
    }
    .encode();
    let mut segs = [
        GrantCopySegment {
            source: 0,
            dest: junk,
            len: 0,
            flags: abi::GNTCOPY_DEST_GREF,
            status: 1,
        },
        GrantCopySegment {
            source: junk,
            dest: 0,
            len: 0,
            flags: abi::GNTCOPY_SOURCE_GREF,
            status: 1,
        },
    ];
    let r = g.grant_copy(&mut segs);
    let st = (segs[0].status, segs[1].status);
    check!(
        r.is_ok() && st == (0, 0),
        "zero-length copy segments: {r:?}, statuses {st:?}"
    );
    println!(
        "gnt-bad: 15 bad inputs refused with the right errno; 2 zero-length copy segments (null buffer, junk ref) accepted"
    );
    0
}
