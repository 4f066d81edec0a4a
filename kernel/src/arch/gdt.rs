//! The GDT and TSS of each CPU.
//!
//! The boot stub's GDT only gets us into long mode; each CPU's own GDT
//! (in its [`percpu::CpuArch`]) adds the user segments and the CPU's TSS:
//! `rsp0` is the kernel stack the CPU switches to when an interrupt or
//! exception arrives in user mode (the running thread's, set at every
//! context switch), and IST 1 gives the double-fault handler its own stack
//! so it survives a kernel stack overflow long enough to print a register
//! dump.
//!
//! The order of the descriptors is fixed by `syscall`/`sysret` (STAR): the
//! kernel data segment follows the kernel code segment, and the user code
//! segment follows the user data segment.
//!
//! | selector | segment |
//! |---|---|
//! | 0x08 | kernel code |
//! | 0x10 | kernel data |
//! | 0x1b | user data (RPL 3) |
//! | 0x23 | user code (RPL 3) |
//! | 0x28 | TSS (two slots) |

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};

use super::percpu::{self, Tables};

/// IST slot of the double-fault stack.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data selector, RPL 3.
pub const USER_DS: u16 = 0x18 | 3;
/// User code selector, RPL 3.
pub const USER_CS: u16 = 0x20 | 3;

/// Size of a double-fault stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// The boot CPU's double-fault stack; only the CPU writes it, through IST
/// 1. Other CPUs get theirs from the heap when they start.
#[repr(align(16))]
#[expect(dead_code, reason = "only the CPU uses the stack, through the TSS")]
struct IstStack([u8; IST_STACK_SIZE]);
static BOOT_DOUBLE_FAULT_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);

/// The top of the boot CPU's double-fault stack.
pub fn boot_ist_top() -> u64 {
    (&raw const BOOT_DOUBLE_FAULT_STACK) as u64 + IST_STACK_SIZE as u64
}

/// Builds CPU `cpu`'s GDT and TSS, with `ist_top` as its double-fault
/// stack, loads them and reloads every segment register. Called once per
/// CPU, on that CPU, with interrupts off.
pub fn init(cpu: usize, ist_top: u64) {
    let c = percpu::cpu(cpu);
    let t = c.tables.call_once(|| {
        // SAFETY: runs once per CPU, on that CPU, before its TSS is loaded.
        let tss = unsafe { &mut *c.tss.get() };
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = VirtAddr::new(ist_top);
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let udata = gdt.append(Descriptor::user_data_segment());
        let ucode = gdt.append(Descriptor::user_code_segment());
        // SAFETY: the TSS is in a static, valid for the kernel's life; later
        // writes go through `set_kernel_stack` only.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(c.tss.get()) });
        debug_assert_eq!(
            (code.0, data.0, udata.0, ucode.0),
            (KERNEL_CS, KERNEL_DS, USER_DS, USER_CS)
        );
        Tables {
            gdt,
            code,
            data,
            tss,
        }
    });
    t.gdt.load();
    // SAFETY: the selectors name descriptors of the GDT just loaded, which
    // lives in a static for the rest of the kernel's life.
    unsafe {
        CS::set_reg(t.code);
        DS::set_reg(t.data);
        ES::set_reg(t.data);
        SS::set_reg(t.data);
        load_tss(t.tss);
    }
}

/// Makes `top` the stack this CPU switches to on entry from user mode.
pub fn set_kernel_stack(top: u64) {
    crate::arch::interrupts::without_interrupts(|| {
        let c = percpu::cpu(percpu::id());
        // SAFETY: only this CPU writes its TSS, and with interrupts off it
        // cannot be reading it for a user-mode entry meanwhile.
        unsafe { (*c.tss.get()).privilege_stack_table[0] = VirtAddr::new(top) };
    });
}
