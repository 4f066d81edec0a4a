//! Memory reservation and physmap operations (`memory.h`).

// The C names are kept (as xen-sys does) so a reader can grep the headers.
#![allow(non_upper_case_globals)]

use super::DomId;

/// `XENMEM_increase_reservation`.
pub const XENMEM_increase_reservation: u32 = 0;
/// `XENMEM_decrease_reservation`.
pub const XENMEM_decrease_reservation: u32 = 1;
/// `XENMEM_populate_physmap`.
pub const XENMEM_populate_physmap: u32 = 6;
/// `XENMEM_add_to_physmap`.
pub const XENMEM_add_to_physmap: u32 = 7;
/// `XENMEM_remove_from_physmap`.
pub const XENMEM_remove_from_physmap: u32 = 15;

/// `XENMAPSPACE_shared_info`: the shared info page.
pub const XENMAPSPACE_shared_info: u32 = 0;
/// `XENMAPSPACE_grant_table`: a grant-table frame; `idx` is its number.
pub const XENMAPSPACE_grant_table: u32 = 1;
/// `XENMAPSPACE_gmfn`: one of our own frames, moved.
pub const XENMAPSPACE_gmfn: u32 = 2;
/// `XENMAPSPACE_gmfn_range`: `size` of our own frames, moved.
pub const XENMAPSPACE_gmfn_range: u32 = 3;
/// `XENMAPIDX_grant_table_status`: with `XENMAPSPACE_grant_table`, a
/// version 2 status frame.
pub const XENMAPIDX_grant_table_status: u64 = 0x8000_0000;

/// `struct xen_add_to_physmap`: argument of `XENMEM_add_to_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// The domain whose physmap changes, usually
    /// [`DOMID_SELF`](super::DOMID_SELF).
    pub domid: DomId,
    /// Pages, for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space (grant frame number, ...).
    pub idx: u64,
    /// The guest frame where the page should appear.
    pub gpfn: u64,
}

/// `struct xen_remove_from_physmap`: argument of
/// `XENMEM_remove_from_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmap {
    /// The domain whose physmap changes.
    pub domid: DomId,
    /// The guest frame to empty.
    pub gpfn: u64,
}
