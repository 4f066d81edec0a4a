//! HVM operations: parameters.

use crate::abi::DOMID_SELF;
use crate::abi::hvm::{HVMOP_GET_PARAM, HVMOP_SET_PARAM, HvmParam};
use crate::abi::op::HVM_OP;
use crate::hypercall::{self, XenErrno};

/// Reads HVM parameter `index` of this domain (`HVMOP_get_param`).
pub fn get_param(index: u32) -> Result<u64, XenErrno> {
    let mut arg = HvmParam {
        domid: DOMID_SELF,
        index,
        ..Default::default()
    };
    // SAFETY: `arg` is a valid `xen_hvm_param` for the whole call.
    XenErrno::check(unsafe { hypercall::op_arg(HVM_OP, HVMOP_GET_PARAM, &raw mut arg) })?;
    Ok(arg.value)
}

/// Sets HVM parameter `index` of this domain (`HVMOP_set_param`), e.g.
/// `PARAM_CALLBACK_IRQ` to `(2 << 56) | vector` for the event upcall.
pub fn set_param(index: u32, value: u64) -> Result<(), XenErrno> {
    let mut arg = HvmParam {
        domid: DOMID_SELF,
        index,
        value,
        ..Default::default()
    };
    // SAFETY: `arg` is a valid `xen_hvm_param` for the whole call.
    XenErrno::check(unsafe { hypercall::op_arg(HVM_OP, HVMOP_SET_PARAM, &raw mut arg) }).map(drop)
}

/// `HVM_PARAM_CALLBACK_IRQ` value asking for event upcalls as interrupt
/// `vector` on the vCPU (callback type 2, "vector").
pub fn callback_vector(vector: u8) -> u64 {
    (2 << 56) | u64::from(vector)
}
