//! Exception entry: the IDT and the assembly stubs that save a full
//! register frame and hand it to the kernel proper.
//!
//! Every vector below 32 enters `trap_common` with the vector number and an
//! error code (a zero is pushed for exceptions without one), so the
//! dispatcher, `trap_dispatch`, always sees one [`TrapFrame`] layout. The
//! dispatcher is the kernel's (`crate::trap`), found by the linker: this
//! module is mechanism only and calls nothing above `arch`. An exception the kernel
//! cannot handle prints a register dump and crashes the domain cleanly
//! (`SCHEDOP_shutdown` with reason crash), so the toolstack sees a crash
//! rather than a hang or a triple fault.

use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr2, Cr3};
use x86_64::structures::idt::InterruptDescriptorTable;

use super::gdt::DOUBLE_FAULT_IST;

/// The registers saved on exception entry, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)] // register names
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception vector.
    pub vector: u64,
    /// The CPU's error code, or 0 for exceptions without one.
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// The general-purpose register pushes that complete a [`TrapFrame`] above
/// the vector and error code (shared by exception and system call entry;
/// `trap_return` pops them in the opposite order).
macro_rules! save_gprs {
    () => {
        "push rax\npush rbx\npush rcx\npush rdx\npush rsi\npush rdi\npush rbp\npush r8\npush r9\npush r10\npush r11\npush r12\npush r13\npush r14\npush r15"
    };
}
pub(crate) use save_gprs;

/// Exceptions for which the CPU pushes an error code.
macro_rules! stub {
    (err $n:literal) => {
        concat!(
            ".globl trap_stub_",
            $n,
            "\ntrap_stub_",
            $n,
            ":\npush ",
            $n,
            "\njmp trap_common\n"
        )
    };
    ($n:literal) => {
        concat!(
            ".globl trap_stub_",
            $n,
            "\ntrap_stub_",
            $n,
            ":\npush 0\npush ",
            $n,
            "\njmp trap_common\n"
        )
    };
}

/// PV entry stubs: Xen's exception frame has the interrupted `rcx` and
/// `r11` on top of what the CPU pushes; popping them back leaves the
/// hardware's frame, and the PVH stub does the rest.
macro_rules! pv_stub {
    ($n:literal) => {
        concat!(
            ".globl pv_trap_",
            $n,
            "\npv_trap_",
            $n,
            ":\npop rcx\npop r11\njmp trap_stub_",
            $n,
            "\n"
        )
    };
}

global_asm!(
    ".pushsection .text.trap, \"ax\", @progbits",
    "trap_common:",
    // From user mode (the CS the CPU pushed, above the vector and error
    // code), take the kernel's gs: see `percpu`. Xen does that for PV.
    "cmp byte ptr [rip + {pv}], 0",
    "jne 2f",
    "test qword ptr [rsp + 24], 3",
    "jz 2f",
    "swapgs",
    "2:",
    save_gprs!(),
    "mov rdi, rsp",
    "cld",
    // 7 words from the CPU and the stub plus 15 saved registers keep rsp
    // 16-byte aligned here, as the call below requires.
    "call trap_dispatch",
    // Threads start here too (`sched`), and system calls return through
    // it, with a `TrapFrame` at rsp.
    ".globl trap_return",
    "trap_return:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "add rsp, 16",
    "cmp byte ptr [rip + {pv}], 0",
    "jne 4f",
    // Back to user mode: give it its gs again.
    "test qword ptr [rsp + 8], 3",
    "jz 2f",
    "swapgs",
    "2:",
    "iretq",
    // PV: the `iret` hypercall takes the frame with a flags word on top
    // (0: not from `syscall`) and restores the event mask from the
    // frame's IF, which Xen set from the mask at entry, in one step: no
    // event can slip in between unmasking and returning.
    "4:",
    "push 0",
    "jmp {hypercall_page} + {iret_offset}",
    stub!(0),
    stub!(1),
    stub!(2),
    stub!(3),
    stub!(4),
    stub!(5),
    stub!(6),
    stub!(7),
    stub!(err 8),
    stub!(9),
    stub!(err 10),
    stub!(err 11),
    stub!(err 12),
    stub!(err 13),
    stub!(err 14),
    stub!(15),
    stub!(16),
    stub!(err 17),
    stub!(18),
    stub!(19),
    stub!(20),
    stub!(err 21),
    stub!(22),
    stub!(23),
    stub!(24),
    stub!(25),
    stub!(26),
    stub!(27),
    stub!(28),
    stub!(err 29),
    stub!(err 30),
    stub!(31),
    // The event upcall. An interrupt must not arrive while the code it
    // interrupts has interrupts masked, yet in the emulated host one
    // sometimes does (seen: an upcall nested in an upcall's handler,
    // whose pushed RFLAGS had IF clear, deadlocked on its own CPU's scan
    // cursor). Such an upcall is put off before anything else runs: the
    // masked code may be the syscall entry or `trap_return`, with the
    // user's `gs`, or may hold a lock the upcall takes. Nothing is lost:
    // Xen raises the callback vector for as long as `vcpu_info`'s
    // `evtchn_upcall_pending` is set, which only the scan clears, so the
    // upcall comes again once interrupts are enabled.
    ".globl trap_stub_243",
    "trap_stub_243:",
    "test qword ptr [rsp + 16], {rflags_if}",
    "jz 3f",
    "push 0",
    "push 243",
    "jmp trap_common",
    "3:",
    "lock inc qword ptr [rip + {masked}]",
    "iretq",
    // PV: Xen's event callback frame is an exception frame without an
    // error code; events are masked (`CALLBACKF_mask_events`).
    ".globl pv_event_stub",
    "pv_event_stub:",
    "pop rcx",
    "pop r11",
    "push 0",
    "push 243",
    "jmp trap_common",
    // PV: Xen could not load the segments of a return; its frame has
    // ds, es, fs, gs between `r11` and the exception frame. Reported and
    // fatal.
    ".globl pv_failsafe_stub",
    "pv_failsafe_stub:",
    "pop rcx",
    "pop r11",
    "add rsp, 32",
    "push 0",
    "push {failsafe}",
    "jmp trap_common",
    pv_stub!(0),
    pv_stub!(1),
    pv_stub!(2),
    pv_stub!(3),
    pv_stub!(4),
    pv_stub!(5),
    pv_stub!(6),
    pv_stub!(7),
    pv_stub!(8),
    pv_stub!(9),
    pv_stub!(10),
    pv_stub!(11),
    pv_stub!(12),
    pv_stub!(13),
    pv_stub!(14),
    pv_stub!(15),
    pv_stub!(16),
    pv_stub!(17),
    pv_stub!(18),
    pv_stub!(19),
    pv_stub!(20),
    pv_stub!(21),
    pv_stub!(22),
    pv_stub!(23),
    pv_stub!(24),
    pv_stub!(25),
    pv_stub!(26),
    pv_stub!(27),
    pv_stub!(28),
    pv_stub!(29),
    pv_stub!(30),
    pv_stub!(31),
    ".popsection",
    ".pushsection .rodata.trap_stubs, \"a\", @progbits",
    ".balign 8",
    ".globl trap_stubs",
    "trap_stubs:",
    ".quad trap_stub_0, trap_stub_1, trap_stub_2, trap_stub_3",
    ".quad trap_stub_4, trap_stub_5, trap_stub_6, trap_stub_7",
    ".quad trap_stub_8, trap_stub_9, trap_stub_10, trap_stub_11",
    ".quad trap_stub_12, trap_stub_13, trap_stub_14, trap_stub_15",
    ".quad trap_stub_16, trap_stub_17, trap_stub_18, trap_stub_19",
    ".quad trap_stub_20, trap_stub_21, trap_stub_22, trap_stub_23",
    ".quad trap_stub_24, trap_stub_25, trap_stub_26, trap_stub_27",
    ".quad trap_stub_28, trap_stub_29, trap_stub_30, trap_stub_31",
    ".globl pv_trap_stubs",
    "pv_trap_stubs:",
    ".quad pv_trap_0, pv_trap_1, pv_trap_2, pv_trap_3",
    ".quad pv_trap_4, pv_trap_5, pv_trap_6, pv_trap_7",
    ".quad pv_trap_8, pv_trap_9, pv_trap_10, pv_trap_11",
    ".quad pv_trap_12, pv_trap_13, pv_trap_14, pv_trap_15",
    ".quad pv_trap_16, pv_trap_17, pv_trap_18, pv_trap_19",
    ".quad pv_trap_20, pv_trap_21, pv_trap_22, pv_trap_23",
    ".quad pv_trap_24, pv_trap_25, pv_trap_26, pv_trap_27",
    ".quad pv_trap_28, pv_trap_29, pv_trap_30, pv_trap_31",
    ".popsection",
    rflags_if = const RFLAGS_IF,
    masked = sym MASKED_UPCALLS,
    pv = sym super::PV_MODE,
    hypercall_page = sym xen_hypercall_page,
    iret_offset = const xen::abi::op::IRET as usize * 32,
    failsafe = const FAILSAFE_VECTOR,
);

unsafe extern "C" {
    static xen_hypercall_page: u8;
}

/// The vector a PV failsafe callback is reported as.
pub const FAILSAFE_VECTOR: u64 = 255;

/// The address of the last page fault: CR2 under PVH; under PV, which
/// may not read CR2, the copy Xen keeps in `vcpu_info`.
pub fn fault_address() -> u64 {
    if super::is_pv() {
        super::percpu::vcpu_info().map_or(0, |vi| {
            // SAFETY: Xen writes `arch.cr2` before it delivers a page
            // fault; a volatile read of the word is all we do.
            unsafe { (&raw const vi.arch.cr2).read_volatile() }
        })
    } else {
        Cr2::read_raw()
    }
}

/// (a) Upcalls delivered while the interrupted code had interrupts masked,
/// put off by their stub (see `trap_stub_243`).
static MASKED_UPCALLS: AtomicU64 = AtomicU64::new(0);

/// How many upcalls were delivered with interrupts masked and put off.
pub fn masked_upcalls() -> u64 {
    MASKED_UPCALLS.load(Ordering::Relaxed)
}

unsafe extern "C" {
    static trap_stubs: [u64; 32];
    fn trap_stub_243();
}

/// The vector Xen raises for event-channel upcalls
/// (`HVM_PARAM_CALLBACK_IRQ`, vector type).
pub const UPCALL_VECTOR: u8 = 243;

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Loads the IDT that [`init`] built on this CPU.
pub fn load() {
    IDT.get().expect("trap::init ran").load();
}

/// Builds and loads the IDT.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY: `trap_stubs` is the constant table assembled above.
        let stubs = unsafe { trap_stubs };
        let addr = |v: usize| VirtAddr::new(stubs[v]);
        // SAFETY: each address is an assembly stub that saves a
        // `TrapFrame`, calls `trap_dispatch` and returns with `iretq`, as an
        // IDT handler must; stubs of exceptions with an error code do not
        // push a dummy one.
        unsafe {
            idt.divide_error.set_handler_addr(addr(0));
            idt.debug.set_handler_addr(addr(1));
            idt.non_maskable_interrupt.set_handler_addr(addr(2));
            idt.breakpoint.set_handler_addr(addr(3));
            idt.overflow.set_handler_addr(addr(4));
            idt.bound_range_exceeded.set_handler_addr(addr(5));
            idt.invalid_opcode.set_handler_addr(addr(6));
            idt.device_not_available.set_handler_addr(addr(7));
            idt.double_fault
                .set_handler_addr(addr(8))
                .set_stack_index(DOUBLE_FAULT_IST);
            idt.invalid_tss.set_handler_addr(addr(10));
            idt.segment_not_present.set_handler_addr(addr(11));
            idt.stack_segment_fault.set_handler_addr(addr(12));
            idt.general_protection_fault.set_handler_addr(addr(13));
            idt.page_fault.set_handler_addr(addr(14));
            idt.x87_floating_point.set_handler_addr(addr(16));
            idt.alignment_check.set_handler_addr(addr(17));
            idt.machine_check.set_handler_addr(addr(18));
            idt.simd_floating_point.set_handler_addr(addr(19));
            idt.virtualization.set_handler_addr(addr(20));
            idt.cp_protection_exception.set_handler_addr(addr(21));
            idt.hv_injection_exception.set_handler_addr(addr(28));
            idt.vmm_communication_exception.set_handler_addr(addr(29));
            idt.security_exception.set_handler_addr(addr(30));
            idt[UPCALL_VECTOR].set_handler_addr(VirtAddr::new(trap_stub_243 as *const () as u64));
        }
        idt
    });
    idt.load();
}

/// The name of exception `vector`.
pub fn vector_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error (#DE)",
        "debug (#DB)",
        "NMI",
        "breakpoint (#BP)",
        "overflow (#OF)",
        "bound range (#BR)",
        "invalid opcode (#UD)",
        "device not available (#NM)",
        "double fault (#DF)",
        "coprocessor segment overrun",
        "invalid TSS (#TS)",
        "segment not present (#NP)",
        "stack fault (#SS)",
        "general protection (#GP)",
        "page fault (#PF)",
        "reserved",
        "x87 error (#MF)",
        "alignment check (#AC)",
        "machine check (#MC)",
        "SIMD error (#XM)",
        "virtualization (#VE)",
        "control protection (#CP)",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "hypervisor injection (#HV)",
        "VMM communication (#VC)",
        "security (#SX)",
        "reserved",
    ];
    if vector == FAILSAFE_VECTOR {
        return "PV failsafe callback (Xen could not load segments)";
    }
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.cs & 3 == 0 { "kernel" } else { "user" };
        writeln!(
            f,
            "{} (vector {}), error code {:#x}, {} mode",
            vector_name(self.vector),
            self.vector,
            self.error,
            mode
        )?;
        writeln!(
            f,
            "  rip {:#018x}  cs {:#06x}  rflags {:#010x}",
            self.rip, self.cs, self.rflags
        )?;
        writeln!(f, "  rsp {:#018x}  ss {:#06x}", self.rsp, self.ss)?;
        writeln!(
            f,
            "  rax {:#018x}  rbx {:#018x}  rcx {:#018x}",
            self.rax, self.rbx, self.rcx
        )?;
        writeln!(
            f,
            "  rdx {:#018x}  rsi {:#018x}  rdi {:#018x}",
            self.rdx, self.rsi, self.rdi
        )?;
        writeln!(
            f,
            "  rbp {:#018x}  r8  {:#018x}  r9  {:#018x}",
            self.rbp, self.r8, self.r9
        )?;
        writeln!(
            f,
            "  r10 {:#018x}  r11 {:#018x}  r12 {:#018x}",
            self.r10, self.r11, self.r12
        )?;
        writeln!(
            f,
            "  r13 {:#018x}  r14 {:#018x}  r15 {:#018x}",
            self.r13, self.r14, self.r15
        )?;
        if super::is_pv() {
            return write!(f, "  cr2 {:#018x}", fault_address());
        }
        let (cr3, _) = Cr3::read_raw();
        write!(
            f,
            "  cr2 {:#018x}  cr3 {:#018x}",
            Cr2::read_raw(),
            cr3.start_address().as_u64()
        )
    }
}

impl TrapFrame {
    /// Whether the trap came from user mode.
    pub fn is_user_mode(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// RFLAGS.IF: interrupts were enabled.
pub const RFLAGS_IF: u64 = 1 << 9;

/// Page-fault error code bit: the access was a write.
pub const PF_WRITE: u64 = 1 << 1;
/// Page-fault error code bit: the access was an instruction fetch.
pub const PF_INSN: u64 = 1 << 4;
