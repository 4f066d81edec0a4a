//! The kernel's grant table: `xen::grant::GrantTable` with its frames in
//! the guest-physical hole, placed by Xen on demand.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;

use spin::Mutex;

use spin::Once;
use xen::abi::grant_table::GrantFrame;
use xen::gnttab::QuerySizeError;
use xen::grant::{GrantOps, GrantStats, GrantTable, LinearFrames, Reaped};

use crate::layout::{self, PAGE_SIZE};

/// Hole frames reserved for the table: Xen's per-domain maximum is set by
/// xl's `max_grant_frames` (64 by default); 256 frames hold 131072 v1
/// entries.
pub const TABLE_FRAMES: u32 = 256;

/// The grant table type the kernel uses.
pub type Table = GrantTable<xen::grant::Xen, LinearFrames>;

/// The kernel's table frozen for a suspend ([`xen::grant::Frozen`]).
pub type Frozen<'a> = xen::grant::Frozen<'a, xen::grant::Xen, LinearFrames>;

static TABLE: Once<Arc<Table>> = Once::new();
/// Deferred grants that completed when another owner (gntdev) reaped the
/// table: their owners collect them with [`take_reaped`].
static REAPED: Mutex<Vec<Reaped>> = Mutex::new(Vec::new());

/// Why the grant table could not be set up.
pub enum InitError {
    /// No room in the hole.
    NoHole,
    /// Xen refused to size or place the table.
    Xen(QuerySizeError),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoHole => f.write_str("no room in the guest-physical hole"),
            Self::Xen(e) => write!(f, "Xen refused the table: {e:?}"),
        }
    }
}

/// Reserves hole frames for the table and places its first frame.
pub fn init() -> Result<&'static Table, InitError> {
    let run = layout::alloc_hole(u64::from(TABLE_FRAMES)).map_err(|_| InitError::NoHole)?;
    let base = NonNull::new((run.gfn * PAGE_SIZE) as *mut GrantFrame).ok_or(InitError::NoHole)?;
    // SAFETY: the run is ours alone in the hole, identity-mapped, and Xen
    // places a grant frame at each of its GFNs before the table uses it.
    let frames = unsafe { LinearFrames::new(run.gfn, base, TABLE_FRAMES) };
    let table = GrantTable::new(xen::grant::Xen, frames).map_err(InitError::Xen)?;
    Ok(TABLE.call_once(|| Arc::new(table)))
}

/// The grant table; [`init`] must have run.
pub fn table() -> &'static Table {
    TABLE.get().expect("grants::init ran")
}

/// The table's counters (references, ops, hypercalls).
pub fn stats() -> GrantStats {
    table().stats()
}

/// The grant table as a shared reference, for services that keep one
/// (gntdev); [`init`] must have run.
pub fn shared() -> Arc<Table> {
    TABLE.get().expect("grants::init ran").clone()
}

/// Hands deferred grants that a reap completed to their owners: kept
/// until [`take_reaped`].
pub fn route_reaped(reaped: Vec<Reaped>) {
    if !reaped.is_empty() {
        REAPED.lock().extend(reaped);
    }
}

/// Takes the deferred grants completed by someone else's reap.
pub fn take_reaped() -> Vec<Reaped> {
    core::mem::take(&mut *REAPED.lock())
}
