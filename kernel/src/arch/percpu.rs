//! Per-CPU data of the architecture: the words the entry paths reach
//! through `gs` (the running thread's kernel stack, the user stack pointer
//! between `syscall` and the frame push, the CPU's index) and each CPU's
//! GDT and TSS.
//!
//! In ring 0 `GS_BASE` holds the running CPU's [`CpuArch`]; in ring 3 it
//! holds the user's (always 0: user code cannot write it without
//! `wrgsbase`, which CR4 leaves off, and the GDT's descriptors have base
//! 0) and `KERNEL_GS_BASE` the kernel's. Every entry from ring 3 (system
//! call, exception, interrupt) does `swapgs` first, every return to ring 3
//! does it last (`trap_return`); entries from ring 0 leave both alone.
//! A PV kernel runs in ring 3 and never swaps: Xen keeps the two bases
//! and loads the kernel's on every entry to guest kernel mode.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | `kernel_rsp`, the TSS's `rsp0` | (c) written only by the CPU itself, interrupts off |
//! | `user_rsp` | (c) the CPU's `syscall` entry, interrupts masked |
//! | `id`, `this` | (i) written once before the CPU loads its `gs` |
//! | `vcpu_info` | (c) written by the CPU itself when it registers it |
//! | the GDT | (i) built once by the CPU itself |

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::{GsBase, KernelGsBase};
use x86_64::structures::gdt::{GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use xen::abi::pv::SEGBASE_GS_KERNEL;
use xen::abi::shared_info::VcpuInfo;

/// Most CPUs the kernel runs on: the vCPUs with a `vcpu_info` slot in the
/// shared info page (`XEN_LEGACY_MAX_VCPUS`).
pub const MAX_CPUS: usize = xen::abi::shared_info::LEGACY_MAX_VCPUS;

/// `gs`-relative offset of [`CpuArch::kernel_rsp`], for the entry code.
pub const GS_KERNEL_RSP: usize = 8;
/// `gs`-relative offset of [`CpuArch::user_rsp`], for the entry code.
pub const GS_USER_RSP: usize = 16;
/// `gs`-relative offset of [`CpuArch::id`].
const GS_ID: usize = 24;

/// The GDT of one CPU and its selectors.
pub(super) struct Tables {
    pub gdt: GlobalDescriptorTable,
    pub code: SegmentSelector,
    pub data: SegmentSelector,
    pub tss: SegmentSelector,
}

/// One CPU's architectural state. The first four words are reached from
/// assembly through `gs` at the offsets above.
#[repr(C, align(64))]
pub struct CpuArch {
    /// (i) Our own address: `gs:0`.
    this: AtomicU64,
    /// (c) Top of the running thread's kernel stack: `syscall` loads it.
    kernel_rsp: AtomicU64,
    /// (c) The user rsp between `syscall` and the frame push.
    user_rsp: AtomicU64,
    /// (i) The CPU's index.
    id: AtomicU64,
    /// (c) The TSS: `rsp0` for entries from user mode, the IST stacks.
    pub(super) tss: UnsafeCell<TaskStateSegment>,
    /// (i) The GDT, which names the TSS.
    pub(super) tables: Once<Tables>,
    /// (c) The CPU's `vcpu_info` once events are set up (0 before): PV
    /// masks interrupts there.
    vcpu_info: AtomicU64,
}

// SAFETY: the TSS is written only by its own CPU with interrupts off
// (`set_kernel_stack`) or before the CPU loads it (`gdt::init`), and read
// by that CPU's hardware; every other field is atomic or a `Once`.
unsafe impl Sync for CpuArch {}

static CPUS: [CpuArch; MAX_CPUS] = [const {
    CpuArch {
        this: AtomicU64::new(0),
        kernel_rsp: AtomicU64::new(0),
        user_rsp: AtomicU64::new(0),
        id: AtomicU64::new(0),
        tss: UnsafeCell::new(TaskStateSegment::new()),
        tables: Once::new(),
        vcpu_info: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// CPU `cpu`'s state.
pub(super) fn cpu(cpu: usize) -> &'static CpuArch {
    &CPUS[cpu]
}

/// Points this CPU's `gs` at slot `cpu`. Called once per CPU, first thing,
/// with interrupts off.
pub fn init(cpu: usize) {
    let c = &CPUS[cpu];
    let at = c as *const CpuArch as u64;
    c.this.store(at, Ordering::Relaxed);
    c.id.store(cpu as u64, Ordering::Relaxed);
    if super::is_pv() {
        // Xen keeps the user's gs base apart and swaps it on every change
        // of guest mode; only the kernel's is ours to set.
        if let Err(e) = xen::pv::set_segment_base(SEGBASE_GS_KERNEL, at) {
            panic!("set_segment_base: Xen error {}", e.0);
        }
    } else {
        GsBase::write(VirtAddr::new(at));
        KernelGsBase::write(VirtAddr::new(0));
    }
}

/// Records `vi` as CPU `cpu`'s `vcpu_info` (where Xen reads its upcall
/// mask), for [`vcpu_info`].
pub fn set_vcpu_info(cpu: usize, vi: &'static VcpuInfo) {
    CPUS[cpu]
        .vcpu_info
        .store(vi as *const VcpuInfo as u64, Ordering::Release);
}

/// The running CPU's `vcpu_info`, once events are set up.
pub fn vcpu_info() -> Option<&'static VcpuInfo> {
    let at = CPUS[id()].vcpu_info.load(Ordering::Acquire);
    // SAFETY: only `set_vcpu_info` stores here, from a `&'static`.
    (at != 0).then(|| unsafe { &*(at as *const VcpuInfo) })
}

/// The index of the running CPU (0 is the boot CPU). The kernel is not
/// preempted, so the answer holds until the caller blocks or yields.
pub fn id() -> usize {
    let id: u64;
    // SAFETY: in ring 0 `gs` names this CPU's `CpuArch` (set by `init`
    // before anything calls this), whose `id` word is at `GS_ID`.
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) id, off = const GS_ID,
            options(nostack, readonly, preserves_flags));
    }
    id as usize
}

/// Makes `top` the kernel stack of this CPU's next `syscall` entry.
pub(super) fn set_syscall_stack(top: u64) {
    CPUS[id()].kernel_rsp.store(top, Ordering::Relaxed);
}
