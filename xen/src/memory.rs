//! Memory operations (`XENMEM_*`).

use crate::abi::DOMID_SELF;
use crate::abi::memory::{
    XENMAPSPACE_grant_table, XENMAPSPACE_shared_info, XENMEM_add_to_physmap,
    XENMEM_remove_from_physmap, XenAddToPhysmap, XenRemoveFromPhysmap,
};
use crate::abi::op::MEMORY_OP;
use crate::hypercall::{self, XenErrno};

/// Places page `idx` of `space` at our guest frame `gfn`
/// (`XENMEM_add_to_physmap`).
///
/// # Safety
/// `gfn` must be a frame we do not use for anything else (a hole, or a
/// page given up for this): whatever was there is replaced.
pub unsafe fn add_to_physmap(space: u32, idx: u64, gfn: u64) -> Result<(), XenErrno> {
    let mut arg = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn: gfn,
    };
    // SAFETY: `arg` is valid for the call; the caller guarantees `gfn`.
    XenErrno::check(unsafe { hypercall::op_arg(MEMORY_OP, XENMEM_add_to_physmap, &raw mut arg) })
        .map(drop)
}

/// Places the shared info page at `gfn`.
///
/// # Safety
/// As for [`add_to_physmap`].
pub unsafe fn map_shared_info(gfn: u64) -> Result<(), XenErrno> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { add_to_physmap(XENMAPSPACE_shared_info, 0, gfn) }
}

/// Places grant-table frame `index` at `gfn`, growing the table when
/// `index` is past its current end (up to `max_nr_frames`).
///
/// # Safety
/// As for [`add_to_physmap`].
pub unsafe fn map_grant_frame(index: u32, gfn: u64) -> Result<(), XenErrno> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { add_to_physmap(XENMAPSPACE_grant_table, u64::from(index), gfn) }
}

/// Removes whatever is at guest frame `gfn` (`XENMEM_remove_from_physmap`),
/// leaving a hole.
///
/// # Safety
/// Nothing may use the frame any more.
pub unsafe fn remove_from_physmap(gfn: u64) -> Result<(), XenErrno> {
    let mut arg = XenRemoveFromPhysmap {
        domid: DOMID_SELF,
        gpfn: gfn,
    };
    // SAFETY: `arg` is valid for the call; the caller guarantees the frame
    // is unused.
    XenErrno::check(unsafe {
        hypercall::op_arg(MEMORY_OP, XENMEM_remove_from_physmap, &raw mut arg)
    })
    .map(drop)
}
