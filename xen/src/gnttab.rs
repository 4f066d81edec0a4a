//! Grant-table hypercalls (`GNTTABOP_*`): thin, typed wrappers.
//!
//! The batched operations take a slice and issue ONE hypercall for all of
//! it; each op's own `status` says how it went. They are `unsafe` because
//! Xen changes our guest-physical memory (maps at `host_addr`, writes the
//! destination of a copy). The policy on top (retries, reference
//! allocation, end of access) is in [`crate::grant`].

use crate::abi::DomId;
use crate::abi::grant_table::{
    GNTST_okay, GNTTABOP_copy, GNTTABOP_map_grant_ref, GNTTABOP_query_size, GNTTABOP_setup_table,
    GNTTABOP_unmap_grant_ref, GnttabCopy, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable,
    GnttabUnmapGrantRef,
};
use crate::abi::op::GRANT_TABLE_OP;
use crate::hypercall::{self, XenErrno};

mod status;

pub use status::GrantError;

/// Issues `cmd` over `count` consecutive structures at `ops`.
///
/// # Safety
/// As for [`hypercall::raw`]: `ops` must point to `count` structures of
/// the kind `cmd` expects.
unsafe fn batch<T>(cmd: u32, ops: *mut T, count: usize) -> Result<(), XenErrno> {
    // SAFETY: forwarded to the caller's contract.
    let ret = unsafe {
        hypercall::raw(
            GRANT_TABLE_OP,
            u64::from(cmd),
            ops as u64,
            count as u64,
            0,
            0,
        )
    };
    XenErrno::check(ret).map(drop)
}

/// Maps every op of `ops` with one `GNTTABOP_map_grant_ref`.
///
/// `Err` means the hypercall itself failed (no op was looked at, or Xen
/// stopped early); otherwise read each op's `status` and `handle`.
///
/// # Safety
/// Each `host_addr` (with `GNTMAP_host_map`, a guest-physical address in a
/// PVH guest) must be a frame we own and do not otherwise use: Xen puts
/// the foreign frame there, replacing whatever was at that address.
pub unsafe fn map_grant_ref(ops: &mut [GnttabMapGrantRef]) -> Result<(), XenErrno> {
    // SAFETY: the slice is valid for Xen's reads and writes of the ops; the
    // caller guarantees the addresses (see above).
    unsafe { batch(GNTTABOP_map_grant_ref, ops.as_mut_ptr(), ops.len()) }
}

/// Unmaps every op of `ops` with one `GNTTABOP_unmap_grant_ref`.
///
/// # Safety
/// Nothing may use the frames at the ops' `host_addr` any more: after the
/// call they no longer hold the foreign frames (a PVH guest's frame is left
/// unpopulated).
pub unsafe fn unmap_grant_ref(ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenErrno> {
    // SAFETY: as for `map_grant_ref`; the caller guarantees the frames are
    // unused.
    unsafe { batch(GNTTABOP_unmap_grant_ref, ops.as_mut_ptr(), ops.len()) }
}

/// Runs every op of `ops` with one `GNTTABOP_copy`.
///
/// # Safety
/// Every destination given as a local GFN must be memory Xen may write
/// without breaking Rust's aliasing rules (no live reference to it).
pub unsafe fn copy(ops: &mut [GnttabCopy]) -> Result<(), XenErrno> {
    // SAFETY: as for `map_grant_ref`; the caller guarantees the local
    // destinations.
    unsafe { batch(GNTTABOP_copy, ops.as_mut_ptr(), ops.len()) }
}

/// The current and maximum size of `dom`'s grant table, in frames
/// (`GNTTABOP_query_size`).
pub fn query_size(dom: DomId) -> Result<GnttabQuerySize, QuerySizeError> {
    let mut arg = GnttabQuerySize {
        dom,
        ..Default::default()
    };
    // SAFETY: `arg` is a valid `gnttab_query_size` for the whole call.
    unsafe { batch(GNTTABOP_query_size, &raw mut arg, 1) }.map_err(QuerySizeError::Hypercall)?;
    if arg.status != GNTST_okay {
        return Err(QuerySizeError::Status(GrantError::from_status(arg.status)));
    }
    Ok(arg)
}

/// Why [`query_size`] or [`setup_table`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuerySizeError {
    /// The hypercall failed.
    Hypercall(XenErrno),
    /// Xen ran it and reported a grant status.
    Status(GrantError),
}

/// Asks Xen to size our table to `frames.len()` frames and to report
/// their frame numbers (`GNTTABOP_setup_table`): how a PV guest finds its
/// table's machine frames (PVH guests place frames with
/// `XENMEM_add_to_physmap` instead).
pub fn setup_table(dom: DomId, frames: &mut [u64]) -> Result<(), QuerySizeError> {
    let mut arg = GnttabSetupTable {
        dom,
        nr_frames: frames.len() as u32,
        status: 0,
        frame_list: frames.as_mut_ptr(),
    };
    // SAFETY: `arg` is valid for the call and its list has room for
    // `nr_frames` entries, which is all Xen writes.
    unsafe { batch(GNTTABOP_setup_table, &raw mut arg, 1) }.map_err(QuerySizeError::Hypercall)?;
    if arg.status != GNTST_okay {
        return Err(QuerySizeError::Status(GrantError::from_status(arg.status)));
    }
    Ok(())
}
