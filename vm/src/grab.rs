//! Page lookup helpers (`vm_page_grab`, `vm_page_grab_valid`,
//! `vm_page_busy_acquire` in FreeBSD's `vm_page.c`).
//!
//! They never sleep with the object lock held: on a busy page they drop
//! it, sleep on the page, and look the index up again, since the page may
//! have been freed or renamed meanwhile.

use crate::object::{ObjectGuard, VmObject};
use crate::page::{BusyMode, PageId};
use crate::pager::PagerResult;
use crate::phys::FreePool;
use crate::{Errno, domain::VmDomain};

bitflags::bitflags! {
    /// Allocation and grab flags (`VM_ALLOC_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct GrabFlags: u8 {
        /// Never create a page (`VM_ALLOC_NOCREAT`).
        const NOCREAT = 1 << 0;
        /// Do not sleep on a busy page: return `None` (`VM_ALLOC_NOWAIT`).
        const NOWAIT = 1 << 1;
        /// Return the page shared-busied instead of exclusively (`VM_ALLOC_SBUSY`).
        const SBUSY = 1 << 2;
        /// Zero a newly created page and mark it valid (`VM_ALLOC_ZERO`).
        const ZERO = 1 << 3;
        /// Wire the page returned (`VM_ALLOC_WIRED`).
        const WIRED = 1 << 4;
    }
}

impl GrabFlags {
    fn mode(self) -> BusyMode {
        if self.contains(Self::SBUSY) {
            BusyMode::Shared
        } else {
            BusyMode::Exclusive
        }
    }
}

/// Busy page `id` of the domain in `mode`, sleeping unless `NOWAIT`
/// (`vm_page_busy_acquire`). Returns false if it would have slept.
#[doc(alias = "vm_page_busy_acquire")]
pub fn busy_acquire(domain: &VmDomain, id: PageId, mode: BusyMode, flags: GrabFlags) -> bool {
    let m = domain.page(id);
    loop {
        if m.try_busy(mode) {
            return true;
        }
        if flags.contains(GrabFlags::NOWAIT) {
            return false;
        }
        m.busy_sleep(mode, domain.wait());
    }
}

/// Look up the page at `pindex` with the object lock held, busying it in
/// `mode`. `Err(None)` = the index is empty; `Err(Some(id))` = the page is
/// busy: the caller drops the lock and sleeps on it.
fn lookup_busy(
    g: &ObjectGuard<'_>,
    domain: &VmDomain,
    pindex: u64,
    mode: BusyMode,
) -> Result<PageId, Option<PageId>> {
    let id = g.lookup(pindex).ok_or(None)?;
    if domain.page(id).try_busy(mode) {
        Ok(id)
    } else {
        Err(Some(id))
    }
}

/// The page at `pindex`, busied (exclusively unless `SBUSY`), created if
/// absent unless `NOCREAT` (`vm_page_grab`). `Ok(None)` when absent with
/// `NOCREAT`, or busy with `NOWAIT`. A created page is invalid unless
/// `ZERO`. `ENOMEM` when no page is free, `EINVAL` beyond the object.
#[doc(alias = "vm_page_grab")]
pub fn grab(obj: &VmObject, pindex: u64, flags: GrabFlags) -> Result<Option<PageId>, Errno> {
    let domain = obj.domain();
    let mode = flags.mode();
    loop {
        let mut g = obj.lock();
        let id = match lookup_busy(&g, domain, pindex, mode) {
            Ok(id) => id,
            Err(Some(busy)) => {
                drop(g);
                if flags.contains(GrabFlags::NOWAIT) {
                    return Ok(None);
                }
                domain.page(busy).busy_sleep(mode, domain.wait());
                continue;
            }
            Err(None) if flags.contains(GrabFlags::NOCREAT) => return Ok(None),
            Err(None) => {
                if pindex >= g.size() {
                    return Err(Errno::EINVAL);
                }
                let id = domain.alloc_page(FreePool::Default).ok_or(Errno::ENOMEM)?;
                let m = domain.page(id);
                let busied = m.try_xbusy();
                debug_assert!(busied, "fresh page busy");
                if flags.contains(GrabFlags::ZERO) {
                    domain.zero_page(id);
                    m.set_all_valid();
                    domain.counters.zfod.add(1);
                }
                g.insert(pindex, id)
                    .expect("index checked empty and in range");
                if mode == BusyMode::Shared {
                    m.busy_downgrade(domain.wait());
                }
                id
            }
        };
        if flags.contains(GrabFlags::WIRED) {
            domain.wire(id);
        }
        return Ok(Some(id));
    }
}

/// The page at `pindex`, busied and fully valid, paged in by the object's
/// pager if needed (`vm_page_grab_valid`). `Ok(None)` when absent with
/// `NOCREAT` or busy with `NOWAIT`. On a pager error an invalid page the
/// call created is freed.
#[doc(alias = "vm_page_grab_valid")]
pub fn grab_valid(
    obj: &VmObject,
    pindex: u64,
    flags: GrabFlags,
) -> Result<Option<PageId>, PagerResult> {
    let domain = obj.domain();
    let _pip = obj.pip_guard();
    let xflags = flags & (GrabFlags::NOWAIT | GrabFlags::NOCREAT);
    let page = match grab(obj, pindex, xflags | GrabFlags::NOCREAT) {
        Ok(Some(id)) if domain.page(id).all_valid() => Some(id),
        Ok(Some(id)) => Some(pagein(obj, pindex, Some(id))?),
        Ok(None) if flags.contains(GrabFlags::NOCREAT) => None,
        Ok(None) => {
            // Absent, or busy with NOWAIT: tell them apart.
            if flags.contains(GrabFlags::NOWAIT) && obj.lock().lookup(pindex).is_some() {
                None
            } else {
                Some(pagein(obj, pindex, None)?)
            }
        }
        Err(e) => return Err(PagerResult::from_errno(e)),
    };
    let Some(id) = page else { return Ok(None) };
    if flags.contains(GrabFlags::SBUSY) {
        domain.page(id).busy_downgrade(domain.wait());
    }
    if flags.contains(GrabFlags::WIRED) {
        domain.wire(id);
    }
    Ok(Some(id))
}

fn pagein(obj: &VmObject, pindex: u64, page: Option<PageId>) -> Result<PageId, PagerResult> {
    let domain = obj.domain();
    match obj.pager().getpages(obj, pindex, page) {
        Ok(id) => {
            debug_assert!(domain.page(id).all_valid() && domain.page(id).is_xbusied());
            domain.counters.pagein.add(1);
            Ok(id)
        }
        Err(e) => {
            // The pager left `page` as it was: in the object, invalid, xbusied.
            if let Some(id) = page {
                let mut g = obj.lock();
                debug_assert_eq!(g.lookup(pindex), Some(id));
                g.remove(pindex);
            }
            Err(e)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::testutil::{FakeMem, domain_with};
    use alloc::sync::Arc;

    #[test]
    fn grab_creates_unless_nocreat() {
        let (d, _) = domain_with(8);
        let o = VmObject::allocate_default(d.clone(), 4);
        assert_eq!(grab(&o, 1, GrabFlags::NOCREAT), Ok(None));
        let id = grab(&o, 1, GrabFlags::empty()).unwrap().unwrap();
        let m = d.page(id);
        assert!(m.is_xbusied() && !m.all_valid());
        assert_eq!(grab(&o, 1, GrabFlags::NOWAIT), Ok(None), "busy");
        m.xunbusy(d.wait());
        assert_eq!(
            grab(&o, 1, GrabFlags::NOCREAT | GrabFlags::SBUSY),
            Ok(Some(id))
        );
        assert!(m.is_busied() && !m.is_xbusied());
        m.sunbusy(d.wait());
        assert_eq!(grab(&o, 4, GrabFlags::empty()), Err(Errno::EINVAL));
    }

    #[test]
    fn grab_zero_and_wired() {
        let (d, mem) = domain_with(8);
        let o = VmObject::allocate_default(d.clone(), 4);
        let id = d.phys.alloc_page(FreePool::Default).unwrap();
        mem.fill(d.page(id).phys_addr(), 0xaa);
        d.phys.free_page(id);
        let id2 = grab(&o, 0, GrabFlags::ZERO | GrabFlags::WIRED | GrabFlags::SBUSY)
            .unwrap()
            .unwrap();
        assert_eq!(id2, id, "LIFO free list hands the dirty page back");
        assert_eq!(mem.byte(d.page(id).phys_addr() + 7), 0);
        assert!(d.page(id).all_valid());
        assert_eq!(d.page(id).wire_count(), 1);
        assert_eq!(d.counters.zfod.get(), 1);
        d.page(id).sunbusy(d.wait());
    }

    #[test]
    fn grab_fails_when_memory_runs_out() {
        let (d, _) = domain_with(1);
        let o = VmObject::allocate_default(d.clone(), 4);
        grab(&o, 0, GrabFlags::empty()).unwrap().unwrap();
        assert_eq!(grab(&o, 1, GrabFlags::empty()), Err(Errno::ENOMEM));
        assert_eq!(
            grab_valid(&o, 1, GrabFlags::empty()),
            Err(PagerResult::Again)
        );
        d.page(0).xunbusy(d.wait());
    }

    #[test]
    fn grab_valid_zero_fills_default_object() {
        let (d, mem) = domain_with(8);
        let o = VmObject::allocate_default(d.clone(), 4);
        for id in 0..8 {
            mem.fill(d.page(id).phys_addr(), 0x55);
        }
        let id = grab_valid(&o, 3, GrabFlags::empty()).unwrap().unwrap();
        let m = d.page(id);
        assert!(m.all_valid() && m.is_xbusied());
        assert_eq!(mem.byte(m.phys_addr() + 100), 0);
        m.xunbusy(d.wait());
        // Resident and valid: returned as is.
        assert_eq!(grab_valid(&o, 3, GrabFlags::SBUSY), Ok(Some(id)));
        assert!(!m.is_xbusied());
        m.sunbusy(d.wait());
        assert_eq!(grab_valid(&o, 2, GrabFlags::NOCREAT), Ok(None));
        assert_eq!(grab_valid(&o, 9, GrabFlags::empty()), Err(PagerResult::Bad));
        assert_eq!(o.paging_in_progress(), 0);
    }

    #[test]
    fn grab_valid_pages_in_invalid_resident_page() {
        let (d, _) = domain_with(8);
        let o = VmObject::allocate_default(d.clone(), 4);
        let id = grab(&o, 0, GrabFlags::empty()).unwrap().unwrap();
        d.page(id).xunbusy(d.wait());
        assert_eq!(grab_valid(&o, 0, GrabFlags::NOWAIT), Ok(Some(id)));
        assert!(d.page(id).all_valid());
        assert_eq!(grab_valid(&o, 0, GrabFlags::NOWAIT), Ok(None), "busy");
        d.page(id).xunbusy(d.wait());
    }

    #[test]
    fn busy_acquire_waits_for_release() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mem = Arc::new(FakeMem::new(4));
        let d = crate::testutil::domain_sleeping(4, mem);
        let id = d.phys.alloc_page(FreePool::Default).unwrap();
        assert!(busy_acquire(
            &d,
            id,
            BusyMode::Exclusive,
            GrabFlags::empty()
        ));
        assert!(!busy_acquire(&d, id, BusyMode::Shared, GrabFlags::NOWAIT));
        let released = Arc::new(AtomicBool::new(false));
        let t = {
            let (d, released) = (d.clone(), released.clone());
            std::thread::spawn(move || {
                assert!(busy_acquire(&d, id, BusyMode::Shared, GrabFlags::empty()));
                assert!(released.load(Ordering::SeqCst));
                d.page(id).sunbusy(d.wait());
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        released.store(true, Ordering::SeqCst);
        d.page(id).xunbusy(d.wait());
        t.join().unwrap();
        assert!(!d.page(id).is_busied());
    }
}
