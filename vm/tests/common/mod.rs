//! Test pagers shared by the integration tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use vm::domain::VmDomain;
use vm::object::{ObjectType, VmObject};
use vm::page::{MemAttr, PageId};
use vm::pager::device::{DeviceOps, device_pager_allocate, device_pager_insert};
use vm::pager::{PagerResult, PindexRange};
use vm::phys::FictitiousRange;
use vm::{PAGE_SIZE, Prot};

/// A managed device pager whose populate installs every page of its
/// object within the bounds in one call, as gntdev's does, after `delay`
/// (a batched grant map under emulation is slow); it counts its calls.
pub struct WholeDevice {
    /// Its fictitious pages, one per object page.
    pub range: FictitiousRange,
    /// Calls of populate.
    pub calls: AtomicU32,
    delay: Duration,
}

impl DeviceOps for WholeDevice {
    fn fault(&self, _obj: &VmObject, pindex: u64, _prot: Prot) -> Result<PageId, PagerResult> {
        Ok(self.range.first + pindex as PageId)
    }
    fn has_populate(&self) -> bool {
        true
    }
    fn populate(
        &self,
        obj: &VmObject,
        _pindex: u64,
        _fault_type: Prot,
        _max_prot: Prot,
        bounds: PindexRange,
    ) -> Result<PindexRange, PagerResult> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.delay);
        for i in bounds.0..=bounds.1 {
            device_pager_insert(obj, i, self.range.first + i as PageId)?;
        }
        Ok(bounds)
    }
}

/// A managed device object of `npages` fictitious pages at `gpa`, served
/// by a [`WholeDevice`] that waits `delay` in each populate.
pub fn whole_device(
    d: &Arc<VmDomain>,
    npages: u32,
    gpa: u64,
    delay: Duration,
) -> (Arc<WholeDevice>, Arc<VmObject>) {
    let range = d
        .phys
        .register_fictitious(gpa, npages, MemAttr::WriteBack)
        .unwrap();
    let dev = Arc::new(WholeDevice {
        range,
        calls: AtomicU32::new(0),
        delay,
    });
    let obj = device_pager_allocate(
        d.clone(),
        ObjectType::MgtDevice,
        dev.clone(),
        u64::from(npages) * PAGE_SIZE,
        Prot::all(),
        0,
    )
    .unwrap();
    (dev, obj)
}
