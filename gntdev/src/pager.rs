//! The managed device pagers behind gntdev's `mmap` (the `vm` crate's
//! [`DeviceOps`], FreeBSD's `cdev_pager_ops`).
//!
//! [`MapPager`] serves foreign grants: the pages are the fictitious pages
//! of a hole. Its `populate` (on the first fault) maps ALL grants of the
//! region with ONE batched [`GrantOps::map`](xen::grant::GrantOps::map)
//! (read-only when the mapping is not writable; `GNTST_eagain` retried
//! inside it), inserts every page fully valid, and returns the whole
//! region clipped to the faulting entry, so the process takes one fault
//! per mapping. FreeBSD instead maps at `mmap` and takes one fault per
//! page (`cdev_pg_fault`). Its `dtor` (the object's last reference went)
//! notifies, then unmaps everything with ONE batched unmap, then gives
//! the fictitious range and the hole back.
//!
//! [`GrefPager`] serves our own granted pages the same way, without any
//! hypercall.
//!
//! Locking: a [`MapPager`]'s `state` (m) is held across the map and
//! unmap hypercalls and the page insertions; see `device` for the order.

use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use vm::object::VmObject;
use vm::page::PageId;
use vm::pager::device::{DeviceOps, device_pager_insert};
use vm::pager::{PagerResult, PindexRange};
use vm::phys::FictitiousRange;
use vm::{PAGE_SHIFT, PAGE_SIZE, Prot};
use xen::grant::{GrantError, GrantHandle, Hole, MapRequest, UnmapRequest};

use crate::device::{Gntdev, GrantMap, GrefRun, add};

/// Inserts the `n` pages `page(i)` at `base + i` into `obj`: those in the
/// returned range `[max(base, bounds.0), min(base + n - 1, bounds.1)]`
/// stay exclusively busied for the fault handler; the others, inserted
/// only when `all` (the first populate), are unbusied at once. On error,
/// what this call busied is unbusied again.
fn insert_region(
    obj: &VmObject,
    base: u64,
    n: u64,
    bounds: PindexRange,
    all: bool,
    page: impl Fn(u64) -> PageId,
) -> Result<PindexRange, PagerResult> {
    let first = base.max(bounds.0);
    let last = (base + n - 1).min(bounds.1);
    if first > last {
        return Err(PagerResult::Bad);
    }
    let d = obj.domain();
    for i in 0..n {
        let pindex = base + i;
        let inside = (first..=last).contains(&pindex);
        if !inside && !all {
            continue;
        }
        if let Err(e) = device_pager_insert(obj, pindex, page(i)) {
            for j in first..pindex.min(last + 1) {
                d.page(page(j - base)).xunbusy(d.wait());
            }
            return Err(e);
        }
        if !inside {
            d.page(page(i)).xunbusy(d.wait());
        }
    }
    Ok((first, last))
}

/// The mutable state of a [`MapPager`], behind (m).
struct MapPagerState {
    /// The hole; `None` once torn down.
    hole: Option<Hole>,
    /// The handle of each grant once mapped.
    handles: Option<Vec<GrantHandle>>,
    /// Ops of a failed map whose rollback unmap failed too.
    stuck: Vec<UnmapRequest>,
}

/// The pager of one mapping object of a [`GrantMap`].
pub(crate) struct MapPager {
    dev: Arc<Gntdev>,
    map: Arc<GrantMap>,
    /// The hole's fictitious pages (constant).
    range: FictitiousRange,
    /// Map the grants read-only (constant).
    readonly: bool,
    /// (m) hole and handles.
    state: Mutex<MapPagerState>,
}

impl MapPager {
    /// A pager mapping `map` into `hole`, whose fictitious pages are
    /// `range`.
    pub fn new(
        dev: Arc<Gntdev>,
        map: Arc<GrantMap>,
        hole: Hole,
        range: FictitiousRange,
        readonly: bool,
    ) -> Self {
        Self {
            dev,
            map,
            range,
            readonly,
            state: Mutex::new(MapPagerState {
                hole: Some(hole),
                handles: None,
                stuck: Vec::new(),
            }),
        }
    }

    fn base(&self) -> u64 {
        self.map.index >> PAGE_SHIFT
    }

    fn page(&self, i: u64) -> PageId {
        self.range.first + i as u32
    }

    /// Maps every grant with one batched map if not done yet; returns
    /// whether it did now. A failed map unmaps what it mapped (one
    /// batched unmap) and fails with `Again` (still `GNTST_eagain` after
    /// the retries) or `Error`.
    fn ensure_mapped(&self, st: &mut MapPagerState) -> Result<bool, PagerResult> {
        if st.handles.is_some() {
            return Ok(false);
        }
        let hole = st.hole.as_ref().ok_or(PagerResult::Error)?;
        let reqs: Vec<MapRequest> = self
            .map
            .refs
            .iter()
            .enumerate()
            .map(|(i, &(dom, gref))| MapRequest {
                dom,
                gref,
                slot: i as u64,
                readonly: self.readonly,
            })
            .collect();
        let grants = &self.dev.svc.grants;
        let c = &self.dev.counters;
        // This map's own cost: the table's counters also move with the
        // maps and unmaps of other CPUs meanwhile.
        let (res, cost) = grants.map_costed(hole, &reqs);
        add(&c.map_hypercalls, cost.hypercalls);
        add(&c.eagain_retries, cost.eagain_retries);
        if res.iter().all(Result::is_ok) {
            st.handles = Some(res.into_iter().map(|r| r.expect("checked")).collect());
            add(&c.mappings, 1);
            return Ok(true);
        }
        add(&c.map_failures, 1);
        let failed = res.iter().filter(|r| r.is_err()).count();
        if let Some((i, Err(e))) = res.iter().enumerate().find(|(_, r)| r.is_err()) {
            let (dom, gref) = self.map.refs[i];
            log::warn!(
                "gntdev: map of {} grant(s) failed for {failed}: first grant {i} (domain {dom}, ref {gref}): {e:?}",
                res.len()
            );
        }
        let undo: Vec<UnmapRequest> = res
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.ok().map(|handle| UnmapRequest {
                    slot: i as u64,
                    handle,
                })
            })
            .collect();
        // Ops whose rollback failed are unmapped again at teardown, with
        // those of earlier failed maps (their slots stay taken, so a later
        // map fails).
        st.stuck.extend(self.dev.unmap_batch(hole, &undo));
        Err(if res.contains(&Err(GrantError::Eagain)) {
            PagerResult::Again
        } else {
            PagerResult::Error
        })
    }

    /// Tears the mapping down, once: notify (clear the byte, then send
    /// the event), ONE batched unmap, then the fictitious range and the
    /// hole go back - or, if an unmap op failed, wait on the device's
    /// failed-unmap list for [`Gntdev::reap`] to retry them.
    pub fn teardown(&self) {
        let mut st = self.state.lock();
        let Some(hole) = st.hole.take() else {
            return;
        };
        let handles = st.handles.take();
        let notify = self.map.state.lock().notify.take();
        if let Some(n) = notify {
            // The byte is only there while the grants are mapped.
            let gpa = handles.as_ref().and_then(|_| {
                let slot = n.index.checked_sub(self.map.index)? >> PAGE_SHIFT;
                Some(hole.gpa(slot)? | (n.index & (PAGE_SIZE - 1)))
            });
            self.dev.fire(&n, gpa);
        }
        let mut reqs: Vec<UnmapRequest> = handles
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, &handle)| UnmapRequest {
                slot: i as u64,
                handle,
            })
            .collect();
        reqs.append(&mut st.stuck);
        let failed = self.dev.unmap_batch(&hole, &reqs);
        drop(st);
        self.dev.finish_unmap(hole, self.range, failed);
    }
}

impl DeviceOps for MapPager {
    /// A normal fault (e.g. a private mapping): map everything if needed,
    /// then the one page.
    fn fault(&self, _obj: &VmObject, pindex: u64, prot: Prot) -> Result<PageId, PagerResult> {
        add(&self.dev.counters.faults, 1);
        let i = pindex.checked_sub(self.base()).ok_or(PagerResult::Bad)?;
        if i >= self.map.count() || (prot.contains(Prot::WRITE) && self.readonly) {
            return Err(PagerResult::Error);
        }
        self.ensure_mapped(&mut self.state.lock())?;
        Ok(self.page(i))
    }

    fn has_populate(&self) -> bool {
        true
    }

    fn populate(
        &self,
        obj: &VmObject,
        pindex: u64,
        fault_type: Prot,
        _max_prot: Prot,
        bounds: PindexRange,
    ) -> Result<PindexRange, PagerResult> {
        add(&self.dev.counters.populates, 1);
        let (base, n) = (self.base(), self.map.count());
        if !(base..base + n).contains(&pindex) {
            return Err(PagerResult::Bad);
        }
        if fault_type.contains(Prot::WRITE) && self.readonly {
            return Err(PagerResult::Error);
        }
        let mut st = self.state.lock();
        let fresh = self.ensure_mapped(&mut st)?;
        insert_region(obj, base, n, bounds, fresh, |i| self.page(i))
    }

    fn dtor(&self) {
        self.teardown();
    }
}

/// The pager of one mapping object of a [`GrefRun`].
pub(crate) struct GrefPager {
    dev: Arc<Gntdev>,
    run: Arc<GrefRun>,
    /// (m) whether every page was inserted (the first populate).
    inserted: Mutex<bool>,
}

impl GrefPager {
    /// A pager of `run`'s pages.
    pub fn new(dev: Arc<Gntdev>, run: Arc<GrefRun>) -> Self {
        Self {
            dev,
            run,
            inserted: Mutex::new(false),
        }
    }

    fn base(&self) -> u64 {
        self.run.index >> PAGE_SHIFT
    }
}

impl DeviceOps for GrefPager {
    fn fault(&self, _obj: &VmObject, pindex: u64, _prot: Prot) -> Result<PageId, PagerResult> {
        add(&self.dev.counters.faults, 1);
        let i = pindex.checked_sub(self.base()).ok_or(PagerResult::Bad)?;
        let i = usize::try_from(i).map_err(|_| PagerResult::Bad)?;
        self.run
            .grants
            .get(i)
            .map(|g| g.0)
            .ok_or(PagerResult::Error)
    }

    fn has_populate(&self) -> bool {
        true
    }

    fn populate(
        &self,
        obj: &VmObject,
        pindex: u64,
        _fault_type: Prot,
        _max_prot: Prot,
        bounds: PindexRange,
    ) -> Result<PindexRange, PagerResult> {
        add(&self.dev.counters.populates, 1);
        let (base, n) = (self.base(), self.run.count());
        if !(base..base + n).contains(&pindex) {
            return Err(PagerResult::Bad);
        }
        let mut inserted = self.inserted.lock();
        let r = insert_region(obj, base, n, bounds, !*inserted, |i| {
            self.run.grants[i as usize].0
        })?;
        *inserted = true;
        Ok(r)
    }

    /// The object went: the grants end now if they were deallocated.
    fn dtor(&self) {
        if let Some(notify) = self.run.unmapped() {
            self.dev.destroy_grefs(&self.run, notify);
        }
    }
}
