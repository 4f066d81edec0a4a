//! Host stand-ins for the machine hooks: a `Vec`-backed physical memory and
//! a condition-variable wait queue.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use std::sync::{Condvar, Mutex};

use crate::PAGE_SIZE;
use crate::domain::{PhysAccess, VmDomain};
use crate::object::VmObject;
use crate::page::{BusyWait, SpinWait, VmPage};
use crate::pager::PindexRange;
use crate::phys::PhysAllocator;

/// Physical memory `[0, npages * PAGE_SIZE)`.
pub struct FakeMem(Mutex<Vec<u8>>);

impl FakeMem {
    pub fn new(npages: u64) -> Self {
        Self(Mutex::new(vec![0; (npages * PAGE_SIZE) as usize]))
    }

    pub fn fill(&self, pa: u64, v: u8) {
        let mut m = self.0.lock().unwrap();
        m[pa as usize..(pa + PAGE_SIZE) as usize].fill(v);
    }

    pub fn byte(&self, pa: u64) -> u8 {
        self.0.lock().unwrap()[pa as usize]
    }
}

impl PhysAccess for FakeMem {
    fn zero_page(&self, pa: u64) {
        self.fill(pa, 0);
    }

    fn copy_page(&self, src: u64, dst: u64) {
        let mut m = self.0.lock().unwrap();
        m.copy_within(src as usize..(src + PAGE_SIZE) as usize, dst as usize);
    }
}

/// A wait queue: one lock and one condition variable for every page.
#[derive(Default)]
pub struct CondvarWait(Mutex<()>, Condvar);

impl BusyWait for CondvarWait {
    fn sleep_if(&self, _page: &VmPage, cond: &mut dyn FnMut() -> bool) {
        let g = self.0.lock().unwrap();
        if cond() {
            drop(self.1.wait(g).unwrap());
        }
    }

    fn wakeup(&self, _page: &VmPage) {
        let _g = self.0.lock().unwrap();
        self.1.notify_all();
    }
}

/// A domain of `npages` pages at physical 0, with 64 fictitious slots.
pub fn domain_with(npages: u64) -> (Arc<VmDomain>, Arc<FakeMem>) {
    let mem = Arc::new(FakeMem::new(npages));
    let phys = PhysAllocator::new(&[(0, npages * PAGE_SIZE)], 64).unwrap();
    (
        Arc::new(VmDomain::new(phys, mem.clone(), Arc::new(SpinWait))),
        mem,
    )
}

/// [`domain_with`] without the memory handle.
pub fn domain(npages: u64) -> Arc<VmDomain> {
    domain_with(npages).0
}

/// A domain whose busy waiters sleep on a condition variable.
pub fn domain_sleeping(npages: u64, mem: Arc<FakeMem>) -> Arc<VmDomain> {
    let phys = PhysAllocator::new(&[(0, npages * PAGE_SIZE)], 0).unwrap();
    Arc::new(VmDomain::new(phys, mem, Arc::new(CondvarWait::default())))
}

/// The populate contract of `vm_fault_populate`.
pub fn check_populated(
    obj: &VmObject,
    pindex: u64,
    (first, last): PindexRange,
    bounds: PindexRange,
) {
    assert!(
        first <= pindex && pindex <= last,
        "contains the faulting index"
    );
    assert!(bounds.0 <= first && last <= bounds.1, "within bounds");
    let d = obj.domain();
    let g = obj.lock();
    for i in first..=last {
        let id = g.lookup(i).expect("page in the object");
        let m = d.page(id);
        assert!(m.all_valid(), "fully valid");
        assert!(m.is_xbusied(), "exclusively busied");
        assert_eq!(m.pindex(), i);
    }
}

pub fn unbusy_all(obj: &VmObject, (first, last): PindexRange) {
    let d = obj.domain();
    let g = obj.lock();
    for i in first..=last {
        d.page(g.lookup(i).unwrap()).xunbusy(d.wait());
    }
}
