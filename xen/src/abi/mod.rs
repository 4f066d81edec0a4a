//! Xen's public ABI, as laid out in `xen/include/public`.
//!
//! Hypercall numbers and sub-operation constants come from `xen-sys` where
//! it has them; the structures (and the constants of headers it lacks) are
//! defined here with `#[repr(C)]`, and every one is pinned by a
//! size-and-offset test against the C headers (`tests/abi_layout.rs`).

pub mod console;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod memory;
pub mod pv;
pub mod sched;
pub mod shared_info;
pub mod start_info;
pub mod vcpu;
pub mod xs_wire;

/// A domain identifier (`domid_t`).
pub type DomId = u16;

/// The calling domain, wherever a `domid_t` is expected (`DOMID_SELF`).
pub const DOMID_SELF: DomId = 0x7ff0;
/// `DOMID_FIRST_RESERVED`: ids from here on name no ordinary domain.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;

/// An event channel port (`evtchn_port_t`).
pub type Port = u32;

/// Bytes in a page (and a frame).
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Hypercall numbers (`__HYPERVISOR_*`), re-exported from `xen-sys`.
pub mod op {
    pub use xen_sys::__HYPERVISOR_console_io as CONSOLE_IO;
    pub use xen_sys::{
        __HYPERVISOR_event_channel_op as EVENT_CHANNEL_OP,
        __HYPERVISOR_grant_table_op as GRANT_TABLE_OP, __HYPERVISOR_hvm_op as HVM_OP,
        __HYPERVISOR_memory_op as MEMORY_OP, __HYPERVISOR_sched_op as SCHED_OP,
        __HYPERVISOR_set_timer_op as SET_TIMER_OP, __HYPERVISOR_vcpu_op as VCPU_OP,
        __HYPERVISOR_xen_version as XEN_VERSION,
    };
    // The PV-only operations.
    pub use xen_sys::{
        __HYPERVISOR_callback_op as CALLBACK_OP, __HYPERVISOR_iret as IRET,
        __HYPERVISOR_mmu_update as MMU_UPDATE, __HYPERVISOR_mmuext_op as MMUEXT_OP,
        __HYPERVISOR_set_segment_base as SET_SEGMENT_BASE,
        __HYPERVISOR_set_trap_table as SET_TRAP_TABLE, __HYPERVISOR_stack_switch as STACK_SWITCH,
        __HYPERVISOR_update_va_mapping as UPDATE_VA_MAPPING,
    };
}
