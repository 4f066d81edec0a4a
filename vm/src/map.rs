//! Address maps (FreeBSD `vm_map.c`): the entries of one address space,
//! each a range of virtual addresses backed by a window of a VM object.
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | `domain`, `min`, `max` | constant |
//! | `stats` | atomic counters |
//! | the entries, `timestamp` | (m) the map lock ([`VmMap`]'s `RwLock`) |
//! | each entry's object | its own object lock ([`crate::object`]) |
//!
//! The map lock plays FreeBSD's `vm_map_lock` (an sx lock): changes take it
//! for writing and bump `timestamp` (FreeBSD bumps it in `vm_map_unlock`);
//! lookups take it for reading. It is a spin lock here, so it is held only
//! for bounded work and never across a pager call or a sleep on a busy
//! page: the fault handler drops it with [`VmMap::lookup_done`], does the
//! paging work, relocks with [`VmMap::lock_read`] and compares the
//! timestamp it saw at lookup, retrying the fault if the map changed.
//!
//! Lock order: map lock, then an object lock or a page's busy lock, then
//! the pmap's lock. Objects dropped by a change of the map are released
//! after the map lock (FreeBSD's deferred entry freeing), since freeing an
//! object may wait for its busy pages; so are the pages an unmap frees
//! ([`VmObject::remove_unmapped`]).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::domain::VmDomain;
use crate::fault::FaultStats;
use crate::object::{ObjectFlags, VmObject};
use crate::page::PageQueue;
use crate::pmap::Pmap;
use crate::{Errno, PAGE_SHIFT, PAGE_SIZE, Prot, SUPERPAGE_SIZE};

/// Result of a map or fault operation (`KERN_*`, `mach/kern_return.h`).
///
/// Operations return `Result<T, KernResult>`, whose errors are never
/// `Success`. Errno mapping ([`KernResult::to_errno`]) after FreeBSD's
/// `vm_mmap_to_errno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernResult {
    /// Success (`KERN_SUCCESS`).
    Success,
    /// No entry maps the address, or it lies outside the map
    /// (`KERN_INVALID_ADDRESS`): `ENOMEM`; SIGSEGV for a fault.
    InvalidAddress,
    /// The access exceeds the entry's protection, or a new protection its
    /// maximum (`KERN_PROTECTION_FAILURE`): `EACCES`; SIGSEGV for a fault.
    ProtectionFailure,
    /// No free range, or the range overlaps an entry (`KERN_NO_SPACE`): `ENOMEM`.
    NoSpace,
    /// Out of memory or page-table pages (`KERN_RESOURCE_SHORTAGE`): `ENOMEM`.
    ResourceShortage,
    /// Unaligned, empty or wrapping range (`KERN_INVALID_ARGUMENT`): `EINVAL`.
    InvalidArgument,
    /// The address lies beyond what the object backs
    /// (`KERN_OUT_OF_BOUNDS`): `EFAULT`; SIGBUS for a fault.
    OutOfBounds,
    /// The pager failed (`KERN_FAILURE`): `EIO`; SIGSEGV for a fault.
    Failure,
}

impl KernResult {
    /// The errno for this result (`Ok(())` for `Success`).
    pub const fn to_errno(self) -> Result<(), Errno> {
        Err(match self {
            Self::Success => return Ok(()),
            Self::InvalidAddress | Self::NoSpace | Self::ResourceShortage => Errno::ENOMEM,
            // EACCES is 13 in Linux and Xen numbering.
            Self::ProtectionFailure => Errno(13),
            Self::InvalidArgument => Errno::EINVAL,
            Self::OutOfBounds => Errno::EFAULT,
            Self::Failure => Errno::EIO,
        })
    }
}

/// What a child gets of an entry at fork (`vm_inherit_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Inheritance {
    /// The child shares the object (`VM_INHERIT_SHARE`).
    Share,
    /// The child gets a copy-on-write copy (`VM_INHERIT_COPY`).
    #[default]
    Copy,
    /// The child does not get the range (`VM_INHERIT_NONE`).
    None,
}

bitflags::bitflags! {
    /// Entry flags (`MAP_ENTRY_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct EntryFlags: u8 {
        /// A private mapping: writes never reach the object, they go to a
        /// shadow object (`MAP_ENTRY_COW`).
        const COW = 1 << 0;
        /// The shadow object has not been made yet (`MAP_ENTRY_NEEDS_COPY`):
        /// the first write fault makes it; until then pages are mapped
        /// read-only. Only with `COW`.
        const NEEDS_COPY = 1 << 1;
    }
}

/// One range of a map (`vm_map_entry`).
#[derive(Clone, Debug)]
pub struct MapEntry {
    /// First address, page-aligned.
    pub start: u64,
    /// End address (exclusive), page-aligned.
    pub end: u64,
    /// The backing object; `None` for anonymous memory whose default object
    /// the first fault makes.
    pub object: Option<Arc<VmObject>>,
    /// Byte offset of `start` in the object: page-aligned, and
    /// `offset + (end - start)` does not wrap.
    pub offset: u64,
    /// Current rights.
    pub protection: Prot,
    /// The rights `protection` may ever be raised to.
    pub max_protection: Prot,
    /// Fork behaviour.
    pub inheritance: Inheritance,
    /// Copy-on-write state.
    pub flags: EntryFlags,
}

impl MapEntry {
    /// Number of pages.
    pub fn npages(&self) -> u64 {
        (self.end - self.start) >> PAGE_SHIFT
    }

    /// The object pindex of `va`, which lies in the entry.
    pub fn pindex(&self, va: u64) -> u64 {
        (self.offset + (va - self.start)) >> PAGE_SHIFT
    }

    /// Split at `at` (strictly inside): `self` keeps `[start, at)`, the
    /// returned entry gets `[at, end)` with its own reference to the object
    /// (`vm_map_clip_start`/`vm_map_clip_end`).
    fn split(&mut self, at: u64) -> MapEntry {
        debug_assert!(self.start < at && at < self.end);
        let mut right = self.clone();
        right.start = at;
        right.offset = self.offset + (at - self.start);
        self.end = at;
        right
    }

    fn check(&self) -> Result<(), KernResult> {
        let aligned = |x: u64| x.is_multiple_of(PAGE_SIZE);
        if !aligned(self.start)
            || !aligned(self.end)
            || !aligned(self.offset)
            || self.start >= self.end
        {
            return Err(KernResult::InvalidArgument);
        }
        self.offset
            .checked_add(self.end - self.start)
            .ok_or(KernResult::InvalidArgument)?;
        if !self.max_protection.contains(self.protection) {
            return Err(KernResult::ProtectionFailure);
        }
        if self.flags.contains(EntryFlags::NEEDS_COPY) && !self.flags.contains(EntryFlags::COW) {
            return Err(KernResult::InvalidArgument);
        }
        Ok(())
    }
}

/// What a fault needs from the entry of an address ([`VmMap::lookup`]).
#[derive(Clone, Debug)]
pub struct LookupResult {
    /// Entry start.
    pub start: u64,
    /// Entry end (exclusive).
    pub end: u64,
    /// The entry's (first) object.
    pub object: Arc<VmObject>,
    /// The faulting address's pindex in `object`.
    pub pindex: u64,
    /// The pindexes of the entry in `object`, inclusive.
    pub entry_pindexes: (u64, u64),
    /// The rights to map with: the entry's, without `WRITE` while the
    /// entry still needs a copy.
    pub prot: Prot,
    /// The entry's maximum rights.
    pub max_prot: Prot,
    /// The map's timestamp at lookup.
    pub timestamp: u64,
}

impl LookupResult {
    /// The address of pindex `p` of the entry.
    pub fn va_of(&self, p: u64) -> u64 {
        self.start + ((p - self.entry_pindexes.0) << PAGE_SHIFT)
    }
}

/// State behind the map lock (m).
struct MapInner {
    /// Entries by start address; they never overlap.
    entries: BTreeMap<u64, MapEntry>,
    /// Bumped by every change.
    timestamp: u64,
}

impl MapInner {
    /// The entry containing `va`.
    fn entry_at(&self, va: u64) -> Option<&MapEntry> {
        self.entries
            .range(..=va)
            .next_back()
            .map(|(_, e)| e)
            .filter(|e| va < e.end)
    }

    /// Split entries so that `at` is an entry boundary.
    fn clip(&mut self, at: u64) {
        let Some((_, e)) = self.entries.range_mut(..at).next_back() else {
            return;
        };
        if at < e.end {
            let right = e.split(at);
            self.entries.insert(at, right);
        }
    }

    /// Start addresses of the entries that intersect `[start, end)`.
    fn starts_in(&self, start: u64, end: u64) -> Vec<u64> {
        let first = self.entry_at(start).map_or(start, |e| e.start);
        self.entries.range(first..end).map(|(&s, _)| s).collect()
    }
}

/// The map lock held for reading: the entries stay as they are.
pub struct MapReadGuard<'a>(RwLockReadGuard<'a, MapInner>);

impl MapReadGuard<'_> {
    /// The map's timestamp.
    pub fn timestamp(&self) -> u64 {
        self.0.timestamp
    }
}

/// An address map (`vm_map`).
pub struct VmMap {
    domain: Arc<VmDomain>,
    min: u64,
    max: u64,
    stats: FaultStats,
    inner: RwLock<MapInner>,
}

impl core::fmt::Debug for VmMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VmMap")
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl VmMap {
    /// An empty map of `[min, max)`, page-aligned (`vm_map_create`), whose
    /// anonymous objects come from `domain`.
    pub fn new(domain: Arc<VmDomain>, min: u64, max: u64) -> Self {
        assert!(
            min.is_multiple_of(PAGE_SIZE) && max.is_multiple_of(PAGE_SIZE) && min < max,
            "bad map bounds"
        );
        Self {
            domain,
            min,
            max,
            stats: FaultStats::default(),
            inner: RwLock::new(MapInner {
                entries: BTreeMap::new(),
                timestamp: 0,
            }),
        }
    }

    /// The domain.
    pub fn domain(&self) -> &Arc<VmDomain> {
        &self.domain
    }

    /// Fault statistics of this map.
    pub fn stats(&self) -> &FaultStats {
        &self.stats
    }

    /// The map's timestamp (changes with every change of the map).
    pub fn timestamp(&self) -> u64 {
        self.inner.read().timestamp
    }

    /// Take the map lock for reading (`vm_map_lock_read`).
    pub fn lock_read(&self) -> MapReadGuard<'_> {
        MapReadGuard(self.inner.read())
    }

    fn lock_write(&self) -> RwLockWriteGuard<'_, MapInner> {
        let mut g = self.inner.write();
        g.timestamp += 1;
        g
    }

    /// The entries, in address order (a copy, for diagnostics and tests).
    pub fn entries(&self) -> Vec<MapEntry> {
        self.inner.read().entries.values().cloned().collect()
    }

    /// The lowest free range of `len` bytes aligned to `align` (a power of
    /// two, at least a page; 0 means a page) at or above `hint`, or else
    /// above the map's minimum (`vm_map_findspace`). `NoSpace` if none;
    /// `InvalidArgument` for a bad length or alignment.
    pub fn find_space(&self, len: u64, align: u64, hint: u64) -> Result<u64, KernResult> {
        let align = if align == 0 { PAGE_SIZE } else { align };
        if len == 0
            || !len.is_multiple_of(PAGE_SIZE)
            || !align.is_power_of_two()
            || align < PAGE_SIZE
        {
            return Err(KernResult::InvalidArgument);
        }
        let g = self.inner.read();
        let from = hint.clamp(self.min, self.max);
        self.find_from(&g, len, align, from)
            .or_else(|| self.find_from(&g, len, align, self.min))
            .ok_or(KernResult::NoSpace)
    }

    /// [`VmMap::find_space`] for a mapping of `len` bytes of `object`: a
    /// populate-capable object ([`ObjectFlags::POPULATE`]) mapped for at
    /// least a superpage gets a superpage-aligned range when one is free,
    /// so that its populate can enter superpage entries (FreeBSD's
    /// `MAP_ALIGNED_SUPER`); anything else, or when no aligned range is
    /// free, the first free range.
    #[doc(alias = "MAP_ALIGNED_SUPER")]
    pub fn find_space_for(
        &self,
        object: Option<&VmObject>,
        len: u64,
        hint: u64,
    ) -> Result<u64, KernResult> {
        let populate = object.is_some_and(|o| o.lock().flags().contains(ObjectFlags::POPULATE));
        if populate
            && len >= SUPERPAGE_SIZE
            && let Ok(va) = self.find_space(len, SUPERPAGE_SIZE, hint)
        {
            return Ok(va);
        }
        self.find_space(len, 0, hint)
    }

    fn find_from(&self, g: &MapInner, len: u64, align: u64, from: u64) -> Option<u64> {
        let fits = |at: u64, limit: u64| {
            let cand = at.checked_next_multiple_of(align)?;
            cand.checked_add(len)
                .is_some_and(|end| end <= limit)
                .then_some(cand)
        };
        let mut at = g.entry_at(from).map_or(from, |e| e.end);
        for (&s, e) in g.entries.range(at..) {
            if let Some(va) = fits(at, s) {
                return Some(va);
            }
            at = e.end;
        }
        fits(at, self.max)
    }

    /// Add an entry (`vm_map_insert`). `InvalidArgument` if unaligned,
    /// empty, or its object window wraps; `ProtectionFailure` if the
    /// protection exceeds the maximum; `InvalidAddress` outside the map;
    /// `NoSpace` if it overlaps an entry.
    ///
    /// An object referenced elsewhere too (by another entry, of this map
    /// or another, or by a shadow) loses [`ObjectFlags::ONE_MAPPING`]:
    /// its pages may now be mapped twice, so an unmap no longer frees them
    /// (`vm_map_insert`).
    pub fn insert(&self, entry: MapEntry) -> Result<(), KernResult> {
        entry.check()?;
        if entry.start < self.min || entry.end > self.max {
            return Err(KernResult::InvalidAddress);
        }
        if let Some(o) = &entry.object {
            let mut g = o.lock();
            if Arc::strong_count(o) > 1 || g.shadow_count() != 0 {
                g.clear_flags(ObjectFlags::ONE_MAPPING);
            }
        }
        let mut g = self.inner.write();
        let prev_overlaps = g
            .entries
            .range(..entry.end)
            .next_back()
            .is_some_and(|(_, e)| e.end > entry.start);
        if prev_overlaps {
            return Err(KernResult::NoSpace);
        }
        g.timestamp += 1;
        g.entries.insert(entry.start, entry);
        Ok(())
    }

    fn check_range(&self, start: u64, end: u64) -> Result<(), KernResult> {
        if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || start > end {
            return Err(KernResult::InvalidArgument);
        }
        if start < self.min || end > self.max {
            return Err(KernResult::InvalidAddress);
        }
        Ok(())
    }

    /// How many pages of `[start, end)` (page-aligned) lie in entries.
    pub fn mapped_pages(&self, start: u64, end: u64) -> u64 {
        let g = self.inner.read();
        g.starts_in(start, end)
            .iter()
            .map(|s| {
                let e = &g.entries[s];
                (e.end.min(end) - e.start.max(start)) >> PAGE_SHIFT
            })
            .sum()
    }

    /// Remove `[start, end)` (`vm_map_delete`, munmap): entries that cross
    /// the bounds are clipped, the pages' wired mappings unwired and all
    /// mappings removed from `pmap`, and the object references of the
    /// removed parts dropped (after the map lock). The pages in the range
    /// of an object that only the removed entry mapped
    /// ([`ObjectFlags::ONE_MAPPING`]: the map's own anonymous objects)
    /// are freed at once, not when the last piece of the mapping goes
    /// ([`VmObject::remove_unmapped`], which may wait for busy pages).
    /// Holes are fine.
    pub fn remove(&self, pmap: &dyn Pmap, start: u64, end: u64) -> Result<(), KernResult> {
        self.check_range(start, end)?;
        let mut dead = Vec::new();
        let mut g = self.lock_write();
        g.clip(start);
        g.clip(end);
        for s in g.starts_in(start, end) {
            let e = g.entries.remove(&s).expect("listed entry");
            pmap.unwire(e.start, e.end, &mut |id| {
                self.domain.unwire(id, PageQueue::Active);
            });
            pmap.remove(e.start, e.end);
            dead.push(e);
        }
        drop(g);
        for e in &dead {
            // An object we hold the last reference of goes with its pages
            // when `dead` drops.
            if let Some(o) = e.object.as_ref().filter(|o| Arc::strong_count(o) > 1) {
                o.remove_unmapped(e.offset >> PAGE_SHIFT, e.npages(), pmap);
            }
        }
        drop(dead);
        Ok(())
    }

    /// Change the protection of `[start, end)` (`vm_map_protect`, mprotect):
    /// with `set_max` the maximum becomes `prot` and the protection keeps
    /// only what `prot` allows; otherwise the protection becomes `prot`.
    /// Entries that cross the bounds are clipped and rights taken away are
    /// removed from `pmap` at once. `ProtectionFailure`, with no change, if
    /// `prot` exceeds an entry's maximum; `InvalidAddress` if the range has
    /// a hole.
    pub fn protect(
        &self,
        pmap: &dyn Pmap,
        start: u64,
        end: u64,
        prot: Prot,
        set_max: bool,
    ) -> Result<(), KernResult> {
        self.check_range(start, end)?;
        let mut g = self.inner.write();
        let starts = g.starts_in(start, end);
        let mut at = start;
        for s in &starts {
            let e = &g.entries[s];
            if e.start > at {
                return Err(KernResult::InvalidAddress);
            }
            if !e.max_protection.contains(prot) {
                return Err(KernResult::ProtectionFailure);
            }
            at = e.end;
        }
        if at < end {
            return Err(KernResult::InvalidAddress);
        }
        g.timestamp += 1;
        g.clip(start);
        g.clip(end);
        for s in g.starts_in(start, end) {
            let e = g.entries.get_mut(&s).expect("listed entry");
            let old = e.protection;
            if set_max {
                e.max_protection = prot;
                e.protection &= prot;
            } else {
                e.protection = prot;
            }
            if !old.difference(e.protection).is_empty() {
                pmap.protect(e.start, e.end, e.protection);
            }
        }
        Ok(())
    }

    /// Look up `va` for a fault of type `fault_type` (`vm_map_lookup`):
    /// returns the map lock held for reading and what the fault needs.
    /// Makes the entry's default object if it has none, and for a write
    /// fault on an entry that needs a copy, its shadow object (both with
    /// the lock held for writing, which bumps the timestamp).
    /// `InvalidAddress` if no entry maps `va`; `ProtectionFailure` if
    /// `fault_type` exceeds the entry's protection.
    pub fn lookup(
        &self,
        va: u64,
        fault_type: Prot,
    ) -> Result<(MapReadGuard<'_>, LookupResult), KernResult> {
        let mut g = self.inner.read();
        loop {
            let e = g.entry_at(va).ok_or(KernResult::InvalidAddress)?;
            if !e.protection.contains(fault_type) {
                return Err(KernResult::ProtectionFailure);
            }
            let needs_shadow =
                fault_type.contains(Prot::WRITE) && e.flags.contains(EntryFlags::NEEDS_COPY);
            if e.object.is_some() && !needs_shadow {
                let obj = e.object.clone().expect("checked");
                let first = e.offset >> PAGE_SHIFT;
                let mut prot = e.protection;
                if e.flags.contains(EntryFlags::NEEDS_COPY) {
                    prot.remove(Prot::WRITE);
                }
                let r = LookupResult {
                    start: e.start,
                    end: e.end,
                    object: obj,
                    pindex: e.pindex(va),
                    entry_pindexes: (first, first + e.npages() - 1),
                    prot,
                    max_prot: e.max_protection,
                    timestamp: g.timestamp,
                };
                return Ok((MapReadGuard(g), r));
            }
            drop(g);
            let mut w = self.lock_write();
            let start = w.entry_at(va).map(|e| e.start);
            if let Some(e) = start.and_then(|s| w.entries.get_mut(&s)) {
                self.make_object(e, fault_type);
            }
            g = w.downgrade();
        }
    }

    /// Give the entry an object, or a shadow for a write on a copy-on-write
    /// entry that needs one (the `vm_object_shadow` step of `vm_map_lookup`).
    fn make_object(&self, e: &mut MapEntry, fault_type: Prot) {
        match &e.object {
            None => {
                let o = VmObject::allocate_default(self.domain.clone(), e.npages());
                o.lock().set_flags(ObjectFlags::ONE_MAPPING);
                e.object = Some(o);
                e.offset = 0;
                e.flags.remove(EntryFlags::NEEDS_COPY);
            }
            Some(obj)
                if fault_type.contains(Prot::WRITE) && e.flags.contains(EntryFlags::NEEDS_COPY) =>
            {
                // `check` made sure the window does not wrap.
                let s = VmObject::shadow(obj, e.offset >> PAGE_SHIFT, e.npages())
                    .expect("window checked at insert");
                s.lock().set_flags(ObjectFlags::ONE_MAPPING);
                e.object = Some(s);
                e.offset = 0;
                e.flags.remove(EntryFlags::NEEDS_COPY);
            }
            Some(_) => {}
        }
    }

    /// Release the map lock taken by [`VmMap::lookup`] (`vm_map_lookup_done`).
    pub fn lookup_done(&self, guard: MapReadGuard<'_>) {
        drop(guard);
    }
}
