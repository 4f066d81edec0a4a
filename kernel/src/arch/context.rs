//! Kernel context switch: the callee-saved registers on the old thread's
//! stack, the stack pointer saved, the old thread released to other CPUs,
//! and the new thread's stack pointer loaded and its registers popped.

use core::arch::global_asm;

use super::gdt::{USER_CS, USER_DS};
use super::trap::TrapFrame;
use xen::abi::pv::{FLAT_USER_CS, FLAT_USER_SS};

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
    // From here on the old stack is not touched: another CPU may resume
    // the old thread as soon as it sees this byte clear.
    "mov byte ptr [rdx], 0",
    "mov rsp, rsi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    // A new kernel thread's first return lands here, with its entry in
    // r12 and argument in r13: interrupts on (threads are switched with
    // them off), then the entry, which never returns.
    ".globl kernel_thread_start",
    "kernel_thread_start:",
    "call {irq_on}",
    "mov rdi, r13",
    "call r12",
    "ud2",
    ".popsection",
    irq_on = sym thread_interrupts_on,
);

/// Unmasks interrupts for a new kernel thread (`sti` under PVH; the upcall
/// mask under PV, where `sti` is not allowed).
extern "C" fn thread_interrupts_on() {
    super::interrupts::enable();
}

unsafe extern "C" {
    fn context_switch(save: *mut u64, load: u64, switching: *mut u8);
    fn trap_return();
    fn kernel_thread_start();
}

/// Callee-saved registers `context_switch` pops.
const SAVED: usize = 6;

/// Saves the running thread's context in `*save`, clears `*switching`
/// (the old thread may then be resumed elsewhere), and continues the
/// thread whose context is `load`. Called with interrupts off.
///
/// # Safety
/// `save` and `switching` must stay valid until the saved context is
/// resumed; `load` must come from [`switch`], [`new_user_context`] or
/// [`new_kernel_context`], on a kernel stack that is still allocated,
/// whose thread has finished switching away, and no other code may resume
/// it at the same time.
pub unsafe fn switch(save: *mut u64, load: u64, switching: *mut u8) {
    // SAFETY: the caller's conditions are the routine's.
    unsafe { context_switch(save, load, switching) }
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
        cs: u64::from(if super::is_pv() {
            FLAT_USER_CS
        } else {
            USER_CS
        }),
        rflags: 0x202,
        rsp,
        ss: u64::from(if super::is_pv() {
            FLAT_USER_SS
        } else {
            USER_DS
        }),
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
/// thread that starts in `entry(arg)` with interrupts on, and returns its
/// context for [`switch`].
///
/// # Safety
/// As for [`new_user_context`].
pub unsafe fn new_kernel_context(top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> u64 {
    // `context_switch`'s `ret` into `kernel_thread_start` leaves the stack
    // 16-byte aligned (8 above `ret_at`), as its call of `entry` needs.
    let ret_at = top - 24;
    let ctx = ret_at - (SAVED as u64) * 8;
    // Popped in this order: r15, r14, r13, r12, rbx, rbp.
    let regs: [u64; SAVED] = [0, 0, arg as u64, entry as usize as u64, 0, 0];
    // SAFETY: the caller gives us the stack; every write is inside it.
    unsafe {
        (ret_at as *mut u64).write(kernel_thread_start as *const () as u64);
        (ctx as *mut [u64; SAVED]).write(regs);
    }
    ctx
}
