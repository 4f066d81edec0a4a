//! HVM operations and parameters (`hvm/hvm_op.h`, `hvm/params.h`).

use super::DomId;

/// `HVMOP_set_param`.
pub const HVMOP_SET_PARAM: u32 = 0;
/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u32 = 1;

/// `struct xen_hvm_param`: argument of `HVMOP_{get,set}_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmParam {
    /// Domain, usually [`DOMID_SELF`](super::DOMID_SELF).
    pub domid: DomId,
    /// Explicit padding to the C layout.
    pub pad: u16,
    /// One of the `PARAM_*` indices.
    pub index: u32,
    /// The value read or written.
    pub value: u64,
}

/// `HVM_PARAM_CALLBACK_IRQ`: how event-channel upcalls are delivered.
pub const PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`: frame of the xenstore ring.
pub const PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: event channel of the xenstore ring.
pub const PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_CONSOLE_PFN`: frame of the PV console ring.
pub const PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: event channel of the PV console ring.
pub const PARAM_CONSOLE_EVTCHN: u32 = 18;
