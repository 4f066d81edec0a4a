//! The 64-bit PV interface (`xen.h`, `arch-x86/xen-x86_64.h`,
//! `arch-x86/xen.h`, `callback.h`): the start info a PV guest is entered
//! with, page-table updates, the virtual IDT and the segment selectors
//! Xen's own GDT provides.

/// The start of `start_info.magic` for a 64-bit PV guest: "xen-3.0-x86_64"
/// (the rest of the 32 bytes is NUL).
pub const START_MAGIC: &[u8; 14] = b"xen-3.0-x86_64";

/// `struct start_info` (x86_64): what Xen hands a PV guest in `rsi`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    /// `xen-<version>-<platform>`, NUL-padded.
    pub magic: [u8; 32],
    /// Pages of RAM the domain has.
    pub nr_pages: u64,
    /// Machine address of the shared info page.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Machine frame of the xenstore ring.
    pub store_mfn: u64,
    /// Event channel of the xenstore ring.
    pub store_evtchn: u32,
    /// Machine frame of the console ring (`console.domU.mfn`).
    pub console_mfn: u64,
    /// Event channel of the console ring (`console.domU.evtchn`).
    pub console_evtchn: u32,
    /// Virtual address of the boot page tables' top level.
    pub pt_base: u64,
    /// Number of boot page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the pfn-to-mfn list.
    pub mfn_list: u64,
    /// Virtual address of the module (xl's `ramdisk=`), or its pfn with
    /// [`SIF_MOD_START_PFN`].
    pub mod_start: u64,
    /// Size of the module in bytes.
    pub mod_len: u64,
    /// The command line, NUL-terminated.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First pfn of the initial p2m table when it is mapped apart.
    pub first_p2m_pfn: u64,
    /// Frames of the initial p2m table when it is mapped apart.
    pub nr_p2m_frames: u64,
}

/// Length of `start_info.cmd_line`.
pub const MAX_GUEST_CMDLINE: usize = 1024;
/// `SIF_MOD_START_PFN`: `mod_start` is a pfn, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;

/// `struct mmu_update`: one checked page-table write.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuUpdate {
    /// Machine address of the entry, with the command in its low 2 bits.
    pub ptr: u64,
    /// The entry's new contents.
    pub val: u64,
}

/// `MMU_NORMAL_PT_UPDATE`: a checked `*ptr = val`.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;

/// `struct mmuext_op`: an extended MMU operation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    /// Padding to the union.
    pub pad: u32,
    /// A machine frame or a linear address, by command.
    pub arg1: u64,
    /// A vCPU mask pointer, an entry count or a source frame, by command.
    pub arg2: u64,
}

/// `MMUEXT_PIN_L1_TABLE`.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// `MMUEXT_PIN_L4_TABLE`.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// `MMUEXT_UNPIN_TABLE`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// `MMUEXT_NEW_BASEPTR`: load a pinned L4 as the kernel's page tables.
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// `MMUEXT_INVLPG_LOCAL`.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// `MMUEXT_TLB_FLUSH_ALL`: flush the TLBs of every vCPU of the domain.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// `MMUEXT_NEW_USER_BASEPTR`: the L4 used in guest user mode.
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;

/// `UVMF_INVLPG`: `update_va_mapping` flushes the one entry, locally.
pub const UVMF_INVLPG: u64 = 2;

/// `struct trap_info`: one entry of the virtual IDT.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapInfo {
    /// Exception vector.
    pub vector: u8,
    /// Bits 0-1: the lowest privilege level that may raise it with `int`;
    /// [`TI_MASK_EVENTS`]: mask events on entry.
    pub flags: u8,
    /// Code selector of the handler.
    pub cs: u16,
    /// Handler address.
    pub address: u64,
}

/// `trap_info.flags` bit 2: entry masks events (an interrupt gate).
pub const TI_MASK_EVENTS: u8 = 4;

/// `FLAT_KERNEL_CS64`: the 64-bit code selector of Xen's GDT that a PV
/// kernel (in ring 3) runs with.
pub const FLAT_KERNEL_CS: u16 = 0xe033;

/// `FLAT_USER_CS64`: the 64-bit code selector of guest user mode.
pub const FLAT_USER_CS: u16 = 0xe033;
/// `FLAT_USER_SS64`: the stack selector of guest user mode.
pub const FLAT_USER_SS: u16 = 0xe02b;
/// `FLAT_KERNEL_SS64`: the stack selector of guest kernel mode.
pub const FLAT_KERNEL_SS: u16 = 0xe02b;

/// `SEGBASE_GS_KERNEL`: the `gs` base of guest kernel mode.
pub const SEGBASE_GS_KERNEL: u32 = 2;

/// `CALLBACKTYPE_event`.
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// `CALLBACKTYPE_failsafe`.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// `CALLBACKTYPE_syscall`.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// `CALLBACKF_mask_events`: entry masks events.
pub const CALLBACKF_MASK_EVENTS: u16 = 1;
/// `CALLBACKOP_register`.
pub const CALLBACKOP_REGISTER: u32 = 0;

/// `struct callback_register` (x86_64: the address is a plain `unsigned
/// long`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CallbackRegister {
    /// `CALLBACKTYPE_*`.
    pub kind: u16,
    /// `CALLBACKF_*`.
    pub flags: u16,
    /// Padding.
    pub pad: u32,
    /// The handler's address.
    pub address: u64,
}

/// Start of the read-only machine-to-phys table every 64-bit PV guest
/// sees (`MACH2PHYS_VIRT_START`): entry `mfn` holds its pfn.
pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// End of Xen's part of the address space (`HYPERVISOR_VIRT_END`).
pub const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;
/// Entries of the machine-to-phys table (`MACH2PHYS_NR_ENTRIES`): a
/// larger frame number is no machine frame.
pub const MACH2PHYS_NR_ENTRIES: u64 = 1 << 35;

/// `XENVER_version`: `xen_version` returns `major << 16 | minor`.
pub const XENVER_VERSION: u64 = 0;

/// `struct cpu_user_regs` (x86_64): a PV vCPU's registers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)] // register names
pub struct CpuUserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Xen's own.
    pub error_code: u32,
    /// Xen's own.
    pub entry_vector: u32,
    pub rip: u64,
    pub cs: u16,
    pub pad0: u16,
    /// The upcall mask to restore (`rflags.IF == !saved_upcall_mask`).
    pub saved_upcall_mask: u8,
    pub pad1: [u8; 3],
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u16,
    pub pad2: [u16; 3],
    pub es: u16,
    pub pad3: [u16; 3],
    pub ds: u16,
    pub pad4: [u16; 3],
    pub fs: u16,
    pub pad5: [u16; 3],
    pub gs: u16,
    pub pad6: [u16; 3],
}

/// `struct vcpu_guest_context` (x86_64): a PV vCPU's state for
/// `VCPUOP_initialise`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VcpuGuestContext {
    /// FXSAVE area (used with [`VGCF_I387_VALID`]).
    pub fpu_ctxt: [u8; 512],
    /// `VGCF_*`.
    pub flags: u64,
    /// The registers it starts with.
    pub user_regs: CpuUserRegs,
    /// The virtual IDT.
    pub trap_ctxt: [TrapInfo; 256],
    /// LDT linear address.
    pub ldt_base: u64,
    /// LDT entries.
    pub ldt_ents: u64,
    /// GDT machine frames.
    pub gdt_frames: [u64; 16],
    /// GDT entries (0: Xen's own selectors only).
    pub gdt_ents: u64,
    /// Stack selector of entries from user mode.
    pub kernel_ss: u64,
    /// Stack of entries from user mode.
    pub kernel_sp: u64,
    /// Control registers: `ctrlreg[3]` the kernel L4 (`mfn << 12`),
    /// `ctrlreg[1]` the user L4.
    pub ctrlreg: [u64; 8],
    /// Debug registers.
    pub debugreg: [u64; 8],
    /// The event callback.
    pub event_callback_eip: u64,
    /// The failsafe callback.
    pub failsafe_callback_eip: u64,
    /// The syscall callback.
    pub syscall_callback_eip: u64,
    /// `VMASST_TYPE_*` bitmap.
    pub vm_assist: u64,
    /// `fs` base.
    pub fs_base: u64,
    /// `gs` base in guest kernel mode.
    pub gs_base_kernel: u64,
    /// `gs` base in guest user mode.
    pub gs_base_user: u64,
}

/// `VGCF_I387_VALID`: `fpu_ctxt` holds a state to load.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// `VGCF_in_kernel`: the vCPU starts in guest kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `VGCF_failsafe_disables_events`.
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// `VGCF_syscall_disables_events`.
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// `VGCF_online`.
pub const VGCF_ONLINE: u64 = 1 << 5;
