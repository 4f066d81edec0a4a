//! The machine-independent pmap interface (FreeBSD `pmap.h`) and a
//! software pmap for host tests.
//!
//! A pmap is one address space's page tables. The VM only asks it to
//! install, change and remove translations; it never walks page tables.
//! The kernel implements [`Pmap`] on the x86 page tables; [`SoftPmap`]
//! keeps the translations in a hash map so that the map and fault code can
//! be tested on the host.
//!
//! # Protocol
//!
//! - Every method takes `&self`: the implementation locks internally (a
//!   FreeBSD pmap has its own `pm_mtx`), so callers may hold the map lock,
//!   an object lock or a page's busy lock while they call it. Methods never
//!   sleep.
//! - A *managed* mapping ([`EnterFlags::MANAGED`]) is on its page's
//!   mapping list (FreeBSD's pv list), so [`Pmap::remove_all`] can find it.
//!   Mappings of unmanaged device pages are not.
//! - A *wired* mapping ([`EnterFlags::WIRED`]) holds exactly one wiring of
//!   its page, taken by the fault handler. [`Pmap::unwire`] hands those
//!   wirings back; [`Pmap::remove`] and [`Pmap::remove_all`] never drop a
//!   wiring, so callers unwire a range before removing it (as
//!   `vm_map_delete` unwires an entry before `pmap_remove`).
//! - A *superpage* mapping ([`Pmap::enter_large`], FreeBSD's `psind` 1) maps
//!   [`SUPERPAGE_PAGES`] physically contiguous pages with one 2 MiB entry.
//!   It behaves as that many 4 KiB mappings with the same rights and flags:
//!   each page is on its mapping list at its own address, and a wired one
//!   holds one wiring of each page. An operation on a range that cuts a
//!   superpage mapping (`remove`, `protect`, `unwire`, `remove_all` of one
//!   of its pages, an `enter` inside it) first demotes it to 4 KiB
//!   mappings with the same attributes (`pmap_demote_pde`), then acts.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use hashbrown::HashMap;
use spin::Mutex;

use crate::domain::{PageMappings, VmDomain};
use crate::map::KernResult;
use crate::meter::Counter;
use crate::page::PageId;
use crate::{PAGE_SIZE, Prot, SUPERPAGE_PAGES, SUPERPAGE_SIZE};

bitflags::bitflags! {
    /// Flags of [`Pmap::enter`] (`PMAP_ENTER_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct EnterFlags: u8 {
        /// The mapping is wired (`PMAP_ENTER_WIRED`): it holds one wiring
        /// of the page and stays until [`Pmap::unwire`].
        const WIRED = 1 << 0;
        /// The page is managed (not `VPO_UNMANAGED`): keep the mapping on
        /// the page's mapping list.
        const MANAGED = 1 << 1;
    }
}

/// Page-table operations the VM needs (FreeBSD `pmap_*`).
///
/// Addresses are page-aligned user virtual addresses; ranges are
/// half-open `[start, end)`.
pub trait Pmap: Send + Sync {
    /// Map `va` to page `page` at physical address `pa` with `prot`
    /// (`pmap_enter`), replacing any mapping of `va`. The cache mode is the
    /// page's ([`crate::page::VmPage::memattr`]). Entering over a wired
    /// mapping keeps it wired and must map the same page: the fault handler
    /// unwires first when it replaces one. `ResourceShortage` if a
    /// page-table page could not be allocated.
    fn enter(
        &self,
        va: u64,
        page: PageId,
        pa: u64,
        prot: Prot,
        flags: EnterFlags,
    ) -> Result<(), KernResult>;

    /// Map the [`SUPERPAGE_SIZE`]-aligned `va` to the [`SUPERPAGE_PAGES`]
    /// pages `pages` with one superpage entry (`pmap_enter` with `psind`
    /// 1). The pages lie physically contiguous from `pa`, which is
    /// superpage-aligned, in this order, and share one cache mode. Any
    /// mapping in the range is replaced; none may be wired (a wiring
    /// fault unwires the range first). With [`EnterFlags::WIRED`] the
    /// entry holds one wiring of each page. `ResourceShortage` if a
    /// page-table page could not be allocated.
    #[doc(alias = "psind")]
    fn enter_large(
        &self,
        va: u64,
        pages: &[PageId],
        pa: u64,
        prot: Prot,
        flags: EnterFlags,
    ) -> Result<(), KernResult>;

    /// Remove every mapping in `[start, end)` (`pmap_remove`).
    fn remove(&self, start: u64, end: u64);

    /// Lower the rights of every mapping in `[start, end)` to at most
    /// `prot` (`pmap_protect`); never adds rights, which faults add back
    /// lazily. Without `READ` the mappings are removed.
    fn protect(&self, start: u64, end: u64, prot: Prot);

    /// The physical address and rights of the mapping of `va`
    /// (`pmap_extract`).
    fn extract(&self, va: u64) -> Option<(u64, Prot)>;

    /// Remove every managed mapping of `page` (`pmap_remove_all`). The
    /// caller has the page exclusively busied or `BLOCKED`
    /// ([`crate::page::VmPage::try_block`]), which succeeds only without
    /// wirings: so no wired mapping of it exists.
    fn remove_all(&self, page: PageId);

    /// The page mapped at `va` with at least `prot`, with a wiring added
    /// so that it stays while the caller uses it (`pmap_extract_and_hold`).
    /// The wiring is taken with [`crate::page::VmPage::wire_mapped`], under
    /// the pmap lock so that the mapping cannot go meanwhile; it fails while
    /// the page is `BLOCKED`. `None` when unmapped, mapped with fewer
    /// rights, or blocked: the caller then faults the page in
    /// ([`crate::fault::vm_fault`]) instead. Release the page with
    /// [`VmDomain::unwire`].
    fn extract_and_hold(&self, va: u64, prot: Prot) -> Option<PageId>;

    /// Clear the wired attribute of the mappings in `[start, end)`
    /// (`pmap_unwire`), calling `unwired` with the page of each mapping
    /// that was wired: the caller drops the wiring it held.
    fn unwire(&self, start: u64, end: u64, unwired: &mut dyn FnMut(PageId));

    /// Runs `f`, whose [`enter`](Self::enter)s and
    /// [`enter_large`](Self::enter_large)s the pmap may hand to the
    /// hardware tables together when `f` returns rather than one by one
    /// (NetBSD's `pmap_update`: a pmap whose changes cost a hypercall each,
    /// as a Xen PV one, gathers them). Until then the new mappings may be
    /// missing from the tables; the caller keeps them from being needed or
    /// changed meanwhile: their pages busy, the map read-locked. An
    /// entry the tables refused when they were handed over (a Xen PV
    /// pmap's grant entries, which Xen validates then) is not made, and
    /// the batch fails with `Failure`: the fault fails as a pager's
    /// failure does. The default runs `f` alone.
    fn batch(&self, f: &mut dyn FnMut()) -> Result<(), KernResult> {
        f();
        Ok(())
    }
}

/// One translation of a [`SoftPmap`], for a 4 KiB page (of a 4 KiB entry
/// or of a superpage entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftPte {
    /// The page mapped.
    pub page: PageId,
    /// Its physical address.
    pub pa: u64,
    /// The rights.
    pub prot: Prot,
    /// The `enter` flags.
    pub flags: EnterFlags,
}

/// A superpage entry of a [`SoftPmap`].
struct SoftLarge {
    /// The [`SUPERPAGE_PAGES`] pages, in address order.
    pages: Vec<PageId>,
    /// The physical address of the first.
    pa: u64,
    /// The rights.
    prot: Prot,
    /// The `enter_large` flags.
    flags: EnterFlags,
}

impl SoftLarge {
    /// The translation of page `i` of the entry.
    fn pte(&self, i: u64) -> SoftPte {
        SoftPte {
            page: self.pages[i as usize],
            pa: self.pa + i * PAGE_SIZE,
            prot: self.prot,
            flags: self.flags,
        }
    }
}

/// State behind the [`SoftPmap`] lock.
#[derive(Default)]
struct SoftInner {
    /// va -> translation, of 4 KiB entries.
    ptes: HashMap<u64, SoftPte>,
    /// Superpage entries by their (aligned) address.
    large: BTreeMap<u64, SoftLarge>,
    /// Managed page -> the addresses mapping it (the pv lists), each page
    /// of a superpage entry at its own address.
    pv: HashMap<PageId, Vec<u64>>,
}

impl SoftInner {
    fn link_pv(&mut self, va: u64, pte: &SoftPte) {
        if pte.flags.contains(EnterFlags::MANAGED) {
            self.pv.entry(pte.page).or_default().push(va);
        }
    }

    fn unlink_pv(&mut self, va: u64, pte: &SoftPte) {
        if !pte.flags.contains(EnterFlags::MANAGED) {
            return;
        }
        if let Some(list) = self.pv.get_mut(&pte.page) {
            list.retain(|&v| v != va);
            if list.is_empty() {
                self.pv.remove(&pte.page);
            }
        }
    }

    /// The address of the superpage entry containing `va`, if any.
    fn large_at(&self, va: u64) -> Option<u64> {
        let (&base, _) = self.large.range(..=va).next_back()?;
        (va < base + SUPERPAGE_SIZE).then_some(base)
    }

    /// The translation of `va`, of either kind.
    fn pte(&self, va: u64) -> Option<SoftPte> {
        if let Some(p) = self.ptes.get(&va) {
            return Some(*p);
        }
        let base = self.large_at(va)?;
        Some(self.large[&base].pte((va - base) / PAGE_SIZE))
    }

    /// Splits the superpage entry at `base` into 4 KiB entries with the
    /// same attributes (`pmap_demote_pde`); the pv lists stay as they are.
    fn demote(&mut self, base: u64) {
        let l = self.large.remove(&base).expect("a superpage entry");
        for i in 0..SUPERPAGE_PAGES {
            self.ptes.insert(base + i * PAGE_SIZE, l.pte(i));
        }
    }

    /// Demotes the superpage entries that `[start, end)` cuts; returns
    /// how many.
    fn demote_cut(&mut self, start: u64, end: u64) -> u64 {
        let mut n = 0;
        if start >= end {
            return 0;
        }
        for at in [start, end] {
            if let Some(base) = self.large_at(at).filter(|&b| b != at) {
                self.demote(base);
                n += 1;
            }
        }
        n
    }

    /// The superpage entries wholly inside `[start, end)`.
    fn large_in(&self, start: u64, end: u64) -> Vec<u64> {
        self.large
            .range(start..end)
            .map(|(&b, _)| b)
            .filter(|&b| b + SUPERPAGE_SIZE <= end)
            .collect()
    }

    /// The addresses of 4 KiB entries in `[start, end)`, without a walk of
    /// the whole range when it is sparse.
    fn vas_in(&self, start: u64, end: u64) -> Vec<u64> {
        let pages = (end - start) / PAGE_SIZE;
        if pages <= self.ptes.len() as u64 {
            (0..pages)
                .map(|i| start + i * PAGE_SIZE)
                .filter(|va| self.ptes.contains_key(va))
                .collect()
        } else {
            self.ptes
                .keys()
                .copied()
                .filter(|&va| start <= va && va < end)
                .collect()
        }
    }

    /// Removes every mapping in `[start, end)`, which cuts no superpage
    /// entry; returns the pages unmapped.
    fn remove_range(&mut self, start: u64, end: u64) -> u64 {
        let mut n = 0;
        for base in self.large_in(start, end) {
            let l = self.large.remove(&base).expect("listed entry");
            for i in 0..SUPERPAGE_PAGES {
                self.unlink_pv(base + i * PAGE_SIZE, &l.pte(i));
            }
            n += SUPERPAGE_PAGES;
        }
        for va in self.vas_in(start, end) {
            let pte = self.ptes.remove(&va).expect("listed mapping");
            self.unlink_pv(va, &pte);
            n += 1;
        }
        n
    }
}

/// A software pmap: the translations in hash maps, with per-page mapping
/// lists and counters. It keeps superpage entries as such, so tests see
/// how many entries of each size a mapping takes. For host tests of the
/// map and fault code.
///
/// All state is behind one spin lock (`pm_mtx`).
pub struct SoftPmap {
    domain: Arc<VmDomain>,
    inner: Mutex<SoftInner>,
    /// Calls of [`Pmap::enter`].
    pub enters: Counter,
    /// Calls of [`Pmap::enter_large`].
    pub large_enters: Counter,
    /// Superpage entries split into 4 KiB entries.
    pub demotions: Counter,
    /// Pages unmapped by [`Pmap::remove`], [`Pmap::protect`] and
    /// [`Pmap::remove_all`].
    pub removes: Counter,
}

impl core::fmt::Debug for SoftPmap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftPmap")
            .field("pages", &self.len())
            .field("large_entries", &self.large_entries())
            .field("enters", &self.enters)
            .field("large_enters", &self.large_enters)
            .field("demotions", &self.demotions)
            .field("removes", &self.removes)
            .finish_non_exhaustive()
    }
}

impl SoftPmap {
    /// An empty pmap over the pages of `domain`.
    pub fn new(domain: Arc<VmDomain>) -> Self {
        Self {
            domain,
            inner: Mutex::new(SoftInner::default()),
            enters: Counter::default(),
            large_enters: Counter::default(),
            demotions: Counter::default(),
            removes: Counter::default(),
        }
    }

    /// Number of pages mapped, by entries of either size.
    pub fn len(&self) -> usize {
        let g = self.inner.lock();
        g.ptes.len() + g.large.len() * SUPERPAGE_PAGES as usize
    }

    /// Whether there is no mapping.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of 4 KiB entries.
    pub fn small_entries(&self) -> usize {
        self.inner.lock().ptes.len()
    }

    /// Number of superpage entries.
    pub fn large_entries(&self) -> usize {
        self.inner.lock().large.len()
    }

    /// Whether `va` is mapped by a superpage entry.
    pub fn is_large(&self, va: u64) -> bool {
        self.inner.lock().large_at(va).is_some()
    }

    /// The translation of `va`.
    pub fn pte(&self, va: u64) -> Option<SoftPte> {
        self.inner.lock().pte(va)
    }

    /// The addresses at which `page` is mapped (managed mappings only), sorted.
    pub fn mappings_of(&self, page: PageId) -> Vec<u64> {
        let mut v = self.inner.lock().pv.get(&page).cloned().unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// This pmap as the domain's [`PageMappings`] hook, for a domain with
    /// one address space; it holds the pmap weakly, since the pmap holds
    /// the domain.
    pub fn mappings(self: &Arc<Self>) -> Arc<dyn PageMappings> {
        Arc::new(WeakPmap(Arc::downgrade(self)))
    }

    /// Demotes what `[start, end)` cuts, counted.
    fn demote_cut(&self, g: &mut SoftInner, start: u64, end: u64) {
        self.demotions.add(g.demote_cut(start, end));
    }
}

/// A [`SoftPmap`] held weakly, as a [`PageMappings`] hook.
struct WeakPmap(Weak<SoftPmap>);

impl PageMappings for WeakPmap {
    fn remove_all(&self, page: PageId) {
        if let Some(p) = self.0.upgrade() {
            p.remove_all(page);
        }
    }
}

impl Pmap for SoftPmap {
    fn enter(
        &self,
        va: u64,
        page: PageId,
        pa: u64,
        prot: Prot,
        mut flags: EnterFlags,
    ) -> Result<(), KernResult> {
        debug_assert_eq!(va % PAGE_SIZE, 0, "unaligned va");
        self.enters.add(1);
        let mut g = self.inner.lock();
        if let Some(base) = g.large_at(va) {
            g.demote(base);
            self.demotions.add(1);
        }
        if let Some(old) = g.ptes.get(&va).copied() {
            if old.flags.contains(EnterFlags::WIRED) {
                debug_assert_eq!(old.page, page, "replacing a wired mapping");
                flags |= EnterFlags::WIRED;
            }
            g.unlink_pv(va, &old);
        }
        let pte = SoftPte {
            page,
            pa,
            prot,
            flags,
        };
        g.link_pv(va, &pte);
        g.ptes.insert(va, pte);
        Ok(())
    }

    fn enter_large(
        &self,
        va: u64,
        pages: &[PageId],
        pa: u64,
        prot: Prot,
        flags: EnterFlags,
    ) -> Result<(), KernResult> {
        debug_assert!(
            va.is_multiple_of(SUPERPAGE_SIZE)
                && pa.is_multiple_of(SUPERPAGE_SIZE)
                && pages.len() as u64 == SUPERPAGE_PAGES,
            "not a superpage"
        );
        debug_assert!(
            pages
                .iter()
                .enumerate()
                .all(|(i, &id)| self.domain.page(id).phys_addr() == pa + i as u64 * PAGE_SIZE),
            "pages not contiguous from pa"
        );
        self.large_enters.add(1);
        let end = va + SUPERPAGE_SIZE;
        let mut g = self.inner.lock();
        debug_assert!(
            g.large
                .get(&va)
                .is_none_or(|l| !l.flags.contains(EnterFlags::WIRED))
                && g.vas_in(va, end)
                    .iter()
                    .all(|v| !g.ptes[v].flags.contains(EnterFlags::WIRED)),
            "replacing a wired mapping"
        );
        g.remove_range(va, end);
        let l = SoftLarge {
            pages: pages.to_vec(),
            pa,
            prot,
            flags,
        };
        for i in 0..SUPERPAGE_PAGES {
            g.link_pv(va + i * PAGE_SIZE, &l.pte(i));
        }
        g.large.insert(va, l);
        Ok(())
    }

    fn remove(&self, start: u64, end: u64) {
        let mut g = self.inner.lock();
        self.demote_cut(&mut g, start, end);
        self.removes.add(g.remove_range(start, end));
    }

    fn protect(&self, start: u64, end: u64, prot: Prot) {
        if !prot.contains(Prot::READ) {
            return self.remove(start, end);
        }
        let mut g = self.inner.lock();
        self.demote_cut(&mut g, start, end);
        for base in g.large_in(start, end) {
            g.large.get_mut(&base).expect("listed entry").prot &= prot;
        }
        for va in g.vas_in(start, end) {
            g.ptes.get_mut(&va).expect("listed mapping").prot &= prot;
        }
    }

    fn extract(&self, va: u64) -> Option<(u64, Prot)> {
        let va_page = va & !(PAGE_SIZE - 1);
        self.inner
            .lock()
            .pte(va_page)
            .map(|p| (p.pa | (va % PAGE_SIZE), p.prot))
    }

    fn remove_all(&self, page: PageId) {
        let mut g = self.inner.lock();
        for va in g.pv.get(&page).cloned().unwrap_or_default() {
            if let Some(base) = g.large_at(va) {
                g.demote(base);
                self.demotions.add(1);
            }
            let pte = g.ptes.remove(&va).expect("pv entry without mapping");
            debug_assert!(
                !pte.flags.contains(EnterFlags::WIRED),
                "remove_all of a wired page"
            );
            g.unlink_pv(va, &pte);
            self.removes.add(1);
        }
    }

    fn extract_and_hold(&self, va: u64, prot: Prot) -> Option<PageId> {
        let g = self.inner.lock();
        let pte = g.pte(va).filter(|p| p.prot.contains(prot))?;
        if self.domain.page(pte.page).wire_mapped()? {
            self.domain.counters.wired.add(1);
        }
        Some(pte.page)
    }

    fn unwire(&self, start: u64, end: u64, unwired: &mut dyn FnMut(PageId)) {
        let mut g = self.inner.lock();
        self.demote_cut(&mut g, start, end);
        for base in g.large_in(start, end) {
            let l = g.large.get_mut(&base).expect("listed entry");
            if l.flags.contains(EnterFlags::WIRED) {
                l.flags.remove(EnterFlags::WIRED);
                l.pages.iter().for_each(|&id| unwired(id));
            }
        }
        for va in g.vas_in(start, end) {
            let pte = g.ptes.get_mut(&va).expect("listed mapping");
            if pte.flags.contains(EnterFlags::WIRED) {
                pte.flags.remove(EnterFlags::WIRED);
                unwired(pte.page);
            }
        }
    }
}
