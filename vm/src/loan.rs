//! Page loaning (NetBSD `uvm_loan.c`, loans to the kernel): lend the
//! resident pages of a range of an address space without copying them.
//!
//! A loan takes the page as it is, in whatever object of the entry's
//! shadow chain holds it ([`VmPage::loan`]): the page stays resident under
//! the loan wiring, and every mapping of it is made read-only, so an owner
//! write faults and breaks the loan by copying (`break_loan`, from the
//! fault handler): the owner's object gets a private copy in place of the
//! page, the borrower keeps the original. Whichever of owner and borrower
//! lets go last frees the page, once, by the `ref_count` protocol
//! ([`crate::page`]). A page nobody ever touched (no page anywhere down
//! the chain of anonymous objects) is lent as the domain's one shared
//! zero page instead of being allocated (`uvm_loanzero`).
//!
//! # Locking
//!
//! | state | protection |
//! |---|---|
//! | a page's `loan_count` | (l), see [`crate::page`] |
//! | the zero page slot ([`LoanState`]) | its spin lock, which also covers the zero page's `loan_count` |
//! | [`LoanCounters`] | atomic counters |
//!
//! Lock order: a page's busy lock, then its object's lock, then the zero
//! page lock, then the pmap's lock and the allocator's. The map lock is
//! held only by the lookup of each page and dropped before anything else.
//!
//! # Write protection
//!
//! The first loan of a page removes its mappings ([`Pmap::remove_all`])
//! with the page `BLOCKED`, so that no thread holds it through a writable
//! mapping ([`Pmap::extract_and_hold`]) while it becomes a loan; faults
//! then map it read-only again. `BLOCKED` needs the page unwired: a page
//! wired before its first loan (mlock, a writable grant, a hold in
//! progress) is refused with `EBUSY`. A wiring fault on a loaned page
//! breaks the loan first, so a loaned page in an object never has a wired
//! mapping, and the break can remove its mappings in turn.

use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use crate::domain::VmDomain;
use crate::grab::{GrabFlags, grab_valid};
use crate::map::{KernResult, VmMap};
use crate::meter::Counter;
use crate::object::{ObjectType, VmObject, offset_range_to_pages};
use crate::page::{PageId, PageQueue, VmPage};
use crate::phys::FreePool;
use crate::pmap::Pmap;
use crate::{Errno, PAGE_SHIFT, PAGE_SIZE, Prot};

/// Loan counters of a domain (after `vm_meter.c`).
#[derive(Debug, Default)]
pub struct LoanCounters {
    /// Pages lent, the zero page's loans included.
    pub loans: Counter,
    /// Loans broken by an owner's write: copies made (`uvm_loanbreak`).
    pub broken: Counter,
    /// Loans of the zero page for never-touched memory (`uvm_loanzero`).
    pub zero: Counter,
    /// Pages lent now: each page once, however many loans it has (the
    /// zero page included), so N loans of never-touched memory count 1.
    pub lent: Counter,
}

/// The loan state of a domain ([`VmDomain::loans`]).
#[derive(Debug, Default)]
pub struct LoanState {
    /// The zero page while it is lent out; allocated by the first zero
    /// loan and freed by the last unloan of it.
    zero: Mutex<Option<PageId>>,
    /// Statistics.
    pub counters: LoanCounters,
}

impl LoanState {
    /// The zero page, if it is lent out now.
    pub fn zero_page(&self) -> Option<PageId> {
        *self.zero.lock()
    }
}

/// How the kernel holds the pages of a [`UserPages`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Lent read-only by [`loan`]: the owner's writes break the loan.
    Loan,
    /// Wired as they are by [`crate::hold::hold_pages`]: shared with the
    /// owner, writes included.
    Hold,
}

/// Pages of a range of user memory given to the kernel without a copy,
/// in address order. Dropping it gives them back (`uvm_unloan`, or the
/// unwire of held pages): a page whose owner has let go meanwhile is
/// freed then.
#[doc(alias = "uvm_unloan")]
pub struct UserPages {
    domain: Arc<VmDomain>,
    pages: Vec<PageId>,
    sharing: Sharing,
}

impl core::fmt::Debug for UserPages {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UserPages")
            .field("sharing", &self.sharing)
            .field("pages", &self.pages)
            .finish()
    }
}

impl UserPages {
    /// None yet, of `domain`, for `npages`.
    pub(crate) fn new(domain: &Arc<VmDomain>, sharing: Sharing, npages: u64) -> Self {
        Self {
            domain: domain.clone(),
            pages: Vec::with_capacity(npages as usize),
            sharing,
        }
    }

    /// Add page `id`, which the caller has lent or wired as `sharing` says.
    pub(crate) fn push(&mut self, id: PageId) {
        self.pages.push(id);
    }

    /// The pages, one per page of the range. A lent page's contents do
    /// not change while the loan lasts (the kernel only reads them).
    pub fn pages(&self) -> &[PageId] {
        &self.pages
    }

    /// How they are held.
    pub fn sharing(&self) -> Sharing {
        self.sharing
    }
}

impl UserPages {
    /// The pages, to be given back one by one with [`release_page`]
    /// (a grant whose end waits for its peer keeps its page meanwhile).
    pub fn into_pages(mut self) -> Vec<PageId> {
        core::mem::take(&mut self.pages)
    }
}

impl Drop for UserPages {
    fn drop(&mut self) {
        for &id in &self.pages {
            release_page(&self.domain, id, self.sharing);
        }
    }
}

/// Loans of `d`'s zero page now (its `loan_count`; 0 when it is not lent
/// out): how many grants of never-touched memory that one page backs.
/// Read under the zero-page lock, so the page is not freed meanwhile.
pub fn zero_page_loans(d: &VmDomain) -> u32 {
    d.loans.zero.lock().map_or(0, |id| d.page(id).loan_count())
}

/// Give back page `id` of a [`UserPages`] held as `sharing`: unloan it
/// (`uvm_unloan`) or unwire it; freed if nothing else holds it.
pub fn release_page(d: &VmDomain, id: PageId, sharing: Sharing) {
    if sharing == Sharing::Loan {
        let mut zero = d.loans.zero.lock();
        if !d.page(id).unloan() {
            return;
        }
        d.loans.counters.lent.sub(1);
        if *zero == Some(id) {
            *zero = None;
        }
    }
    d.unwire(id, PageQueue::Active);
}

/// Give the kernel the pages of `[start, start + len)` of `map` (whose
/// pages `pmap` maps) as `sharing` says: [`loan`] them or
/// [`crate::hold::hold_pages`] them for writing.
pub fn share(
    map: &VmMap,
    pmap: &dyn Pmap,
    start: u64,
    len: u64,
    sharing: Sharing,
) -> Result<UserPages, Errno> {
    match sharing {
        Sharing::Loan => loan(map, pmap, start, len),
        Sharing::Hold => crate::hold::hold_pages(map, pmap, start, len, Prot::READ | Prot::WRITE),
    }
}

/// Lend the pages of `[start, start + len)` of `map`, whose pages `pmap`
/// maps, to the kernel (`uvm_loan` with `UVM_LOAN_TOPAGE`). `start` is
/// page-aligned; `len` is rounded up to pages.
///
/// Resident pages are lent as they are; pages never touched, the zero
/// page. Errors, with nothing lent: `EINVAL` for a bad range, a range of
/// which nothing is mapped, or one that maps objects other than
/// anonymous memory (device memory, gntdev mappings, physical objects);
/// `EFAULT` if part of the range is unmapped; `EACCES` for memory mapped
/// without read access; `EBUSY` for a page wired before its first loan
/// (see the module doc); `ENOMEM` if the zero page could not be allocated.
#[doc(alias = "uvm_loan")]
pub fn loan(map: &VmMap, pmap: &dyn Pmap, start: u64, len: u64) -> Result<UserPages, Errno> {
    let npages = mapped_range(map, start, len)?;
    let mut l = UserPages::new(map.domain(), Sharing::Loan, npages);
    for i in 0..npages {
        let va = start + i * PAGE_SIZE;
        let (guard, r) = map.lookup(va, Prot::READ).map_err(errno)?;
        map.lookup_done(guard);
        l.push(loan_page(pmap, &r.object, r.pindex)?);
    }
    Ok(l)
}

/// The number of pages of `[start, start + len)` (`start` page-aligned,
/// `len` rounded up), checking that the range is wholly mapped: `EINVAL`
/// for a bad range or one of which nothing is mapped, `EFAULT` for one
/// partly unmapped.
pub(crate) fn mapped_range(map: &VmMap, start: u64, len: u64) -> Result<u64, Errno> {
    let (first, npages) = offset_range_to_pages(start, len)?;
    let end = (first << PAGE_SHIFT)
        .checked_add(npages << PAGE_SHIFT)
        .ok_or(Errno::EINVAL)?;
    match map.mapped_pages(start, end) {
        0 => Err(Errno::EINVAL),
        n if n < npages => Err(Errno::EFAULT),
        _ => Ok(npages),
    }
}

/// The errno of a failed lookup.
pub(crate) fn errno(e: KernResult) -> Errno {
    match e {
        // Unmapped after the check: munmap raced with us.
        KernResult::InvalidAddress => Errno::EFAULT,
        e => e.to_errno().err().unwrap_or(Errno::EINVAL),
    }
}

/// Lend the page at `pindex` of `first` or of the first object down its
/// shadow chain that has it; the zero page if none has.
fn loan_page(pmap: &dyn Pmap, first: &Arc<VmObject>, pindex: u64) -> Result<PageId, Errno> {
    let mut obj = first.clone();
    let mut p = pindex;
    loop {
        if obj.otype() != ObjectType::Default {
            return Err(Errno::EINVAL);
        }
        match grab_valid(&obj, p, GrabFlags::NOCREAT) {
            Ok(Some(id)) => return lend(obj.domain(), pmap, id),
            Ok(None) => {}
            Err(_) => return Err(Errno::EIO),
        }
        match obj.backing_pindex(p) {
            Some((b, bp)) => (obj, p) = (b, bp),
            None => return loan_zero(first.domain()),
        }
    }
}

/// Lend page `id`, which the caller has exclusively busied; unbusies it.
fn lend(d: &VmDomain, pmap: &dyn Pmap, id: PageId) -> Result<PageId, Errno> {
    let m = d.page(id);
    let r = if m.is_loaned() {
        take_loan(d, m);
        Ok(id)
    } else if m.try_block() {
        pmap.remove_all(id);
        take_loan(d, m);
        m.unblock();
        Ok(id)
    } else {
        Err(Errno::EBUSY)
    };
    m.xunbusy(d.wait());
    r
}

/// Count one loan of `m`.
fn take_loan(d: &VmDomain, m: &VmPage) {
    if m.loan() {
        d.counters.wired.add(1);
        d.loans.counters.lent.add(1);
    }
    d.loans.counters.loans.add(1);
}

/// Lend the zero page, allocating it if it is not lent out yet
/// (`uvm_loanzero`).
fn loan_zero(d: &VmDomain) -> Result<PageId, Errno> {
    let mut zero = d.loans.zero.lock();
    let id = match *zero {
        Some(id) => id,
        None => {
            let id = d.alloc_page(FreePool::Default).ok_or(Errno::ENOMEM)?;
            d.zero_page(id);
            *zero = Some(id);
            id
        }
    };
    take_loan(d, d.page(id));
    d.loans.counters.zero.add(1);
    Ok(id)
}

/// Break the loan of page `old`, at `pindex` of `obj` and exclusively
/// busied by the caller, for an owner's write (`uvm_loanbreak`): a copy
/// takes its place in the object and its mappings go; the borrowers keep
/// `old`, which their last unloan frees. Returns the copy, exclusively
/// busied and valid; `ResourceShortage` (with `old` unbusied) if no page
/// is free.
pub(crate) fn break_loan(
    pmap: &dyn Pmap,
    obj: &VmObject,
    pindex: u64,
    old: PageId,
) -> Result<PageId, KernResult> {
    let d = obj.domain();
    let Some(new) = d.alloc_page(FreePool::Default) else {
        d.page(old).xunbusy(d.wait());
        return Err(KernResult::ResourceShortage);
    };
    let m = d.page(new);
    let busied = m.try_xbusy();
    debug_assert!(busied, "fresh page busy");
    d.copy_page(old, new);
    m.set_all_valid();
    pmap.remove_all(old);
    let mut g = obj.lock();
    debug_assert_eq!(g.lookup(pindex), Some(old));
    g.remove(pindex);
    g.insert(pindex, new).expect("index just vacated");
    drop(g);
    d.loans.counters.broken.add(1);
    Ok(new)
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests;
