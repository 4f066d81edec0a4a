//! Contiguous reclaim against a brute-force oracle, after random churn of
//! objects, mappings, wirings, busy pages and kernel pages.
#![cfg(not(loom))]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use vm::domain::{PhysAccess, VmDomain};
use vm::fault::{FaultFlags, FaultPath, vm_fault};
use vm::grab::{GrabFlags, grab};
use vm::map::{EntryFlags, Inheritance, MapEntry, VmMap};
use vm::object::VmObject;
use vm::page::{PageId, PageQueue, SpinWait};
use vm::pager::phys::phys_pager_allocate;
use vm::phys::{ContigRequest, FreePool, PhysAllocator};
use vm::pmap::{EnterFlags, Pmap, SoftPmap};
use vm::reclaim::alloc_contig;
use vm::{PAGE_SIZE, Prot, SUPERPAGE_PAGES, SUPERPAGE_SIZE};

const NPAGES: u64 = 96;
const NOBJ: usize = 3;
const OBJ_PAGES: u64 = 48;
const VA: u64 = 0x4000_0000;

/// Physical memory `[0, NPAGES * PAGE_SIZE)`.
struct Mem(Mutex<Vec<u8>>);

impl Mem {
    fn fill(&self, pa: u64, v: u8) {
        self.0.lock().unwrap()[pa as usize..(pa + PAGE_SIZE) as usize].fill(v);
    }
    /// The first and last byte of the page at `pa`.
    fn ends(&self, pa: u64) -> (u8, u8) {
        let m = self.0.lock().unwrap();
        (m[pa as usize], m[(pa + PAGE_SIZE - 1) as usize])
    }
}

impl PhysAccess for Mem {
    fn zero_page(&self, pa: u64) {
        self.fill(pa, 0);
    }
    fn copy_page(&self, src: u64, dst: u64) {
        let mut m = self.0.lock().unwrap();
        m.copy_within(src as usize..(src + PAGE_SIZE) as usize, dst as usize);
    }
}

/// A domain of `npages` pages at 0 with one software pmap, its mappings hook.
fn domain(npages: u64) -> (Arc<VmDomain>, Arc<Mem>, Arc<SoftPmap>) {
    let mem = Arc::new(Mem(Mutex::new(vec![0; (npages * PAGE_SIZE) as usize])));
    let phys = PhysAllocator::new(&[(0, npages * PAGE_SIZE)], 0).unwrap();
    let d = Arc::new(VmDomain::new(phys, mem.clone(), Arc::new(SpinWait)));
    let pmap = Arc::new(SoftPmap::new(d.clone()));
    d.set_mappings(pmap.mappings());
    (d, mem, pmap)
}

#[derive(Clone, Debug)]
enum Op {
    /// Give object `obj` a page at `pindex`, filled and mapped.
    Touch { obj: usize, pindex: u64 },
    /// Unmap and free the page of object `obj` at `pindex`.
    Drop { obj: usize, pindex: u64 },
    /// Wire or unwire it.
    Wire { obj: usize, pindex: u64 },
    /// Shared-busy or unbusy it.
    Busy { obj: usize, pindex: u64 },
    /// A page of a phys object (never moved).
    Phys,
    /// A kernel page (never moved), or free one.
    Kernel { free: bool },
    /// Ask for a contiguous run; keep it or free it at once.
    Contig { req: ContigRequest, keep: bool },
}

/// A request for up to 23 pages, aligned to up to 16 pages, within up to
/// 64 pages of a boundary, in a range that may leave out either end of
/// memory.
fn request() -> impl Strategy<Value = ContigRequest> {
    let bound = prop_oneof![Just(0u64), (4u32..7).prop_map(|b| PAGE_SIZE << b)];
    (1u64..24, 0u64..40, 30u64..NPAGES + 8, 0u32..5, bound).prop_filter_map(
        "no run fits",
        |(npages, low, high, align_shift, bound)| {
            ContigRequest::new(
                npages,
                low * PAGE_SIZE,
                high * PAGE_SIZE,
                PAGE_SIZE << align_shift,
                bound,
            )
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let at = (0..NOBJ, 0..OBJ_PAGES);
    prop_oneof![
        8 => at.clone().prop_map(|(obj, pindex)| Op::Touch { obj, pindex }),
        2 => at.clone().prop_map(|(obj, pindex)| Op::Drop { obj, pindex }),
        1 => at.clone().prop_map(|(obj, pindex)| Op::Wire { obj, pindex }),
        1 => at.prop_map(|(obj, pindex)| Op::Busy { obj, pindex }),
        1 => Just(Op::Phys),
        1 => any::<bool>().prop_map(|free| Op::Kernel { free }),
        3 => (request(), any::<bool>()).prop_map(|(req, keep)| Op::Contig { req, keep }),
    ]
}

/// The test's own view of a page of a default object.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    tag: u8,
    wired: bool,
    busy: bool,
}

struct World {
    d: Arc<VmDomain>,
    mem: Arc<Mem>,
    pmap: Arc<SoftPmap>,
    objs: Vec<Arc<VmObject>>,
    held: Vec<BTreeMap<u64, Held>>,
    phys_obj: Arc<VmObject>,
    phys_pages: u64,
    kernel: Vec<PageId>,
    runs: Vec<(PageId, u64)>,
    next_tag: u8,
}

impl World {
    fn new() -> Self {
        let (d, mem, pmap) = domain(NPAGES);
        Self {
            pmap,
            objs: (0..NOBJ)
                .map(|_| VmObject::allocate_default(d.clone(), OBJ_PAGES))
                .collect(),
            held: vec![BTreeMap::new(); NOBJ],
            phys_obj: phys_pager_allocate(d.clone(), NPAGES * PAGE_SIZE),
            phys_pages: 0,
            kernel: Vec::new(),
            runs: Vec::new(),
            next_tag: 1,
            d,
            mem,
        }
    }

    fn va(obj: usize, pindex: u64) -> u64 {
        VA + (obj as u64 * OBJ_PAGES + pindex) * PAGE_SIZE
    }

    fn page_of(&self, obj: usize, pindex: u64) -> PageId {
        self.objs[obj]
            .lock()
            .lookup(pindex)
            .expect("held page resident")
    }

    fn touch(&mut self, obj: usize, pindex: u64) {
        if self.held[obj].contains_key(&pindex) {
            return;
        }
        let Ok(Some(id)) = grab(&self.objs[obj], pindex, GrabFlags::ZERO) else {
            return; // out of memory
        };
        let tag = self.next_tag;
        self.next_tag = self.next_tag % 250 + 1;
        let pa = self.d.page(id).phys_addr();
        self.mem.fill(pa, tag);
        self.d.page(id).xunbusy(self.d.wait());
        self.pmap
            .enter(
                Self::va(obj, pindex),
                id,
                pa,
                Prot::READ,
                EnterFlags::MANAGED,
            )
            .unwrap();
        self.held[obj].insert(
            pindex,
            Held {
                tag,
                ..Held::default()
            },
        );
    }

    fn drop_page(&mut self, obj: usize, pindex: u64) {
        let Some(h) = self.held[obj].get(&pindex).copied() else {
            return;
        };
        if h.wired || h.busy {
            return;
        }
        let va = Self::va(obj, pindex);
        self.pmap.remove(va, va + PAGE_SIZE);
        let mut g = self.objs[obj].lock();
        let id = g.lookup(pindex).unwrap();
        assert!(self.d.page(id).try_xbusy());
        g.remove(pindex);
        self.held[obj].remove(&pindex);
    }

    fn toggle_wire(&mut self, obj: usize, pindex: u64) {
        let Some(mut h) = self.held[obj].get(&pindex).copied() else {
            return;
        };
        let id = self.page_of(obj, pindex);
        if h.wired {
            self.d.unwire(id, PageQueue::Active);
        } else {
            let _g = self.objs[obj].lock();
            self.d.wire(id);
        }
        h.wired = !h.wired;
        self.held[obj].insert(pindex, h);
    }

    fn toggle_busy(&mut self, obj: usize, pindex: u64) {
        let Some(mut h) = self.held[obj].get(&pindex).copied() else {
            return;
        };
        let id = self.page_of(obj, pindex);
        if h.busy {
            self.d.page(id).sunbusy(self.d.wait());
        } else {
            assert!(self.d.page(id).try_sbusy());
        }
        h.busy = !h.busy;
        self.held[obj].insert(pindex, h);
    }

    fn free_frames(&self) -> BTreeSet<u64> {
        self.d
            .phys
            .free_blocks()
            .iter()
            .flat_map(|&(pa, o)| (pa / PAGE_SIZE)..(pa / PAGE_SIZE + (1 << o)))
            .collect()
    }

    /// Frames of pages that may be moved: in a default object, unwired, unbusied.
    fn movable_frames(&self) -> BTreeSet<u64> {
        let mut v = BTreeSet::new();
        for (k, held) in self.held.iter().enumerate() {
            for (&p, h) in held {
                if !h.wired && !h.busy {
                    v.insert(self.d.page(self.page_of(k, p)).phys_addr() / PAGE_SIZE);
                }
            }
        }
        v
    }

    /// Brute force: is some run of `req` made only of free and movable
    /// pages, with as many free pages left elsewhere as it has movable ones?
    fn satisfiable(&self, req: &ContigRequest) -> bool {
        let free = self.free_frames();
        let movable = self.movable_frames();
        let n = req.npages();
        (req.lo()..NPAGES.min(req.hi())).any(|s| {
            if s + n > req.hi().min(NPAGES) || s % req.align() != 0 {
                return false;
            }
            if req.bound() != 0 && s / req.bound() != (s + n - 1) / req.bound() {
                return false;
            }
            if !(s..s + n).all(|f| free.contains(&f) || movable.contains(&f)) {
                return false;
            }
            let movable_in = (s..s + n).filter(|f| movable.contains(f)).count();
            let free_out = free.iter().filter(|&&f| f < s || f >= s + n).count();
            free_out >= movable_in
        })
    }

    /// Every held page is at its index with its contents, and its
    /// mapping, if any, maps it.
    fn check(&self) -> Result<(), TestCaseError> {
        for (k, held) in self.held.iter().enumerate() {
            for (&p, h) in held {
                let id = self.page_of(k, p);
                let m = self.d.page(id);
                prop_assert_eq!(m.pindex(), p);
                prop_assert_eq!(
                    self.mem.ends(m.phys_addr()),
                    (h.tag, h.tag),
                    "contents kept"
                );
                prop_assert!(m.all_valid());
                if let Some(pte) = self.pmap.pte(Self::va(k, p)) {
                    prop_assert_eq!(pte.page, id, "a mapping of a moved page survived");
                    prop_assert_eq!(pte.pa, m.phys_addr());
                }
            }
        }
        Ok(())
    }

    fn contig(&mut self, req: &ContigRequest, keep: bool) -> Result<(), TestCaseError> {
        let expect = self.satisfiable(req);
        let free_before = self.d.phys.free_count();
        let got = alloc_contig(&self.d, req);
        prop_assert_eq!(got.is_some(), expect, "reclaim disagrees with the oracle");
        let Some(first) = got else {
            prop_assert_eq!(
                self.d.phys.free_count(),
                free_before,
                "a failure gives everything back"
            );
            return Ok(());
        };
        let s = self.d.page(first).phys_addr() / PAGE_SIZE;
        prop_assert!(s >= req.lo() && s + req.npages() <= req.hi());
        prop_assert_eq!(s % req.align(), 0);
        prop_assert!(req.bound() == 0 || s / req.bound() == (s + req.npages() - 1) / req.bound());
        prop_assert_eq!(self.d.phys.free_count(), free_before - req.npages());
        for id in first..first + req.npages() as PageId {
            let m = self.d.page(id);
            prop_assert!(m.ref_count() == 0 && !m.is_busied());
            prop_assert!(
                self.pmap.mappings_of(id).is_empty(),
                "a page of the run is mapped"
            );
        }
        if keep {
            self.runs.push((first, req.npages()));
        } else {
            self.d.phys.free_contig(first, req.npages());
        }
        Ok(())
    }

    fn teardown(mut self) -> Result<(), TestCaseError> {
        for k in 0..NOBJ {
            for (p, h) in std::mem::take(&mut self.held[k]) {
                let id = self.page_of(k, p);
                if h.busy {
                    self.d.page(id).sunbusy(self.d.wait());
                }
                if h.wired {
                    self.d.unwire(id, PageQueue::Active);
                }
            }
        }
        self.pmap
            .remove(VA, VA + NOBJ as u64 * OBJ_PAGES * PAGE_SIZE);
        for id in std::mem::take(&mut self.kernel) {
            self.d.phys.free_page(id);
        }
        for (first, n) in std::mem::take(&mut self.runs) {
            self.d.phys.free_contig(first, n);
        }
        let d = self.d.clone();
        drop(self);
        prop_assert_eq!(d.phys.free_count(), NPAGES, "pages leaked");
        prop_assert_eq!(d.phys.free_blocks(), [(0, 6), (64 * PAGE_SIZE, 5)]);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn reclaim_succeeds_exactly_when_relocation_can(ops in prop::collection::vec(op(), 1..160)) {
        let mut w = World::new();
        for op in ops {
            match op {
                Op::Touch { obj, pindex } => w.touch(obj, pindex),
                Op::Drop { obj, pindex } => w.drop_page(obj, pindex),
                Op::Wire { obj, pindex } => w.toggle_wire(obj, pindex),
                Op::Busy { obj, pindex } => w.toggle_busy(obj, pindex),
                Op::Phys => {
                    if w.phys_pages < NPAGES
                        && let Ok(Some(id)) = grab(&w.phys_obj, w.phys_pages, GrabFlags::ZERO)
                    {
                        w.d.page(id).xunbusy(w.d.wait());
                        w.phys_pages += 1;
                    }
                }
                Op::Kernel { free: true } => {
                    if let Some(id) = w.kernel.pop() {
                        w.d.phys.free_page(id);
                    }
                }
                Op::Kernel { free: false } => {
                    if let Some(id) = w.d.alloc_page(FreePool::Default) {
                        w.kernel.push(id);
                    }
                }
                Op::Contig { req, keep } => w.contig(&req, keep)?,
            }
            w.check()?;
        }
        w.teardown()?;
    }
}

/// Readers that reach pages through their mappings (`extract_and_hold`)
/// or, when unmapped, through the object under a shared busy (a fault),
/// while reclaim moves the pages under them and scribbles over each run it
/// gets: no reader ever sees a page that is not its own.
#[test]
fn readers_never_see_a_moved_page() {
    const PAGES: u64 = 256;
    for round in 0..20u64 {
        let (d, mem, pmap) = domain(PAGES);
        let o = VmObject::allocate_default(d.clone(), PAGES);
        let tag = |p: u64| (p % 200) as u8 + 1;
        for p in 0..PAGES {
            let id = grab(&o, p, GrabFlags::ZERO).unwrap().unwrap();
            mem.fill(d.page(id).phys_addr(), tag(p));
            d.page(id).xunbusy(d.wait());
        }
        // Keep the pages of even frames, mapped: no two free pages touch.
        let mut resident = Vec::new();
        for p in 0..PAGES {
            let mut g = o.lock();
            let id = g.lookup(p).unwrap();
            let pa = d.page(id).phys_addr();
            assert!(d.page(id).try_xbusy());
            if (pa / PAGE_SIZE).is_multiple_of(2) {
                d.page(id).xunbusy(d.wait());
                pmap.enter(VA + p * PAGE_SIZE, id, pa, Prot::READ, EnterFlags::MANAGED)
                    .unwrap();
                resident.push(p);
            } else {
                g.remove(p);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2u64)
            .map(|t| {
                let (d, mem, o, pmap, stop) = (
                    d.clone(),
                    mem.clone(),
                    o.clone(),
                    pmap.clone(),
                    stop.clone(),
                );
                let (resident, reads) = (resident.clone(), reads.clone());
                std::thread::spawn(move || {
                    let mut i = t as usize;
                    while !stop.load(Ordering::Relaxed) {
                        i = (i * 7 + 13 + round as usize) % resident.len();
                        let p = resident[i];
                        let va = VA + p * PAGE_SIZE;
                        if let Some(id) = pmap.extract_and_hold(va, Prot::READ) {
                            assert_eq!(
                                mem.ends(d.page(id).phys_addr()),
                                (tag(p), tag(p)),
                                "held page torn"
                            );
                            d.unwire(id, PageQueue::Active);
                        } else {
                            let id = grab(&o, p, GrabFlags::SBUSY | GrabFlags::NOCREAT)
                                .unwrap()
                                .unwrap();
                            let pa = d.page(id).phys_addr();
                            assert_eq!(mem.ends(pa), (tag(p), tag(p)), "faulted page torn");
                            pmap.enter(va, id, pa, Prot::READ, EnterFlags::MANAGED)
                                .unwrap();
                            d.page(id).sunbusy(d.wait());
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let mut runs = Vec::new();
        for w in 0..PAGES / 32 {
            // Readers at work before each request.
            while reads.load(Ordering::Relaxed) < (w + 1) * 50 {
                std::thread::yield_now();
            }
            let req = ContigRequest::new(
                16,
                w * 32 * PAGE_SIZE,
                (w + 1) * 32 * PAGE_SIZE,
                16 * PAGE_SIZE,
                0,
            )
            .unwrap();
            // Pages busy or held under a reader may fail a pass or three
            // (on a loaded host, many more in a row): ask again, letting
            // the readers run between passes.
            let first = (0..2000)
                .find_map(|_| {
                    alloc_contig(&d, &req).or_else(|| {
                        std::thread::sleep(std::time::Duration::from_micros(100));
                        None
                    })
                })
                .expect("a run in every window");
            for id in first..first + 16 {
                assert!(pmap.mappings_of(id).is_empty());
                mem.fill(d.page(id).phys_addr(), 0xee);
            }
            runs.push(first);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert!(d.counters.reclaim.pages_relocated.get() >= 8 * 8);
        for &p in &resident {
            let id = o.lock().lookup(p).unwrap();
            assert_eq!(mem.ends(d.page(id).phys_addr()), (tag(p), tag(p)));
            if let Some(pte) = pmap.pte(VA + p * PAGE_SIZE) {
                assert_eq!(pte.page, id);
            }
        }
        for first in runs {
            d.phys.free_contig(first, 16);
        }
        pmap.remove(VA, VA + PAGES * PAGE_SIZE);
        drop(o);
        assert_eq!(d.phys.free_count(), PAGES, "pages leaked");
    }
}

/// A fault on a phys object's aligned 2 MiB when memory is fragmented by
/// anonymous pages: populate moves them out of the way and the mapping
/// gets one superpage entry; the anonymous pages keep their contents.
#[test]
fn superpage_populate_moves_pages_out_of_the_way() {
    const PAGES: u64 = 2 * SUPERPAGE_PAGES;
    let (d, mem, pmap) = domain(PAGES);
    let anon = VmObject::allocate_default(d.clone(), PAGES);
    let tag = |p: u64| (p % 251) as u8 + 1;
    let ids: Vec<_> = (0..PAGES)
        .map(|p| grab(&anon, p, GrabFlags::ZERO).unwrap().unwrap())
        .collect();
    // Keep the pages of even frames, mapped: no two free pages touch.
    for (p, id) in (0..PAGES).zip(ids) {
        let pa = d.page(id).phys_addr();
        if (pa / PAGE_SIZE).is_multiple_of(2) {
            mem.fill(pa, tag(p));
            d.page(id).xunbusy(d.wait());
            pmap.enter(VA + p * PAGE_SIZE, id, pa, Prot::READ, EnterFlags::MANAGED)
                .unwrap();
        } else {
            anon.lock().remove(p);
        }
    }
    assert_eq!(d.phys.free_count(), PAGES / 2);
    let obj = phys_pager_allocate(d.clone(), SUPERPAGE_PAGES);
    let map = VmMap::new(d.clone(), 0x1000, 0x8000_0000);
    const BASE: u64 = 0x8000_0000 - SUPERPAGE_SIZE;
    map.insert(MapEntry {
        start: BASE,
        end: BASE + SUPERPAGE_SIZE,
        object: Some(obj.clone()),
        offset: 0,
        protection: Prot::READ | Prot::WRITE,
        max_protection: Prot::all(),
        inheritance: Inheritance::Share,
        flags: EntryFlags::empty(),
    })
    .unwrap();
    let o = vm_fault(
        &map,
        &*pmap,
        BASE + 7 * PAGE_SIZE,
        Prot::WRITE,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!((o.path, o.pages), (FaultPath::Populate, SUPERPAGE_PAGES));
    assert!(pmap.is_large(BASE), "one superpage entry");
    assert_eq!(d.counters.reclaim.runs.get(), 1);
    assert_eq!(
        d.counters.reclaim.pages_relocated.get(),
        SUPERPAGE_PAGES / 2
    );
    for p in 0..PAGES {
        let Some(id) = anon.lock().lookup(p) else {
            continue;
        };
        let pa = d.page(id).phys_addr();
        assert_eq!(mem.ends(pa), (tag(p), tag(p)), "contents kept");
        if let Some(pte) = pmap.pte(VA + p * PAGE_SIZE) {
            assert_eq!(pte.page, id, "a mapping of a moved page survived");
        }
    }
    map.remove(&*pmap, BASE, BASE + SUPERPAGE_SIZE).unwrap();
    pmap.remove(VA, VA + PAGES * PAGE_SIZE);
    drop((map, obj, anon));
    assert_eq!(d.phys.free_count(), PAGES, "pages leaked");
}

/// Pages of a copy-on-write chain: the backing object's pages, mapped
/// read-only through the private mapping, and the shadow's copy. Reclaim
/// moves them; the next fault through the real fault handler finds each
/// at its new place, contents kept.
#[test]
fn moved_pages_of_a_shadow_chain_fault_back_in() {
    const PAGES: u64 = 64;
    const BASE: u64 = 0x4000_0000;
    let (d, mem, pmap) = domain(PAGES);
    let obj = VmObject::allocate_default(d.clone(), PAGES);
    let tag = |p: u64| p as u8 + 1;
    let ids: Vec<_> = (0..PAGES)
        .map(|p| grab(&obj, p, GrabFlags::ZERO).unwrap().unwrap())
        .collect();
    let mut resident = Vec::new();
    for (p, id) in (0..PAGES).zip(ids) {
        let pa = d.page(id).phys_addr();
        if (pa / PAGE_SIZE).is_multiple_of(2) {
            mem.fill(pa, tag(p));
            d.page(id).xunbusy(d.wait());
            resident.push(p);
        } else {
            obj.lock().remove(p);
        }
    }
    let map = VmMap::new(d.clone(), 0x1000, 0x8000_0000);
    map.insert(MapEntry {
        start: BASE,
        end: BASE + PAGES * PAGE_SIZE,
        object: Some(obj.clone()),
        offset: 0,
        protection: Prot::READ | Prot::WRITE,
        max_protection: Prot::all(),
        inheritance: Inheritance::Copy,
        flags: EntryFlags::COW | EntryFlags::NEEDS_COPY,
    })
    .unwrap();
    // The first resident page gets a private copy, written over; the
    // others are read through the backing object.
    let copied = resident[0];
    let va = |p: u64| BASE + p * PAGE_SIZE;
    vm_fault(&map, &*pmap, va(copied), Prot::WRITE, FaultFlags::empty()).unwrap();
    mem.fill(pmap.pte(va(copied)).unwrap().pa, 0xbb);
    for &p in &resident[1..] {
        vm_fault(&map, &*pmap, va(p), Prot::READ, FaultFlags::empty()).unwrap();
    }
    let before: Vec<_> = resident
        .iter()
        .map(|&p| pmap.pte(va(p)).unwrap().page)
        .collect();
    let req = ContigRequest::new(16, 0, PAGES * PAGE_SIZE, 16 * PAGE_SIZE, 0).unwrap();
    let first = alloc_contig(&d, &req).expect("a run by relocation");
    let run = first..first + 16;
    assert!(
        before.iter().any(|id| run.contains(id)),
        "the run held mapped pages"
    );
    for (&p, old) in resident.iter().zip(before) {
        let (want, what) = if p == copied {
            (0xbb, "the copy")
        } else {
            (tag(p), "a backing page")
        };
        if pmap.pte(va(p)).is_none() {
            assert!(run.contains(&old), "only moved pages lost their mapping");
            vm_fault(&map, &*pmap, va(p), Prot::READ, FaultFlags::empty()).unwrap();
        }
        let pte = pmap.pte(va(p)).unwrap();
        assert!(!run.contains(&pte.page), "{what} mapped inside the run");
        assert_eq!(mem.ends(pte.pa), (want, want), "{what} kept its contents");
    }
    d.phys.free_contig(first, 16);
    map.remove(&*pmap, BASE, BASE + PAGES * PAGE_SIZE).unwrap();
    drop((map, obj));
    assert_eq!(d.phys.free_count(), PAGES, "pages leaked");
}
