//! The hypercall primitive.
//!
//! A PVH guest calls Xen through the hypercall page: a page of our image
//! that Xen fills with one 32-byte stub per hypercall (`mov $nr, %eax;
//! vmcall|vmmcall; ret`, whichever the CPU needs) once [`install`] has
//! written its physical address to the MSR named by CPUID. Arguments go in
//! `rdi, rsi, rdx, r10, r8`; the result comes back in `rax`, negative for a
//! Xen errno. Debug builds of Xen scribble on unused argument registers, so
//! all of them are treated as clobbered. Unlike `xen-sys`'s wrappers this
//! uses the stack (`call`), so it is not `nostack`.
//!
//! Every hypercall is counted per operation in [`counts`], which tests and
//! benchmarks read ("hypercalls per mapped page").

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::cpuid::XenLeaves;

// The page Xen fills with hypercall stubs. Until `install` runs, every stub
// is `int3`, so a premature hypercall traps instead of running garbage.
global_asm!(
    ".pushsection .text.xen_hypercall_page, \"ax\", @progbits",
    ".balign 4096",
    ".globl xen_hypercall_page",
    "xen_hypercall_page:",
    ".fill 4096, 1, 0xcc",
    ".popsection",
);

unsafe extern "C" {
    static xen_hypercall_page: [u8; 4096];
}

/// Number of hypercall slots that are counted (Xen defines fewer than 64).
pub const COUNTED_OPS: usize = 64;

static COUNTS: [AtomicU64; COUNTED_OPS] = [const { AtomicU64::new(0) }; COUNTED_OPS];

/// A Xen error: the negated errno a hypercall returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenErrno(pub i32);

impl XenErrno {
    /// `EPERM`.
    pub const EPERM: Self = Self(1);
    /// `ENOENT`.
    pub const ENOENT: Self = Self(2);
    /// `EINVAL`.
    pub const EINVAL: Self = Self(22);
    /// `ESRCH`: no such domain.
    pub const ESRCH: Self = Self(3);
    /// `EIO`.
    pub const EIO: Self = Self(5);
    /// `E2BIG`.
    pub const E2BIG: Self = Self(7);
    /// `EAGAIN`: try again.
    pub const EAGAIN: Self = Self(11);
    /// `ENOMEM`.
    pub const ENOMEM: Self = Self(12);
    /// `EACCES`.
    pub const EACCES: Self = Self(13);
    /// `EFAULT`: a bad address.
    pub const EFAULT: Self = Self(14);
    /// `EBUSY`.
    pub const EBUSY: Self = Self(16);
    /// `EEXIST`.
    pub const EEXIST: Self = Self(17);
    /// `EISDIR`.
    pub const EISDIR: Self = Self(21);
    /// `ENOSPC`.
    pub const ENOSPC: Self = Self(28);
    /// `EROFS`.
    pub const EROFS: Self = Self(30);
    /// `ENOSYS`: no such hypercall.
    pub const ENOSYS: Self = Self(38);
    /// `ENOTEMPTY`.
    pub const ENOTEMPTY: Self = Self(39);
    /// `ETIME`: a timer deadline already passed.
    pub const ETIME: Self = Self(62);
    /// `ETIMEDOUT`: a wait for the peer ran out of time.
    pub const ETIMEDOUT: Self = Self(110);
    /// `EPROTO`: the peer broke the protocol (a malformed xenstore reply).
    pub const EPROTO: Self = Self(71);
    /// `EISCONN`.
    pub const EISCONN: Self = Self(106);

    /// Splits a raw hypercall return value into success or error.
    pub fn check(ret: i64) -> Result<u64, Self> {
        if ret < 0 {
            Err(Self((-ret) as i32))
        } else {
            Ok(ret as u64)
        }
    }
}

/// The virtual address of the hypercall page inside our image.
pub fn page_address() -> usize {
    (&raw const xen_hypercall_page) as usize
}

/// Asks Xen to fill the hypercall page.
///
/// # Safety
/// `page_paddr` must be the guest-physical address of [`page_address`],
/// and no hypercall may run concurrently with this call.
pub unsafe fn install(leaves: &XenLeaves, page_paddr: u64) {
    let msr = leaves.hypercall_msr();
    let (lo, hi) = (page_paddr as u32, (page_paddr >> 32) as u32);
    // SAFETY: the MSR number comes from Xen's own CPUID leaf, and the caller
    // guarantees the address is our page, which Xen may then overwrite (it
    // is reserved for that and never executed before this point).
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") lo, in("edx") hi, options(nostack, preserves_flags));
    }
}

/// Issues hypercall `op` with up to five arguments.
///
/// # Safety
/// [`install`] must have run, and the arguments must be what Xen expects
/// for `op`: in particular, every pointer must be valid for the reads and
/// writes Xen performs during the call.
pub unsafe fn raw(op: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    if let Some(c) = COUNTS.get(op as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    let entry = page_address() + op as usize * 32;
    let ret: i64;
    // SAFETY: `entry` is a stub inside the page Xen filled (the caller
    // guarantees `install` ran and `op` is a hypercall number). The stub
    // uses the stack for its return address, hence no `nostack`; all
    // argument registers plus rcx, r9 and r11 are declared clobbered;
    // memory is not `nomem` because Xen reads and writes our buffers.
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            lateout("rax") ret,
            inout("rdi") a1 => _,
            inout("rsi") a2 => _,
            inout("rdx") a3 => _,
            inout("r10") a4 => _,
            inout("r8") a5 => _,
            out("rcx") _,
            out("r9") _,
            out("r11") _,
        );
    }
    ret
}

/// Issues hypercall `op` with a sub-command and a pointer to its argument.
///
/// # Safety
/// As for [`raw`]: `arg` must point to the structure `op`/`cmd` expects.
pub unsafe fn op_arg<T>(op: u32, cmd: u32, arg: *mut T) -> i64 {
    // SAFETY: forwarded to the caller's contract.
    unsafe { raw(op, u64::from(cmd), arg as u64, 0, 0, 0) }
}

/// How many hypercalls of each operation were issued since boot, indexed
/// by hypercall number.
pub fn counts() -> [u64; COUNTED_OPS] {
    core::array::from_fn(|i| COUNTS[i].load(Ordering::Relaxed))
}

/// How many hypercalls of operation `op` were issued since boot.
pub fn count(op: u32) -> u64 {
    COUNTS
        .get(op as usize)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}
