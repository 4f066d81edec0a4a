// The churn of `workload::churn_contig` with movable pages: most pages
// belong to default objects, the rest are kernel pages; contiguous
// requests go to the free runs only, or to contiguous reclaim, which
// moves object pages out of the way. A brute-force oracle counts the
// requests that relocation can satisfy.

use std::sync::Arc;

use vm::PAGE_SIZE;
use vm::domain::{PageMappings, PhysAccess, VmDomain};
use vm::grab::{GrabFlags, grab};
use vm::object::VmObject;
use vm::page::{PageId, SpinWait};
use vm::phys::{ContigRequest, FreePool, PhysAllocator};
use vm::reclaim;

use crate::workload::{NPAGES, Rng};

/// Pages of each default object.
const OBJ_PAGES: u64 = 1024;
/// One page in this many is a kernel page, which is never moved.
const KERNEL_ONE_IN: u64 = 3;

/// Page contents are not looked at: copies and zero-fills do nothing;
/// and nothing is mapped.
struct NoMem;

impl PhysAccess for NoMem {
    fn zero_page(&self, _pa: u64) {}
    fn copy_page(&self, _src: u64, _dst: u64) {}
}

impl PageMappings for NoMem {
    fn remove_all(&self, _page: PageId) {}
}

/// The outcome of the requests of one churn.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Requests made.
    pub requests: u32,
    /// Requests granted.
    pub granted: u32,
    /// Requests that relocation could satisfy, by brute force (when
    /// asked for).
    pub satisfiable: u32,
    /// Pages relocated.
    pub relocated: u64,
    /// Reclaim passes.
    pub passes: u64,
    /// Candidate runs abandoned.
    pub failed: u64,
}

impl core::ops::AddAssign for Outcome {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.granted += o.granted;
        self.satisfiable += o.satisfiable;
        self.relocated += o.relocated;
        self.passes += o.passes;
        self.failed += o.failed;
    }
}

/// Whether `req` could be satisfied by relocation: a run of free and
/// movable frames (`fixed` marks the others), and as many free frames as
/// the run has pages, so that each moved page finds a free one outside it.
fn satisfiable(fixed: &[bool], free: u64, req: &ContigRequest) -> bool {
    let n = req.npages() as usize;
    if free < req.npages() || fixed.len() < n {
        return false;
    }
    let mut bad: usize = fixed[..n].iter().filter(|&&f| f).count();
    for s in 0..=fixed.len() - n {
        if s > 0 {
            bad = bad - usize::from(fixed[s - 1]) + usize::from(fixed[s + n - 1]);
        }
        if bad == 0 && (s as u64).is_multiple_of(req.align()) {
            return true;
        }
    }
    false
}

/// The frames that are neither free nor in an object.
fn fixed_frames(d: &VmDomain, objects: &[Arc<VmObject>]) -> Vec<bool> {
    let mut fixed = vec![true; NPAGES as usize];
    for &(pa, o) in &d.phys.free_blocks() {
        let f = (pa / PAGE_SIZE) as usize;
        fixed[f..f + (1 << o)].fill(false);
    }
    for o in objects {
        for (_, id) in o.lock().pages_in(0, OBJ_PAGES - 1) {
            fixed[(d.page(id).phys_addr() / PAGE_SIZE) as usize] = false;
        }
    }
    fixed
}

/// `churn_contig` with the stream of `seed`: fill memory with single
/// pages (one in [`KERNEL_ONE_IN`] a kernel page, the others object
/// pages), free a random 60%, then ask for 64 runs of 3..=48 pages aligned
/// to 1..=8 pages, with contiguous reclaim or without; with `oracle`,
/// count the satisfiable requests too.
pub fn churn_contig_reclaim(seed: u64, with_reclaim: bool, oracle: bool) -> Outcome {
    let phys = PhysAllocator::new(&[(0, NPAGES * PAGE_SIZE)], 0).unwrap();
    let d = Arc::new(VmDomain::new(phys, Arc::new(NoMem), Arc::new(SpinWait)));
    d.set_mappings(Arc::new(NoMem));
    let objects: Vec<_> = (0..NPAGES / OBJ_PAGES)
        .map(|_| VmObject::allocate_default(d.clone(), OBJ_PAGES))
        .collect();
    // The same free decisions and requests as `churn_contig(Rng(seed))`;
    // which pages are the kernel's comes from a stream of its own.
    let (mut rng, mut kind) = (Rng(seed), Rng(seed ^ 0x5bd1_e995));
    let mut kernel: Vec<PageId> = Vec::new();
    let mut owned: Vec<Option<(usize, u64)>> = Vec::new();
    for i in 0..NPAGES {
        if kind.below(KERNEL_ONE_IN) == 0 {
            kernel.push(d.alloc_page(FreePool::Default).unwrap());
            owned.push(None);
        } else {
            let (k, p) = ((i / OBJ_PAGES) as usize, i % OBJ_PAGES);
            let id = grab(&objects[k], p, GrabFlags::empty()).unwrap().unwrap();
            d.page(id).xunbusy(d.wait());
            owned.push(Some((k, p)));
        }
    }
    let mut kernel = kernel.into_iter();
    for o in owned {
        let kernel_page = o.is_none().then(|| kernel.next().unwrap());
        if rng.below(10) >= 6 {
            continue;
        }
        match (o, kernel_page) {
            (Some((k, p)), _) => {
                let mut g = objects[k].lock();
                let id = g.lookup(p).unwrap();
                assert!(d.page(id).try_xbusy());
                g.remove(p);
            }
            (None, Some(id)) => d.phys.free_page(id),
            (None, None) => unreachable!(),
        }
    }
    let mut out = Outcome::default();
    for _ in 0..64 {
        let n = 3 + rng.below(46);
        let align = 1 << rng.below(4);
        let req = ContigRequest::new(n, 0, u64::MAX, align * PAGE_SIZE, 0).unwrap();
        out.requests += 1;
        if oracle {
            let fixed = fixed_frames(&d, &objects);
            out.satisfiable += u32::from(satisfiable(&fixed, d.phys.free_count(), &req));
        }
        let got = if with_reclaim {
            reclaim::alloc_contig(&d, &req)
        } else {
            d.phys.alloc_contig_req(&req)
        };
        out.granted += u32::from(got.is_some());
    }
    let c = &d.counters.reclaim;
    out.relocated = c.pages_relocated.get();
    out.passes = c.passes.get();
    out.failed = c.candidates_failed.get();
    out
}
