//! The kernel's GDT and TSS.
//!
//! The boot stub's GDT only gets us into long mode; this one adds the user
//! segments and a TSS: `rsp0` is the kernel stack the CPU switches to when
//! an interrupt or exception arrives in user mode (the running thread's, set
//! at every context switch), and IST 1 gives the double-fault handler its
//! own stack so it survives a kernel stack overflow long enough to print a
//! register dump.
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

use core::cell::UnsafeCell;

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

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

const IST_STACK_SIZE: usize = 16 * 1024;

/// The double-fault stack; only the CPU writes it, through IST 1.
#[repr(align(16))]
#[expect(dead_code, reason = "only the CPU uses the stack, through the TSS")]
struct IstStack([u8; IST_STACK_SIZE]);
static DOUBLE_FAULT_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);

/// The TSS, which the CPU reads on every privilege change. Its `rsp0` is
/// written by [`set_kernel_stack`] with interrupts off (one vCPU), and read
/// by the CPU only on entry from user mode, which cannot happen meanwhile.
struct Tss(UnsafeCell<TaskStateSegment>);

// SAFETY: one vCPU; the only writer is `set_kernel_stack`, which runs with
// interrupts off, so no reader overlaps a write.
unsafe impl Sync for Tss {}

static TSS: Tss = Tss(UnsafeCell::new(TaskStateSegment::new()));

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TABLES: Once<Tables> = Once::new();

/// Loads the GDT and TSS and reloads every segment register.
pub fn init() {
    let t = TABLES.call_once(|| {
        // SAFETY: runs once, before the TSS is loaded or shared.
        let tss = unsafe { &mut *TSS.0.get() };
        let top = (&raw const DOUBLE_FAULT_STACK) as u64 + IST_STACK_SIZE as u64;
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = VirtAddr::new(top);
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let udata = gdt.append(Descriptor::user_data_segment());
        let ucode = gdt.append(Descriptor::user_code_segment());
        // SAFETY: the TSS is a static, valid for the kernel's life; later
        // writes go through `set_kernel_stack` only.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(TSS.0.get()) });
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

/// Makes `top` the stack the CPU switches to on entry from user mode.
pub fn set_kernel_stack(top: u64) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        // SAFETY: interrupts are off on our only vCPU, so the CPU cannot be
        // reading the TSS for a user-mode entry while we write it.
        unsafe { (*TSS.0.get()).privilege_stack_table[0] = VirtAddr::new(top) };
    });
}
