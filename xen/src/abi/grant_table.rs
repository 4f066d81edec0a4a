//! Grant tables, version 1 (`grant_table.h`).
//!
//! A domain shares one of its frames by writing a [`GrantEntryV1`] into its
//! grant table; a peer then maps or copies it by (domain, reference). The
//! entry's `flags` are shared with Xen, which sets [`GTF_reading`] and
//! [`GTF_writing`] while the frame is mapped, so the guest-side view
//! ([`GrantEntry`]) uses atomics with the same layout.

// The C names are kept (as xen-sys does) so a reader can grep the headers.
#![allow(non_upper_case_globals)]

use core::sync::atomic::{AtomicU16, AtomicU32};

use super::DomId;

/// A grant reference (`grant_ref_t`): an index into a grant table.
pub type GrantRef = u32;
/// A handle for one foreign mapping (`grant_handle_t`).
pub type GrantHandle = u32;

/// `struct grant_entry_v1`: one entry of a version 1 grant table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    /// `GTF_*` flags.
    pub flags: u16,
    /// The domain allowed to use the entry.
    pub domid: DomId,
    /// The granted frame (a GFN for a translated guest such as PVH).
    pub frame: u32,
}

/// [`GrantEntryV1`] as shared memory: the same layout with atomic fields,
/// because Xen updates `flags` while the guest reads or changes it.
#[repr(C)]
#[derive(Debug, Default)]
pub struct GrantEntry {
    /// `GTF_*` flags.
    pub flags: AtomicU16,
    /// The domain allowed to use the entry.
    pub domid: AtomicU16,
    /// The granted frame.
    pub frame: AtomicU32,
}

/// Bytes in one grant-table frame.
pub const GRANT_FRAME_SIZE: usize = 4096;
/// Version 1 entries in one grant-table frame.
pub const ENTRIES_PER_FRAME: usize = GRANT_FRAME_SIZE / core::mem::size_of::<GrantEntryV1>();

/// One page of a version 1 grant table, as the guest sees it.
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct GrantFrame {
    /// The entries, indexed by `ref % ENTRIES_PER_FRAME`.
    pub entries: [GrantEntry; ENTRIES_PER_FRAME],
}

impl Default for GrantFrame {
    fn default() -> Self {
        Self {
            entries: core::array::from_fn(|_| GrantEntry::default()),
        }
    }
}

/// `GNTTAB_NR_RESERVED_ENTRIES`: entries the toolstack owns (console,
/// xenstore); a guest never hands them out.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE`.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// `GNTTAB_RESERVED_XENSTORE`.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// `GTF_invalid`: the entry grants nothing.
pub const GTF_invalid: u16 = 0;
/// `GTF_permit_access`: `domid` may map or copy `frame`.
pub const GTF_permit_access: u16 = 1;
/// `GTF_accept_transfer`: `domid` may transfer a frame to us.
pub const GTF_accept_transfer: u16 = 2;
/// `GTF_transitive` (version 2 only).
pub const GTF_transitive: u16 = 3;
/// `GTF_type_mask`.
pub const GTF_type_mask: u16 = 3;
/// `GTF_readonly`: the peer may only read.
pub const GTF_readonly: u16 = 1 << 2;
/// `GTF_reading`: set by Xen while the peer has the frame mapped.
pub const GTF_reading: u16 = 1 << 3;
/// `GTF_writing`: set by Xen while the peer has the frame mapped writable.
pub const GTF_writing: u16 = 1 << 4;
/// `GTF_PWT`: write-through caching for the peer's mapping.
pub const GTF_PWT: u16 = 1 << 5;
/// `GTF_PCD`: uncached mapping for the peer.
pub const GTF_PCD: u16 = 1 << 6;
/// `GTF_PAT`: PAT bit for the peer's mapping.
pub const GTF_PAT: u16 = 1 << 7;
/// `GTF_sub_page` (version 2 only).
pub const GTF_sub_page: u16 = 1 << 8;
/// `GTF_transfer_committed`.
pub const GTF_transfer_committed: u16 = 1 << 2;
/// `GTF_transfer_completed`.
pub const GTF_transfer_completed: u16 = 1 << 3;

/// `GNTTABOP_map_grant_ref`.
pub const GNTTABOP_map_grant_ref: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`.
pub const GNTTABOP_unmap_grant_ref: u32 = 1;
/// `GNTTABOP_setup_table`.
pub const GNTTABOP_setup_table: u32 = 2;
/// `GNTTABOP_dump_table`.
pub const GNTTABOP_dump_table: u32 = 3;
/// `GNTTABOP_transfer`.
pub const GNTTABOP_transfer: u32 = 4;
/// `GNTTABOP_copy`.
pub const GNTTABOP_copy: u32 = 5;
/// `GNTTABOP_query_size`.
pub const GNTTABOP_query_size: u32 = 6;
/// `GNTTABOP_unmap_and_replace`.
pub const GNTTABOP_unmap_and_replace: u32 = 7;
/// `GNTTABOP_set_version`.
pub const GNTTABOP_set_version: u32 = 8;
/// `GNTTABOP_get_status_frames`.
pub const GNTTABOP_get_status_frames: u32 = 9;
/// `GNTTABOP_get_version`.
pub const GNTTABOP_get_version: u32 = 10;

/// `GNTMAP_device_map`.
pub const GNTMAP_device_map: u32 = 1 << 0;
/// `GNTMAP_host_map`: map at `host_addr` (a GPA for translated guests).
pub const GNTMAP_host_map: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_readonly: u32 = 1 << 2;
/// `GNTMAP_application_map`.
pub const GNTMAP_application_map: u32 = 1 << 3;
/// `GNTMAP_contains_pte`: `host_addr` is the machine address of a PTE.
pub const GNTMAP_contains_pte: u32 = 1 << 4;

/// `GNTST_okay`.
pub const GNTST_okay: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_general_error: i16 = -1;
/// `GNTST_bad_domain`.
pub const GNTST_bad_domain: i16 = -2;
/// `GNTST_bad_gntref`.
pub const GNTST_bad_gntref: i16 = -3;
/// `GNTST_bad_handle`.
pub const GNTST_bad_handle: i16 = -4;
/// `GNTST_bad_virt_addr`.
pub const GNTST_bad_virt_addr: i16 = -5;
/// `GNTST_bad_dev_addr`.
pub const GNTST_bad_dev_addr: i16 = -6;
/// `GNTST_no_device_space`.
pub const GNTST_no_device_space: i16 = -7;
/// `GNTST_permission_denied`.
pub const GNTST_permission_denied: i16 = -8;
/// `GNTST_bad_page`.
pub const GNTST_bad_page: i16 = -9;
/// `GNTST_bad_copy_arg`.
pub const GNTST_bad_copy_arg: i16 = -10;
/// `GNTST_address_too_big`.
pub const GNTST_address_too_big: i16 = -11;
/// `GNTST_eagain`: not done, try again (the frame is paged out or shared).
pub const GNTST_eagain: i16 = -12;
/// `GNTST_no_space`: out of maptrack handles.
pub const GNTST_no_space: i16 = -13;

/// `GNTTABOP_error_msgs`, indexed by `-status`.
pub const GNTTABOP_ERROR_MSGS: [&str; 14] = [
    "okay",
    "undefined error",
    "unrecognised domain id",
    "invalid grant reference",
    "invalid mapping handle",
    "invalid virtual address",
    "invalid device address",
    "no spare translation slot in the I/O MMU",
    "permission denied",
    "bad page",
    "copy arguments cross page boundary",
    "page address size too large",
    "operation not done; try again",
    "out of space",
];

/// `struct gnttab_map_grant_ref`: one op of `GNTTABOP_map_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    /// IN: where to map (a guest-physical address with `GNTMAP_host_map`).
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: the granter's reference.
    pub ref_: GrantRef,
    /// IN: the granting domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for the unmap.
    pub handle: GrantHandle,
    /// OUT: bus address with `GNTMAP_device_map`.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`: one op of `GNTTABOP_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    /// IN: the address given to the map.
    pub host_addr: u64,
    /// IN: the bus address, with `GNTMAP_device_map`.
    pub dev_bus_addr: u64,
    /// IN: the handle the map returned.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
}

/// `struct gnttab_setup_table`: argument of `GNTTABOP_setup_table`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GnttabSetupTable {
    /// IN: the domain, usually [`DOMID_SELF`](super::DOMID_SELF).
    pub dom: DomId,
    /// IN: frames wanted.
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: guest handle of a `xen_pfn_t` array of `nr_frames` entries.
    pub frame_list: *mut u64,
}

/// `struct gnttab_query_size`: argument of `GNTTABOP_query_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    /// IN: the domain.
    pub dom: DomId,
    /// OUT: frames in the table now.
    pub nr_frames: u32,
    /// OUT: frames the table may grow to.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
}

/// `GNTCOPY_source_gref`: the source is a grant reference, not a GFN.
pub const GNTCOPY_source_gref: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: the destination is a grant reference, not a GFN.
pub const GNTCOPY_dest_gref: u16 = 1 << 1;

/// `struct gnttab_copy_ptr`: one side of a [`GnttabCopy`]. `u` is a grant
/// reference or a GFN, as the op's `GNTCOPY_*` flags say.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// `union { grant_ref_t ref; xen_pfn_t gmfn; }`.
    pub u: u64,
    /// The domain owning the frame.
    pub domid: DomId,
    /// Byte offset in the frame.
    pub offset: u16,
}

/// `struct gnttab_copy`: one op of `GNTTABOP_copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    /// IN: where to copy from.
    pub source: GnttabCopyPtr,
    /// IN: where to copy to.
    pub dest: GnttabCopyPtr,
    /// IN: bytes; the range may not cross a page boundary on either side.
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
}
