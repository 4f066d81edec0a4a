//! Address maps and the fault handler against the software pmap.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use vm::domain::{PageMappings, PhysAccess, VmDomain};
use vm::fault::{FaultFlags, FaultPath, prefault, vm_fault};
use vm::map::{EntryFlags, Inheritance, KernResult, MapEntry, VmMap};
use vm::object::{ObjectFlags, ObjectType, VmObject};
use vm::page::{MemAttr, PageId, SpinWait, VPRC_OBJREF};
use vm::pager::device::{DeviceOps, device_pager_allocate, device_pager_insert};
use vm::pager::phys::phys_pager_allocate;
use vm::pager::{PagerResult, PindexRange};
use vm::phys::{FictitiousRange, PhysAllocator};
use vm::pmap::{EnterFlags, Pmap, SoftPmap};
use vm::{Errno, PAGE_SIZE, Prot};

const PG: u64 = PAGE_SIZE;
const BASE: u64 = 0x4000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// Physical memory `[0, npages * PAGE_SIZE)`.
struct Mem(Mutex<Vec<u8>>);

impl Mem {
    fn fill(&self, pa: u64, v: u8) {
        self.0.lock().unwrap()[pa as usize..(pa + PG) as usize].fill(v);
    }
    fn byte(&self, pa: u64) -> u8 {
        self.0.lock().unwrap()[pa as usize]
    }
}

impl PhysAccess for Mem {
    fn zero_page(&self, pa: u64) {
        self.fill(pa, 0);
    }
    fn copy_page(&self, src: u64, dst: u64) {
        self.0
            .lock()
            .unwrap()
            .copy_within(src as usize..(src + PG) as usize, dst as usize);
    }
}

struct Env {
    d: Arc<VmDomain>,
    mem: Arc<Mem>,
    map: Arc<VmMap>,
    pmap: SoftPmap,
}

fn env(npages: u64) -> Env {
    let mem = Arc::new(Mem(Mutex::new(vec![0x5a; (npages * PG) as usize])));
    let phys = PhysAllocator::new(&[(0, npages * PG)], 64).unwrap();
    let d = Arc::new(VmDomain::new(phys, mem.clone(), Arc::new(SpinWait)));
    let map = Arc::new(VmMap::new(d.clone(), 0x1000, 0x8000_0000));
    let pmap = SoftPmap::new(d.clone());
    Env { d, mem, map, pmap }
}

fn entry(
    start: u64,
    npages: u64,
    object: Option<Arc<VmObject>>,
    offset: u64,
    prot: Prot,
) -> MapEntry {
    MapEntry {
        start,
        end: start + npages * PG,
        object,
        offset,
        protection: prot,
        max_protection: Prot::all(),
        inheritance: Inheritance::Share,
        flags: EntryFlags::empty(),
    }
}

/// `(start, end, offset, protection)` of every entry.
fn layout(map: &VmMap) -> Vec<(u64, u64, u64, Prot)> {
    map.entries()
        .iter()
        .map(|e| (e.start, e.end, e.offset, e.protection))
        .collect()
}

/// Touch every page of `[start, start + npages)` as a program would: fault
/// only where the pmap lacks the access.
fn touch(e: &Env, start: u64, npages: u64, access: Prot, flags: FaultFlags) {
    for i in 0..npages {
        let va = start + i * PG;
        if !e.pmap.extract(va).is_some_and(|(_, p)| p.contains(access)) {
            vm_fault(&e.map, &e.pmap, va, access, flags).unwrap();
        }
    }
}

#[test]
fn munmap_middle_splits_entry() {
    let e = env(64);
    let obj = VmObject::allocate_default(e.d.clone(), 32);
    e.map
        .insert(entry(BASE, 16, Some(obj.clone()), 3 * PG, RW))
        .unwrap();
    touch(&e, BASE, 16, Prot::WRITE, FaultFlags::empty());
    assert_eq!(e.pmap.len(), 16);
    let ts = e.map.timestamp();
    e.map.remove(&e.pmap, BASE + 4 * PG, BASE + 6 * PG).unwrap();
    assert!(e.map.timestamp() > ts);
    assert_eq!(
        layout(&e.map),
        [
            (BASE, BASE + 4 * PG, 3 * PG, RW),
            (BASE + 6 * PG, BASE + 16 * PG, 9 * PG, RW)
        ]
    );
    assert_eq!(Arc::strong_count(&obj), 3, "one reference per piece");
    assert_eq!(e.pmap.len(), 14);
    assert!(e.pmap.extract(BASE + 4 * PG).is_none() && e.pmap.extract(BASE + 5 * PG).is_none());
    assert!(e.pmap.extract(BASE + 6 * PG).is_some());
    // The right piece still reaches the right pages of the object.
    let id = obj.lock().lookup(9).unwrap();
    assert_eq!(e.pmap.pte(BASE + 6 * PG).unwrap().page, id);
    e.map.remove(&e.pmap, BASE, BASE + 16 * PG).unwrap();
    assert!(e.map.entries().is_empty() && e.pmap.is_empty());
    assert_eq!(Arc::strong_count(&obj), 1);
}

#[test]
fn munmap_start_end_and_across_entries() {
    let e = env(16);
    let a = VmObject::allocate_default(e.d.clone(), 8);
    e.map
        .insert(entry(BASE, 8, Some(a.clone()), 0, RW))
        .unwrap();
    e.map
        .insert(entry(BASE + 10 * PG, 4, None, 0, Prot::READ))
        .unwrap();
    e.map.insert(entry(BASE + 14 * PG, 4, None, 0, RW)).unwrap();
    e.map.remove(&e.pmap, BASE, BASE + 2 * PG).unwrap();
    assert_eq!(
        layout(&e.map)[0],
        (BASE + 2 * PG, BASE + 8 * PG, 2 * PG, RW),
        "start clipped"
    );
    e.map.remove(&e.pmap, BASE + 7 * PG, BASE + 8 * PG).unwrap();
    assert_eq!(
        layout(&e.map)[0],
        (BASE + 2 * PG, BASE + 7 * PG, 2 * PG, RW),
        "end clipped"
    );
    // Across the hole and three entries, clipping the first and the last.
    e.map
        .remove(&e.pmap, BASE + 5 * PG, BASE + 15 * PG)
        .unwrap();
    assert_eq!(
        layout(&e.map),
        [
            (BASE + 2 * PG, BASE + 5 * PG, 2 * PG, RW),
            (BASE + 15 * PG, BASE + 18 * PG, PG, RW)
        ]
    );
    // Nothing mapped there: fine. Unaligned or outside the map: errors.
    assert_eq!(
        e.map.remove(&e.pmap, BASE + 100 * PG, BASE + 101 * PG),
        Ok(())
    );
    assert_eq!(
        e.map.remove(&e.pmap, BASE + 1, BASE + PG),
        Err(KernResult::InvalidArgument)
    );
    assert_eq!(
        e.map.remove(&e.pmap, 0, PG),
        Err(KernResult::InvalidAddress)
    );
    assert_eq!(Arc::strong_count(&a), 2);
}

/// An [`env`] of 64 pages with `npages` of anonymous memory at `BASE`,
/// written, page `i` holding the byte `i + 1`.
fn anon_filled(npages: u64) -> Env {
    let e = env(64);
    e.map.insert(entry(BASE, npages, None, 0, RW)).unwrap();
    touch(&e, BASE, npages, Prot::WRITE, FaultFlags::empty());
    for i in 0..npages {
        let pa = e.pmap.pte(BASE + i * PG).unwrap().pa;
        e.mem.fill(pa, i as u8 + 1);
    }
    e
}

#[test]
fn munmap_of_part_of_anonymous_memory_frees_its_pages() {
    let e = anon_filled(16);
    let free = e.d.phys.free_count();
    // Every other page, then a run of three: each unmap frees its pages at
    // once, not when the last piece of the mapping goes.
    for i in (1..8).step_by(2) {
        e.map
            .remove(&e.pmap, BASE + i * PG, BASE + (i + 1) * PG)
            .unwrap();
    }
    assert_eq!(e.d.phys.free_count(), free + 4);
    e.map
        .remove(&e.pmap, BASE + 9 * PG, BASE + 12 * PG)
        .unwrap();
    assert_eq!(e.d.phys.free_count(), free + 7);
    // The pages kept are the same, with their contents.
    for i in [0u64, 2, 4, 6, 8, 12, 15] {
        let pa = e.pmap.pte(BASE + i * PG).unwrap().pa;
        assert_eq!(e.mem.byte(pa), i as u8 + 1, "page {i}");
    }
    // A page unmapped and faulted again is a new zero-filled page.
    e.map.insert(entry(BASE + PG, 1, None, 0, RW)).unwrap();
    touch(&e, BASE + PG, 1, Prot::READ, FaultFlags::empty());
    assert_eq!(e.mem.byte(e.pmap.pte(BASE + PG).unwrap().pa), 0);
    e.map.remove(&e.pmap, BASE, BASE + 16 * PG).unwrap();
    assert_eq!(e.d.phys.free_count(), 64);
}

#[test]
fn munmap_of_a_shared_object_keeps_its_pages() {
    let e = env(64);
    // An object the map did not make (a device's, a file's): its pages
    // stay until the object goes.
    let obj = VmObject::allocate_default(e.d.clone(), 8);
    e.map
        .insert(entry(BASE, 8, Some(obj.clone()), 0, RW))
        .unwrap();
    touch(&e, BASE, 8, Prot::WRITE, FaultFlags::empty());
    let free = e.d.phys.free_count();
    e.map.remove(&e.pmap, BASE, BASE + 4 * PG).unwrap();
    assert_eq!(e.d.phys.free_count(), free);
    assert_eq!(obj.lock().resident_count(), 8);
    e.map.remove(&e.pmap, BASE, BASE + 8 * PG).unwrap();
    drop(obj);
    assert_eq!(e.d.phys.free_count(), 64);
}

/// The object of the entry at `va`.
fn object_at(map: &VmMap, va: u64) -> Arc<VmObject> {
    map.entries()
        .into_iter()
        .find(|en| en.start <= va && va < en.end)
        .and_then(|en| en.object)
        .expect("an entry with an object")
}

/// Whether page `id` belongs to an object (is not free or only held).
fn in_object(e: &Env, id: PageId) -> bool {
    e.d.page(id).ref_count() & VPRC_OBJREF != 0
}

#[test]
fn an_anonymous_object_mapped_twice_keeps_its_pages() {
    // A second address space maps the object as a fork would: shared, or
    // copy-on-write (read faults map the parent's pages read-only).
    for flags in [
        EntryFlags::empty(),
        EntryFlags::COW | EntryFlags::NEEDS_COPY,
    ] {
        let e = anon_filled(8);
        let obj = object_at(&e.map, BASE);
        assert!(obj.lock().flags().contains(ObjectFlags::ONE_MAPPING));
        let map2 = VmMap::new(e.d.clone(), 0x1000, 0x8000_0000);
        let pmap2 = SoftPmap::new(e.d.clone());
        let mut en = entry(BASE, 8, Some(obj.clone()), 0, RW);
        en.flags = flags;
        map2.insert(en).unwrap();
        assert!(
            !obj.lock().flags().contains(ObjectFlags::ONE_MAPPING),
            "mapped twice"
        );
        drop(obj);
        for i in 0..8 {
            vm_fault(
                &map2,
                &pmap2,
                BASE + i * PG,
                Prot::READ,
                FaultFlags::empty(),
            )
            .unwrap();
        }
        let free = e.d.phys.free_count();
        e.map.remove(&e.pmap, BASE + 2 * PG, BASE + 6 * PG).unwrap();
        assert_eq!(
            e.d.phys.free_count(),
            free,
            "{flags:?}: the child maps them"
        );
        for i in 0..8 {
            let pte = pmap2.pte(BASE + i * PG).unwrap();
            assert!(in_object(&e, pte.page), "{flags:?}: page {i} not freed");
            assert_eq!(e.mem.byte(pte.pa), i as u8 + 1, "{flags:?}: page {i}");
        }
        // The child writes: a copy-on-write child copies into its shadow,
        // which is its alone, so its unmap frees the copy.
        vm_fault(
            &map2,
            &pmap2,
            BASE + 3 * PG,
            Prot::WRITE,
            FaultFlags::empty(),
        )
        .unwrap();
        let copies = u64::from(!flags.is_empty());
        assert_eq!(e.d.phys.free_count(), free - copies);
        assert_eq!(e.mem.byte(pmap2.pte(BASE + 3 * PG).unwrap().pa), 4);
        map2.remove(&pmap2, BASE + 3 * PG, BASE + 4 * PG).unwrap();
        assert_eq!(e.d.phys.free_count(), free, "{flags:?}");
        map2.remove(&pmap2, BASE, BASE + 8 * PG).unwrap();
        e.map.remove(&e.pmap, BASE, BASE + 8 * PG).unwrap();
        assert_eq!(e.d.phys.free_count(), 64, "{flags:?}: back to the baseline");
    }
}

#[test]
fn a_shadowed_anonymous_object_keeps_its_pages() {
    let e = env(64);
    e.map.insert(entry(BASE, 4, None, 0, RW)).unwrap();
    touch(&e, BASE, 4, Prot::WRITE, FaultFlags::empty());
    let obj = object_at(&e.map, BASE);
    let shadow = VmObject::shadow(&obj, 0, 4).unwrap();
    assert!(!obj.lock().flags().contains(ObjectFlags::ONE_MAPPING));
    drop(obj);
    let free = e.d.phys.free_count();
    e.map.remove(&e.pmap, BASE, BASE + 2 * PG).unwrap();
    assert_eq!(e.d.phys.free_count(), free, "the shadow sees them");
    e.map.remove(&e.pmap, BASE, BASE + 4 * PG).unwrap();
    assert_eq!(e.d.phys.free_count(), free, "the shadow holds the object");
    drop(shadow);
    assert_eq!(e.d.phys.free_count(), 64);
}

/// Two software pmaps as the domain's every address space.
struct BothPmaps(Arc<SoftPmap>, Arc<SoftPmap>);

impl PageMappings for BothPmaps {
    fn remove_all(&self, page: PageId) {
        self.0.remove_all(page);
        self.1.remove_all(page);
    }
}

#[test]
fn munmap_removes_every_mapping_of_a_page_before_freeing_it() {
    // With the domain's hook: every address space it reaches.
    let mem = Arc::new(Mem(Mutex::new(vec![0; (64 * PG) as usize])));
    let phys = PhysAllocator::new(&[(0, 64 * PG)], 0).unwrap();
    let d = Arc::new(VmDomain::new(phys, mem, Arc::new(SpinWait)));
    let map = VmMap::new(d.clone(), 0x1000, 0x8000_0000);
    let (pmap, other) = (
        Arc::new(SoftPmap::new(d.clone())),
        Arc::new(SoftPmap::new(d.clone())),
    );
    d.set_mappings(Arc::new(BothPmaps(pmap.clone(), other.clone())));
    map.insert(entry(BASE, 4, None, 0, RW)).unwrap();
    for i in 0..4 {
        vm_fault(
            &map,
            &*pmap,
            BASE + i * PG,
            Prot::WRITE,
            FaultFlags::empty(),
        )
        .unwrap();
    }
    // A mapping the map does not know of (another address space's, as
    // against the protocol): it goes before the page is freed.
    let pte = pmap.pte(BASE + PG).unwrap();
    other
        .enter(BASE, pte.page, pte.pa, Prot::READ, EnterFlags::MANAGED)
        .unwrap();
    map.remove(&*pmap, BASE + PG, BASE + 2 * PG).unwrap();
    assert!(other.is_empty() && other.mappings_of(pte.page).is_empty());
    assert_eq!(d.phys.free_count(), 61);
    // Without a hook: the caller's pmap, here an alias in it.
    let e = env(16);
    e.map.insert(entry(BASE, 4, None, 0, RW)).unwrap();
    touch(&e, BASE, 4, Prot::WRITE, FaultFlags::empty());
    let pte = e.pmap.pte(BASE + 2 * PG).unwrap();
    let alias = BASE + 64 * PG;
    e.pmap
        .enter(alias, pte.page, pte.pa, Prot::READ, EnterFlags::MANAGED)
        .unwrap();
    e.map.remove(&e.pmap, BASE + 2 * PG, BASE + 3 * PG).unwrap();
    assert_eq!(e.pmap.pte(alias), None);
    assert_eq!(e.pmap.len(), 3);
    assert_eq!(e.d.phys.free_count(), 13);
}

#[test]
fn munmap_waits_for_a_busy_page() {
    let e = env(16);
    e.map.insert(entry(BASE, 4, None, 0, RW)).unwrap();
    touch(&e, BASE, 4, Prot::WRITE, FaultFlags::empty());
    let obj = object_at(&e.map, BASE);
    let id = obj.lock().lookup(1).unwrap();
    // A fault, a loan or a reclaim is using it.
    assert!(e.d.page(id).try_xbusy());
    let free = e.d.phys.free_count();
    let (waited, kept) = std::thread::scope(|s| {
        let unmap = s.spawn(|| e.map.remove(&e.pmap, BASE, BASE + 2 * PG).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let seen = (!unmap.is_finished(), obj.lock().lookup(1) == Some(id));
        e.d.page(id).xunbusy(e.d.wait());
        unmap.join().unwrap();
        seen
    });
    assert!(waited && kept, "waits for the busy page");
    assert_eq!(obj.lock().lookup(1), None);
    assert_eq!(obj.lock().resident_count(), 2);
    assert_eq!(e.d.phys.free_count(), free + 2);
}

#[test]
fn munmap_leaves_lent_and_held_pages_to_their_holders() {
    let e = anon_filled(8);
    let lent = vm::loan::loan(&e.map, &e.pmap, BASE + PG, PG).unwrap();
    let held = vm::hold::hold_pages(&e.map, &e.pmap, BASE + 2 * PG, PG, RW).unwrap();
    let (l, h) = (lent.pages()[0], held.pages()[0]);
    let free = e.d.phys.free_count();
    e.map.remove(&e.pmap, BASE, BASE + 4 * PG).unwrap();
    assert_eq!(e.d.phys.free_count(), free + 2, "pages 0 and 3 freed");
    for (id, v) in [(l, 2), (h, 3)] {
        assert!(!in_object(&e, id), "out of the object");
        assert_eq!(e.d.page(id).wire_count(), 1, "still the holder's");
        assert_eq!(e.mem.byte(e.d.page(id).phys_addr()), v);
    }
    assert!(e.d.page(l).is_loaned());
    drop(lent);
    drop(held);
    assert_eq!(e.d.phys.free_count(), free + 4, "the holders free them");
    assert_eq!(e.d.counters.wired.get(), 0);
    for i in 4..8 {
        let pa = e.pmap.pte(BASE + i * PG).unwrap().pa;
        assert_eq!(e.mem.byte(pa), i as u8 + 1);
    }
    e.map.remove(&e.pmap, BASE, BASE + 8 * PG).unwrap();
    assert_eq!(e.d.phys.free_count(), 64);
}

#[test]
fn munmap_races_faults_and_frees_no_mapped_page() {
    let e = Arc::new(env(256));
    e.map.insert(entry(BASE, 64, None, 0, RW)).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let va = BASE + (i * 13 % 64) * PG;
                    let access = if i % 3 == 0 { Prot::READ } else { Prot::WRITE };
                    match vm_fault(&e.map, &e.pmap, va, access, FaultFlags::empty()) {
                        Ok(_) | Err(KernResult::InvalidAddress) => {}
                        Err(err) => panic!("fault at {va:#x}: {err:?}"),
                    }
                    // The map lock is a spin lock that prefers readers:
                    // let the writer in now and then.
                    if i % 8 == 0 {
                        std::thread::yield_now();
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // Another thread of the process unmaps pieces and maps them again.
    let mut k = 0u64;
    while k < 200 || e.map.stats().faults.get() < 20_000 {
        k += 1;
        let first = k * 7 % 60;
        let n = 1 + k % 4;
        e.map
            .remove(&e.pmap, BASE + first * PG, BASE + (first + n) * PG)
            .unwrap();
        e.map
            .insert(entry(BASE + first * PG, n, None, 0, RW))
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // Every mapping is of the page its entry's object holds there.
    for en in e.map.entries() {
        for va in (en.start..en.end).step_by(PG as usize) {
            let Some(pte) = e.pmap.pte(va) else { continue };
            let obj = en.object.as_ref().expect("a mapped page has an object");
            assert_eq!(obj.lock().lookup(en.pindex(va)), Some(pte.page), "{va:#x}");
            assert!(!e.d.page(pte.page).is_busied());
        }
    }
    e.map.remove(&e.pmap, BASE, BASE + 64 * PG).unwrap();
    assert!(e.pmap.is_empty());
    assert_eq!(e.d.phys.free_count(), 256);
}

/// One step of [`munmap_sequences`]: pages are of a 32-page window.
#[derive(Clone, Debug)]
enum MunmapOp {
    /// mmap anonymous memory at `[page, page + n)` if it is free.
    Map { page: u64, n: u64 },
    /// Touch `page` (a write stores `v`), as a wiring fault if `wire`.
    Touch { page: u64, v: u8, wire: bool },
    /// munmap `[page, page + n)`, holes and all.
    Unmap { page: u64, n: u64 },
}

const WINDOW: u64 = 32;

fn munmap_op() -> impl Strategy<Value = MunmapOp> {
    prop_oneof![
        2 => (0..WINDOW, 1u64..12).prop_map(|(page, n)| MunmapOp::Map { page, n }),
        5 => (0..WINDOW, any::<u8>(), prop::bool::weighted(0.1))
            .prop_map(|(page, v, wire)| MunmapOp::Touch { page, v, wire }),
        2 => (0..WINDOW, 1u64..10).prop_map(|(page, n)| MunmapOp::Unmap { page, n }),
    ]
}

/// Runs `ops` against a model that knows which pages are mapped and which
/// touched (resident, with which contents): exactly the touched pages of
/// mapped memory are allocated, and they keep their contents.
fn run_munmap(ops: &[MunmapOp]) {
    let total = 2 * WINDOW;
    let e = env(total);
    let va = |p: u64| BASE + p * PG;
    let mut mapped = [false; WINDOW as usize];
    let mut contents: [Option<u8>; WINDOW as usize] = [None; WINDOW as usize];
    for op in ops {
        match *op {
            MunmapOp::Map { page, n } => {
                let end = (page + n).min(WINDOW);
                let free = (page..end).all(|p| !mapped[p as usize]);
                let r = e.map.insert(entry(va(page), end - page, None, 0, RW));
                assert_eq!(r.is_ok(), free, "{op:?}");
                if free {
                    mapped[page as usize..end as usize].fill(true);
                }
            }
            MunmapOp::Touch { page, v, wire } => {
                let flags = if wire {
                    FaultFlags::WIRE
                } else {
                    FaultFlags::empty()
                };
                let r = vm_fault(&e.map, &e.pmap, va(page), RW, flags);
                assert_eq!(r.is_ok(), mapped[page as usize], "{op:?}");
                if r.is_ok() {
                    let pa = e.pmap.pte(va(page)).unwrap().pa;
                    e.mem.fill(pa, v);
                    contents[page as usize] = Some(v);
                }
            }
            MunmapOp::Unmap { page, n } => {
                let end = (page + n).min(WINDOW);
                e.map.remove(&e.pmap, va(page), va(end)).unwrap();
                mapped[page as usize..end as usize].fill(false);
                contents[page as usize..end as usize].fill(None);
            }
        }
        let resident = contents.iter().flatten().count() as u64;
        assert_eq!(e.d.phys.free_count(), total - resident, "after {op:?}");
        assert_eq!(e.pmap.len() as u64, resident, "after {op:?}");
        for (p, c) in contents.iter().enumerate() {
            if let Some(v) = *c {
                let pte = e.pmap.pte(va(p as u64)).unwrap();
                assert!(in_object(&e, pte.page));
                assert_eq!(e.mem.byte(pte.pa), v, "page {p} after {op:?}");
            }
        }
    }
    e.map.remove(&e.pmap, va(0), va(WINDOW)).unwrap();
    assert_eq!(e.d.phys.free_count(), total);
    assert_eq!(e.d.counters.wired.get(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn munmap_sequences(ops in prop::collection::vec(munmap_op(), 1..60)) {
        run_munmap(&ops);
    }
}

#[test]
fn protect_clips_and_respects_max() {
    let e = env(16);
    let mut en = entry(BASE, 8, None, 0, RW);
    en.max_protection = RW;
    e.map.insert(en).unwrap();
    touch(&e, BASE, 8, Prot::WRITE, FaultFlags::empty());
    e.map
        .protect(&e.pmap, BASE + 2 * PG, BASE + 4 * PG, Prot::READ, false)
        .unwrap();
    assert_eq!(
        layout(&e.map),
        [
            (BASE, BASE + 2 * PG, 0, RW),
            (BASE + 2 * PG, BASE + 4 * PG, 2 * PG, Prot::READ),
            (BASE + 4 * PG, BASE + 8 * PG, 4 * PG, RW)
        ]
    );
    assert_eq!(
        e.pmap.extract(BASE + 2 * PG).unwrap().1,
        Prot::READ,
        "write right taken away at once"
    );
    assert_eq!(e.pmap.extract(BASE + 4 * PG).unwrap().1, RW);
    assert_eq!(
        vm_fault(
            &e.map,
            &e.pmap,
            BASE + 3 * PG,
            Prot::WRITE,
            FaultFlags::empty()
        ),
        Err(KernResult::ProtectionFailure)
    );
    // Beyond the maximum: refused, nothing changed.
    let before = layout(&e.map);
    assert_eq!(
        e.map
            .protect(&e.pmap, BASE, BASE + 8 * PG, Prot::all(), false),
        Err(KernResult::ProtectionFailure)
    );
    assert_eq!(layout(&e.map), before);
    // Raising back within the maximum works; the fault adds the right back.
    e.map
        .protect(&e.pmap, BASE + 2 * PG, BASE + 4 * PG, RW, false)
        .unwrap();
    vm_fault(
        &e.map,
        &e.pmap,
        BASE + 3 * PG,
        Prot::WRITE,
        FaultFlags::empty(),
    )
    .unwrap();
    // set_max lowers the maximum for good.
    e.map
        .protect(&e.pmap, BASE + 6 * PG, BASE + 8 * PG, Prot::READ, true)
        .unwrap();
    let last = e.map.entries().pop().unwrap();
    assert_eq!(
        (last.start, last.protection, last.max_protection),
        (BASE + 6 * PG, Prot::READ, Prot::READ)
    );
    assert_eq!(
        e.map
            .protect(&e.pmap, BASE + 6 * PG, BASE + 8 * PG, RW, false),
        Err(KernResult::ProtectionFailure)
    );
    // A hole in the range.
    assert_eq!(
        e.map
            .protect(&e.pmap, BASE, BASE + 9 * PG, Prot::READ, false),
        Err(KernResult::InvalidAddress)
    );
}

#[test]
fn find_space_first_fit() {
    let e = env(4);
    let m = &e.map;
    assert_eq!(m.find_space(4 * PG, 0, 0), Ok(0x1000));
    m.insert(entry(0x1000, 3, None, 0, RW)).unwrap();
    m.insert(entry(0x6000, 2, None, 0, RW)).unwrap();
    assert_eq!(m.find_space(2 * PG, 0, 0), Ok(0x4000), "the gap fits");
    assert_eq!(
        m.find_space(3 * PG, 0, 0),
        Ok(0x8000),
        "the gap is too small"
    );
    assert_eq!(m.find_space(PG, 0x10000, 0), Ok(0x10000), "aligned");
    assert_eq!(
        m.find_space(PG, 0, 0x2000),
        Ok(0x4000),
        "hint inside an entry"
    );
    assert_eq!(m.find_space(PG, 0, 0x7fff_f000), Ok(0x7fff_f000));
    assert_eq!(
        m.find_space(2 * PG, 0, 0x7fff_f000),
        Ok(0x4000),
        "wraps to the bottom"
    );
    assert_eq!(m.find_space(0x8000_0000, 0, 0), Err(KernResult::NoSpace));
    assert_eq!(
        m.find_space(PG, 3 * PG, 0),
        Err(KernResult::InvalidArgument)
    );
    assert_eq!(m.find_space(PG + 1, 0, 0), Err(KernResult::InvalidArgument));
}

#[test]
fn insert_rejects_bad_entries() {
    let e = env(4);
    let m = &e.map;
    let wrap = entry(BASE, 2, None, !(PG - 1), RW);
    assert_eq!(
        m.insert(wrap),
        Err(KernResult::InvalidArgument),
        "offset window wraps"
    );
    assert_eq!(
        m.insert(entry(BASE, 1, None, 0x10, RW)),
        Err(KernResult::InvalidArgument)
    );
    assert_eq!(
        m.insert(entry(BASE + 1, 1, None, 0, RW)),
        Err(KernResult::InvalidArgument)
    );
    assert_eq!(
        m.insert(entry(BASE, 0, None, 0, RW)),
        Err(KernResult::InvalidArgument)
    );
    assert_eq!(
        m.insert(entry(0, 1, None, 0, RW)),
        Err(KernResult::InvalidAddress)
    );
    let mut over = entry(BASE, 1, None, 0, RW);
    over.max_protection = Prot::READ;
    assert_eq!(m.insert(over), Err(KernResult::ProtectionFailure));
    // The largest window that does not wrap is fine.
    m.insert(entry(BASE, 1, None, u64::MAX - 2 * PG + 1, RW))
        .unwrap();
    assert_eq!(
        m.insert(entry(BASE - PG, 2, None, 0, RW)),
        Err(KernResult::NoSpace),
        "overlap"
    );
    assert_eq!(
        m.insert(entry(BASE, 1, None, 0, RW)),
        Err(KernResult::NoSpace)
    );
    m.insert(entry(BASE + PG, 1, None, 0, RW)).unwrap();
    assert_eq!(KernResult::NoSpace.to_errno(), Err(Errno::ENOMEM));
    assert_eq!(KernResult::ProtectionFailure.to_errno(), Err(Errno(13)));
    assert_eq!(KernResult::Success.to_errno(), Ok(()));
}

#[test]
fn prefault_enters_the_resident_pages_without_faults() {
    let e = env(32);
    e.map.insert(entry(BASE, 8, None, 0, RW)).unwrap();
    // Page 3 never touched (not resident); page 6 busy at the prefault.
    for i in [0, 1, 2, 4, 5, 6, 7] {
        vm_fault(
            &e.map,
            &e.pmap,
            BASE + i * PG,
            Prot::WRITE,
            FaultFlags::empty(),
        )
        .unwrap();
    }
    let busy = e.pmap.pte(BASE + 6 * PG).unwrap().page;
    e.pmap.remove(BASE, BASE + 8 * PG);
    assert!(e.d.page(busy).try_xbusy());
    let (faults, enters) = (e.d.counters.faults.get(), e.pmap.enters.get());
    let entered = prefault(
        &e.map,
        &e.pmap,
        &[(BASE, BASE + 3 * PG), (BASE + 3 * PG, BASE + 8 * PG)],
    );
    e.d.page(busy).xunbusy(e.d.wait());
    assert_eq!(entered, 6);
    assert_eq!(e.d.counters.faults.get(), faults, "no fault counted");
    assert_eq!(e.pmap.enters.get(), enters + 6);
    for i in 0..8 {
        let pte = e.pmap.pte(BASE + i * PG);
        assert_eq!(pte.is_some(), i != 3 && i != 6, "page {i}");
        if let Some(pte) = pte {
            assert_eq!(pte.prot, RW);
            assert!(!e.d.page(pte.page).is_busied(), "page {i} left busy");
        }
    }
    // The pages left out fault in as before.
    vm_fault(
        &e.map,
        &e.pmap,
        BASE + 6 * PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(e.pmap.pte(BASE + 6 * PG).unwrap().page, busy);
}

#[test]
fn anonymous_zero_fill_then_fast_path() {
    let e = env(16);
    e.map.insert(entry(BASE, 4, None, 0, RW)).unwrap();
    let o = vm_fault(
        &e.map,
        &e.pmap,
        BASE + PG + 123,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        (o.path, o.pages, o.retries),
        (FaultPath::Full { copied: false }, 1, 0)
    );
    let pte = e.pmap.pte(BASE + PG).unwrap();
    assert_eq!(pte.prot, RW);
    assert!(pte.flags.contains(EnterFlags::MANAGED));
    assert_eq!(e.mem.byte(pte.pa + 77), 0, "zero-filled");
    assert_eq!(e.d.counters.zfod.get(), 1);
    let obj = e.map.entries()[0]
        .object
        .clone()
        .expect("object made by the fault");
    assert_eq!(obj.lock().lookup(1), Some(pte.page));
    assert!(!e.d.page(pte.page).is_busied());
    assert_eq!(e.pmap.mappings_of(pte.page), [BASE + PG]);
    // Resident and valid: the fast path.
    e.pmap.remove(BASE, BASE + 4 * PG);
    let o = vm_fault(&e.map, &e.pmap, BASE + PG, Prot::WRITE, FaultFlags::empty()).unwrap();
    assert_eq!(o.path, FaultPath::Fast);
    assert_eq!(e.pmap.pte(BASE + PG).unwrap().page, pte.page);
    assert_eq!(e.map.stats().fast.get(), 1);
    assert_eq!(e.d.counters.faults.get(), 2);
    drop(obj);
    e.map.remove(&e.pmap, BASE, BASE + 4 * PG).unwrap();
    assert_eq!(e.d.phys.free_count(), 16, "the object went with the entry");
}

#[test]
fn private_mapping_copies_on_write() {
    let e = env(16);
    let obj = VmObject::allocate_default(e.d.clone(), 4);
    // A shared mapping writes the original page.
    e.map
        .insert(entry(BASE, 4, Some(obj.clone()), 0, RW))
        .unwrap();
    vm_fault(
        &e.map,
        &e.pmap,
        BASE + 2 * PG,
        Prot::WRITE,
        FaultFlags::empty(),
    )
    .unwrap();
    let orig = e.pmap.pte(BASE + 2 * PG).unwrap();
    e.mem.fill(orig.pa, 0xaa);
    // A private mapping of pages 1..4 of the same object.
    let private = BASE + 16 * PG;
    let mut en = entry(private, 3, Some(obj.clone()), PG, RW);
    en.flags = EntryFlags::COW | EntryFlags::NEEDS_COPY;
    en.inheritance = Inheritance::Copy;
    e.map.insert(en).unwrap();
    // Read: the original page, read-only.
    let o = vm_fault(
        &e.map,
        &e.pmap,
        private + PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(o.path, FaultPath::Fast);
    let ro = e.pmap.pte(private + PG).unwrap();
    assert_eq!((ro.page, ro.prot), (orig.page, Prot::READ));
    // Write: a shadow object gets a copy.
    let o = vm_fault(
        &e.map,
        &e.pmap,
        private + PG,
        Prot::WRITE,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(o.path, FaultPath::Full { copied: true });
    let cow = e.pmap.pte(private + PG).unwrap();
    assert_ne!(cow.page, orig.page);
    assert_eq!(cow.prot, RW);
    assert_eq!(e.mem.byte(cow.pa + 5), 0xaa, "copied");
    e.mem.fill(cow.pa, 0xbb);
    assert_eq!(e.mem.byte(orig.pa + 5), 0xaa, "original unchanged");
    let en = e.map.entries().pop().unwrap();
    assert!(!en.flags.contains(EntryFlags::NEEDS_COPY));
    let shadow = en.object.unwrap();
    assert!(!Arc::ptr_eq(&shadow, &obj));
    let (backing, off) = shadow.backing().unwrap();
    assert!(Arc::ptr_eq(&backing, &obj));
    assert_eq!(off, 1);
    assert_eq!(shadow.lock().lookup(1), Some(cow.page));
    assert_eq!(e.map.stats().cow.get(), 1);
    // Read another resident page: the backing page, read-only.
    vm_fault(
        &e.map,
        &e.pmap,
        BASE + 3 * PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    let o = vm_fault(
        &e.map,
        &e.pmap,
        private + 2 * PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(o.path, FaultPath::Full { copied: false });
    let pte = e.pmap.pte(private + 2 * PG).unwrap();
    assert_eq!(
        (pte.page, pte.prot),
        (obj.lock().lookup(3).unwrap(), Prot::READ)
    );
    assert_eq!(shadow.lock().lookup(2), None);
    // A page nobody has: zero-filled in the shadow, writable.
    vm_fault(&e.map, &e.pmap, private, Prot::READ, FaultFlags::empty()).unwrap();
    let pte = e.pmap.pte(private).unwrap();
    assert_eq!((Some(pte.page), pte.prot), (shadow.lock().lookup(0), RW));
    assert_eq!(obj.lock().lookup(1), None);
    assert!(!e.d.page(cow.page).is_busied() && !e.d.page(orig.page).is_busied());
}

#[test]
fn bad_accesses_fail() {
    let e = env(4);
    e.map.insert(entry(BASE, 2, None, 0, Prot::READ)).unwrap();
    assert_eq!(
        vm_fault(&e.map, &e.pmap, BASE, Prot::WRITE, FaultFlags::empty()),
        Err(KernResult::ProtectionFailure)
    );
    assert_eq!(
        vm_fault(
            &e.map,
            &e.pmap,
            BASE + 2 * PG,
            Prot::READ,
            FaultFlags::empty()
        ),
        Err(KernResult::InvalidAddress)
    );
    assert_eq!(
        vm_fault(&e.map, &e.pmap, 0x10, Prot::READ, FaultFlags::empty()),
        Err(KernResult::InvalidAddress)
    );
    // An entry larger than its object: beyond the object is out of bounds.
    let small = VmObject::allocate_default(e.d.clone(), 1);
    e.map
        .insert(entry(BASE + 8 * PG, 2, Some(small), 0, RW))
        .unwrap();
    vm_fault(
        &e.map,
        &e.pmap,
        BASE + 8 * PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        vm_fault(
            &e.map,
            &e.pmap,
            BASE + 9 * PG,
            Prot::READ,
            FaultFlags::empty()
        ),
        Err(KernResult::OutOfBounds)
    );
    assert!(e.pmap.extract(BASE).is_none());
}

#[test]
fn phys_pager_populate_1024_pages_in_one_fault() {
    // With populate the pager fills each aligned 512 pages with one
    // contiguous block, which the fault maps with one superpage entry.
    for (flags, faults, populates, (large, small)) in [
        (FaultFlags::empty(), 1, 1, (2, 0)),
        (FaultFlags::NOPOPULATE, 1024, 0, (0, 1024)),
    ] {
        let e = env(2048);
        let obj = phys_pager_allocate(e.d.clone(), 1024);
        e.map.insert(entry(BASE, 1024, Some(obj), 0, RW)).unwrap();
        touch(&e, BASE, 1024, Prot::WRITE, flags);
        let s = e.map.stats();
        assert_eq!(
            (s.faults.get(), s.populate_calls.get()),
            (faults, populates),
            "{flags:?}"
        );
        assert_eq!(e.d.counters.faults.get(), faults);
        assert_eq!(e.pmap.len(), 1024);
        assert_eq!(
            (e.pmap.large_entries(), e.pmap.small_entries()),
            (large, small),
            "{flags:?}"
        );
        assert_eq!(e.pmap.enters.get(), small as u64);
        assert_eq!(e.map.stats().large.get(), large as u64);
        for i in 0..1024 {
            let pte = e.pmap.pte(BASE + i * PG).unwrap();
            assert_eq!(e.d.page(pte.page).pindex(), i);
            assert!(!e.d.page(pte.page).is_busied());
        }
    }
}

#[test]
fn populate_clipped_to_entry() {
    let e = env(2048);
    let obj = phys_pager_allocate(e.d.clone(), 1024);
    // The entry maps pindexes 100..=199 only.
    e.map
        .insert(entry(BASE, 100, Some(obj.clone()), 100 * PG, Prot::READ))
        .unwrap();
    let o = vm_fault(
        &e.map,
        &e.pmap,
        BASE + 50 * PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!((o.path, o.pages), (FaultPath::Populate, 100));
    assert_eq!(e.pmap.len(), 100);
    assert_eq!(e.pmap.pte(BASE).unwrap().prot, Prot::READ);
    assert!(
        obj.lock()
            .pages_in(0, 1023)
            .iter()
            .all(|&(_, id)| !e.d.page(id).is_busied())
    );
    // Read-only entry: populate was told the maximum, not the fault type.
    assert_eq!(e.map.entries()[0].max_protection, Prot::all());
}

#[test]
fn wiring_fault_wires_and_munmap_unwires() {
    let e = env(2048);
    let obj = phys_pager_allocate(e.d.clone(), 1024);
    e.map
        .insert(entry(BASE, 1024, Some(obj.clone()), 0, RW))
        .unwrap();
    let o = vm_fault(&e.map, &e.pmap, BASE, Prot::WRITE, FaultFlags::WIRE).unwrap();
    assert_eq!(o.pages, 1024);
    assert_eq!(e.d.counters.wired.get(), 1024);
    assert!(
        e.pmap
            .pte(BASE + 7 * PG)
            .unwrap()
            .flags
            .contains(EnterFlags::WIRED)
    );
    // Wiring again does not take a second wiring per page.
    vm_fault(
        &e.map,
        &e.pmap,
        BASE + 9 * PG,
        Prot::WRITE,
        FaultFlags::WIRE,
    )
    .unwrap();
    let id = e.pmap.pte(BASE + 9 * PG).unwrap().page;
    assert_eq!(e.d.page(id).wire_count(), 1);
    e.map.remove(&e.pmap, BASE, BASE + 1024 * PG).unwrap();
    assert_eq!(e.d.counters.wired.get(), 0);
    assert!(e.pmap.is_empty());
    drop(obj);
    assert_eq!(e.d.phys.free_count(), 2048);
}

#[test]
fn extract_and_hold_and_blocked_pages() {
    let e = env(16);
    e.map.insert(entry(BASE, 2, None, 0, RW)).unwrap();
    assert_eq!(
        e.pmap.extract_and_hold(BASE, Prot::READ),
        None,
        "not mapped: fault instead"
    );
    vm_fault(&e.map, &e.pmap, BASE, Prot::READ, FaultFlags::empty()).unwrap();
    let id = e.pmap.extract_and_hold(BASE, Prot::WRITE).unwrap();
    assert_eq!(e.d.page(id).wire_count(), 1);
    assert_eq!(e.d.counters.wired.get(), 1);
    assert!(!e.d.page(id).try_block(), "held pages cannot be blocked");
    assert!(!e.d.unwire(id, vm::page::PageQueue::Active));
    assert!(e.d.page(id).try_block());
    assert_eq!(e.pmap.extract_and_hold(BASE, Prot::READ), None, "blocked");
    e.pmap.remove_all(id);
    e.d.page(id).unblock();
    assert!(e.pmap.is_empty());
    assert_eq!(e.pmap.removes.get(), 1);
}

/// A gntdev-like managed device: the fictitious pages of a hole, populated
/// 16 at a time. Optionally changes the map during its first populate.
struct Hole {
    range: FictitiousRange,
    calls: AtomicU32,
    meddle: OnceLock<(Arc<VmMap>, MapEntry)>,
}

impl DeviceOps for Hole {
    fn fault(&self, _obj: &VmObject, pindex: u64, _prot: Prot) -> Result<PageId, PagerResult> {
        Ok(self.range.first + pindex as u32)
    }
    fn has_populate(&self) -> bool {
        true
    }
    fn populate(
        &self,
        obj: &VmObject,
        pindex: u64,
        _fault_type: Prot,
        max_prot: Prot,
        bounds: PindexRange,
    ) -> Result<PindexRange, PagerResult> {
        assert_eq!(
            max_prot,
            Prot::all(),
            "populate gets the maximum protection"
        );
        if self.calls.fetch_add(1, Ordering::Relaxed) == 0
            && let Some((map, en)) = self.meddle.get()
        {
            // The map lock is not held here: another thread's mmap.
            map.insert(en.clone()).unwrap();
        }
        let first = (pindex & !15).max(bounds.0);
        let last = ((pindex & !15) + 15).min(bounds.1);
        for i in first..=last {
            device_pager_insert(obj, i, self.range.first + i as u32)?;
        }
        Ok((first, last))
    }
}

fn hole(e: &Env, npages: u32) -> (Arc<Hole>, Arc<VmObject>) {
    let range =
        e.d.phys
            .register_fictitious(0x10_0000_0000, npages, MemAttr::WriteBack)
            .unwrap();
    let h = Arc::new(Hole {
        range,
        calls: AtomicU32::new(0),
        meddle: OnceLock::new(),
    });
    let size = u64::from(npages) * PG;
    let obj = device_pager_allocate(
        e.d.clone(),
        ObjectType::MgtDevice,
        h.clone(),
        size,
        Prot::all(),
        0,
    )
    .unwrap();
    (h, obj)
}

#[test]
fn managed_device_populate() {
    let e = env(4);
    let (h, obj) = hole(&e, 48);
    e.map
        .insert(entry(BASE, 48, Some(obj.clone()), 0, RW))
        .unwrap();
    touch(&e, BASE, 48, Prot::READ, FaultFlags::empty());
    assert_eq!(e.map.stats().faults.get(), 3, "16 pages per populate");
    assert_eq!(h.calls.load(Ordering::Relaxed), 3);
    assert_eq!(e.pmap.len(), 48);
    let pte = e.pmap.pte(BASE + 20 * PG).unwrap();
    assert_eq!(pte.pa, 0x10_0000_0000 + 20 * PG);
    assert!(pte.flags.contains(EnterFlags::MANAGED));
    assert!(e.d.page(pte.page).is_fictitious());
    assert_eq!(e.pmap.mappings_of(pte.page), [BASE + 20 * PG]);
    e.map.remove(&e.pmap, BASE, BASE + 48 * PG).unwrap();
    drop(obj);
    e.d.phys.unregister_fictitious(h.range).unwrap();
}

#[test]
fn populate_retries_when_the_map_changes() {
    let e = env(4);
    let (h, obj) = hole(&e, 32);
    h.meddle
        .set((e.map.clone(), entry(BASE + 64 * PG, 1, None, 0, RW)))
        .ok()
        .unwrap();
    e.map
        .insert(entry(BASE, 32, Some(obj.clone()), 0, RW))
        .unwrap();
    let o = vm_fault(
        &e.map,
        &e.pmap,
        BASE + 3 * PG,
        Prot::WRITE,
        FaultFlags::empty(),
    )
    .unwrap();
    // The retry finds the faulting page resident: the fast path, as in
    // FreeBSD, enters just that page.
    assert_eq!((o.path, o.pages, o.retries), (FaultPath::Fast, 1, 1));
    assert_eq!(h.calls.load(Ordering::Relaxed), 1);
    assert_eq!(e.map.stats().retries.get(), 1);
    assert_eq!(e.map.stats().populate_calls.get(), 1);
    assert_eq!(e.pmap.len(), 1, "nothing entered by the stale populate");
    assert_eq!(obj.lock().resident_count(), 16);
    let o = vm_fault(
        &e.map,
        &e.pmap,
        BASE + 20 * PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        (o.path, o.pages, o.retries),
        (FaultPath::Populate, 16, 0),
        "16..=31"
    );
    assert_eq!(
        e.map.entries().len(),
        2,
        "the other thread's entry is there"
    );
    assert!(
        obj.lock()
            .pages_in(0, 31)
            .iter()
            .all(|&(_, id)| !e.d.page(id).is_busied())
    );
}

/// An unmanaged device: pages one fault at a time, not on mapping lists.
struct Plain(FictitiousRange);

impl DeviceOps for Plain {
    fn fault(&self, _obj: &VmObject, pindex: u64, _prot: Prot) -> Result<PageId, PagerResult> {
        Ok(self.0.first + pindex as u32)
    }
}

#[test]
fn unmanaged_device_faults_one_page() {
    let e = env(4);
    let range =
        e.d.phys
            .register_fictitious(0x20_0000_0000, 8, MemAttr::Uncacheable)
            .unwrap();
    let obj = device_pager_allocate(
        e.d.clone(),
        ObjectType::Device,
        Arc::new(Plain(range)),
        8 * PG,
        RW,
        0,
    )
    .unwrap();
    e.map.insert(entry(BASE, 8, Some(obj), 0, RW)).unwrap();
    let o = vm_fault(
        &e.map,
        &e.pmap,
        BASE + 5 * PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!((o.path, o.pages), (FaultPath::Full { copied: false }, 1));
    let pte = e.pmap.pte(BASE + 5 * PG).unwrap();
    assert_eq!(pte.pa, 0x20_0000_0000 + 5 * PG);
    assert!(!pte.flags.contains(EnterFlags::MANAGED));
    assert!(e.pmap.mappings_of(pte.page).is_empty());
    assert_eq!(e.d.page(pte.page).memattr(), MemAttr::Uncacheable);
}

#[test]
fn concurrent_faults_with_map_changes() {
    let e = Arc::new(env(4096));
    let obj = phys_pager_allocate(e.d.clone(), 1024);
    e.map
        .insert(entry(BASE, 1024, Some(obj.clone()), 0, RW))
        .unwrap();
    let anon = BASE + 2048 * PG;
    e.map.insert(entry(anon, 256, None, 0, RW)).unwrap();
    let shared = VmObject::allocate_default(e.d.clone(), 1);
    // Make the shared page resident through a shared mapping of it.
    e.map
        .insert(entry(BASE + 4095 * PG, 1, Some(shared.clone()), 0, RW))
        .unwrap();
    vm_fault(
        &e.map,
        &e.pmap,
        BASE + 4095 * PG,
        Prot::WRITE,
        FaultFlags::empty(),
    )
    .unwrap();
    let cow = BASE + 4096 * PG;
    let mut en = entry(cow, 1, Some(shared.clone()), 0, RW);
    en.flags = EntryFlags::COW | EntryFlags::NEEDS_COPY;
    e.map.insert(en).unwrap();
    let churn = BASE + 8192 * PG;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..1024 {
                    let p = (i * 7 + t * 131) % 1024;
                    let access = if (i + t) % 2 == 0 {
                        Prot::READ
                    } else {
                        Prot::WRITE
                    };
                    vm_fault(&e.map, &e.pmap, BASE + p * PG, access, FaultFlags::empty()).unwrap();
                    vm_fault(
                        &e.map,
                        &e.pmap,
                        anon + (p % 256) * PG,
                        access,
                        FaultFlags::empty(),
                    )
                    .unwrap();
                    if i % 64 == 0 {
                        // Readers race the writers for the private page.
                        let access = if t % 2 == 0 { Prot::WRITE } else { Prot::READ };
                        vm_fault(&e.map, &e.pmap, cow, access, FaultFlags::empty()).unwrap();
                    }
                }
            })
        })
        .collect();
    // Another thread's mmap/munmap keeps moving the timestamp.
    for _ in 0..200 {
        e.map.insert(entry(churn, 1, None, 0, RW)).unwrap();
        e.map.remove(&e.pmap, churn, churn + PG).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    for i in 0..1024 {
        let pte = e.pmap.pte(BASE + i * PG).unwrap();
        assert_eq!(Some(pte.page), obj.lock().lookup(i));
        assert!(!e.d.page(pte.page).is_busied());
    }
    let anon_obj = e.map.entries()[1].object.clone().unwrap();
    assert_eq!(
        anon_obj.lock().resident_count(),
        256,
        "one page per index, however many racers"
    );
    for i in 0..256 {
        assert_eq!(
            Some(e.pmap.pte(anon + i * PG).unwrap().page),
            anon_obj.lock().lookup(i)
        );
    }
    assert_eq!(e.map.stats().cow.get(), 1, "one copy for all writers");
    let private = e.map.entries()[3].object.clone().unwrap();
    let pte = e.pmap.pte(cow).unwrap();
    assert_eq!(
        Some(pte.page),
        private.lock().lookup(0),
        "the copy, never the stale original"
    );
    assert_eq!(pte.prot, RW);
    assert_eq!(e.map.stats().faults.get(), 1 + 4 * (2 * 1024 + 16));
}

#[test]
fn private_populate_mapping_stops_populating_once_shadowed() {
    let e = env(4096);
    let obj = phys_pager_allocate(e.d.clone(), 1024);
    let mut en = entry(BASE, 1024, Some(obj.clone()), 0, RW);
    en.flags = EntryFlags::COW | EntryFlags::NEEDS_COPY;
    e.map.insert(en).unwrap();
    // A read populates the whole run, read-only while the copy is pending.
    let o = vm_fault(&e.map, &e.pmap, BASE, Prot::READ, FaultFlags::empty()).unwrap();
    assert_eq!((o.path, o.pages), (FaultPath::Populate, 1024));
    assert_eq!(e.pmap.pte(BASE + 1023 * PG).unwrap().prot, Prot::READ);
    // A write makes the shadow; the object now has one, so no populate.
    let o = vm_fault(
        &e.map,
        &e.pmap,
        BASE + 5 * PG,
        Prot::WRITE,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(o.path, FaultPath::Full { copied: true });
    assert_eq!(obj.lock().shadow_count(), 1);
    assert_eq!(e.map.stats().populate_calls.get(), 1);
    let pte = e.pmap.pte(BASE + 5 * PG).unwrap();
    assert_ne!(Some(pte.page), obj.lock().lookup(5));
    assert_eq!(pte.prot, RW);
}

#[test]
fn concurrent_faults_make_one_populate() {
    let e = env(4);
    let (dev, obj) = common::whole_device(&e.d, 48, 0x10_0000_0000, Duration::from_millis(20));
    e.map
        .insert(entry(BASE, 48, Some(obj.clone()), 0, RW))
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let e = &e;
            s.spawn(move || {
                for p in 0..48 {
                    let va = BASE + ((p + t * 12) % 48) * PG;
                    vm_fault(&e.map, &e.pmap, va, Prot::READ, FaultFlags::empty()).unwrap();
                }
            });
        }
    });
    assert_eq!(
        dev.calls.load(Ordering::Relaxed),
        1,
        "one populate for all threads"
    );
    assert_eq!(e.pmap.len(), 48);
    e.map.remove(&e.pmap, BASE, BASE + 48 * PG).unwrap();
    drop(obj);
    e.d.phys.unregister_fictitious(dev.range).unwrap();
}
