//! Kernel context switch: the callee-saved registers on the old thread's
//! stack, the stack pointer swapped, and theirs popped.

use core::arch::global_asm;

use super::gdt::{USER_CS, USER_DS};
use super::trap::TrapFrame;

global_asm!(
    ".pushsection .text.switch, \"ax\", @progbits",
    ".globl context_switch",
    "context_switch:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".popsection",
);

unsafe extern "C" {
    fn context_switch(save: *mut u64, load: u64);
    fn trap_return();
}

/// Callee-saved registers `context_switch` pops.
const SAVED: usize = 6;

/// Saves the running thread's context in `*save` and continues the thread
/// whose context is `load`.
///
/// # Safety
/// `save` must stay valid until the saved context is resumed; `load` must
/// come from [`switch`], [`new_user_context`] or [`new_kernel_context`], on
/// a kernel stack that is still allocated, and no other code may resume it
/// at the same time.
pub unsafe fn switch(save: *mut u64, load: u64) {
    // SAFETY: the caller's conditions are the routine's.
    unsafe { context_switch(save, load) }
}

/// Prepares the stack ending at `top` (16-byte aligned) for a thread that
/// enters user mode at `rip` with stack `rsp` and `rdi` = `arg`, and
/// returns its context for [`switch`].
///
/// # Safety
/// `top` must be the end of a kernel stack of at least 512 bytes that
/// nothing else uses.
pub unsafe fn new_user_context(top: u64, rip: u64, rsp: u64, arg: u64) -> u64 {
    let frame_at = top - size_of::<TrapFrame>() as u64;
    let frame = TrapFrame {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: 0,
        rdi: arg,
        rsi: 0,
        rdx: 0,
        rcx: 0,
        rbx: 0,
        rax: 0,
        vector: 0,
        error: 0,
        rip,
        cs: u64::from(USER_CS),
        rflags: 0x202,
        rsp,
        ss: u64::from(USER_DS),
    };
    let ret_at = frame_at - 8;
    let ctx = ret_at - (SAVED as u64) * 8;
    // SAFETY: the caller gives us the stack; all three writes are inside it.
    unsafe {
        (frame_at as *mut TrapFrame).write(frame);
        (ret_at as *mut u64).write(trap_return as *const () as u64);
        core::ptr::write_bytes(ctx as *mut u64, 0, SAVED);
    }
    ctx
}

/// Prepares the stack ending at `top` (16-byte aligned) for a kernel
/// thread that starts in `entry`, and returns its context for [`switch`].
///
/// # Safety
/// As for [`new_user_context`].
pub unsafe fn new_kernel_context(top: u64, entry: extern "C" fn() -> !) -> u64 {
    // `context_switch` returns into `entry` as if it had been called:
    // the stack pointer is then 8 below a 16-byte boundary, with a zero
    // return address above it that `entry`, which never returns, ignores.
    let ret_at = top - 16;
    let ctx = ret_at - (SAVED as u64) * 8;
    // SAFETY: the caller gives us the stack; both writes are inside it.
    unsafe {
        (top as *mut u64).sub(1).write(0);
        (ret_at as *mut u64).write(entry as usize as u64);
        core::ptr::write_bytes(ctx as *mut u64, 0, SAVED);
    }
    ctx
}
