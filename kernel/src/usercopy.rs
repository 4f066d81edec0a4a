//! The one checked path between the kernel and user memory: [`copyin`],
//! [`copyout`] and [`copyinstr`] (FreeBSD's names).
//!
//! A user range is first checked to lie wholly inside user space
//! (`pmap::USER_MIN..USER_END`, no wrap), so a null pointer, a kernel
//! address or a wrapping range is `EFAULT` without touching memory. The
//! copy itself is `rep movsb` in [`copy_user`]'s assembly; a page fault
//! there ([`in_copy`]) is the trap handler's (`crate::trap`) to resolve: a
//! fault the VM can resolve (a page not yet touched, copy-on-write) is
//! resolved and the copy resumes where it stopped; any other makes the
//! routine return `EFAULT` through its fixup ([`abort_copy`]). Nothing the
//! user passes is trusted.

use core::arch::global_asm;

use vm::Errno;

use crate::arch::pmap::{USER_END, USER_MIN};
use crate::arch::trap::TrapFrame;

global_asm!(
    ".pushsection .text.usercopy, \"ax\", @progbits",
    ".globl usercopy_start",
    ".globl usercopy_end",
    ".globl usercopy_fixup",
    "usercopy_start:",
    // copy_user_raw(dst: rdi, src: rsi, len: rdx) -> 0, or 1 after a fault
    "copy_user_raw:",
    "mov rcx, rdx",
    "rep movsb",
    "xor eax, eax",
    "ret",
    "usercopy_fixup:",
    "mov eax, 1",
    "ret",
    "usercopy_end:",
    ".popsection",
);

unsafe extern "C" {
    fn copy_user_raw(dst: *mut u8, src: *const u8, len: usize) -> u32;
    static usercopy_start: u8;
    static usercopy_end: u8;
    static usercopy_fixup: u8;
}

/// Checks that `[addr, addr + len)` lies in user space.
pub fn check_range(addr: u64, len: u64) -> Result<(), Errno> {
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    if addr < USER_MIN || end > USER_END {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

/// Copies `dst.len()` bytes from user address `src` (`copyin`).
pub fn copyin(src: u64, dst: &mut [u8]) -> Result<(), Errno> {
    check_range(src, dst.len() as u64)?;
    // SAFETY: `dst` is a kernel buffer we own; `src` was checked to be a
    // user range, and faults on it are recovered by `recover`.
    match unsafe { copy_user_raw(dst.as_mut_ptr(), src as *const u8, dst.len()) } {
        0 => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Copies `src` to user address `dst` (`copyout`).
pub fn copyout(src: &[u8], dst: u64) -> Result<(), Errno> {
    check_range(dst, src.len() as u64)?;
    // SAFETY: as in `copyin`, the other way round.
    match unsafe { copy_user_raw(dst as *mut u8, src.as_ptr(), src.len()) } {
        0 => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Copies a NUL-terminated string from user address `src` into `buf`
/// (`copyinstr`); returns its length without the NUL. `ENAMETOOLONG`
/// when `buf` fills before the NUL.
pub fn copyinstr(src: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    for i in 0..buf.len() {
        let addr = src.checked_add(i as u64).ok_or(Errno::EFAULT)?;
        copyin(addr, &mut buf[i..=i])?;
        if buf[i] == 0 {
            return Ok(i);
        }
    }
    Err(crate::syscall::errno::ENAMETOOLONG)
}

/// Whether a kernel-mode fault at `frame` is the copy routine's.
pub fn in_copy(frame: &TrapFrame) -> bool {
    let (start, end) = (
        (&raw const usercopy_start) as u64,
        (&raw const usercopy_end) as u64,
    );
    (start..end).contains(&frame.rip)
}

/// Ends the copy routine that faulted at `frame` with its `EFAULT` return
/// (through its fixup).
pub fn abort_copy(frame: &mut TrapFrame) {
    debug_assert!(in_copy(frame));
    frame.rip = (&raw const usercopy_fixup) as u64;
}
