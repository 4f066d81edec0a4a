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

use alloc::sync::Arc;
use alloc::vec::Vec;

use hashbrown::HashMap;
use spin::Mutex;

use crate::domain::VmDomain;
use crate::map::KernResult;
use crate::meter::Counter;
use crate::page::PageId;
use crate::{PAGE_SIZE, Prot};

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
}

/// One translation of a [`SoftPmap`].
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

/// State behind the [`SoftPmap`] lock.
#[derive(Default)]
struct SoftInner {
    /// va -> translation.
    ptes: HashMap<u64, SoftPte>,
    /// Managed page -> the addresses mapping it (the pv lists).
    pv: HashMap<PageId, Vec<u64>>,
}

impl SoftInner {
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

    /// The mapped addresses in `[start, end)`, without a walk of the whole
    /// range when it is sparse.
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
}

/// A software pmap: the translations in a hash map, with per-page mapping
/// lists and counters. For host tests of the map and fault code.
///
/// All state is behind one spin lock (`pm_mtx`).
pub struct SoftPmap {
    domain: Arc<VmDomain>,
    inner: Mutex<SoftInner>,
    /// Calls of [`Pmap::enter`].
    pub enters: Counter,
    /// Mappings removed by [`Pmap::remove`], [`Pmap::protect`] and
    /// [`Pmap::remove_all`].
    pub removes: Counter,
}

impl core::fmt::Debug for SoftPmap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftPmap")
            .field("mappings", &self.len())
            .field("enters", &self.enters)
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
            removes: Counter::default(),
        }
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.inner.lock().ptes.len()
    }

    /// Whether there is no mapping.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The translation of `va`.
    pub fn pte(&self, va: u64) -> Option<SoftPte> {
        self.inner.lock().ptes.get(&va).copied()
    }

    /// The addresses at which `page` is mapped (managed mappings only), sorted.
    pub fn mappings_of(&self, page: PageId) -> Vec<u64> {
        let mut v = self.inner.lock().pv.get(&page).cloned().unwrap_or_default();
        v.sort_unstable();
        v
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
        if let Some(old) = g.ptes.get(&va).copied() {
            if old.flags.contains(EnterFlags::WIRED) {
                debug_assert_eq!(old.page, page, "replacing a wired mapping");
                flags |= EnterFlags::WIRED;
            }
            g.unlink_pv(va, &old);
        }
        if flags.contains(EnterFlags::MANAGED) {
            g.pv.entry(page).or_default().push(va);
        }
        g.ptes.insert(
            va,
            SoftPte {
                page,
                pa,
                prot,
                flags,
            },
        );
        Ok(())
    }

    fn remove(&self, start: u64, end: u64) {
        let mut g = self.inner.lock();
        for va in g.vas_in(start, end) {
            let pte = g.ptes.remove(&va).expect("listed mapping");
            g.unlink_pv(va, &pte);
            self.removes.add(1);
        }
    }

    fn protect(&self, start: u64, end: u64, prot: Prot) {
        if !prot.contains(Prot::READ) {
            return self.remove(start, end);
        }
        let mut g = self.inner.lock();
        for va in g.vas_in(start, end) {
            let pte = g.ptes.get_mut(&va).expect("listed mapping");
            pte.prot &= prot;
        }
    }

    fn extract(&self, va: u64) -> Option<(u64, Prot)> {
        self.inner.lock().ptes.get(&va).map(|p| (p.pa, p.prot))
    }

    fn remove_all(&self, page: PageId) {
        let mut g = self.inner.lock();
        for va in g.pv.remove(&page).unwrap_or_default() {
            let pte = g.ptes.remove(&va).expect("pv entry without mapping");
            debug_assert!(
                !pte.flags.contains(EnterFlags::WIRED),
                "remove_all of a wired page"
            );
            self.removes.add(1);
        }
    }

    fn extract_and_hold(&self, va: u64, prot: Prot) -> Option<PageId> {
        let g = self.inner.lock();
        let pte = g.ptes.get(&va).filter(|p| p.prot.contains(prot))?;
        if self.domain.page(pte.page).wire_mapped()? {
            self.domain.counters.wired.add(1);
        }
        Some(pte.page)
    }

    fn unwire(&self, start: u64, end: u64, unwired: &mut dyn FnMut(PageId)) {
        let mut g = self.inner.lock();
        for va in g.vas_in(start, end) {
            let pte = g.ptes.get_mut(&va).expect("listed mapping");
            if pte.flags.contains(EnterFlags::WIRED) {
                pte.flags.remove(EnterFlags::WIRED);
                unwired(pte.page);
            }
        }
    }
}
