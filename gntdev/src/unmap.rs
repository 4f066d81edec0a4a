//! Unmapping foreign grants, and the retry of unmaps that failed.
//!
//! A mapping's teardown unmaps all its grants with ONE batched unmap. An
//! op that fails leaves its grant mapped in the hole: the hole and its
//! fictitious pages cannot be reused, and the granter's grant stays in
//! use. Such a mapping is not forgotten: it goes on the device's list of
//! failed unmaps, which [`Gntdev::reap`] (the kernel's reaper thread)
//! retries with a back-off that doubles after each failure, from the next
//! reap up to every [`MAX_DELAY`] reaps. Once every op succeeded the hole
//! and its pages go back.
//!
//! Locking: the list is (u), its own spin lock, taken last and never held
//! across a hypercall.

use alloc::vec::Vec;

use vm::phys::FictitiousRange;
use xen::grant::{Hole, UnmapRequest};

use crate::device::{Gntdev, add, sub};

/// The most reaps a failed unmap waits between two retries (6.4 s at the
/// kernel reaper's 100 ms period).
const MAX_DELAY: u32 = 64;

/// A mapping whose unmap failed.
pub(crate) struct FailedUnmap {
    hole: Hole,
    range: FictitiousRange,
    /// The ops that failed, to retry.
    reqs: Vec<UnmapRequest>,
    /// Reaps between the last retry and the next.
    delay: u32,
    /// Reaps left before the next retry.
    wait: u32,
}

impl Gntdev {
    /// One batched unmap of `reqs` in `hole`; returns the ops that failed
    /// (counted in `unmap_errors`).
    pub(crate) fn unmap_batch(&self, hole: &Hole, reqs: &[UnmapRequest]) -> Vec<UnmapRequest> {
        if reqs.is_empty() {
            return Vec::new();
        }
        let c = &self.counters;
        let (res, calls) = self.svc.grants.unmap_costed(hole, reqs);
        add(&c.unmap_hypercalls, calls);
        let failed: Vec<UnmapRequest> = reqs
            .iter()
            .zip(&res)
            .filter(|(_, r)| r.is_err())
            .map(|(&q, _)| q)
            .collect();
        add(&c.unmap_errors, failed.len() as u64);
        failed
    }

    /// The end of a mapping's teardown: `failed` are its unmap ops that
    /// failed. With none, the fictitious range and the hole go back at
    /// once; else the mapping waits on the failed-unmap list.
    pub(crate) fn finish_unmap(
        &self,
        hole: Hole,
        range: FictitiousRange,
        failed: Vec<UnmapRequest>,
    ) {
        if failed.is_empty() {
            self.release_hole(hole, range);
            return;
        }
        log::warn!(
            "gntdev: {} unmap op(s) failed in the hole at gfn {:#x}: retried by the reaper",
            failed.len(),
            hole.base_gfn()
        );
        self.failed_unmaps.lock().push(FailedUnmap {
            hole,
            range,
            reqs: failed,
            delay: 1,
            wait: 1,
        });
    }

    /// Gives back a hole in which nothing is mapped any more, and its
    /// fictitious pages. If the pages are still referenced the hole is
    /// kept (counted in `live_holes`), never reused.
    fn release_hole(&self, hole: Hole, range: FictitiousRange) {
        if self.svc.vm.phys.unregister_fictitious(range).is_ok() {
            let c = &self.counters;
            sub(&c.live_holes, 1);
            sub(&c.live_hole_frames, hole.frames());
            self.svc.holes.free(hole);
        }
    }

    /// One reap's pass over the failed unmaps: those whose wait is over
    /// are retried (one batched unmap each, counted in `unmap_retries`);
    /// a mapping whose ops all succeeded is released, the others wait
    /// twice as long as before.
    pub(crate) fn retry_unmaps(&self) {
        let due: Vec<FailedUnmap> = {
            let mut list = self.failed_unmaps.lock();
            for f in list.iter_mut() {
                f.wait -= 1;
            }
            list.extract_if(.., |f| f.wait == 0).collect()
        };
        for mut f in due {
            add(&self.counters.unmap_retries, 1);
            f.reqs = self.unmap_batch(&f.hole, &f.reqs);
            if f.reqs.is_empty() {
                self.release_hole(f.hole, f.range);
            } else {
                f.delay = (f.delay * 2).min(MAX_DELAY);
                f.wait = f.delay;
                self.failed_unmaps.lock().push(f);
            }
        }
    }

    /// Mappings on the failed-unmap list.
    pub(crate) fn pending_unmaps(&self) -> u64 {
        self.failed_unmaps.lock().len() as u64
    }
}
