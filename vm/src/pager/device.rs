//! Device and managed device pagers (FreeBSD `device_pager.c`,
//! `cdev_pager_allocate` with `struct cdev_pager_ops`).
//!
//! A driver supplies [`DeviceOps`]: pages come from its `fault` routine one
//! at a time, or, for managed device objects only, many at a time from its
//! `populate` routine, which is what the fault handler prefers when the
//! object has `POPULATE` (FreeBSD r309710). The pages are usually
//! fictitious ([`crate::phys::PhysAllocator::register_fictitious`]), e.g.
//! gntdev's foreign grant mappings in a guest-physical hole; drivers put
//! them into the object with [`device_pager_insert`].

use alloc::boxed::Box;
use alloc::sync::Arc;

use super::{PagerOps, PagerResult, PindexRange};
use crate::domain::VmDomain;
use crate::object::{ObjectFlags, ObjectType, VmObject};
use crate::page::{BusyMode, PageId};
use crate::{Errno, Prot};

/// A driver's pager operations (`struct cdev_pager_ops`).
pub trait DeviceOps: Send + Sync {
    /// Called once when the object is made (`cdev_pg_ctor`): `size` bytes
    /// at offset `foff`, with protection `prot`. An error fails the creation.
    fn ctor(&self, _size: u64, _prot: Prot, _foff: u64) -> Result<(), Errno> {
        Ok(())
    }

    /// Called once when the object goes, after its pages were removed
    /// (`cdev_pg_dtor`): the place to unmap grants and release the hole.
    fn dtor(&self) {}

    /// The page for `pindex` (`cdev_pg_fault`): not in any object and not
    /// busied; the pager inserts it, exclusively busied and valid.
    fn fault(&self, obj: &VmObject, pindex: u64, prot: Prot) -> Result<PageId, PagerResult>;

    /// Whether [`DeviceOps::populate`] is implemented; allowed for managed
    /// device objects only, and then the object gets `POPULATE`.
    fn has_populate(&self) -> bool {
        false
    }

    /// Install pages around `pindex` (`cdev_pg_populate`), under the
    /// contract of [`PagerOps::populate`]: insert each page with
    /// [`device_pager_insert`] and return the range filled.
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
}

/// The pager of device and managed device objects.
pub struct DevicePager {
    ops: Arc<dyn DeviceOps>,
}

/// Create a device (`Device`) or managed device (`MgtDevice`) object
/// covering bytes `[0, foff + size)`, after the driver's `ctor`
/// (`cdev_pager_allocate`). `EINVAL` for another type or for `populate` on
/// an unmanaged device object; `ERANGE` if the range wraps.
#[doc(alias = "cdev_pager_allocate")]
pub fn device_pager_allocate(
    domain: Arc<VmDomain>,
    otype: ObjectType,
    ops: Arc<dyn DeviceOps>,
    size: u64,
    prot: Prot,
    foff: u64,
) -> Result<Arc<VmObject>, Errno> {
    let mut flags = ObjectFlags::FICTITIOUS;
    match otype {
        ObjectType::MgtDevice if ops.has_populate() => flags |= ObjectFlags::POPULATE,
        ObjectType::MgtDevice => {}
        ObjectType::Device if !ops.has_populate() => {}
        _ => return Err(Errno::EINVAL),
    }
    let (first, npages) = crate::object::offset_range_to_pages(foff, size)?;
    ops.ctor(size, prot, foff)?;
    let pager = Box::new(DevicePager { ops });
    Ok(VmObject::new(domain, otype, first + npages, flags, pager))
}

/// Put page `id` at `pindex` of device object `obj`, exclusively busied and
/// fully valid (what `cdev_pg_fault`/`cdev_pg_populate` implementations do
/// with `vm_page_insert`). If `id` is already there it is busied again.
/// `Error` if another page holds `pindex`, `Bad` beyond the object.
#[doc(alias = "vm_page_insert")]
pub fn device_pager_insert(obj: &VmObject, pindex: u64, id: PageId) -> Result<(), PagerResult> {
    let d = obj.domain();
    let m = d.page(id);
    loop {
        let mut g = obj.lock();
        let here = g.lookup(pindex);
        if here.is_some_and(|cur| cur != id) {
            return Err(PagerResult::Error);
        }
        if !m.try_xbusy() {
            drop(g);
            m.busy_sleep(BusyMode::Exclusive, d.wait());
            continue;
        }
        if here.is_none()
            && let Err(e) = g.insert(pindex, id)
        {
            m.xunbusy(d.wait());
            return Err(PagerResult::from_errno(e));
        }
        m.set_all_valid();
        return Ok(());
    }
}

impl PagerOps for DevicePager {
    /// `dev_pager_getpages`: ask the driver, then swap its page in for the
    /// placeholder, if any.
    fn getpages(
        &self,
        obj: &VmObject,
        pindex: u64,
        page: Option<PageId>,
    ) -> Result<PageId, PagerResult> {
        let id = self.ops.fault(obj, pindex, Prot::READ)?;
        if let Some(old) = page {
            obj.lock().remove(pindex);
            debug_assert_ne!(old, id);
        }
        device_pager_insert(obj, pindex, id)?;
        Ok(id)
    }

    /// A device backs every index of its object (`dev_pager_haspage`).
    fn haspage(&self, obj: &VmObject, pindex: u64) -> Option<(u64, u64)> {
        (pindex < obj.lock().size()).then_some((0, 0))
    }

    fn populate(
        &self,
        obj: &VmObject,
        pindex: u64,
        fault_type: Prot,
        max_prot: Prot,
        bounds: PindexRange,
    ) -> Result<PindexRange, PagerResult> {
        if !obj.lock().flags().contains(ObjectFlags::POPULATE) {
            return Err(PagerResult::Bad);
        }
        let r = self
            .ops
            .populate(obj, pindex, fault_type, max_prot, bounds)?;
        debug_assert!(r.0 <= pindex && pindex <= r.1 && bounds.0 <= r.0 && r.1 <= bounds.1);
        obj.domain().counters.populated.add(r.1 - r.0 + 1);
        Ok(r)
    }

    fn dealloc(&self, _obj: &VmObject) {
        self.ops.dtor();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::PAGE_SIZE;
    use crate::grab::{GrabFlags, grab, grab_valid};
    use crate::page::MemAttr;
    use crate::phys::FictitiousRange;
    use crate::testutil::{check_populated, domain, unbusy_all};
    use core::sync::atomic::{AtomicU32, Ordering};

    /// A gntdev-like driver: its object's pages are the fictitious pages of
    /// a hole, populated 16 at a time around the fault.
    struct Hole {
        range: FictitiousRange,
        dtors: AtomicU32,
        populate: bool,
    }

    impl DeviceOps for Hole {
        fn ctor(&self, size: u64, _prot: Prot, foff: u64) -> Result<(), Errno> {
            if foff + size > 48 * PAGE_SIZE {
                Err(Errno::EINVAL)
            } else {
                Ok(())
            }
        }
        fn dtor(&self) {
            self.dtors.fetch_add(1, Ordering::Relaxed);
        }
        fn fault(&self, _obj: &VmObject, pindex: u64, _prot: Prot) -> Result<PageId, PagerResult> {
            if pindex >= u64::from(self.range.npages) {
                return Err(PagerResult::Error);
            }
            Ok(self.range.first + pindex as u32)
        }
        fn has_populate(&self) -> bool {
            self.populate
        }
        fn populate(
            &self,
            obj: &VmObject,
            pindex: u64,
            _fault_type: Prot,
            _max_prot: Prot,
            bounds: PindexRange,
        ) -> Result<PindexRange, PagerResult> {
            let first = (pindex & !15).max(bounds.0);
            let last = ((pindex & !15) + 15)
                .min(bounds.1)
                .min(u64::from(self.range.npages) - 1);
            for i in first..=last {
                device_pager_insert(obj, i, self.range.first + i as u32)?;
            }
            Ok((first, last))
        }
    }

    fn hole(d: &VmDomain, populate: bool) -> Arc<Hole> {
        let range = d
            .phys
            .register_fictitious(0x10_0000_0000, 40, MemAttr::WriteBack)
            .unwrap();
        Arc::new(Hole {
            range,
            dtors: AtomicU32::new(0),
            populate,
        })
    }

    #[test]
    fn populate_only_on_managed_objects() {
        let d = domain(4);
        let h = hole(&d, true);
        let e = device_pager_allocate(
            d.clone(),
            ObjectType::Device,
            h.clone(),
            4 * PAGE_SIZE,
            Prot::READ,
            0,
        );
        assert_eq!(e.err(), Some(Errno::EINVAL));
        let e = device_pager_allocate(
            d.clone(),
            ObjectType::Default,
            h.clone(),
            4 * PAGE_SIZE,
            Prot::READ,
            0,
        );
        assert_eq!(e.err(), Some(Errno::EINVAL));
        let e = device_pager_allocate(
            d.clone(),
            ObjectType::MgtDevice,
            h.clone(),
            PAGE_SIZE,
            Prot::READ,
            !0xfff,
        );
        assert_eq!(e.err(), Some(Errno::ERANGE));
        assert_eq!(
            device_pager_allocate(
                d.clone(),
                ObjectType::MgtDevice,
                h.clone(),
                49 * PAGE_SIZE,
                Prot::READ,
                0
            )
            .err(),
            Some(Errno::EINVAL),
            "ctor refused"
        );
        let o = device_pager_allocate(
            d.clone(),
            ObjectType::MgtDevice,
            h.clone(),
            40 * PAGE_SIZE,
            Prot::READ,
            0,
        )
        .unwrap();
        assert_eq!(
            o.lock().flags(),
            ObjectFlags::POPULATE | ObjectFlags::FICTITIOUS
        );
        assert_eq!(o.lock().size(), 40);
        let plain = hole_plain(&d);
        let o2 = device_pager_allocate(
            d.clone(),
            ObjectType::Device,
            plain,
            8 * PAGE_SIZE,
            Prot::READ,
            0,
        )
        .unwrap();
        assert!(!o2.lock().flags().contains(ObjectFlags::POPULATE));
        assert_eq!(
            o2.pager().populate(&o2, 0, Prot::READ, Prot::READ, (0, 7)),
            Err(PagerResult::Bad)
        );
    }

    fn hole_plain(d: &VmDomain) -> Arc<Hole> {
        let range = d
            .phys
            .register_fictitious(0x20_0000_0000, 8, MemAttr::WriteBack)
            .unwrap();
        Arc::new(Hole {
            range,
            dtors: AtomicU32::new(0),
            populate: false,
        })
    }

    #[test]
    fn managed_populate_contract() {
        let d = domain(4);
        let h = hole(&d, true);
        let o = device_pager_allocate(
            d.clone(),
            ObjectType::MgtDevice,
            h.clone(),
            40 * PAGE_SIZE,
            Prot::all(),
            0,
        )
        .unwrap();
        for (pindex, bounds, want) in [
            (5, (0, 39), (0, 15)),
            (35, (0, 39), (32, 39)),
            (20, (18, 21), (18, 21)),
        ] {
            let r = o
                .pager()
                .populate(&o, pindex, Prot::READ, Prot::all(), bounds)
                .unwrap();
            assert_eq!(r, want);
            check_populated(&o, pindex, r, bounds);
            for i in r.0..=r.1 {
                let m = d.page(o.lock().lookup(i).unwrap());
                assert!(m.is_fictitious());
                assert_eq!(m.phys_addr(), 0x10_0000_0000 + i * PAGE_SIZE);
            }
            unbusy_all(&o, r);
        }
        // Populating resident pages again busies the same pages.
        let r = o
            .pager()
            .populate(&o, 3, Prot::WRITE, Prot::all(), (0, 39))
            .unwrap();
        check_populated(&o, 3, r, (0, 39));
        unbusy_all(&o, r);
        assert_eq!(d.counters.populated.get(), 16 + 8 + 4 + 16);
        assert_eq!(d.phys.unregister_fictitious(h.range), Err(Errno::EBUSY));
        drop(o);
        assert_eq!(h.dtors.load(Ordering::Relaxed), 1);
        d.phys.unregister_fictitious(h.range).unwrap();
        assert_eq!(d.phys.free_count(), 4);
    }

    #[test]
    fn device_fault_path() {
        let d = domain(4);
        let h = hole_plain(&d);
        let o = device_pager_allocate(
            d.clone(),
            ObjectType::Device,
            h.clone(),
            8 * PAGE_SIZE,
            Prot::READ,
            0,
        )
        .unwrap();
        assert_eq!(o.pager().haspage(&o, 7), Some((0, 0)));
        assert_eq!(o.pager().haspage(&o, 8), None);
        let id = grab_valid(&o, 2, GrabFlags::empty()).unwrap().unwrap();
        assert_eq!(id, h.range.first + 2);
        assert!(d.page(id).all_valid() && d.page(id).is_xbusied());
        d.page(id).xunbusy(d.wait());
        // A placeholder page is replaced by the driver's page and freed.
        let ph = grab(&o, 3, GrabFlags::empty()).unwrap().unwrap();
        d.page(ph).xunbusy(d.wait());
        assert_eq!(d.phys.free_count(), 3);
        let id = grab_valid(&o, 3, GrabFlags::empty()).unwrap().unwrap();
        assert_eq!(id, h.range.first + 3);
        assert_eq!(d.phys.free_count(), 4);
        d.page(id).xunbusy(d.wait());
        assert_eq!(
            device_pager_insert(&o, 3, h.range.first + 4),
            Err(PagerResult::Error)
        );
        assert_eq!(
            device_pager_insert(&o, 8, h.range.first + 4),
            Err(PagerResult::Bad)
        );
    }

    #[test]
    fn device_fault_error_frees_placeholder() {
        let d = domain(4);
        let h = hole_plain(&d);
        let o = device_pager_allocate(
            d.clone(),
            ObjectType::Device,
            h,
            16 * PAGE_SIZE,
            Prot::READ,
            0,
        )
        .unwrap();
        let ph = grab(&o, 12, GrabFlags::empty()).unwrap().unwrap();
        d.page(ph).xunbusy(d.wait());
        assert_eq!(
            grab_valid(&o, 12, GrabFlags::empty()),
            Err(PagerResult::Error)
        );
        assert_eq!(o.lock().lookup(12), None);
        assert_eq!(d.phys.free_count(), 4);
    }
}
