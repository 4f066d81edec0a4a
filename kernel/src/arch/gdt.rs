//! The kernel's GDT and TSS.
//!
//! The boot stub's GDT only gets us into long mode; this one adds a TSS so
//! the double-fault handler runs on its own stack (IST 1) and survives a
//! kernel stack overflow long enough to print a register dump.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot of the double-fault stack.
pub const DOUBLE_FAULT_IST: u16 = 0;

const IST_STACK_SIZE: usize = 16 * 1024;

/// The double-fault stack; only the CPU writes it, through IST 1.
#[repr(align(16))]
#[expect(dead_code, reason = "only the CPU uses the stack, through the TSS")]
struct IstStack([u8; IST_STACK_SIZE]);
static DOUBLE_FAULT_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static TABLES: Once<Tables> = Once::new();

/// Loads the GDT and TSS and reloads every segment register.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let top = (&raw const DOUBLE_FAULT_STACK) as u64 + IST_STACK_SIZE as u64;
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize] = VirtAddr::new(top);
        tss
    });
    let t = TABLES.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
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
