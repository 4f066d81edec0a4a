//! Grant tables: sharing our frames with peers and mapping theirs.
//!
//! [`GrantOps`] is what the grant device (gntdev) needs from the
//! hypervisor. [`GrantTable`] implements it over any [`GrantHypercalls`]
//! backend (real Xen: [`Xen`]; simulated: `xen::sim`) and any
//! [`GrantFrameMemory`] (where the kernel placed the table's frames), so
//! the same code runs in the guest and in host tests.
//!
//! Batches: one [`GrantOps::map`] call issues ONE `GNTTABOP_map_grant_ref`
//! for the whole batch, then re-submits only the ops that came back
//! `GNTST_eagain`, with back-off, up to [`RetryPolicy::max_rounds`]
//! ([`submit_with_retry`]); each op reports its own result.

mod entry;
pub mod refs;
mod table;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

pub use crate::gnttab::GrantError;
pub use table::{Frozen, GrantFrameMemory, GrantTable, LinearFrames};

use crate::abi::grant_table::{
    GNTST_eagain, GnttabCopy, GnttabMapGrantRef, GnttabQuerySize, GnttabUnmapGrantRef,
};
pub use crate::abi::grant_table::{GrantHandle, GrantRef};
use crate::abi::{DomId, PAGE_SHIFT};
use crate::gnttab::QuerySizeError;
use crate::hypercall::XenErrno;

/// A range of guest-physical frames that holds no RAM and nothing else:
/// the only place foreign grants may be mapped. Only code that owns such
/// a range (the kernel's physical memory manager, or the simulator) can
/// make one, so mapping into it is safe.
#[derive(Debug, PartialEq, Eq)]
pub struct Hole {
    base_gfn: u64,
    frames: u64,
}

impl Hole {
    /// A hole of `frames` frames from `base_gfn`.
    ///
    /// # Safety
    /// The frames must be unpopulated (or given up), used by nothing else
    /// for as long as this value and any mapping in it live, and their
    /// addresses must not be handed out to another `Hole`.
    pub unsafe fn new(base_gfn: u64, frames: u64) -> Self {
        Self { base_gfn, frames }
    }

    /// The first frame.
    pub fn base_gfn(&self) -> u64 {
        self.base_gfn
    }

    /// Frames in the hole.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The frame of `slot`, if inside the hole.
    pub fn gfn(&self, slot: u64) -> Option<u64> {
        (slot < self.frames).then(|| self.base_gfn + slot)
    }

    /// The guest-physical address of `slot`, if inside the hole.
    pub fn gpa(&self, slot: u64) -> Option<u64> {
        self.gfn(slot).map(|g| g << PAGE_SHIFT)
    }
}

/// Map foreign grant `gref` of domain `dom` at slot `slot` of a [`Hole`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    /// The granting domain.
    pub dom: DomId,
    /// Its grant reference.
    pub gref: GrantRef,
    /// Frame index inside the hole.
    pub slot: u64,
    /// Map read-only (`GNTMAP_readonly`).
    pub readonly: bool,
}

/// Unmap the mapping `handle` at slot `slot` of a [`Hole`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapRequest {
    /// Frame index inside the hole, as given to the map.
    pub slot: u64,
    /// The handle the map returned.
    pub handle: GrantHandle,
}

/// One side of a grant copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopySide {
    /// A frame a peer granted us.
    Grant {
        /// The granting domain.
        dom: DomId,
        /// Its reference.
        gref: GrantRef,
        /// Byte offset in the frame.
        offset: u16,
    },
    /// One of our own frames.
    Local {
        /// Its guest frame number.
        gfn: u64,
        /// Byte offset in the frame.
        offset: u16,
    },
}

/// Copy `len` bytes from `src` to `dst` (neither range may cross a page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOp {
    /// Where from.
    pub src: CopySide,
    /// Where to.
    pub dst: CopySide,
    /// Bytes.
    pub len: u16,
}

/// How ending access to a grant went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndAccess {
    /// The peer no longer uses it: the reference is free again and the
    /// frame is ours alone.
    Ended,
    /// The peer still maps it: the reference waits on the pending list
    /// and the frame must stay allocated until [`GrantOps::reap`]
    /// returns it.
    Deferred,
}

/// A grant whose deferred end of access finally completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reaped {
    /// The reference (now free).
    pub gref: GrantRef,
    /// The frame it granted, which its owner may now free or reuse.
    pub gfn: u64,
}

/// Size of a grant table, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSize {
    /// Frames now.
    pub frames: u32,
    /// Frames it may grow to.
    pub max_frames: u32,
}

/// Counters of a grant table, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantStats {
    /// References handed out and not ended.
    pub live_refs: usize,
    /// References whose end waits for the peer to unmap.
    pub pending_refs: usize,
    /// Frames of our table placed so far.
    pub frames: u32,
    /// Map ops submitted (first attempts; retries are counted apart).
    pub map_ops: u64,
    /// Unmap ops submitted (first attempts).
    pub unmap_ops: u64,
    /// Copy ops submitted (first attempts).
    pub copy_ops: u64,
    /// Grant-table hypercalls issued (all batches, retries included).
    pub hypercalls: u64,
    /// Ops re-submitted after `GNTST_eagain`.
    pub eagain_retries: u64,
    /// Ops still `GNTST_eagain` when the retries ran out.
    pub eagain_gave_up: u64,
    /// Heap bytes the reference bookkeeping holds (it grows with the
    /// table and keeps its capacity).
    pub bookkeeping_bytes: usize,
}

/// The grant-table operations the grant device needs.
pub trait GrantOps {
    /// Grants `peer` access to our frame `gfn` (read-only or writable) and
    /// returns the reference to give it. The frame's contents become
    /// shared memory: only access it as such (volatile or atomic, or from
    /// user space).
    fn grant_access(&self, peer: DomId, gfn: u64, readonly: bool) -> Result<GrantRef, GrantError>;

    /// Ends a grant made by [`grant_access`](Self::grant_access). If the
    /// peer still maps the frame, the end is deferred (never freed under
    /// the peer, never leaked): [`reap`](Self::reap) completes it later.
    /// `Err(BadGntref)` for a reference that is not live.
    fn end_access(&self, gref: GrantRef) -> Result<EndAccess, GrantError>;

    /// Whether the peer maps `gref` now (`gnttab_query_foreign_access`).
    fn in_use(&self, gref: GrantRef) -> bool;

    /// Retries the deferred ends; returns those that completed.
    fn reap(&self) -> Vec<Reaped>;

    /// Maps a batch of foreign grants into `hole` with one hypercall (plus
    /// one per retry round of the `GNTST_eagain` ops); the result for
    /// request `i` is at index `i`, and what this call alone cost (the
    /// table's [`stats`](Self::stats) also count other CPUs' calls).
    fn map_costed(
        &self,
        hole: &Hole,
        reqs: &[MapRequest],
    ) -> (Vec<Result<GrantHandle, GrantError>>, MapCost);

    /// [`map_costed`](Self::map_costed) without the cost.
    fn map(&self, hole: &Hole, reqs: &[MapRequest]) -> Vec<Result<GrantHandle, GrantError>> {
        self.map_costed(hole, reqs).0
    }

    /// Unmaps a batch of mappings from `hole` with one hypercall. The
    /// frames are holes again afterwards.
    fn unmap(&self, hole: &Hole, reqs: &[UnmapRequest]) -> Vec<Result<(), GrantError>>;

    /// [`unmap`](Self::unmap), with the unmap hypercalls this call alone
    /// issued: one, unless the implementation unmaps elsewhere (a Xen PV
    /// kernel's grants live in the page tables that map them, and go with
    /// those entries).
    fn unmap_costed(
        &self,
        hole: &Hole,
        reqs: &[UnmapRequest],
    ) -> (Vec<Result<(), GrantError>>, u64) {
        (self.unmap(hole, reqs), 1)
    }

    /// Copies a batch with one hypercall (plus `GNTST_eagain` retries).
    ///
    /// # Safety
    /// Every [`CopySide::Local`] destination must be our memory that Xen
    /// may write without breaking Rust's aliasing rules.
    unsafe fn copy(&self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>>;

    /// Our table's size.
    fn query_size(&self) -> Result<TableSize, GrantError>;

    /// The counters.
    fn stats(&self) -> GrantStats;
}

/// The raw grant-table hypercalls, as [`GrantTable`] issues them: real Xen
/// ([`Xen`]) or the simulator.
///
/// # Safety
/// Implementations must act as Xen documents: in particular
/// [`add_grant_frame`](Self::add_grant_frame) must make the memory that
/// [`GrantFrameMemory::frame`] names for that index the table's frame.
pub unsafe trait GrantHypercalls {
    /// `GNTTABOP_map_grant_ref` over all of `ops`.
    ///
    /// # Safety
    /// As [`crate::gnttab::map_grant_ref`].
    unsafe fn map_grant_ref(&self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenErrno>;

    /// `GNTTABOP_unmap_grant_ref` over all of `ops`.
    ///
    /// # Safety
    /// As [`crate::gnttab::unmap_grant_ref`].
    unsafe fn unmap_grant_ref(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenErrno>;

    /// `GNTTABOP_copy` over all of `ops`.
    ///
    /// # Safety
    /// As [`crate::gnttab::copy`].
    unsafe fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), XenErrno>;

    /// `GNTTABOP_query_size` for ourselves.
    fn query_size(&self) -> Result<GnttabQuerySize, QuerySizeError>;

    /// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, index, gfn)`.
    ///
    /// # Safety
    /// As [`crate::memory::add_to_physmap`].
    unsafe fn add_grant_frame(&self, index: u32, gfn: u64) -> Result<(), XenErrno>;

    /// Waits before retry round `round` (1, 2, ...) of `GNTST_eagain` ops.
    fn backoff(&self, round: u32);

    /// The number Xen takes for our frame `gfn` in a grant entry or a
    /// copy: the frame itself for a PVH guest (the default), its machine
    /// frame for a PV one.
    fn xen_frame(&self, gfn: u64) -> u64 {
        gfn
    }

    /// The inverse of [`Self::xen_frame`]: our frame that Xen's number
    /// `frame` names (a PV guest's machine frames change when the domain
    /// moves; its frames do not).
    fn guest_frame(&self, frame: u64) -> u64 {
        frame
    }
}

/// Real Xen: the hypercalls of [`crate::gnttab`] and [`crate::memory`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Xen;

// SAFETY: these are Xen's own hypercalls.
unsafe impl GrantHypercalls for Xen {
    unsafe fn map_grant_ref(&self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenErrno> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { crate::gnttab::map_grant_ref(ops) }
    }

    unsafe fn unmap_grant_ref(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenErrno> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { crate::gnttab::unmap_grant_ref(ops) }
    }

    unsafe fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), XenErrno> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { crate::gnttab::copy(ops) }
    }

    fn query_size(&self) -> Result<GnttabQuerySize, QuerySizeError> {
        crate::gnttab::query_size(crate::abi::DOMID_SELF)
    }

    unsafe fn add_grant_frame(&self, index: u32, gfn: u64) -> Result<(), XenErrno> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { crate::memory::map_grant_frame(index, gfn) }
    }

    /// Yields `2^round` times (capped): the frame is being paged in or
    /// unshared by a helper that needs CPU time, as in Linux's
    /// `gnttab_retry_eagain_gop`, which sleeps longer at each round.
    fn backoff(&self, round: u32) {
        for _ in 0..1u32 << round.min(8) {
            crate::sched::yield_now();
        }
    }
}

/// How long to keep retrying `GNTST_eagain` ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retry rounds after the first submission; then the ops still
    /// `GNTST_eagain` fail with [`GrantError::Eagain`].
    pub max_rounds: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_rounds: 10 }
    }
}

/// A grant-table op with a status written by Xen.
pub trait BatchOp: Copy {
    /// The status.
    fn status(&self) -> i16;
    /// Sets the status (before submission).
    fn set_status(&mut self, status: i16);
}

macro_rules! batch_op {
    ($($t:ty),*) => {$(
        impl BatchOp for $t {
            fn status(&self) -> i16 {
                self.status
            }
            fn set_status(&mut self, status: i16) {
                self.status = status;
            }
        }
    )*};
}
batch_op!(GnttabMapGrantRef, GnttabUnmapGrantRef, GnttabCopy);

/// A status Xen never writes: the op was not processed (the hypercall
/// failed before reaching it).
pub const NOT_RUN: i16 = i16::MAX;

/// What one [`GrantOps::map_costed`] call cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapCost {
    /// Map hypercalls issued, retry rounds included.
    pub hypercalls: u64,
    /// Ops re-submitted because of `GNTST_eagain`.
    pub eagain_retries: u64,
}

/// What [`submit_with_retry`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Hypercalls issued.
    pub hypercalls: u64,
    /// Ops re-submitted because of `GNTST_eagain`.
    pub retried_ops: u64,
    /// Ops still `GNTST_eagain` at the end.
    pub gave_up: u64,
    /// The error of a failed hypercall; the ops it did not reach keep
    /// status [`NOT_RUN`].
    pub error: Option<XenErrno>,
}

impl BatchOutcome {
    /// The result of an op after the batch.
    pub fn result(&self, status: i16) -> Result<(), GrantError> {
        if status == NOT_RUN {
            return Err(GrantError::Hypercall(self.error.unwrap_or(XenErrno::EIO)));
        }
        GrantError::check(status)
    }
}

/// Submits `ops` in one hypercall, then re-submits only the ops that came
/// back `GNTST_eagain`, calling `backoff(round)` before each round, until
/// none is left or `policy.max_rounds` rounds ran.
///
/// A failed hypercall stops the retries; the ops it did not reach keep
/// status [`NOT_RUN`] and the error is in [`BatchOutcome::error`].
pub fn submit_with_retry<T: BatchOp>(
    ops: &mut [T],
    policy: RetryPolicy,
    mut backoff: impl FnMut(u32),
    mut submit: impl FnMut(&mut [T]) -> Result<(), XenErrno>,
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    if ops.is_empty() {
        return out;
    }
    for op in ops.iter_mut() {
        op.set_status(NOT_RUN);
    }
    out.hypercalls += 1;
    if let Err(e) = submit(ops) {
        out.error = Some(e);
        return out;
    }
    let mut again: Vec<usize> = Vec::new();
    let mut scratch: Vec<T> = Vec::new();
    for round in 1..=policy.max_rounds {
        again.clear();
        again.extend((0..ops.len()).filter(|&i| ops[i].status() == GNTST_eagain));
        if again.is_empty() {
            break;
        }
        backoff(round);
        scratch.clear();
        scratch.extend(again.iter().map(|&i| {
            let mut op = ops[i];
            op.set_status(NOT_RUN);
            op
        }));
        out.hypercalls += 1;
        out.retried_ops += again.len() as u64;
        let res = submit(&mut scratch);
        for (&i, op) in again.iter().zip(&scratch) {
            // An op the failed hypercall did not reach stays eagain.
            if op.status() != NOT_RUN {
                ops[i] = *op;
            }
        }
        if let Err(e) = res {
            out.error = Some(e);
            break;
        }
    }
    out.gave_up = ops.iter().filter(|op| op.status() == GNTST_eagain).count() as u64;
    out
}

/// Counters shared by a table's operations, updated atomically.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub map_ops: AtomicU64,
    pub unmap_ops: AtomicU64,
    pub copy_ops: AtomicU64,
    pub hypercalls: AtomicU64,
    pub eagain_retries: AtomicU64,
    pub eagain_gave_up: AtomicU64,
}

impl Counters {
    /// Adds a batch of `ops` ops and its outcome; `ops` picks the counter.
    pub fn record(&self, ops: &AtomicU64, n: usize, out: &BatchOutcome) {
        ops.fetch_add(n as u64, Ordering::Relaxed);
        self.hypercalls.fetch_add(out.hypercalls, Ordering::Relaxed);
        self.eagain_retries
            .fetch_add(out.retried_ops, Ordering::Relaxed);
        self.eagain_gave_up
            .fetch_add(out.gave_up, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::grant_table::{GNTST_bad_gntref, GNTST_okay};

    /// A submit that answers eagain to op `i` for its first `k[i]` tries.
    fn storm(k: &mut [u32]) -> impl FnMut(&mut [GnttabMapGrantRef]) -> Result<(), XenErrno> + '_ {
        move |ops| {
            for op in ops {
                let i = op.ref_ as usize;
                op.status = if i == 99 {
                    GNTST_bad_gntref
                } else if k[i] > 0 {
                    k[i] -= 1;
                    GNTST_eagain
                } else {
                    GNTST_okay
                };
            }
            Ok(())
        }
    }

    fn ops(refs: &[u32]) -> Vec<GnttabMapGrantRef> {
        refs.iter()
            .map(|&r| GnttabMapGrantRef {
                ref_: r,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn retries_only_the_eagain_ops() {
        let mut k = [0, 2, 0, 1];
        let mut batch = ops(&[0, 1, 2, 3]);
        let mut seen = Vec::new();
        let out = submit_with_retry(
            &mut batch,
            RetryPolicy::default(),
            |r| seen.push(r),
            storm(&mut k),
        );
        assert_eq!(out.hypercalls, 3);
        assert_eq!(out.retried_ops, 2 + 1);
        assert_eq!(out.gave_up, 0);
        assert_eq!(seen, [1, 2]);
        assert!(batch.iter().all(|o| out.result(o.status).is_ok()));
    }

    #[test]
    fn gives_up_after_the_bound() {
        let mut k = [0, 100];
        let mut batch = ops(&[0, 1, 99]);
        let policy = RetryPolicy { max_rounds: 3 };
        let out = submit_with_retry(&mut batch, policy, |_| {}, storm(&mut k));
        assert_eq!(out.hypercalls, 4);
        assert_eq!(out.retried_ops, 3);
        assert_eq!(out.gave_up, 1);
        assert_eq!(out.result(batch[0].status), Ok(()));
        assert_eq!(out.result(batch[1].status), Err(GrantError::Eagain));
        assert_eq!(out.result(batch[2].status), Err(GrantError::BadGntref));
    }

    #[test]
    fn failed_hypercall_marks_unreached_ops() {
        let mut batch = ops(&[0, 1]);
        let out = submit_with_retry(
            &mut batch,
            RetryPolicy::default(),
            |_| {},
            |ops| {
                ops[0].status = GNTST_okay;
                Err(XenErrno::EFAULT)
            },
        );
        assert_eq!(out.result(batch[0].status), Ok(()));
        assert_eq!(
            out.result(batch[1].status),
            Err(GrantError::Hypercall(XenErrno::EFAULT))
        );
    }

    #[test]
    fn errors_have_xen_text_and_errno() {
        use alloc::string::ToString;
        assert_eq!(
            GrantError::Eagain.to_string(),
            "operation not done; try again"
        );
        assert_eq!(GrantError::BadDomain.errno(), XenErrno::ESRCH);
        assert_eq!(GrantError::PermissionDenied.errno(), XenErrno::EACCES);
        for s in -13..=-1 {
            let e = GrantError::from_status(s);
            assert_eq!(e.status(), s);
            assert!(!matches!(e, GrantError::Unknown(_)));
        }
        assert_eq!(GrantError::from_status(-99), GrantError::Unknown(-99));
    }

    #[test]
    fn hole_bounds() {
        // SAFETY: a test value; nothing is mapped through it.
        let h = unsafe { Hole::new(0x100, 4) };
        assert_eq!(h.gpa(3), Some(0x103000));
        assert_eq!(h.gfn(4), None);
    }
}
