//! [`GrantTable`]: our grant table, over any hypercall backend and any
//! frame memory.
//!
//! Locking: `state` (a spin lock) covers the reference allocator, the
//! frame list and every change of our entries; the entries' flags are also
//! changed by Xen, hence atomics. Map, unmap and copy touch only the
//! counters (atomics) and the caller's batch, so they run unlocked.

use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use spin::Mutex;

use super::refs::RefAllocator;
use super::{
    CopyOp, CopySide, Counters, EndAccess, GrantError, GrantHandle, GrantHypercalls, GrantOps,
    GrantRef, GrantStats, Hole, MapCost, MapRequest, Reaped, RetryPolicy, TableSize, UnmapRequest,
    submit_with_retry,
};
use crate::abi::DomId;
use crate::abi::grant_table::{
    ENTRIES_PER_FRAME, GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_host_map, GNTMAP_readonly,
    GTF_invalid, GTF_reading, GTF_type_mask, GTF_writing, GnttabCopy, GnttabCopyPtr,
    GnttabMapGrantRef, GnttabUnmapGrantRef, GrantEntry, GrantFrame,
};
use crate::gnttab::QuerySizeError;

/// Where the table's frames live in our guest-physical space, and how the
/// kernel reaches them.
///
/// # Safety
/// For every `index < max_frames()`: `gfn(index)` is a frame reserved for
/// grant-table frame `index` (a hole, used by nothing else), and once
/// [`GrantHypercalls::add_grant_frame`] placed the frame there,
/// `frame(index)` points to it, mapped writable, for as long as the
/// implementor lives.
pub unsafe trait GrantFrameMemory {
    /// Frames the kernel reserved room for.
    fn max_frames(&self) -> u32;
    /// The guest frame for table frame `index`.
    fn gfn(&self, index: u32) -> u64;
    /// Our mapping of table frame `index`.
    fn frame(&self, index: u32) -> NonNull<GrantFrame>;
}

/// The usual kernel layout: `count` consecutive frames from `base_gfn`,
/// mapped contiguously at `base`.
#[derive(Debug)]
pub struct LinearFrames {
    base_gfn: u64,
    base: NonNull<GrantFrame>,
    count: u32,
}

impl LinearFrames {
    /// `count` frames from `base_gfn`, the first mapped at `base`.
    ///
    /// # Safety
    /// The frames must be a hole reserved for the grant table, and
    /// `base .. base + count` pages must map them writable for as long as
    /// this value lives.
    pub unsafe fn new(base_gfn: u64, base: NonNull<GrantFrame>, count: u32) -> Self {
        Self {
            base_gfn,
            base,
            count,
        }
    }
}

// SAFETY: `LinearFrames` only computes frame addresses; the memory behind
// them belongs to the grant table for this value's life (the contract of
// `new`), and the table accesses entries only through atomics.
unsafe impl Send for LinearFrames {}
// SAFETY: as for `Send`: shared use only reads `base_gfn`, `base`, `count`.
unsafe impl Sync for LinearFrames {}

// SAFETY: the caller of `new` guarantees the layout; indices are bounded
// by `max_frames` by `GrantTable`.
unsafe impl GrantFrameMemory for LinearFrames {
    fn max_frames(&self) -> u32 {
        self.count
    }

    fn gfn(&self, index: u32) -> u64 {
        self.base_gfn + u64::from(index)
    }

    fn frame(&self, index: u32) -> NonNull<GrantFrame> {
        // SAFETY: `index < count` (checked by the table), so the result
        // stays inside the mapping `new` was given.
        unsafe { self.base.add(index as usize) }
    }
}

struct State {
    refs: RefAllocator,
    /// Our mapping of each placed frame.
    frames: Vec<NonNull<GrantFrame>>,
    /// Frames Xen allows (`max_nr_frames`), bounded by the memory's room.
    max_frames: u32,
}

/// Our grant table (version 1).
pub struct GrantTable<H, M> {
    hv: H,
    mem: M,
    policy: RetryPolicy,
    state: Mutex<State>, // (s) spin lock
    counters: Counters,  // (a) atomics
}

// SAFETY: the frame pointers are only dereferenced as shared references to
// atomics (`GrantEntry`), valid for the table's life (`GrantFrameMemory`);
// the rest is behind the lock or atomic.
unsafe impl<H: Send, M: Send> Send for GrantTable<H, M> {}
// SAFETY: as for `Send`; all mutation goes through the lock or atomics.
unsafe impl<H: Sync, M: Sync> Sync for GrantTable<H, M> {}

impl<H: GrantHypercalls, M: GrantFrameMemory> GrantTable<H, M> {
    /// Sets up our table: asks Xen its size and places frame 0. More
    /// frames are placed on demand when references run out.
    pub fn new(hv: H, mem: M) -> Result<Self, QuerySizeError> {
        let size = hv.query_size()?;
        let max_frames = size.max_nr_frames.min(mem.max_frames());
        let table = Self {
            hv,
            mem,
            policy: RetryPolicy::default(),
            state: Mutex::new(State {
                refs: RefAllocator::new(),
                frames: Vec::new(),
                max_frames,
            }),
            counters: Counters::default(),
        };
        table.grow(&mut table.state.lock()).map_err(|e| match e {
            GrantError::Hypercall(x) => QuerySizeError::Hypercall(x),
            other => QuerySizeError::Status(other),
        })?;
        Ok(table)
    }

    /// Replaces the `GNTST_eagain` retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The hypercall backend.
    pub fn hypercalls(&self) -> &H {
        &self.hv
    }

    /// Holds the table still for a suspend and copies every entry of its
    /// placed frames: no reference is allocated, granted or ended until
    /// the guard is dropped. Allocates; call it before the other vCPUs are
    /// parked. After a resume into a new domain, [`Frozen::restore`] puts
    /// the table back as it was.
    pub fn freeze(&self) -> Frozen<'_, H, M> {
        let st = self.state.lock();
        let entries = st
            .frames
            .iter()
            .flat_map(|f| {
                // SAFETY: a placed frame stays mapped for the table's life
                // (`GrantFrameMemory`); entries are atomics.
                let frame = unsafe { f.as_ref() };
                frame.entries.iter().map(|e| {
                    let flags = e.flags.load(Ordering::Acquire);
                    let mut frame = e.frame.load(Ordering::Relaxed);
                    if flags & GTF_type_mask != GTF_invalid {
                        // Kept as our frame: a PV guest's machine frames
                        // change with the domain.
                        frame = self.hv.guest_frame(u64::from(frame)) as u32;
                    }
                    (flags, e.domid.load(Ordering::Relaxed), frame)
                })
            })
            .collect();
        Frozen {
            table: self,
            st,
            entries,
        }
    }

    /// Places one more frame.
    fn grow(&self, st: &mut State) -> Result<(), GrantError> {
        let index = st.frames.len() as u32;
        if index >= st.max_frames {
            return Err(GrantError::NoSpace);
        }
        // SAFETY: `gfn(index)` is reserved for this frame
        // (`GrantFrameMemory`'s contract).
        unsafe { self.hv.add_grant_frame(index, self.mem.gfn(index)) }
            .map_err(GrantError::Hypercall)?;
        st.frames.push(self.mem.frame(index));
        st.refs.grow((index + 1) * ENTRIES_PER_FRAME as u32);
        Ok(())
    }

    fn entry(frames: &[NonNull<GrantFrame>], gref: GrantRef) -> &GrantEntry {
        let (f, i) = (
            gref as usize / ENTRIES_PER_FRAME,
            gref as usize % ENTRIES_PER_FRAME,
        );
        // SAFETY: callers pass references below the allocator's capacity,
        // so frame `f` is placed, and its mapping is valid for the table's
        // life (`GrantFrameMemory`); entries are atomics, so a shared
        // reference is sound while Xen changes them.
        unsafe { &frames[f].as_ref().entries[i] }
    }

    fn map_ops(hole: &Hole, reqs: &[MapRequest]) -> Vec<GnttabMapGrantRef> {
        reqs.iter()
            .map(|r| GnttabMapGrantRef {
                // Out of the hole: an address Xen refuses (and the op is
                // not submitted, see `map`).
                host_addr: hole.gpa(r.slot).unwrap_or(u64::MAX),
                flags: GNTMAP_host_map | if r.readonly { GNTMAP_readonly } else { 0 },
                ref_: r.gref,
                dom: r.dom,
                ..Default::default()
            })
            .collect()
    }
}

/// The copy pointer of `side`; a local frame named as Xen takes it
/// (`frame`: [`GrantHypercalls::xen_frame`]).
fn copy_ptr(side: CopySide, gref_flag: u16, frame: impl Fn(u64) -> u64) -> (GnttabCopyPtr, u16) {
    match side {
        CopySide::Grant { dom, gref, offset } => (
            GnttabCopyPtr {
                u: u64::from(gref),
                domid: dom,
                offset,
            },
            gref_flag,
        ),
        CopySide::Local { gfn, offset } => (
            GnttabCopyPtr {
                u: frame(gfn),
                domid: crate::abi::DOMID_SELF,
                offset,
            },
            0,
        ),
    }
}

impl<H: GrantHypercalls, M: GrantFrameMemory> GrantOps for GrantTable<H, M> {
    fn grant_access(&self, peer: DomId, gfn: u64, readonly: bool) -> Result<GrantRef, GrantError> {
        let frame = u32::try_from(self.hv.xen_frame(gfn)).map_err(|_| GrantError::AddressTooBig)?;
        let mut st = self.state.lock();
        let gref = match st.refs.alloc() {
            Some(r) => r,
            None => {
                self.grow(&mut st)?;
                st.refs.alloc().ok_or(GrantError::NoSpace)?
            }
        };
        Self::entry(&st.frames, gref).grant(peer, frame, readonly);
        Ok(gref)
    }

    fn end_access(&self, gref: GrantRef) -> Result<EndAccess, GrantError> {
        let mut st = self.state.lock();
        if st.refs.state(gref) != Some(super::refs::RefState::Live) {
            return Err(GrantError::BadGntref);
        }
        if Self::entry(&st.frames, gref).try_end() {
            st.refs.free(gref);
            Ok(EndAccess::Ended)
        } else {
            st.refs.defer(gref);
            Ok(EndAccess::Deferred)
        }
    }

    fn in_use(&self, gref: GrantRef) -> bool {
        let st = self.state.lock();
        st.refs.state(gref).is_some() && Self::entry(&st.frames, gref).in_use()
    }

    fn reap(&self) -> Vec<Reaped> {
        let mut st = self.state.lock();
        let State { refs, frames, .. } = &mut *st;
        refs.reap(|r| Self::entry(frames, r).try_end())
            .into_iter()
            .map(|gref| Reaped {
                gref,
                // The frame field outlives the flags: it is the page the
                // owner may now free.
                gfn: u64::from(Self::entry(frames, gref).frame.load(Ordering::Relaxed)),
            })
            .collect()
    }

    fn map_costed(
        &self,
        hole: &Hole,
        reqs: &[MapRequest],
    ) -> (Vec<Result<GrantHandle, GrantError>>, MapCost) {
        let mut ops = Self::map_ops(hole, reqs);
        // Only the ops inside the hole reach Xen.
        let inside: Vec<usize> = (0..reqs.len())
            .filter(|&i| hole.gfn(reqs[i].slot).is_some())
            .collect();
        let mut sub: Vec<GnttabMapGrantRef> = inside.iter().map(|&i| ops[i]).collect();
        let out = submit_with_retry(
            &mut sub,
            self.policy,
            |r| self.hv.backoff(r),
            // SAFETY: every address is inside `hole`, which its creator
            // guarantees is ours and unused (`Hole::new`).
            |batch| unsafe { self.hv.map_grant_ref(batch) },
        );
        self.counters
            .record(&self.counters.map_ops, sub.len(), &out);
        for (&i, op) in inside.iter().zip(&sub) {
            ops[i] = *op;
        }
        let results = (0..reqs.len())
            .map(|i| {
                if hole.gfn(reqs[i].slot).is_none() {
                    return Err(GrantError::BadVirtAddr);
                }
                out.result(ops[i].status).map(|()| ops[i].handle)
            })
            .collect();
        let cost = MapCost {
            hypercalls: out.hypercalls,
            eagain_retries: out.retried_ops,
        };
        (results, cost)
    }

    fn unmap(&self, hole: &Hole, reqs: &[UnmapRequest]) -> Vec<Result<(), GrantError>> {
        let inside: Vec<usize> = (0..reqs.len())
            .filter(|&i| hole.gfn(reqs[i].slot).is_some())
            .collect();
        let mut sub: Vec<GnttabUnmapGrantRef> = inside
            .iter()
            .map(|&i| GnttabUnmapGrantRef {
                host_addr: hole.gpa(reqs[i].slot).unwrap_or(u64::MAX),
                handle: reqs[i].handle,
                ..Default::default()
            })
            .collect();
        let out = submit_with_retry(
            &mut sub,
            self.policy,
            |r| self.hv.backoff(r),
            // SAFETY: the addresses are inside `hole`; what is mapped there
            // is foreign memory the kernel reaches only through the hole's
            // owner, who asked for the unmap.
            |batch| unsafe { self.hv.unmap_grant_ref(batch) },
        );
        self.counters
            .record(&self.counters.unmap_ops, sub.len(), &out);
        let mut res: Vec<Result<(), GrantError>> = Vec::with_capacity(reqs.len());
        res.resize(reqs.len(), Err(GrantError::BadVirtAddr));
        for (&i, op) in inside.iter().zip(&sub) {
            res[i] = out.result(op.status);
        }
        res
    }

    unsafe fn copy(&self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        let mut sub: Vec<GnttabCopy> = ops
            .iter()
            .map(|op| {
                let frame = |gfn| self.hv.xen_frame(gfn);
                let (source, f1) = copy_ptr(op.src, GNTCOPY_source_gref, frame);
                let (dest, f2) = copy_ptr(op.dst, GNTCOPY_dest_gref, frame);
                GnttabCopy {
                    source,
                    dest,
                    len: op.len,
                    flags: f1 | f2,
                    status: 0,
                }
            })
            .collect();
        let out = submit_with_retry(
            &mut sub,
            self.policy,
            |r| self.hv.backoff(r),
            // SAFETY: the caller guarantees the local destinations.
            |batch| unsafe { self.hv.copy(batch) },
        );
        self.counters
            .record(&self.counters.copy_ops, sub.len(), &out);
        sub.iter().map(|op| out.result(op.status)).collect()
    }

    fn query_size(&self) -> Result<TableSize, GrantError> {
        let q = self.hv.query_size().map_err(|e| match e {
            QuerySizeError::Hypercall(x) => GrantError::Hypercall(x),
            QuerySizeError::Status(s) => s,
        })?;
        Ok(TableSize {
            frames: q.nr_frames,
            max_frames: q.max_nr_frames,
        })
    }

    fn stats(&self) -> GrantStats {
        let st = self.state.lock();
        let c = &self.counters;
        GrantStats {
            live_refs: st.refs.live(),
            pending_refs: st.refs.pending(),
            frames: st.frames.len() as u32,
            map_ops: c.map_ops.load(Ordering::Relaxed),
            unmap_ops: c.unmap_ops.load(Ordering::Relaxed),
            copy_ops: c.copy_ops.load(Ordering::Relaxed),
            hypercalls: c.hypercalls.load(Ordering::Relaxed),
            eagain_retries: c.eagain_retries.load(Ordering::Relaxed),
            eagain_gave_up: c.eagain_gave_up.load(Ordering::Relaxed),
            bookkeeping_bytes: st.refs.heap_bytes()
                + st.frames.capacity() * core::mem::size_of::<NonNull<GrantFrame>>(),
        }
    }
}

/// A grant table held still across a suspend ([`GrantTable::freeze`]),
/// with a copy of its entries (flags, domid, and the frame as our own
/// frame number, [`GrantHypercalls::guest_frame`]).
pub struct Frozen<'a, H, M> {
    table: &'a GrantTable<H, M>,
    st: spin::MutexGuard<'a, State>,
    entries: Vec<(u16, DomId, u32)>,
}

impl<H: GrantHypercalls, M: GrantFrameMemory> Frozen<'_, H, M> {
    /// Frames the table had placed.
    pub fn frames(&self) -> u32 {
        self.st.frames.len() as u32
    }

    /// Entries that granted something when frozen.
    pub fn granted(&self) -> usize {
        self.entries
            .iter()
            .filter(|(f, ..)| f & GTF_type_mask != GTF_invalid)
            .count()
    }

    /// After a resume into a new domain, whose table holds only what the
    /// toolstack seeded: places every frame again at its old frame
    /// (highest index first, so Xen grows the table once), then writes
    /// every entry back as it was, without the `GTF_reading`/`GTF_writing`
    /// status Xen kept for the old domain's peers (their mappings belong
    /// to the old domain), each granted frame named as the new domain
    /// names it ([`GrantHypercalls::xen_frame`]). Allocates nothing: it runs with the other
    /// vCPUs parked. References keep their numbers, so a peer that maps
    /// one again after the move reaches the same page.
    pub fn restore(&mut self) -> Result<(), GrantError> {
        for index in (0..self.frames()).rev() {
            // SAFETY: `gfn(index)` is reserved for this frame
            // (`GrantFrameMemory`'s contract) and was this frame's before.
            unsafe {
                self.table
                    .hv
                    .add_grant_frame(index, self.table.mem.gfn(index))
            }
            .map_err(GrantError::Hypercall)?;
        }
        for (i, &(flags, domid, frame)) in self.entries.iter().enumerate() {
            let e = GrantTable::<H, M>::entry(&self.st.frames, i as GrantRef);
            let frame = if flags & GTF_type_mask != GTF_invalid {
                self.table.hv.xen_frame(u64::from(frame)) as u32
            } else {
                frame
            };
            e.frame.store(frame, Ordering::Relaxed);
            e.domid.store(domid, Ordering::Relaxed);
            // Release, as a grant: the frame and domid before the flags.
            e.flags
                .store(flags & !(GTF_reading | GTF_writing), Ordering::Release);
        }
        Ok(())
    }
}

impl<H, M> core::fmt::Debug for GrantTable<H, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GrantTable").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use core::cell::RefCell;

    use super::*;
    use crate::abi::grant_table::{GNTST_okay, GTF_permit_access, GTF_readonly, GnttabQuerySize};
    use crate::hypercall::XenErrno;

    /// Xen as far as placing frames goes: records each placement. The
    /// guest names frame `f` to Xen as `f + .1` (0: a PVH guest; a PV
    /// guest's machine frames, which change when the domain moves).
    #[derive(Default)]
    struct Placer(RefCell<Vec<(u32, u64)>>, core::cell::Cell<u64>);

    // SAFETY: only frame placement is used, recorded and never acted on;
    // the frames live in `Frames` for the test's life.
    unsafe impl GrantHypercalls for Placer {
        unsafe fn map_grant_ref(&self, _: &mut [GnttabMapGrantRef]) -> Result<(), XenErrno> {
            unreachable!()
        }
        unsafe fn unmap_grant_ref(&self, _: &mut [GnttabUnmapGrantRef]) -> Result<(), XenErrno> {
            unreachable!()
        }
        unsafe fn copy(&self, _: &mut [GnttabCopy]) -> Result<(), XenErrno> {
            unreachable!()
        }
        fn query_size(&self) -> Result<GnttabQuerySize, QuerySizeError> {
            Ok(GnttabQuerySize {
                dom: 0,
                nr_frames: 1,
                max_nr_frames: 4,
                status: GNTST_okay,
            })
        }
        unsafe fn add_grant_frame(&self, index: u32, gfn: u64) -> Result<(), XenErrno> {
            self.0.borrow_mut().push((index, gfn));
            Ok(())
        }
        fn backoff(&self, _: u32) {}
        fn xen_frame(&self, gfn: u64) -> u64 {
            gfn + self.1.get()
        }
        fn guest_frame(&self, frame: u64) -> u64 {
            frame - self.1.get()
        }
    }

    /// Four frames of plain memory at guest frames 100..104.
    struct Frames(Box<[GrantFrame; 4]>);

    // SAFETY: the frames are owned by this value, so they live as long.
    unsafe impl GrantFrameMemory for Frames {
        fn max_frames(&self) -> u32 {
            4
        }
        fn gfn(&self, index: u32) -> u64 {
            100 + u64::from(index)
        }
        fn frame(&self, index: u32) -> NonNull<GrantFrame> {
            NonNull::from(&self.0[index as usize])
        }
    }

    /// A table over four fresh frames, placed by a [`Placer`].
    fn table() -> GrantTable<Placer, Frames> {
        GrantTable::new(
            Placer::default(),
            Frames(Box::new(core::array::from_fn(|_| GrantFrame::default()))),
        )
        .unwrap()
    }

    #[test]
    fn a_frozen_table_comes_back_in_a_new_domain() {
        let t = table();
        // Two frames' worth of grants, one of them ended, one mapped by
        // its peer (Xen's status bit set).
        let refs: Vec<GrantRef> = (0..ENTRIES_PER_FRAME as u64 + 3)
            .map(|i| t.grant_access(7, 0x1000 + i, i % 2 == 1).unwrap())
            .collect();
        assert_eq!(t.end_access(refs[5]), Ok(EndAccess::Ended));
        GrantTable::<Placer, Frames>::entry(&t.state.lock().frames, refs[6])
            .flags
            .fetch_or(GTF_reading, Ordering::AcqRel);
        let mut frozen = t.freeze();
        assert_eq!(frozen.frames(), 2);
        assert_eq!(frozen.granted(), refs.len() - 1);
        // The new domain: empty frames at the same guest frames.
        for f in t.mem.0.iter() {
            for e in &f.entries {
                e.flags.store(0, Ordering::Relaxed);
                e.domid.store(0, Ordering::Relaxed);
                e.frame.store(0, Ordering::Relaxed);
            }
        }
        t.hv.0.borrow_mut().clear();
        frozen.restore().unwrap();
        assert_eq!(*t.hv.0.borrow(), [(1, 101), (0, 100)]);
        drop(frozen);
        let st = t.state.lock();
        for (i, &r) in refs.iter().enumerate() {
            let e = GrantTable::<Placer, Frames>::entry(&st.frames, r);
            let want = match i {
                5 => 0,
                _ if i % 2 == 1 => GTF_permit_access | GTF_readonly,
                _ => GTF_permit_access,
            };
            assert_eq!(e.flags.load(Ordering::Relaxed), want, "ref {r}");
            assert_eq!(e.domid.load(Ordering::Relaxed), 7);
            assert_eq!(e.frame.load(Ordering::Relaxed), 0x1000 + i as u32);
        }
        drop(st);
        // The table works on: the mapped grant ends now.
        assert_eq!(t.end_access(refs[6]), Ok(EndAccess::Ended));
    }

    #[test]
    fn a_frozen_pv_table_names_the_new_domains_machine_frames() {
        let t = table();
        t.hv.1.set(0x50000);
        let refs: Vec<GrantRef> = (0..8)
            .map(|i| t.grant_access(7, 0x1000 + i, false).unwrap())
            .collect();
        let entry = |r| {
            GrantTable::<Placer, Frames>::entry(&t.state.lock().frames, r)
                .frame
                .load(Ordering::Relaxed)
        };
        assert_eq!(entry(refs[3]), 0x51003);
        let mut frozen = t.freeze();
        // Restored elsewhere: every frame has a new machine frame.
        t.hv.1.set(0x90000);
        frozen.restore().unwrap();
        drop(frozen);
        for (i, &r) in refs.iter().enumerate() {
            assert_eq!(entry(r), 0x91000 + i as u32, "ref {r}");
        }
    }
}
