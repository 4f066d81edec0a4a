//! One `vm_page` per physical frame (FreeBSD `vm_page.h`).
//!
//! # Protocol
//!
//! Who may change which field, under which lock (the letters tag the fields):
//!
//! | tag | meaning |
//! |---|---|
//! | (a) | atomic: any thread, lock-free, by the protocol written at the field |
//! | (b) | busy: the holder of the busy lock (shared busy is enough for the valid and dirty bits, which change with atomic bit operations) |
//! | (o) | object lock of the object that holds the page (with the page exclusively busied for renames) |
//! | (p) | phys allocator: set while the page is free or being registered, constant while it is allocated |
//! | (l) | loan: atomic; raised only with the page exclusively busied (the zero page: under the zero-page lock, [`crate::loan`]), lowered by the borrower lock-free |
//!
//! The busy lock is a first-class lock in its own word and never needs the
//! object lock (D21548): shared busy is a count, exclusive busy a bit, and a
//! waiters bit tells the unbusier to call [`BusyWait::wakeup`]. Sleepers set
//! the waiters bit from inside [`BusyWait::sleep_if`], under the wait
//! queue's own lock, which is what makes the wake-up impossible to lose.
//!
//! # `ref_count`
//!
//! ```text
//!   bit 31 OBJREF  | bit 30 BLOCKED | bits 0..30 wirings
//!
//!            alloc                 insert into object
//!   free ----------> 0 ---------------------------------> OBJREF | n
//!    ^               |  wire: n += 1     unwire: n -= 1   |  remove from object:
//!    |               v                                   |  OBJREF cleared
//!    +---- last reference dropped (value becomes 0) <----+
//!
//!   BLOCKED: set by try_block() only while n == 0; wire_mapped() fails while
//!   it is set, wire() (caller holds the object lock or busy) does not check.
//!
//!   loaned (loan_count > 0): the loans together hold one of the n wirings,
//!   taken by the first loan and dropped by the last unloan.
//! ```
//!
//! The thread that turns the value into 0 owns the page and frees it, so a
//! page is freed exactly once ([`VmPage::unwire_noq`], [`VmPage::drop_objref`]).
//!
//! # `loan_count`
//!
//! Loans after NetBSD's `uvm_loan` ([`crate::loan`]): the number of
//! borrowers of the page's current contents. While it is not 0 the page
//! keeps its loan wiring, so it is never freed, moved or reclaimed under a
//! borrower; the owner's mappings of it are read-only, and an owner write
//! breaks the loan by copying ([`crate::fault`]). The count is raised only
//! under the exclusive busy lock, which is what the fault holds when it
//! reads it, so a fault never misses a new loan; a borrower drops its loan
//! without the busy lock, and a fault that still sees it merely makes one
//! copy too many.
//!
//! ```text
//!   0 --loan: wire--> 1 --loan--> 2 ... --unloan--> 1 --unloan: unwire--> 0
//! ```

use crate::PAGE_SIZE;
use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

/// Index of a page in the page array ([`crate::phys::PhysAllocator::page`]).
pub type PageId = u32;

/// `ref_count` bit: the page belongs to an object (`VPRC_OBJREF`).
pub const VPRC_OBJREF: u32 = 1 << 31;
/// `ref_count` bit: new references through mappings are blocked (`VPRC_BLOCKED`).
pub const VPRC_BLOCKED: u32 = 1 << 30;
/// `ref_count` mask of the wiring count.
pub const VPRC_WIRE_COUNT_MASK: u32 = VPRC_BLOCKED - 1;

/// Busy word bit: the page is unbusied or shared-busied (`VPB_BIT_SHARED`).
pub const VPB_BIT_SHARED: u32 = 0x1;
/// Busy word bit: exclusively busied (`VPB_BIT_EXCLUSIVE`).
pub const VPB_BIT_EXCLUSIVE: u32 = 0x2;
/// Busy word bit: a thread sleeps waiting for the busy lock (`VPB_BIT_WAITERS`).
pub const VPB_BIT_WAITERS: u32 = 0x4;
/// Shift of the sharer count in the busy word.
pub const VPB_SHARERS_SHIFT: u32 = 3;
/// One sharer.
pub const VPB_ONE_SHARER: u32 = 1 << VPB_SHARERS_SHIFT;
/// The unbusied busy word: shared with no sharers (`VPB_UNBUSIED`).
pub const VPB_UNBUSIED: u32 = VPB_BIT_SHARED;

/// Valid/dirty bits covering the whole page: one bit per 512-byte block.
pub const VM_PAGE_BITS_ALL: u8 = 0xff;

const fn sharers(x: u32) -> u32 {
    x >> VPB_SHARERS_SHIFT
}

/// Sleeping on a busy page: a wait queue keyed by page.
///
/// `sleep_if` must take the queue's lock, run `cond`, and, if it returned
/// true, sleep until a `wakeup` of the same page, releasing the lock
/// atomically with going to sleep (like `sleepq_lock` + `sleepq_wait`).
/// `wakeup` must take the same lock. Spurious returns are fine: callers retry.
pub trait BusyWait: Send + Sync {
    /// Sleep on `page` if `cond()` (run under the queue lock) returns true.
    fn sleep_if(&self, page: &VmPage, cond: &mut dyn FnMut() -> bool);
    /// Wake every thread sleeping on `page`.
    fn wakeup(&self, page: &VmPage);
    /// Wait a moment for another thread's progress that no page stands
    /// for yet (a populate in progress); the caller then retries. The
    /// default spins once.
    fn pause(&self) {
        core::hint::spin_loop();
    }
}

/// The fallback [`BusyWait`]: no queue, waiters spin and retry.
///
/// Correct because callers retry after `sleep_if` returns; it burns CPU,
/// so the kernel installs a real wait queue once the scheduler runs.
#[derive(Debug, Default)]
pub struct SpinWait;

impl BusyWait for SpinWait {
    fn sleep_if(&self, _page: &VmPage, cond: &mut dyn FnMut() -> bool) {
        if cond() {
            core::hint::spin_loop();
        }
    }

    fn wakeup(&self, _page: &VmPage) {}
}

/// Which busy lock a caller wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyMode {
    /// Shared (`vm_page_sbusy`).
    Shared,
    /// Exclusive (`vm_page_xbusy`).
    Exclusive,
}

/// Paging queue of a page (`PQ_*`); we keep the state, the page daemon
/// that scans queues comes later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageQueue {
    /// On no queue (`PQ_NONE`): free, wired, or unmanaged.
    None = 0,
    /// Inactive (`PQ_INACTIVE`).
    Inactive = 1,
    /// Active (`PQ_ACTIVE`).
    Active = 2,
}

/// Cache mode of a page's mappings (`vm_memattr_t`, x86 PAT types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum MemAttr {
    /// Write-back (`VM_MEMATTR_WRITE_BACK`), the default.
    #[default]
    WriteBack = 0,
    /// Uncacheable (`VM_MEMATTR_UNCACHEABLE`).
    Uncacheable = 1,
    /// Write-combining (`VM_MEMATTR_WRITE_COMBINING`).
    WriteCombining = 2,
    /// Write-through (`VM_MEMATTR_WRITE_THROUGH`).
    WriteThrough = 3,
    /// Write-protected (`VM_MEMATTR_WRITE_PROTECTED`).
    WriteProtected = 4,
    /// Uncacheable, overridable by MTRRs (`VM_MEMATTR_WEAK_UNCACHEABLE`).
    WeakUncacheable = 5,
}

impl MemAttr {
    const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Uncacheable,
            2 => Self::WriteCombining,
            3 => Self::WriteThrough,
            4 => Self::WriteProtected,
            5 => Self::WeakUncacheable,
            _ => Self::WriteBack,
        }
    }
}

bitflags::bitflags! {
    /// Page flags (`PG_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PageFlags: u8 {
        /// A fictitious page (`PG_FICTITIOUS`): describes a guest-physical
        /// hole (e.g. a foreign grant mapping), never on a free list.
        const FICTITIOUS = 1;
    }
}

/// The machine-independent description of one physical page (`vm_page`).
#[derive(Debug)]
pub struct VmPage {
    phys_addr: AtomicU64,  // (p) physical address
    pindex: AtomicU64,     // (o) index in its object
    ref_count: AtomicU32,  // (a) OBJREF | BLOCKED | wirings
    loan_count: AtomicU32, // (l) borrowers of the contents
    busy: AtomicU32,       // (a) busy lock word
    flags: AtomicU8,       // (p) PageFlags
    queue: AtomicU8,       // (a) PageQueue
    valid: AtomicU8,       // (b) valid bits, atomic under shared busy
    dirty: AtomicU8,       // (b) dirty bits, atomic under shared busy
    memattr: AtomicU8,     // (p) MemAttr, set by its allocator
    pool: AtomicU8,        // (p) FreePool it was allocated from, set by its allocator
}

impl VmPage {
    /// A free-standing page for `phys_addr` (the allocator makes the array).
    pub fn new(phys_addr: u64) -> Self {
        Self {
            phys_addr: AtomicU64::new(phys_addr),
            pindex: AtomicU64::new(0),
            ref_count: AtomicU32::new(0),
            loan_count: AtomicU32::new(0),
            busy: AtomicU32::new(VPB_UNBUSIED),
            flags: AtomicU8::new(0),
            queue: AtomicU8::new(PageQueue::None as u8),
            valid: AtomicU8::new(0),
            dirty: AtomicU8::new(0),
            memattr: AtomicU8::new(MemAttr::WriteBack as u8),
            pool: AtomicU8::new(0),
        }
    }

    /// Physical address (`VM_PAGE_TO_PHYS`).
    pub fn phys_addr(&self) -> u64 {
        self.phys_addr.load(Ordering::Relaxed)
    }

    pub(crate) fn set_phys_addr(&self, pa: u64) {
        debug_assert_eq!(pa % PAGE_SIZE, 0);
        self.phys_addr.store(pa, Ordering::Relaxed);
    }

    /// Index in the owning object (meaningful while `OBJREF` is set).
    pub fn pindex(&self) -> u64 {
        self.pindex.load(Ordering::Relaxed)
    }

    pub(crate) fn set_pindex(&self, pindex: u64) {
        self.pindex.store(pindex, Ordering::Relaxed);
    }

    /// Page flags.
    pub fn flags(&self) -> PageFlags {
        PageFlags::from_bits_truncate(self.flags.load(Ordering::Relaxed))
    }

    pub(crate) fn set_flags(&self, flags: PageFlags) {
        self.flags.store(flags.bits(), Ordering::Relaxed);
    }

    /// Whether the page is fictitious.
    pub fn is_fictitious(&self) -> bool {
        self.flags().contains(PageFlags::FICTITIOUS)
    }

    /// Cache mode for mappings of this page.
    pub fn memattr(&self) -> MemAttr {
        MemAttr::from_u8(self.memattr.load(Ordering::Relaxed))
    }

    /// Set the cache mode (`pmap_page_set_memattr`): by the page's allocator.
    pub fn set_memattr(&self, attr: MemAttr) {
        self.memattr.store(attr as u8, Ordering::Relaxed);
    }

    /// Paging queue state.
    pub fn queue(&self) -> PageQueue {
        match self.queue.load(Ordering::Relaxed) {
            1 => PageQueue::Inactive,
            2 => PageQueue::Active,
            _ => PageQueue::None,
        }
    }

    /// Move the page to a paging queue (`vm_page_activate`, `vm_page_deactivate`).
    pub fn set_queue(&self, q: PageQueue) {
        self.queue.store(q as u8, Ordering::Relaxed);
    }

    // ---- busy lock ----

    /// The raw busy word (for assertions and tests).
    pub fn busy_word(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Whether any busy lock is held.
    pub fn is_busied(&self) -> bool {
        let x = self.busy_word();
        x & VPB_BIT_EXCLUSIVE != 0 || sharers(x) != 0
    }

    /// Whether the exclusive busy lock is held.
    pub fn is_xbusied(&self) -> bool {
        self.busy_word() & VPB_BIT_EXCLUSIVE != 0
    }

    /// Try to take the exclusive busy lock (`vm_page_tryxbusy`).
    pub fn try_xbusy(&self) -> bool {
        self.busy
            .compare_exchange(
                VPB_UNBUSIED,
                VPB_BIT_EXCLUSIVE,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Try to take a shared busy lock (`vm_page_trysbusy`).
    pub fn try_sbusy(&self) -> bool {
        let mut x = self.busy.load(Ordering::Relaxed);
        loop {
            if x & VPB_BIT_SHARED == 0 {
                return false;
            }
            match self.busy.compare_exchange_weak(
                x,
                x + VPB_ONE_SHARER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(cur) => x = cur,
            }
        }
    }

    /// Try to take the busy lock in `mode`.
    pub fn try_busy(&self, mode: BusyMode) -> bool {
        match mode {
            BusyMode::Shared => self.try_sbusy(),
            BusyMode::Exclusive => self.try_xbusy(),
        }
    }

    /// Release the exclusive busy lock and wake waiters (`vm_page_xunbusy`).
    pub fn xunbusy(&self, wq: &dyn BusyWait) {
        let old = self.busy.swap(VPB_UNBUSIED, Ordering::Release);
        debug_assert!(
            old & VPB_BIT_EXCLUSIVE != 0,
            "xunbusy of a page not xbusied"
        );
        if old & VPB_BIT_WAITERS != 0 {
            wq.wakeup(self);
        }
    }

    /// Release a shared busy lock; the last sharer wakes waiters (`vm_page_sunbusy`).
    pub fn sunbusy(&self, wq: &dyn BusyWait) {
        let mut x = self.busy.load(Ordering::Relaxed);
        loop {
            debug_assert!(
                x & VPB_BIT_SHARED != 0 && sharers(x) >= 1,
                "sunbusy of a page not sbusied"
            );
            let new = if sharers(x) > 1 {
                x - VPB_ONE_SHARER
            } else {
                VPB_UNBUSIED
            };
            match self
                .busy
                .compare_exchange_weak(x, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if sharers(x) == 1 && x & VPB_BIT_WAITERS != 0 {
                        wq.wakeup(self);
                    }
                    return;
                }
                Err(cur) => x = cur,
            }
        }
    }

    /// Release the busy lock in `mode`.
    pub fn unbusy(&self, mode: BusyMode, wq: &dyn BusyWait) {
        match mode {
            BusyMode::Shared => self.sunbusy(wq),
            BusyMode::Exclusive => self.xunbusy(wq),
        }
    }

    /// Turn the exclusive busy lock into one shared lock, waking waiters that
    /// may now share it (`vm_page_busy_downgrade`).
    pub fn busy_downgrade(&self, wq: &dyn BusyWait) {
        let old = self
            .busy
            .swap(VPB_BIT_SHARED | VPB_ONE_SHARER, Ordering::Release);
        debug_assert!(
            old & VPB_BIT_EXCLUSIVE != 0,
            "downgrade of a page not xbusied"
        );
        if old & VPB_BIT_WAITERS != 0 {
            wq.wakeup(self);
        }
    }

    /// Turn our shared busy lock into the exclusive one if we are the only
    /// sharer (`vm_page_sbusy_try_upgrade`).
    pub fn try_upgrade(&self) -> bool {
        let mut x = self.busy.load(Ordering::Relaxed);
        loop {
            debug_assert!(
                x & VPB_BIT_SHARED != 0 && sharers(x) >= 1,
                "upgrade without sbusy"
            );
            if sharers(x) != 1 {
                return false;
            }
            let new = VPB_BIT_EXCLUSIVE | (x & VPB_BIT_WAITERS);
            match self
                .busy
                .compare_exchange_weak(x, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(cur) => x = cur,
            }
        }
    }

    /// Sleep until the busy lock might be free for `mode`
    /// (`vm_page_busy_sleep`). Returns at once if it already is. The caller
    /// retries its `try_*busy`; it must not hold a spin lock.
    pub fn busy_sleep(&self, mode: BusyMode, wq: &dyn BusyWait) {
        wq.sleep_if(self, &mut || {
            let mut x = self.busy.load(Ordering::Relaxed);
            loop {
                let conflicts = match mode {
                    BusyMode::Shared => x & VPB_BIT_SHARED == 0,
                    BusyMode::Exclusive => x != VPB_UNBUSIED,
                };
                if !conflicts {
                    return false;
                }
                if x & VPB_BIT_WAITERS != 0 {
                    return true;
                }
                match self.busy.compare_exchange_weak(
                    x,
                    x | VPB_BIT_WAITERS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(cur) => x = cur,
                }
            }
        });
    }

    /// Take the busy lock in `mode`, sleeping as long as needed.
    pub fn busy_lock(&self, mode: BusyMode, wq: &dyn BusyWait) {
        while !self.try_busy(mode) {
            self.busy_sleep(mode, wq);
        }
    }

    // ---- ref_count ----

    /// The raw `ref_count` word.
    pub fn ref_count(&self) -> u32 {
        self.ref_count.load(Ordering::Relaxed)
    }

    /// Number of wirings.
    pub fn wire_count(&self) -> u32 {
        self.ref_count() & VPRC_WIRE_COUNT_MASK
    }

    /// Add a wiring (`vm_page_wire`). The caller holds the object lock or the
    /// busy lock (or owns the page outright), so the page cannot be freed
    /// under it; `BLOCKED` is not checked. Returns true if it is the first
    /// wiring (for the wired-pages counter).
    pub fn wire(&self) -> bool {
        let old = self.ref_count.fetch_add(1, Ordering::Acquire);
        debug_assert!(
            old & VPRC_WIRE_COUNT_MASK != VPRC_WIRE_COUNT_MASK,
            "wire count overflow"
        );
        old & VPRC_WIRE_COUNT_MASK == 0
    }

    /// Add a wiring through a mapping, without object lock or busy
    /// (`vm_page_wire_mapped`, for `pmap_extract_and_hold`). Fails while
    /// `BLOCKED`; the caller then falls back to a fault. Returns
    /// `Some(first wiring)` on success.
    pub fn wire_mapped(&self) -> Option<bool> {
        let mut old = self.ref_count.load(Ordering::Relaxed);
        loop {
            debug_assert!(
                old & (VPRC_WIRE_COUNT_MASK | VPRC_OBJREF) != 0,
                "wire_mapped of an unreferenced page"
            );
            if old & VPRC_BLOCKED != 0 {
                return None;
            }
            match self.ref_count.compare_exchange_weak(
                old,
                old + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(old & VPRC_WIRE_COUNT_MASK == 0),
                Err(cur) => old = cur,
            }
        }
    }

    /// Drop a wiring without touching queues (`vm_page_unwire_noq`). Returns
    /// true if this was the last reference of any kind: the caller then owns
    /// the page and must free it.
    pub fn unwire_noq(&self) -> bool {
        self.unwire_old() == 1
    }

    /// Drop a wiring; returns the previous `ref_count` (1: it was the last
    /// reference, and the caller owns the page).
    pub(crate) fn unwire_old(&self) -> u32 {
        let old = self.ref_count.fetch_sub(1, Ordering::Release);
        debug_assert!(old & VPRC_WIRE_COUNT_MASK != 0, "unwire of an unwired page");
        if old == 1 {
            fence(Ordering::Acquire);
        }
        old
    }

    /// Mark the page as referenced by an object: the `ref_count` half of
    /// `vm_page_insert`, done by [`crate::object::ObjectGuard::insert`]
    /// under the object lock.
    pub fn set_objref(&self) {
        let old = self.ref_count.fetch_or(VPRC_OBJREF, Ordering::Relaxed);
        debug_assert!(old & VPRC_OBJREF == 0, "page already in an object");
    }

    /// Drop the object's reference (`vm_page_remove`). Returns true if this
    /// was the last reference: the caller then frees the page.
    pub fn drop_objref(&self) -> bool {
        let old = self.ref_count.fetch_and(!VPRC_OBJREF, Ordering::Release);
        debug_assert!(old & VPRC_OBJREF != 0, "page not in an object");
        if old == VPRC_OBJREF {
            fence(Ordering::Acquire);
            true
        } else {
            false
        }
    }

    /// Block new references through mappings while they are being removed
    /// (`vm_page_try_blocked_op`): succeeds only when the page has no
    /// wiring. Undo with [`VmPage::unblock`].
    pub fn try_block(&self) -> bool {
        let mut old = self.ref_count.load(Ordering::Relaxed);
        loop {
            debug_assert!(old & VPRC_BLOCKED == 0, "page already blocked");
            if old & VPRC_WIRE_COUNT_MASK != 0 {
                return false;
            }
            match self.ref_count.compare_exchange_weak(
                old,
                old | VPRC_BLOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(cur) => old = cur,
            }
        }
    }

    /// Clear `BLOCKED`.
    pub fn unblock(&self) {
        let old = self.ref_count.fetch_and(!VPRC_BLOCKED, Ordering::Release);
        debug_assert!(old & VPRC_BLOCKED != 0, "unblock of a page not blocked");
    }

    // ---- loans ----

    /// Number of loans of the page (`loan_count`).
    pub fn loan_count(&self) -> u32 {
        self.loan_count.load(Ordering::Acquire)
    }

    /// Whether the page is lent out.
    pub fn is_loaned(&self) -> bool {
        self.loan_count() != 0
    }

    /// Count a loan. The caller holds the exclusive busy lock (or the
    /// zero-page lock) and a reference that keeps the page allocated
    /// meanwhile. The first loan takes the loan wiring: returns true if
    /// that was the page's first wiring (for the wired-pages counter).
    pub fn loan(&self) -> bool {
        let old = self.loan_count.fetch_add(1, Ordering::AcqRel);
        debug_assert!(old != u32::MAX, "loan count overflow");
        old == 0 && self.wire()
    }

    /// End a loan. Returns true if it was the last: the caller then drops
    /// the loan wiring ([`VmPage::unwire_noq`], [`crate::domain::VmDomain::unwire`]),
    /// which frees the page if nothing else holds it.
    pub fn unloan(&self) -> bool {
        let old = self.loan_count.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(old != 0, "unloan of a page not loaned");
        old == 1
    }

    // ---- valid and dirty bits ----

    /// Valid bits (`m->valid`).
    pub fn valid(&self) -> u8 {
        self.valid.load(Ordering::Acquire)
    }

    /// Whether the whole page is valid (`vm_page_all_valid`).
    pub fn all_valid(&self) -> bool {
        self.valid() == VM_PAGE_BITS_ALL
    }

    /// Add valid bits; needs at least shared busy (`vm_page_bits_set`).
    pub fn set_valid_bits(&self, bits: u8) {
        debug_assert!(self.is_busied(), "valid bits set without busy");
        self.valid.fetch_or(bits, Ordering::Release);
    }

    /// Mark the whole page valid (`vm_page_valid`).
    pub fn set_all_valid(&self) {
        self.set_valid_bits(VM_PAGE_BITS_ALL);
    }

    /// Clear valid bits; needs the exclusive busy lock (`vm_page_invalid`).
    pub fn invalidate(&self) {
        debug_assert!(self.is_xbusied(), "invalidate without xbusy");
        self.valid.store(0, Ordering::Release);
    }

    /// Dirty bits.
    pub fn dirty(&self) -> u8 {
        self.dirty.load(Ordering::Relaxed)
    }

    /// Mark the whole page dirty; needs at least shared busy (`vm_page_dirty`).
    pub fn set_dirty(&self) {
        debug_assert!(self.is_busied(), "dirty bits set without busy");
        self.dirty.fetch_or(VM_PAGE_BITS_ALL, Ordering::Relaxed);
    }

    /// Clear the dirty bits; needs at least shared busy (`vm_page_undirty`).
    pub fn undirty(&self) {
        debug_assert!(self.is_busied(), "dirty bits cleared without busy");
        self.dirty.store(0, Ordering::Relaxed);
    }

    /// Reset a page handed out by the allocator to its pristine state.
    /// The free pool (`FreePool as u8`) the page was allocated from
    /// (`m->pool`): where a free sends it back.
    pub(crate) fn pool(&self) -> u8 {
        self.pool.load(Ordering::Relaxed)
    }

    pub(crate) fn reset_for_alloc(&self, pool: u8) {
        self.pool.store(pool, Ordering::Relaxed);
        debug_assert_eq!(self.ref_count(), 0, "allocating a referenced page");
        debug_assert_eq!(self.loan_count(), 0, "allocating a loaned page");
        debug_assert_eq!(self.busy_word(), VPB_UNBUSIED, "allocating a busy page");
        self.valid.store(0, Ordering::Relaxed);
        self.dirty.store(0, Ordering::Relaxed);
        self.set_queue(PageQueue::None);
        self.set_memattr(MemAttr::WriteBack);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn xbusy_excludes_everything() {
        let m = VmPage::new(0x1000);
        assert!(m.try_xbusy());
        assert!(!m.try_xbusy());
        assert!(!m.try_sbusy());
        assert!(m.is_xbusied());
        m.xunbusy(&SpinWait);
        assert_eq!(m.busy_word(), VPB_UNBUSIED);
        assert!(!m.is_busied());
    }

    #[test]
    fn sbusy_shares_and_upgrades() {
        let m = VmPage::new(0);
        assert!(m.try_sbusy());
        assert!(m.try_sbusy());
        assert!(!m.try_xbusy());
        assert!(!m.try_upgrade());
        m.sunbusy(&SpinWait);
        assert!(m.try_upgrade());
        assert!(m.is_xbusied());
        m.busy_downgrade(&SpinWait);
        assert!(m.try_sbusy());
        m.sunbusy(&SpinWait);
        m.sunbusy(&SpinWait);
        assert_eq!(m.busy_word(), VPB_UNBUSIED);
    }

    #[test]
    fn busy_sleep_sets_waiters_and_unbusy_wakes() {
        struct Count(core::sync::atomic::AtomicU32);
        impl BusyWait for Count {
            fn sleep_if(&self, _: &VmPage, cond: &mut dyn FnMut() -> bool) {
                assert!(cond());
            }
            fn wakeup(&self, _: &VmPage) {
                self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
        }
        let wq = Count(0.into());
        let m = VmPage::new(0);
        assert!(m.try_sbusy());
        // A shared waiter does not conflict with a sharer: no sleep.
        m.busy_sleep(BusyMode::Shared, &SpinWait);
        assert_eq!(m.busy_word() & VPB_BIT_WAITERS, 0);
        m.busy_sleep(BusyMode::Exclusive, &wq);
        assert_ne!(m.busy_word() & VPB_BIT_WAITERS, 0);
        m.sunbusy(&wq);
        assert_eq!(wq.0.load(core::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(m.busy_word(), VPB_UNBUSIED);
    }

    #[test]
    fn ref_count_transitions() {
        let m = VmPage::new(0);
        m.set_objref();
        assert!(m.wire());
        assert!(!m.wire());
        assert_eq!(m.wire_count(), 2);
        assert!(!m.try_block());
        assert!(!m.unwire_noq());
        assert!(!m.unwire_noq());
        assert!(m.try_block());
        assert_eq!(m.wire_mapped(), None);
        m.unblock();
        assert_eq!(m.wire_mapped(), Some(true));
        assert!(!m.drop_objref());
        assert!(m.unwire_noq(), "last reference");
        assert_eq!(m.ref_count(), 0);
    }

    #[test]
    fn loans_hold_one_wiring() {
        let m = VmPage::new(0);
        m.set_objref();
        assert!(m.loan(), "first loan: first wiring");
        assert!(!m.loan());
        assert_eq!((m.loan_count(), m.wire_count()), (2, 1));
        assert!(!m.try_block(), "a loaned page is wired");
        assert!(!m.unloan());
        assert!(m.unloan(), "last loan");
        assert!(!m.is_loaned());
        assert!(!m.drop_objref(), "the loan wiring is still held");
        assert!(m.unwire_noq(), "dropping it frees");
    }

    #[test]
    fn valid_and_dirty_bits() {
        let m = VmPage::new(0);
        assert!(m.try_sbusy());
        m.set_valid_bits(0x0f);
        assert!(!m.all_valid());
        m.set_all_valid();
        assert!(m.all_valid());
        m.set_dirty();
        assert_eq!(m.dirty(), VM_PAGE_BITS_ALL);
        m.undirty();
        assert_eq!(m.dirty(), 0);
        assert!(m.try_upgrade());
        m.invalidate();
        assert_eq!(m.valid(), 0);
        m.set_memattr(MemAttr::WriteCombining);
        assert_eq!(m.memattr(), MemAttr::WriteCombining);
        m.set_queue(PageQueue::Active);
        assert_eq!(m.queue(), PageQueue::Active);
    }
}
