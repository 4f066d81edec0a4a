//! A VM domain: the page array and allocator, the counters, and the two
//! hooks through which the portable VM reaches the machine (FreeBSD's
//! `vm_domain`, one per NUMA domain; we have one).
//!
//! The kernel builds one at boot and shares it (`Arc<VmDomain>`); objects
//! keep a reference to theirs.

use alloc::sync::Arc;

use spin::Once;

use crate::loan::LoanState;
use crate::meter::VmCounters;
use crate::owner::PageOwners;
use crate::page::{BusyWait, PageId, PageQueue, VPRC_WIRE_COUNT_MASK, VmPage};
use crate::phys::{FreePool, PhysAllocator};

/// Access to page contents, which the VM never touches directly. The kernel
/// implements it with its direct map; host tests with a `Vec`.
pub trait PhysAccess: Send + Sync {
    /// Fill the page at physical address `pa` with zeroes (`pmap_zero_page`).
    fn zero_page(&self, pa: u64);
    /// Copy the page at `src` to the page at `dst` (`pmap_copy_page`).
    fn copy_page(&self, src: u64, dst: u64);
}

/// Every address space's mappings of a page (FreeBSD's pv lists, which
/// span all pmaps): how contiguous reclaim ([`crate::reclaim`]) takes
/// the mappings of a page it moves away. The kernel implements it with
/// its pmap's `remove_all`; host tests with their software pmaps
/// ([`crate::pmap::SoftPmap::mappings`]).
pub trait PageMappings: Send + Sync {
    /// Remove every managed mapping of `page` in every address space
    /// (`pmap_remove_all`), as [`crate::pmap::Pmap::remove_all`].
    fn remove_all(&self, page: PageId);
}

/// The page array, allocator, counters and machine hooks.
pub struct VmDomain {
    /// The physical allocator and page array.
    pub phys: PhysAllocator,
    /// Statistics.
    pub counters: VmCounters,
    /// Page loans: the zero page and the loan counters.
    pub loans: LoanState,
    /// The object holding each page.
    pub owners: PageOwners,
    mem: Arc<dyn PhysAccess>,
    wait: Arc<dyn BusyWait>,
    /// Set once ([`VmDomain::set_mappings`]); until then no page is moved.
    mappings: Once<Arc<dyn PageMappings>>,
}

impl core::fmt::Debug for VmDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VmDomain")
            .field("phys", &self.phys)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl VmDomain {
    /// A domain over `phys`, touching memory through `mem` and sleeping on
    /// busy pages through `wait` ([`crate::page::SpinWait`] before the
    /// scheduler runs).
    pub fn new(phys: PhysAllocator, mem: Arc<dyn PhysAccess>, wait: Arc<dyn BusyWait>) -> Self {
        Self {
            owners: PageOwners::new(phys.page_count()),
            phys,
            counters: VmCounters::default(),
            loans: LoanState::default(),
            mem,
            wait,
            mappings: Once::new(),
        }
    }

    /// Install the hook that reaches every mapping of a page, which lets
    /// contiguous reclaim move pages. Only the first call counts.
    pub fn set_mappings(&self, mappings: Arc<dyn PageMappings>) {
        self.mappings.call_once(|| mappings);
    }

    /// The hook that reaches every mapping of a page, once installed.
    pub fn mappings(&self) -> Option<&dyn PageMappings> {
        self.mappings.get().map(|m| &**m)
    }

    /// The page `id`.
    #[inline]
    pub fn page(&self, id: PageId) -> &VmPage {
        self.phys.page(id)
    }

    /// The busy wait queue.
    pub fn wait(&self) -> &dyn BusyWait {
        &*self.wait
    }

    /// Page contents access.
    pub fn mem(&self) -> &dyn PhysAccess {
        &*self.mem
    }

    /// Zero the contents of page `id`.
    pub fn zero_page(&self, id: PageId) {
        self.mem.zero_page(self.page(id).phys_addr());
    }

    /// Copy the contents of page `src` to page `dst`.
    pub fn copy_page(&self, src: PageId, dst: PageId) {
        self.mem
            .copy_page(self.page(src).phys_addr(), self.page(dst).phys_addr());
    }

    /// Allocate one page (`vm_page_alloc_noobj`).
    pub fn alloc_page(&self, pool: FreePool) -> Option<PageId> {
        self.phys.alloc_page(pool)
    }

    /// Wire page `id` (`vm_page_wire`): the caller holds its object's lock
    /// or its busy lock, or owns it outright.
    pub fn wire(&self, id: PageId) {
        if self.page(id).wire() {
            self.counters.wired.add(1);
        }
    }

    /// Unwire page `id` (`vm_page_unwire`): on the last wiring of a page
    /// still in an object, put it on `queue`; on the last reference of any
    /// kind, free it. Returns whether it was freed.
    pub fn unwire(&self, id: PageId, queue: PageQueue) -> bool {
        let m = self.page(id);
        let old = m.unwire_old();
        if old & VPRC_WIRE_COUNT_MASK == 1 {
            self.counters.wired.sub(1);
            if old == 1 {
                self.release(id);
                return true;
            }
            m.set_queue(queue);
        }
        false
    }

    /// Free a page whose last reference the caller just dropped. Fictitious
    /// pages go back to their registered range, not to the allocator.
    pub fn release(&self, id: PageId) {
        let m = self.page(id);
        debug_assert_eq!(m.ref_count(), 0, "releasing a referenced page");
        m.set_queue(PageQueue::None);
        if !m.is_fictitious() {
            self.phys.free_page(id);
        }
    }
}
