//! Pagers: where an object's pages come from (FreeBSD `vm_pager.h`).
//!
//! | object type | pager | pages |
//! |---|---|---|
//! | default | [`DefaultPager`] | zero-filled on demand |
//! | phys | [`phys::PhysPager`] | zero-filled, populated 1024 at a time |
//! | device, mgtdevice | [`device::DevicePager`] | supplied by a driver's [`device::DeviceOps`] |
//!
//! Pager operations are called without the object lock; they take it
//! themselves as needed.

pub mod device;
pub mod phys;

use crate::grab::{GrabFlags, grab};
use crate::object::VmObject;
use crate::page::PageId;
use crate::{Errno, Prot};

/// Result of a pager operation (`VM_PAGER_*`). Operations return
/// `Result<T, PagerResult>`, whose errors are never `Ok`.
///
/// Errno mapping (NetBSD UVM's, [`PagerResult::to_errno`]): OK 0, ERROR
/// `EIO`, AGAIN `EAGAIN`, UNLOCK `EBUSY`, REFAULT `ERESTART`, and our
/// choice for BAD: `EFAULT`, since it means the index lies outside what the
/// object or pager backs (a bad address to the faulting program).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagerResult {
    /// Success (`VM_PAGER_OK`).
    Ok,
    /// Outside what the pager backs (`VM_PAGER_BAD`); from populate: "do a
    /// normal fault instead".
    Bad,
    /// An I/O or device error (`VM_PAGER_ERROR`).
    Error,
    /// A transient shortage, try again (`VM_PAGER_AGAIN`).
    Again,
    /// The pager had to drop locks; the caller re-validates (`VM_PAGER_UNLOCK`).
    Unlock,
    /// Restart the fault from the top (`VM_PAGER_REFAULT`).
    Refault,
}

impl PagerResult {
    /// The errno for this result (`Ok(())` for `Ok`).
    pub const fn to_errno(self) -> Result<(), Errno> {
        Err(match self {
            Self::Ok => return Ok(()),
            Self::Bad => Errno::EFAULT,
            Self::Error => Errno::EIO,
            Self::Again => Errno::EAGAIN,
            Self::Unlock => Errno::EBUSY,
            Self::Refault => Errno::ERESTART,
        })
    }

    /// The result for an allocation error: a shortage is worth retrying,
    /// an index outside the object is `Bad`, anything else an `Error`.
    pub const fn from_errno(e: Errno) -> Self {
        match e {
            Errno::ENOMEM | Errno::EAGAIN => Self::Again,
            Errno::EINVAL | Errno::EFAULT | Errno::ERANGE => Self::Bad,
            _ => Self::Error,
        }
    }
}

/// An inclusive range of page indices `(first, last)`.
pub type PindexRange = (u64, u64);

/// Pager operations (`struct pagerops`).
pub trait PagerOps: Send + Sync {
    /// Make the page at `pindex` valid (`pgo_getpages`). `page` is the
    /// invalid page the object holds there, exclusively busied by the
    /// caller, or `None` if the index is empty. Returns the page now at
    /// `pindex`: in the object, fully valid and exclusively busied. On error
    /// `page` must be left as it was.
    fn getpages(
        &self,
        obj: &VmObject,
        pindex: u64,
        page: Option<PageId>,
    ) -> Result<PageId, PagerResult>;

    /// Write pages back (`pgo_putpages`). None of our pagers has a backing
    /// store (there is no swap), so by default this fails with `Error`.
    fn putpages(&self, _obj: &VmObject, _pages: &[PageId]) -> Result<(), PagerResult> {
        Err(PagerResult::Error)
    }

    /// Whether the pager can supply `pindex`, and how many pages before and
    /// after it it could supply in the same operation (`pgo_haspage`).
    fn haspage(&self, obj: &VmObject, pindex: u64) -> Option<(u64, u64)>;

    /// Install pages around the faulting `pindex` (`pgo_populate`, as in
    /// FreeBSD's `vm_fault_populate`). `bounds` is the range the caller can
    /// use (the map entry's). On success the pages of the returned
    /// `(first, last)` are in the object, contiguous, contain `pindex`, lie
    /// within `bounds`, and are fully valid and exclusively busied.
    /// `Err(Bad)`: no populate here, do a normal fault; other errors fail
    /// the fault.
    fn populate(
        &self,
        _obj: &VmObject,
        _pindex: u64,
        _fault_type: Prot,
        _max_prot: Prot,
        _bounds: PindexRange,
    ) -> Result<PindexRange, PagerResult> {
        Err(PagerResult::Bad)
    }

    /// The object is going away; its pages are already gone (`pgo_dealloc`).
    fn dealloc(&self, _obj: &VmObject) {}
}

/// The default pager: anonymous memory, zero-filled on first touch.
#[derive(Debug, Default)]
pub struct DefaultPager;

/// Zero-fill the page at `pindex`, allocating it if `page` is `None`.
pub(crate) fn zero_fill(
    obj: &VmObject,
    pindex: u64,
    page: Option<PageId>,
) -> Result<PageId, PagerResult> {
    let id = match page {
        Some(id) => id,
        None => grab(obj, pindex, GrabFlags::empty())
            .map_err(PagerResult::from_errno)?
            .expect("grab without NOCREAT or NOWAIT returns a page"),
    };
    let d = obj.domain();
    let m = d.page(id);
    if !m.all_valid() {
        d.zero_page(id);
        m.set_all_valid();
        d.counters.zfod.add(1);
    }
    Ok(id)
}

impl PagerOps for DefaultPager {
    fn getpages(
        &self,
        obj: &VmObject,
        pindex: u64,
        page: Option<PageId>,
    ) -> Result<PageId, PagerResult> {
        zero_fill(obj, pindex, page)
    }

    /// Nothing is in a backing store: pages are zero-filled instead.
    fn haspage(&self, _obj: &VmObject, _pindex: u64) -> Option<(u64, u64)> {
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::testutil::domain;

    #[test]
    fn errno_mapping() {
        assert_eq!(PagerResult::Ok.to_errno(), Ok(()));
        assert_eq!(PagerResult::Bad.to_errno(), Err(Errno::EFAULT));
        assert_eq!(PagerResult::Error.to_errno(), Err(Errno::EIO));
        assert_eq!(PagerResult::Again.to_errno(), Err(Errno::EAGAIN));
        assert_eq!(PagerResult::Unlock.to_errno(), Err(Errno::EBUSY));
        assert_eq!(PagerResult::Refault.to_errno(), Err(Errno::ERESTART));
        assert_eq!(PagerResult::from_errno(Errno::ENOMEM), PagerResult::Again);
        assert_eq!(PagerResult::from_errno(Errno::EINVAL), PagerResult::Bad);
        assert_eq!(PagerResult::from_errno(Errno::EBUSY), PagerResult::Error);
    }

    #[test]
    fn default_pager_has_no_store_and_no_populate() {
        let d = domain(4);
        let o = VmObject::allocate_default(d, 4);
        let p = o.pager();
        assert_eq!(p.haspage(&o, 0), None);
        assert_eq!(p.putpages(&o, &[]), Err(PagerResult::Error));
        assert_eq!(
            p.populate(&o, 0, Prot::READ, Prot::READ, (0, 3)),
            Err(PagerResult::Bad)
        );
    }
}
