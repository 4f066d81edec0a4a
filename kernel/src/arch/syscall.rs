//! The `syscall` instruction's entry path.
//!
//! `syscall` leaves the user stack in place and interrupts masked (SFMASK),
//! so the entry swaps in the kernel's `gs` (`swapgs`), saves the user rsp
//! in this CPU's scratch word, switches to the running thread's kernel
//! stack ([`set_kernel_stack`], a per-CPU word: see `percpu`), and builds the same
//! [`TrapFrame`](super::trap::TrapFrame) an exception from user mode would have, with vector
//! [`SYSCALL_VECTOR`]. It returns through `trap_return`'s `iretq` rather
//! than `sysretq`: one exit path for every entry, and no `sysret` with a
//! non-canonical user rip to worry about.
//!
//! The entry calls `syscall_dispatch`, the kernel's (`crate::syscall`),
//! found by the linker: this module calls nothing above `arch`.
//!
//! ABI (as Linux's): number in rax, arguments in rdi, rsi, rdx, r10, r8, r9;
//! result in rax, a negative errno on failure; rcx and r11 are clobbered.

use core::arch::global_asm;

use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, Msr};

use super::gdt::{self, KERNEL_CS, USER_CS, USER_DS};
use super::percpu::{self, GS_KERNEL_RSP, GS_USER_RSP};
use super::trap::save_gprs;

/// The `vector` of a [`TrapFrame`](super::trap::TrapFrame) built by a system call.
pub const SYSCALL_VECTOR: u64 = 0x100;

const MSR_STAR: u32 = 0xc000_0081;
const MSR_SFMASK: u32 = 0xc000_0084;
/// RFLAGS bits cleared on entry: TF, IF, DF, NT, AC.
const SFMASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 14) | (1 << 18);

global_asm!(
    ".pushsection .text.syscall, \"ax\", @progbits",
    ".globl syscall_entry",
    "syscall_entry:",
    "swapgs",
    "mov gs:[{user_rsp}], rsp",
    "mov rsp, gs:[{kernel_rsp}]",
    "push {uds}",
    "push qword ptr gs:[{user_rsp}]",
    "push r11",
    "push {ucs}",
    "push rcx",
    "push 0",
    "push {vector}",
    save_gprs!(),
    "mov rdi, rsp",
    "cld",
    "call syscall_dispatch",
    "cli",
    "jmp trap_return",
    // PV: Xen's syscall callback, on the kernel stack `stack_switch`
    // named, events masked, with the user's rcx and r11 (its rip and
    // rflags) above the frame it built of them: the same `TrapFrame`.
    ".globl pv_syscall_entry",
    "pv_syscall_entry:",
    "pop rcx",
    "pop r11",
    "push 0",
    "push {vector}",
    save_gprs!(),
    "mov rdi, rsp",
    "cld",
    "call syscall_dispatch",
    "call {irq_off}",
    "jmp trap_return",
    ".popsection",
    uds = const USER_DS,
    ucs = const USER_CS,
    vector = const SYSCALL_VECTOR,
    user_rsp = const GS_USER_RSP,
    kernel_rsp = const GS_KERNEL_RSP,
    irq_off = sym interrupts_off,
);

/// Masks interrupts before the return path (PV has no `cli`).
extern "C" fn interrupts_off() {
    super::interrupts::disable();
}

unsafe extern "C" {
    fn syscall_entry();
}

/// Enables `syscall` (EFER.SCE) and points it at the entry path.
pub fn init() {
    // SAFETY: STAR names our GDT's selectors (kernel code/data at 0x08/0x10,
    // user data/code at 0x18/0x20 with RPL 3, the order `gdt` keeps);
    // LSTAR is the entry above; SFMASK masks interrupts until the entry
    // has switched stacks.
    unsafe {
        Msr::new(MSR_STAR).write((u64::from(USER_DS & !3) - 8) << 48 | u64::from(KERNEL_CS) << 32);
        LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
        Msr::new(MSR_SFMASK).write(SFMASK);
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
}

/// Makes `top` the kernel stack of entries from user mode: system calls,
/// and interrupts and exceptions (the TSS's rsp0).
pub fn set_kernel_stack(top: u64) {
    crate::arch::interrupts::without_interrupts(|| {
        percpu::set_syscall_stack(top);
        if super::is_pv() {
            // Xen keeps a PV kernel's entry stack (there is no TSS).
            let ss = u64::from(xen::abi::pv::FLAT_KERNEL_SS);
            if let Err(e) = xen::pv::stack_switch(ss, top) {
                panic!("stack_switch: Xen error {}", e.0);
            }
        } else {
            gdt::set_kernel_stack(top);
        }
    });
}
