//! The kernel's grant table: `xen::grant::GrantTable` with its frames in
//! the guest-physical hole, placed by Xen on demand.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use spin::Once;
use xen::abi::DomId;
use xen::abi::grant_table::{
    GNTMAP_contains_pte, GNTMAP_host_map, GnttabCopy, GnttabMapGrantRef, GnttabQuerySize,
    GnttabUnmapGrantRef, GrantFrame, GrantHandle, GrantRef,
};
use xen::gnttab::QuerySizeError;
use xen::grant::{
    CopyOp, EndAccess, GrantError, GrantHypercalls, GrantOps, GrantStats, GrantTable, Hole,
    LinearFrames, MapCost, MapRequest, Reaped, TableSize, UnmapRequest,
};
use xen::hypercall::XenErrno;

use crate::layout::{self, PAGE_SIZE};

/// Hole frames reserved for the table: Xen's per-domain maximum is set by
/// xl's `max_grant_frames` (64 by default); 256 frames hold 131072 v1
/// entries.
pub const TABLE_FRAMES: u32 = 256;

/// The grant table type the kernel uses.
pub type Table = GrantTable<TimedXen, LinearFrames>;

/// The kernel's table frozen for a suspend ([`xen::grant::Frozen`]).
pub type Frozen<'a> = xen::grant::Frozen<'a, TimedXen, LinearFrames>;

/// Nanoseconds spent inside `GNTTABOP_map_grant_ref` and
/// `GNTTABOP_unmap_grant_ref` since boot (pvclock time around each call).
static MAP_NS: AtomicU64 = AtomicU64::new(0);
static UNMAP_NS: AtomicU64 = AtomicU64::new(0);

/// Xen's grant-table hypercalls ([`xen::grant::Xen`]), with the time
/// spent in the map and unmap ones counted: the floor of a mapping's
/// cost, which `scripts/bench` sets against the whole
/// ([`hypercall_ns`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct TimedXen;

/// Runs `f`, adding the ns it took to `total`.
fn timed<T>(total: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let t0 = crate::events::now_ns();
    let r = f();
    total.fetch_add(
        crate::events::now_ns().saturating_sub(t0),
        Ordering::Relaxed,
    );
    r
}

// SAFETY: every call goes to `xen::grant::Xen`, Xen's own hypercalls.
unsafe impl GrantHypercalls for TimedXen {
    unsafe fn map_grant_ref(&self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenErrno> {
        if crate::arch::is_pv() {
            // A PV kernel's `host_addr` is a virtual address (the hole
            // frame's, in the direct map) whose entry Xen writes: its
            // table must exist. Without one, Xen refuses that op.
            for op in ops.iter() {
                if op.flags & (GNTMAP_host_map | GNTMAP_contains_pte) == GNTMAP_host_map {
                    let _ = crate::arch::pv::ensure_table(op.host_addr);
                }
            }
        }
        // SAFETY: forwarded to the caller's contract.
        timed(&MAP_NS, || unsafe { xen::grant::Xen.map_grant_ref(ops) })
    }

    unsafe fn unmap_grant_ref(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenErrno> {
        // SAFETY: forwarded to the caller's contract.
        timed(&UNMAP_NS, || unsafe {
            xen::grant::Xen.unmap_grant_ref(ops)
        })
    }

    unsafe fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), XenErrno> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { xen::grant::Xen.copy(ops) }
    }

    fn query_size(&self) -> Result<GnttabQuerySize, QuerySizeError> {
        xen::grant::Xen.query_size()
    }

    unsafe fn add_grant_frame(&self, index: u32, gfn: u64) -> Result<(), XenErrno> {
        // SAFETY: forwarded to the caller's contract.
        if crate::arch::is_pv() {
            // SAFETY: forwarded to the caller's contract.
            return unsafe { add_grant_frame_pv(index, gfn) };
        }
        // SAFETY: forwarded to the caller's contract.
        unsafe { xen::grant::Xen.add_grant_frame(index, gfn) }
    }

    fn backoff(&self, round: u32) {
        xen::grant::Xen.backoff(round)
    }

    fn xen_frame(&self, gfn: u64) -> u64 {
        if crate::arch::is_pv() {
            crate::arch::pv::mfn(gfn)
        } else {
            gfn
        }
    }

    fn guest_frame(&self, frame: u64) -> u64 {
        if crate::arch::is_pv() {
            crate::arch::pv::pfn(frame)
        } else {
            frame
        }
    }
}

/// PV: asks Xen for the table's first `index + 1` frames
/// (`GNTTABOP_setup_table`, which grows the table and names its machine
/// frames) and maps frame `index` at the hole address of `gfn`.
/// Allocates nothing: a suspend places the frames again with the other
/// vCPUs parked.
///
/// # Safety
/// As [`GrantHypercalls::add_grant_frame`]: `gfn`'s address is the
/// table's, used by nothing else.
unsafe fn add_grant_frame_pv(index: u32, gfn: u64) -> Result<(), XenErrno> {
    let mut all = [0u64; TABLE_FRAMES as usize];
    let frames = all.get_mut(..=index as usize).ok_or(XenErrno::EINVAL)?;
    xen::gnttab::setup_table(xen::abi::DOMID_SELF, frames).map_err(|e| match e {
        QuerySizeError::Hypercall(e) => e,
        QuerySizeError::Status(_) => XenErrno::EINVAL,
    })?;
    // SAFETY: the caller vouches for the address; the frame is ours.
    unsafe { crate::arch::pv::map_frame(gfn * PAGE_SIZE, frames[index as usize]) }
        .map_err(|_| XenErrno::ENOMEM)
}

/// Nanoseconds spent in the map and in the unmap hypercalls since boot.
pub fn hypercall_ns() -> (u64, u64) {
    (
        MAP_NS.load(Ordering::Relaxed),
        UNMAP_NS.load(Ordering::Relaxed),
    )
}

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
    let table = GrantTable::new(TimedXen, frames).map_err(InitError::Xen)?;
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

/// The grant operations for gntdev: the table's, except that under PV a
/// foreign grant "mapped" into a hole frame is bound to it
/// ([`PvGrants`]).
pub fn ops() -> Arc<dyn GrantOps + Send + Sync> {
    if crate::arch::is_pv() {
        Arc::new(PvGrants(shared()))
    } else {
        shared()
    }
}

/// PV: the table's grant operations, but a map into a hole binds each
/// frame to its grant (`arch::pv_grant::bind`, no hypercall) and an
/// unmap ends the binding: a PV kernel's foreign grants live in the
/// page-table entries that map them, which the pmap makes and removes
/// with Xen, all of a mapping in one call each. A bad reference is
/// therefore refused at the first fault, by Xen, not here.
pub struct PvGrants(Arc<Table>);

impl GrantOps for PvGrants {
    fn grant_access(&self, peer: DomId, gfn: u64, readonly: bool) -> Result<GrantRef, GrantError> {
        self.0.grant_access(peer, gfn, readonly)
    }

    fn end_access(&self, gref: GrantRef) -> Result<EndAccess, GrantError> {
        self.0.end_access(gref)
    }

    fn in_use(&self, gref: GrantRef) -> bool {
        self.0.in_use(gref)
    }

    fn reap(&self) -> Vec<Reaped> {
        self.0.reap()
    }

    /// Binds each request's hole frame to its grant; no hypercall.
    fn map_costed(
        &self,
        hole: &Hole,
        reqs: &[MapRequest],
    ) -> (Vec<Result<GrantHandle, GrantError>>, MapCost) {
        let res = reqs
            .iter()
            .map(|r| {
                let gfn = hole.gfn(r.slot).ok_or(GrantError::BadVirtAddr)?;
                crate::arch::pv_grant::bind(gfn, r.dom, r.gref, r.readonly);
                Ok(r.slot as GrantHandle)
            })
            .collect();
        (res, MapCost::default())
    }

    /// Ends the bindings: the page-table entries that mapped the frames
    /// went (with one unmap call each operation) before the mapping did.
    fn unmap(&self, hole: &Hole, reqs: &[UnmapRequest]) -> Vec<Result<(), GrantError>> {
        reqs.iter()
            .map(|r| {
                let gfn = hole.gfn(r.slot).ok_or(GrantError::BadVirtAddr)?;
                crate::arch::pv_grant::unbind(gfn);
                Ok(())
            })
            .collect()
    }

    fn unmap_costed(
        &self,
        hole: &Hole,
        reqs: &[UnmapRequest],
    ) -> (Vec<Result<(), GrantError>>, u64) {
        (self.unmap(hole, reqs), 0)
    }

    unsafe fn copy(&self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { self.0.copy(ops) }
    }

    fn query_size(&self) -> Result<TableSize, GrantError> {
        self.0.query_size()
    }

    fn stats(&self) -> GrantStats {
        self.0.stats()
    }
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
