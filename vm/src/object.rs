//! VM objects (FreeBSD `vm_object.c`): a pager-backed array of pages.
//!
//! # Locking
//!
//! | field | protection |
//! |---|---|
//! | `domain`, `otype`, `pager`, `owner_slot` | constant |
//! | `pip` (paging in progress) | (a) atomic |
//! | `populating` | (a) atomic: set by the one fault in the pager's `populate` |
//! | size, flags, page index, backing object, shadow list | (o) the object lock ([`VmObject::lock`]) |
//! | the pages' `pindex` | (o) plus the page's exclusive busy lock |
//!
//! Lock order: a shadow's lock before its backing object's; the object lock
//! before the allocator's free lock, the busy wait queue and the pmaps'
//! locks (a `remove_all` of a page leaving the object). Never sleep on
//! a busy page with an object lock held: drop it, sleep, look up again.
//!
//! # References
//!
//! The object's reference count is the `Arc`'s: `vm_object_reference` is
//! `Arc::clone`, `vm_object_deallocate` is dropping it. The last reference
//! frees the pages, calls the pager's `dealloc`, and drops the backing
//! object; if that leaves the backing object referenced by a single shadow
//! and nothing else, that shadow absorbs it ([`VmObject::collapse`]).

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use hashbrown::HashMap;
use spin::{Mutex, MutexGuard};

use crate::domain::VmDomain;
use crate::page::{BusyMode, PageId};
use crate::pager::PagerOps;
use crate::pmap::Pmap;
use crate::{Errno, PAGE_SHIFT, PAGE_SIZE};

/// Object type (`objtype_t`), which decides the pager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// Anonymous memory, zero-filled on demand (`OBJT_DEFAULT`/`OBJT_SWAP`).
    Default,
    /// Anonymous, unpageable, populated in clusters (`OBJT_PHYS`).
    Phys,
    /// Device memory through unmanaged fictitious pages (`OBJT_DEVICE`).
    Device,
    /// Device memory through managed fictitious pages (`OBJT_MGTDEVICE`).
    MgtDevice,
}

bitflags::bitflags! {
    /// Object flags (`OBJ_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ObjectFlags: u16 {
        /// The pager implements populate and faults use it (`OBJ_POPULATE`).
        const POPULATE = 1 << 0;
        /// The pages are fictitious (`OBJ_FICTITIOUS`).
        const FICTITIOUS = 1 << 1;
        /// Each page is mapped by at most the one map entry that made the
        /// object (or a piece of it after a clip), never shared, copied or
        /// shadowed (`OBJ_ONEMAPPING`): an unmap of a range may free the
        /// range's pages ([`VmObject::remove_unmapped`]). Set by the map
        /// on the anonymous objects it makes; cleared for good when the
        /// object is inserted into a map while referenced elsewhere
        /// ([`crate::map::VmMap::insert`]) or shadowed
        /// ([`VmObject::shadow`]).
        const ONE_MAPPING = 1 << 2;
    }
}

/// The backing (shadowed) object of a copy-on-write shadow.
#[derive(Debug)]
struct Backing {
    object: Arc<VmObject>,
    /// Our pindex 0 is the backing object's pindex `offset`.
    offset: u64,
}

/// Object state behind the object lock (o).
struct ObjectInner {
    size: u64,
    flags: ObjectFlags,
    pages: HashMap<u64, PageId>,
    backing: Option<Backing>,
    shadows: Vec<Weak<VmObject>>,
}

/// A VM object (`vm_object`).
pub struct VmObject {
    domain: Arc<VmDomain>,
    otype: ObjectType,
    pager: Box<dyn PagerOps>,
    /// Our slot in the domain's object table ([`crate::owner`]).
    owner_slot: u32,
    pip: AtomicU32,
    /// (a) A fault is in the pager's `populate` ([`VmObject::start_populate`]).
    populating: AtomicBool,
    inner: Mutex<ObjectInner>,
}

impl core::fmt::Debug for VmObject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VmObject")
            .field("otype", &self.otype)
            .finish_non_exhaustive()
    }
}

/// Convert a byte range of an object to pages, rejecting ranges that wrap
/// (`ERANGE`) or are not page-aligned or empty (`EINVAL`). Returns
/// `(first pindex, number of pages)`; `len` is rounded up to pages.
pub fn offset_range_to_pages(offset: u64, len: u64) -> Result<(u64, u64), Errno> {
    if !offset.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(Errno::EINVAL);
    }
    let end = offset.checked_add(len).ok_or(Errno::ERANGE)?;
    let end = end
        .checked_next_multiple_of(PAGE_SIZE)
        .ok_or(Errno::ERANGE)?;
    Ok((offset >> PAGE_SHIFT, (end - offset) >> PAGE_SHIFT))
}

impl VmObject {
    /// A new object of `size` pages served by `pager` (`vm_object_allocate`).
    pub(crate) fn new(
        domain: Arc<VmDomain>,
        otype: ObjectType,
        size: u64,
        flags: ObjectFlags,
        pager: Box<dyn PagerOps>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            owner_slot: domain.owners.register(me.clone()),
            domain,
            otype,
            pager,
            pip: AtomicU32::new(0),
            populating: AtomicBool::new(false),
            inner: Mutex::new(ObjectInner {
                size,
                flags,
                pages: HashMap::new(),
                backing: None,
                shadows: Vec::new(),
            }),
        })
    }

    /// A new anonymous object of `size` pages (`vm_object_allocate(OBJT_DEFAULT)`).
    pub fn allocate_default(domain: Arc<VmDomain>, size: u64) -> Arc<Self> {
        Self::new(
            domain,
            ObjectType::Default,
            size,
            ObjectFlags::empty(),
            Box::new(crate::pager::DefaultPager),
        )
    }

    /// Frees the resident pages of `[first, first + count)` once the one
    /// map entry that mapped them is gone (munmap of part of an anonymous
    /// mapping: `vm_map_entry_delete`'s `vm_object_page_remove`), if the
    /// object is [`ObjectFlags::ONE_MAPPING`]; an object mapped more than
    /// once keeps its pages until it goes.
    ///
    /// Each page is taken exclusively busied under the object lock, so no
    /// fault, loan or reclaim is using it and none can map it anew; a page
    /// busy elsewhere is waited for (with no lock held), then looked up
    /// again. Before it leaves the object every mapping of it is removed
    /// in every address space (`pmap_remove_all`): through the domain's
    /// [`crate::domain::PageMappings`] hook, or `pmap`'s
    /// [`Pmap::remove_all`] where the domain has none (the hook spans all
    /// address spaces, `pmap` is the caller's). The caller has removed its
    /// own mappings of the range and their wirings, so no wired mapping is
    /// left. A page still wired (lent, held for a grant) leaves the object
    /// but is not freed: its holder's last unwire frees it. Returns how
    /// many pages left the object. A page that a fault racing with the
    /// unmap inserts after the range was looked at (the fault then finds
    /// the map changed and gives up) stays until the object goes.
    pub fn remove_unmapped(&self, first: u64, count: u64, pmap: &dyn Pmap) -> u64 {
        if count == 0 {
            return 0;
        }
        let last = first.saturating_add(count - 1);
        let mut pindexes: Vec<u64> = {
            let g = self.lock();
            if !g.flags().contains(ObjectFlags::ONE_MAPPING) {
                return 0;
            }
            g.pages_in(first, last)
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        };
        pindexes.sort_unstable();
        let domain = &self.domain;
        let mut removed = 0;
        for pindex in pindexes {
            loop {
                let mut g = self.lock();
                // Shared meanwhile (the flag is only ever cleared): the
                // other mappings keep the rest.
                if !g.flags().contains(ObjectFlags::ONE_MAPPING) {
                    return removed;
                }
                debug_assert_eq!(g.shadow_count(), 0, "ONE_MAPPING on a shadowed object");
                let Some(id) = g.lookup(pindex) else {
                    break;
                };
                let m = domain.page(id);
                if !m.try_xbusy() {
                    drop(g);
                    m.busy_sleep(BusyMode::Exclusive, domain.wait());
                    continue;
                }
                match domain.mappings() {
                    Some(all) => all.remove_all(id),
                    None => pmap.remove_all(id),
                }
                g.remove(pindex);
                removed += 1;
                break;
            }
        }
        removed
    }

    /// A shadow of `backing` for copy-on-write (`vm_object_shadow`): `size`
    /// pages whose pindex 0 is `backing`'s pindex `offset`. `ERANGE` if the
    /// window wraps.
    pub fn shadow(backing: &Arc<Self>, offset: u64, size: u64) -> Result<Arc<Self>, Errno> {
        offset.checked_add(size).ok_or(Errno::ERANGE)?;
        let s = Self::allocate_default(backing.domain.clone(), size);
        s.inner.lock().backing = Some(Backing {
            object: backing.clone(),
            offset,
        });
        let mut b = backing.inner.lock();
        // The backing object's pages are now mapped through the shadow's
        // entries too.
        b.flags.remove(ObjectFlags::ONE_MAPPING);
        b.shadows.retain(|w| w.strong_count() > 0);
        b.shadows.push(Arc::downgrade(&s));
        Ok(s)
    }

    /// The object's domain.
    pub fn domain(&self) -> &Arc<VmDomain> {
        &self.domain
    }

    /// Object type.
    pub fn otype(&self) -> ObjectType {
        self.otype
    }

    /// The pager.
    pub fn pager(&self) -> &dyn PagerOps {
        &*self.pager
    }

    /// Take the object lock (`VM_OBJECT_WLOCK`).
    pub fn lock(&self) -> ObjectGuard<'_> {
        ObjectGuard {
            object: self,
            inner: self.inner.lock(),
        }
    }

    /// Number of paging operations in progress.
    pub fn paging_in_progress(&self) -> u32 {
        self.pip.load(Ordering::Acquire)
    }

    /// Count a paging operation until the guard drops
    /// (`vm_object_pip_add`/`vm_object_pip_wakeup`): the object is not
    /// collapsed meanwhile.
    pub fn pip_guard(&self) -> PipGuard<'_> {
        self.pip.fetch_add(1, Ordering::Acquire);
        PipGuard(self)
    }

    /// The right to call the pager's `populate`, if no other fault has it:
    /// one populate of an object at a time, so that the faults of several
    /// threads on one mapping make one populate (the others wait for it
    /// and find its pages resident).
    pub fn start_populate(&self) -> Option<PopulateGuard<'_>> {
        self.populating
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then(|| PopulateGuard(self))
    }

    /// Whether a fault is in the pager's `populate`.
    pub fn is_populating(&self) -> bool {
        self.populating.load(Ordering::Acquire)
    }

    /// The backing object and offset, if this is a shadow.
    pub fn backing(&self) -> Option<(Arc<VmObject>, u64)> {
        self.inner
            .lock()
            .backing
            .as_ref()
            .map(|b| (b.object.clone(), b.offset))
    }

    /// Where our pindex `p` lies in the backing object: the backing object
    /// and its pindex, if this is a shadow and `p` falls inside it.
    pub fn backing_pindex(&self, p: u64) -> Option<(Arc<VmObject>, u64)> {
        let (b, off) = self.backing()?;
        let bp = p.checked_add(off)?;
        let inside = bp < b.lock().size();
        inside.then_some((b, bp))
    }

    /// Absorb the backing object while nothing but this shadow references
    /// it (`vm_object_collapse`): its pages that this object lacks move
    /// here, the others are freed, and its own backing becomes ours.
    /// Repeats down the chain; returns how many objects were absorbed.
    pub fn collapse(self: &Arc<Self>) -> usize {
        let mut n = 0;
        while self.collapse_once() {
            n += 1;
        }
        n
    }

    fn collapse_once(self: &Arc<Self>) -> bool {
        let mut inner = self.inner.lock();
        let Some(b) = inner.backing.as_ref() else {
            return false;
        };
        // Only we can reach it, and we hold our lock: the count stays 1.
        if Arc::strong_count(&b.object) != 1
            || b.object.paging_in_progress() != 0
            || b.object.otype != ObjectType::Default
        {
            return false;
        }
        let (off, bobj) = (b.offset, b.object.clone());
        let mut binner = bobj.inner.lock();
        let new_backing = match binner.backing.as_ref() {
            Some(bb) => match bb.offset.checked_add(off) {
                Some(o) => Some((bb.object.clone(), o)),
                None => return false,
            },
            None => None,
        };
        let wait = self.domain.wait();
        let size = inner.size;
        for (bp, id) in core::mem::take(&mut binner.pages) {
            let m = self.domain.page(id);
            let busied = m.try_xbusy();
            debug_assert!(busied, "page of an unreachable object is busy");
            let pindex = bp.wrapping_sub(off);
            if bp >= off && pindex < size && !inner.pages.contains_key(&pindex) {
                m.set_pindex(pindex);
                inner.pages.insert(pindex, id);
                self.note_owner(id);
                m.xunbusy(wait);
            } else {
                m.xunbusy(wait);
                if m.drop_objref() {
                    self.domain.release(id);
                }
            }
        }
        binner.backing = None;
        drop(binner);
        let old = inner.backing.take().map(|b| b.object);
        if let Some((gp, o)) = new_backing {
            let mut g = gp.inner.lock();
            g.shadows.retain(|w| w.strong_count() > 0);
            g.shadows.push(Arc::downgrade(self));
            drop(g);
            inner.backing = Some(Backing {
                object: gp,
                offset: o,
            });
        }
        drop(inner);
        drop(bobj);
        drop(old);
        true
    }
}

impl VmObject {
    /// Record that page `id`, which we just took under our lock, is ours.
    fn note_owner(&self, id: PageId) {
        self.domain
            .owners
            .set(id, self.owner_slot, self.otype == ObjectType::Default);
    }
}

impl Drop for VmObject {
    /// `vm_object_terminate`: free the pages, then let the pager go.
    fn drop(&mut self) {
        let domain = self.domain.clone();
        let inner = self.inner.get_mut();
        for (_, id) in inner.pages.drain() {
            let m = domain.page(id);
            m.busy_lock(BusyMode::Exclusive, domain.wait());
            m.xunbusy(domain.wait());
            if m.drop_objref() {
                domain.release(id);
            }
        }
        let backing = inner.backing.take();
        self.pager.dealloc(self);
        domain.owners.unregister(self.owner_slot);
        let Some(Backing { object: b, .. }) = backing else {
            return;
        };
        // If a single shadow of `b` is all that references it now, collapse.
        let survivor = {
            let mut bi = b.inner.lock();
            bi.shadows.retain(|w| w.strong_count() > 0);
            match bi.shadows.as_slice() {
                [only] => only.upgrade(),
                _ => None,
            }
        };
        drop(b);
        if let Some(s) = survivor {
            s.collapse();
        }
    }
}

/// The one populate of an object in progress ([`VmObject::start_populate`]).
#[derive(Debug)]
pub struct PopulateGuard<'a>(&'a VmObject);

impl Drop for PopulateGuard<'_> {
    fn drop(&mut self) {
        self.0.populating.store(false, Ordering::Release);
    }
}

/// A paging operation in progress ([`VmObject::pip_guard`]).
#[derive(Debug)]
pub struct PipGuard<'a>(&'a VmObject);

impl Drop for PipGuard<'_> {
    fn drop(&mut self) {
        self.0.pip.fetch_sub(1, Ordering::Release);
    }
}

/// The object lock held: access to the fields it protects.
pub struct ObjectGuard<'a> {
    object: &'a VmObject,
    inner: MutexGuard<'a, ObjectInner>,
}

impl ObjectGuard<'_> {
    /// Size in pages.
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    /// Change the size (`vm_object_resize`); pages beyond it stay until removed.
    pub fn set_size(&mut self, size: u64) {
        self.inner.size = size;
    }

    /// Flags.
    pub fn flags(&self) -> ObjectFlags {
        self.inner.flags
    }

    /// Set flags (`vm_object_set_flag`).
    pub fn set_flags(&mut self, f: ObjectFlags) {
        self.inner.flags |= f;
    }

    /// Clear flags (`vm_object_clear_flag`).
    pub fn clear_flags(&mut self, f: ObjectFlags) {
        self.inner.flags.remove(f);
    }

    /// Number of resident pages.
    pub fn resident_count(&self) -> usize {
        self.inner.pages.len()
    }

    /// Number of shadows still alive (`shadow_count`).
    pub fn shadow_count(&self) -> usize {
        self.inner
            .shadows
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// The page at `pindex` (`vm_page_lookup`).
    pub fn lookup(&self, pindex: u64) -> Option<PageId> {
        self.inner.pages.get(&pindex).copied()
    }

    /// Resident pages in `[first, last]` as `(pindex, page)`, unsorted:
    /// by lookups of the range's indexes when it is smaller than the
    /// object's resident set, so that a small range of a large object
    /// costs no walk of the whole set.
    pub fn pages_in(&self, first: u64, last: u64) -> Vec<(u64, PageId)> {
        let pages = &self.inner.pages;
        if first > last {
            return Vec::new();
        }
        if last - first < pages.len() as u64 {
            (first..=last)
                .filter_map(|p| pages.get(&p).map(|&id| (p, id)))
                .collect()
        } else {
            pages
                .iter()
                .filter(|(p, _)| (first..=last).contains(*p))
                .map(|(&p, &id)| (p, id))
                .collect()
        }
    }

    /// Insert page `id`, exclusively busied by the caller and in no object,
    /// at `pindex` (`vm_page_insert`). `EINVAL` beyond the object's size,
    /// `EEXIST` if the index is taken.
    pub fn insert(&mut self, pindex: u64, id: PageId) -> Result<(), Errno> {
        let m = self.object.domain.page(id);
        debug_assert!(m.is_xbusied(), "inserting a page not xbusied");
        if pindex >= self.inner.size {
            return Err(Errno::EINVAL);
        }
        match self.inner.pages.entry(pindex) {
            hashbrown::hash_map::Entry::Occupied(_) => Err(Errno::EEXIST),
            hashbrown::hash_map::Entry::Vacant(v) => {
                m.set_pindex(pindex);
                m.set_objref();
                v.insert(id);
                self.object.note_owner(id);
                Ok(())
            }
        }
    }

    /// Remove the page at `pindex`, which the caller has exclusively busied
    /// (`vm_page_remove` + `vm_page_free`): it is unbusied, waking waiters,
    /// and freed unless still wired. Returns the page removed.
    pub fn remove(&mut self, pindex: u64) -> Option<PageId> {
        let id = self.inner.pages.remove(&pindex)?;
        let domain = &self.object.domain;
        let m = domain.page(id);
        debug_assert!(m.is_xbusied(), "removing a page not xbusied");
        m.xunbusy(domain.wait());
        if m.drop_objref() {
            domain.release(id);
        }
        Some(id)
    }

    /// Put page `new`, exclusively busied by the caller and in no object,
    /// at `pindex` in place of `old`, which the caller has exclusively
    /// busied (`vm_page_replace`); both stay busied. `old` leaves the
    /// object: returns whether that was its last reference, in which case
    /// the caller owns it (to free or to keep). `ENOENT` if `old` is not
    /// at `pindex`.
    #[doc(alias = "vm_page_replace")]
    pub fn replace(&mut self, pindex: u64, old: PageId, new: PageId) -> Result<bool, Errno> {
        let domain = &self.object.domain;
        let (mo, mn) = (domain.page(old), domain.page(new));
        debug_assert!(mo.is_xbusied() && mn.is_xbusied(), "replace without xbusy");
        let slot = self.inner.pages.get_mut(&pindex).ok_or(Errno::ENOENT)?;
        if *slot != old {
            return Err(Errno::ENOENT);
        }
        *slot = new;
        mn.set_pindex(pindex);
        mn.set_objref();
        self.object.note_owner(new);
        Ok(mo.drop_objref())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::testutil::domain;

    fn new_page(d: &VmDomain) -> PageId {
        let id = d.alloc_page(crate::phys::FreePool::Default).unwrap();
        assert!(d.page(id).try_xbusy());
        id
    }

    #[test]
    fn offsets_reject_wrap() {
        assert_eq!(offset_range_to_pages(0x1000, 0x2001), Ok((1, 3)));
        assert_eq!(
            offset_range_to_pages(u64::MAX - 0x1fff, 0x1000),
            Ok(((u64::MAX >> 12) - 1, 1))
        );
        assert_eq!(
            offset_range_to_pages(u64::MAX - 0xfff, 0x1000),
            Err(Errno::ERANGE),
            "end past 2^64"
        );
        assert_eq!(
            offset_range_to_pages(u64::MAX - 0xfff, 0x1001),
            Err(Errno::ERANGE)
        );
        assert_eq!(
            offset_range_to_pages(u64::MAX - 0xfff, 1),
            Err(Errno::ERANGE),
            "rounding up wraps"
        );
        assert_eq!(offset_range_to_pages(0x10, 1), Err(Errno::EINVAL));
        assert_eq!(offset_range_to_pages(0, 0), Err(Errno::EINVAL));
        let d = domain(16);
        let o = VmObject::allocate_default(d, 4);
        assert_eq!(VmObject::shadow(&o, u64::MAX, 2).err(), Some(Errno::ERANGE));
    }

    #[test]
    fn insert_lookup_remove() {
        let d = domain(16);
        let o = VmObject::allocate_default(d.clone(), 4);
        let id = new_page(&d);
        let mut g = o.lock();
        g.insert(2, id).unwrap();
        assert_eq!(g.lookup(2), Some(id));
        assert_eq!(d.page(id).pindex(), 2);
        let id2 = new_page(&d);
        assert_eq!(g.insert(2, id2), Err(Errno::EEXIST));
        assert_eq!(g.insert(4, id2), Err(Errno::EINVAL));
        assert_eq!(g.resident_count(), 1);
        assert_eq!(d.phys.free_count(), 14);
        assert_eq!(g.remove(2), Some(id));
        assert_eq!(g.lookup(2), None);
        assert_eq!(d.phys.free_count(), 15, "removed page freed");
        assert!(!d.page(id).is_busied());
        d.page(id2).xunbusy(d.wait());
        d.phys.free_page(id2);
    }

    #[test]
    fn wired_page_outlives_its_object() {
        let d = domain(16);
        let o = VmObject::allocate_default(d.clone(), 4);
        let id = new_page(&d);
        o.lock().insert(0, id).unwrap();
        d.wire(id);
        d.page(id).xunbusy(d.wait());
        assert_eq!(d.counters.wired.get(), 1);
        drop(o);
        assert_eq!(d.phys.free_count(), 15);
        assert!(
            d.unwire(id, crate::page::PageQueue::Active),
            "last reference frees"
        );
        assert_eq!(d.phys.free_count(), 16);
        assert_eq!(d.counters.wired.get(), 0);
    }

    #[test]
    fn one_populate_at_a_time() {
        let d = domain(16);
        let o = VmObject::allocate_default(d, 4);
        let g = o.start_populate().expect("free");
        assert!(o.start_populate().is_none(), "taken");
        assert!(o.is_populating(), "a refused attempt leaves it taken");
        drop(g);
        assert!(!o.is_populating());
        assert!(o.start_populate().is_some());
    }

    #[test]
    fn unwire_queues_page_still_in_object() {
        let d = domain(16);
        let o = VmObject::allocate_default(d.clone(), 4);
        let id = new_page(&d);
        o.lock().insert(0, id).unwrap();
        d.wire(id);
        d.page(id).xunbusy(d.wait());
        assert!(!d.unwire(id, crate::page::PageQueue::Inactive));
        assert_eq!(d.page(id).queue(), crate::page::PageQueue::Inactive);
        drop(o);
        assert_eq!(d.phys.free_count(), 16);
    }

    #[test]
    fn pip_guard_counts() {
        let d = domain(4);
        let o = VmObject::allocate_default(d, 4);
        let g = o.pip_guard();
        assert_eq!(o.paging_in_progress(), 1);
        drop(g);
        assert_eq!(o.paging_in_progress(), 0);
    }

    fn put(d: &VmDomain, o: &VmObject, pindex: u64) -> PageId {
        let id = new_page(d);
        o.lock().insert(pindex, id).unwrap();
        d.page(id).xunbusy(d.wait());
        id
    }

    #[test]
    fn last_shadow_collapses_into_survivor() {
        let d = domain(64);
        let a = VmObject::allocate_default(d.clone(), 8);
        let a0 = put(&d, &a, 0);
        let a1 = put(&d, &a, 1);
        let a5 = put(&d, &a, 5);
        // Parent and child shadows after a fork; then the map drops `a`.
        let s1 = VmObject::shadow(&a, 1, 4).unwrap();
        let s2 = VmObject::shadow(&a, 0, 8).unwrap();
        assert_eq!(a.lock().shadow_count(), 2);
        let s1_0 = put(&d, &s1, 0); // s1 has its own copy of a's pindex 1
        drop(a);
        assert_eq!(s1.collapse(), 0, "a still has two shadows");
        let before = d.phys.free_count();
        drop(s2); // the child exits: s1 absorbs a
        assert!(s1.backing().is_none(), "collapsed");
        let g = s1.lock();
        assert_eq!(g.lookup(0), Some(s1_0), "own page kept");
        assert_eq!(g.lookup(3), None);
        assert_eq!(g.resident_count(), 1);
        drop(g);
        // a0 (before the window), a1 (shadowed) and a5 (after it) were freed.
        assert_eq!(d.phys.free_count(), before + 3);
        let _ = (a0, a1, a5);
    }

    #[test]
    fn collapse_moves_pages_and_relinks_chain() {
        let d = domain(64);
        let a = VmObject::allocate_default(d.clone(), 8);
        let a3 = put(&d, &a, 3);
        let b = VmObject::shadow(&a, 2, 6).unwrap();
        let b2 = put(&d, &b, 2);
        let c = VmObject::shadow(&b, 1, 4).unwrap();
        let bp = d.page(b2);
        drop(b);
        // a is still referenced here, so only b collapses into c.
        assert_eq!(c.collapse(), 1);
        assert_eq!(c.lock().lookup(1), Some(b2));
        assert_eq!(bp.pindex(), 1);
        let (back, off) = c.backing().unwrap();
        assert!(Arc::ptr_eq(&back, &a));
        assert_eq!(off, 3);
        drop(back);
        assert_eq!(a.lock().shadow_count(), 1);
        drop(a);
        assert_eq!(c.collapse(), 1);
        assert_eq!(c.lock().lookup(0), Some(a3));
        let owner = d.owners.object(a3).expect("c is alive");
        assert!(Arc::ptr_eq(&owner, &c), "a collapse moves the owner too");
        assert!(d.owners.movable(a3));
    }

    #[test]
    fn replace_swaps_the_page_at_its_index() {
        let d = domain(16);
        let o = VmObject::allocate_default(d.clone(), 4);
        let old = put(&d, &o, 1);
        let new = new_page(&d);
        let other = new_page(&d);
        assert!(d.page(old).try_xbusy());
        let mut g = o.lock();
        assert_eq!(g.replace(0, old, new), Err(Errno::ENOENT), "empty index");
        assert_eq!(g.replace(1, other, new), Err(Errno::ENOENT), "another page");
        assert_eq!(
            g.replace(1, old, new),
            Ok(true),
            "the object's was the last reference"
        );
        assert_eq!(g.lookup(1), Some(new));
        drop(g);
        assert_eq!(d.page(new).pindex(), 1);
        assert_eq!(d.page(old).ref_count(), 0);
        assert!(Arc::ptr_eq(&d.owners.object(new).unwrap(), &o));
        for id in [old, new, other] {
            d.page(id).xunbusy(d.wait());
        }
        d.phys.free_page(old);
        d.phys.free_page(other);
        drop(o);
        assert_eq!(d.phys.free_count(), 16);
    }

    #[test]
    fn owner_slots_are_reused_and_dead_objects_own_nothing() {
        let d = domain(16);
        let a = VmObject::allocate_default(d.clone(), 4);
        let id = put(&d, &a, 0);
        let phys = crate::pager::phys::phys_pager_allocate(d.clone(), 4 * PAGE_SIZE);
        let pid = put(&d, &phys, 0);
        assert!(
            d.owners.movable(id) && !d.owners.movable(pid),
            "only default objects' pages move"
        );
        assert!(Arc::ptr_eq(&d.owners.object(pid).unwrap(), &phys));
        let slot = a.owner_slot;
        drop(a);
        assert!(d.owners.object(id).is_none(), "the owner is gone");
        let b = VmObject::allocate_default(d.clone(), 4);
        assert_eq!(b.owner_slot, slot, "the slot is reused");
    }
}
