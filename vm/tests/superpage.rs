//! Superpage (2 MiB) entries: the populate path enters them for aligned,
//! physically contiguous runs, and every range operation demotes what it
//! cuts, through the real fault handler and maps over the software pmap.
#![cfg(not(loom))]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use vm::domain::{PhysAccess, VmDomain};
use vm::fault::{FaultFlags, FaultPath, vm_fault};
use vm::map::{EntryFlags, Inheritance, MapEntry, VmMap};
use vm::object::VmObject;
use vm::page::{PageId, SpinWait};
use vm::pager::phys::phys_pager_allocate;
use vm::phys::{FictitiousRange, PhysAllocator};
use vm::pmap::{EnterFlags, Pmap, SoftPmap};
use vm::{PAGE_SIZE, Prot, SUPERPAGE_PAGES, SUPERPAGE_SIZE};

const PG: u64 = PAGE_SIZE;
const SP: u64 = SUPERPAGE_SIZE;
/// A superpage-aligned user address.
const BASE: u64 = 0x4000_0000;
/// A superpage-aligned guest-physical address for fictitious pages.
const GPA: u64 = 0x10_0000_0000;
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// Physical memory nobody reads: the tests look at translations only.
struct NoMem;

impl PhysAccess for NoMem {
    fn zero_page(&self, _pa: u64) {}
    fn copy_page(&self, _src: u64, _dst: u64) {}
}

struct Env {
    d: Arc<VmDomain>,
    map: VmMap,
    pmap: SoftPmap,
}

fn env(ram_pages: u64) -> Env {
    let phys = PhysAllocator::new(&[(0, ram_pages * PG)], 4096).unwrap();
    let d = Arc::new(VmDomain::new(phys, Arc::new(NoMem), Arc::new(SpinWait)));
    let map = VmMap::new(d.clone(), 0x1000, 0x8000_0000);
    let pmap = SoftPmap::new(d.clone());
    Env { d, map, pmap }
}

/// A managed device object of `npages` fictitious pages at `gpa`.
fn device(e: &Env, npages: u32, gpa: u64) -> (FictitiousRange, Arc<VmObject>) {
    let (dev, obj) = common::whole_device(&e.d, npages, gpa, Duration::ZERO);
    (dev.range, obj)
}

fn map(e: &Env, va: u64, npages: u64, obj: &Arc<VmObject>, offset_pages: u64) {
    e.map
        .insert(MapEntry {
            start: va,
            end: va + npages * PG,
            object: Some(obj.clone()),
            offset: offset_pages * PG,
            protection: RW,
            max_protection: Prot::all(),
            inheritance: Inheritance::Share,
            flags: EntryFlags::empty(),
        })
        .unwrap();
}

/// `(large, small)` entries of the pmap.
fn entries(e: &Env) -> (usize, usize) {
    (e.pmap.large_entries(), e.pmap.small_entries())
}

/// An aligned 1024-page device mapping at [`BASE`], faulted once.
fn aligned_1024(flags: FaultFlags) -> (Env, FictitiousRange, Arc<VmObject>) {
    let e = env(16);
    let (range, obj) = device(&e, 1024, GPA);
    map(&e, BASE, 1024, &obj, 0);
    let o = vm_fault(&e.map, &e.pmap, BASE + 5 * PG, Prot::READ, flags).unwrap();
    assert_eq!((o.path, o.pages), (FaultPath::Populate, 1024));
    (e, range, obj)
}

/// Every page of `[BASE, BASE + npages)` but `gone` translates to its
/// own fictitious page, with the offset in the page kept.
fn check_translations(e: &Env, range: FictitiousRange, npages: u64, gone: &[u64]) {
    for i in 0..npages {
        let va = BASE + i * PG;
        if gone.contains(&i) {
            assert_eq!(e.pmap.extract(va), None, "page {i} unmapped");
            assert!(e.pmap.mappings_of(range.first + i as PageId).is_empty());
        } else {
            assert_eq!(e.pmap.extract(va + 9).map(|t| t.0), Some(GPA + i * PG + 9));
            assert_eq!(e.pmap.mappings_of(range.first + i as PageId), [va]);
        }
    }
}

fn teardown(e: Env, range: FictitiousRange, obj: Arc<VmObject>) {
    e.map.remove(&e.pmap, 0x1000, 0x8000_0000).unwrap();
    assert!(e.pmap.is_empty());
    drop(obj);
    e.d.phys.unregister_fictitious(range).unwrap();
}

#[test]
fn aligned_populate_enters_two_superpages() {
    let (e, range, obj) = aligned_1024(FaultFlags::empty());
    assert_eq!(
        entries(&e),
        (2, 0),
        "2 entries for an aligned 4 MiB mapping"
    );
    assert_eq!(e.pmap.len(), 1024);
    assert_eq!((e.pmap.large_enters.get(), e.pmap.enters.get()), (2, 0));
    let s = e.map.stats();
    assert_eq!(
        (s.faults.get(), s.populate_calls.get(), s.large.get()),
        (1, 1, 2)
    );
    assert!(e.pmap.is_large(BASE) && e.pmap.is_large(BASE + SP + 511 * PG));
    check_translations(&e, range, 1024, &[]);
    // Touching the rest takes no fault.
    for i in 0..1024 {
        assert!(e.pmap.extract(BASE + i * PG).is_some_and(|t| t.1 == RW));
    }
    for i in 0..1024 {
        assert!(!e.d.page(range.first + i).is_busied());
    }
    teardown(e, range, obj);
}

#[test]
fn unaligned_runs_get_4k_entries() {
    // The address off by a page; the physical address off by a page; the
    // object's window off by 256 pages (so the physical address is).
    for (va, gpa, offset) in [(BASE + PG, GPA, 0), (BASE, GPA + PG, 0), (BASE, GPA, 256)] {
        let e = env(16);
        let (range, obj) = device(&e, 1024 + 256, gpa);
        map(&e, va, 1024, &obj, offset);
        vm_fault(&e.map, &e.pmap, va, Prot::READ, FaultFlags::empty()).unwrap();
        assert_eq!(
            entries(&e),
            (0, 1024),
            "va {va:#x} gpa {gpa:#x} offset {offset}"
        );
        assert_eq!(e.map.stats().large.get(), 0);
        let t = e.pmap.extract(va + 700 * PG).unwrap().0;
        assert_eq!(t, gpa + (offset + 700) * PG);
        teardown(e, range, obj);
    }
}

#[test]
fn aligned_part_of_a_longer_run() {
    // 1024 + 100 pages: two superpages and 100 pages after them; a 4 KiB
    // fault path mapping before them does not disturb them.
    let e = env(16);
    let (range, obj) = device(&e, 1124, GPA);
    map(&e, BASE, 1124, &obj, 0);
    vm_fault(
        &e.map,
        &e.pmap,
        BASE + 1100 * PG,
        Prot::WRITE,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(entries(&e), (2, 100));
    check_translations(&e, range, 1124, &[]);
    teardown(e, range, obj);
}

#[test]
fn partial_munmap_demotes_and_the_rest_translates() {
    let (e, range, obj) = aligned_1024(FaultFlags::empty());
    e.map
        .remove(&e.pmap, BASE + 100 * PG, BASE + 104 * PG)
        .unwrap();
    assert_eq!(e.pmap.demotions.get(), 1);
    assert_eq!(entries(&e), (1, 508));
    assert!(!e.pmap.is_large(BASE) && e.pmap.is_large(BASE + SP));
    check_translations(&e, range, 1024, &[100, 101, 102, 103]);
    // A munmap of a whole superpage takes it without a demotion.
    e.map.remove(&e.pmap, BASE + SP, BASE + 2 * SP).unwrap();
    assert_eq!(e.pmap.demotions.get(), 1);
    assert_eq!(entries(&e), (0, 508));
    // The object still backs the first entry: a fault there refinds the
    // page on the fast path.
    teardown(e, range, obj);
}

#[test]
fn mprotect_of_part_demotes_only_what_it_cuts() {
    let (e, range, obj) = aligned_1024(FaultFlags::empty());
    e.map
        .protect(&e.pmap, BASE + 600 * PG, BASE + 608 * PG, Prot::READ, false)
        .unwrap();
    assert_eq!(e.pmap.demotions.get(), 1);
    assert_eq!(entries(&e), (1, 512));
    assert!(e.pmap.is_large(BASE));
    for i in 512..1024 {
        let want = if (600..608).contains(&i) {
            Prot::READ
        } else {
            RW
        };
        assert_eq!(e.pmap.extract(BASE + i * PG).unwrap().1, want, "page {i}");
    }
    // A whole superpage keeps its entry.
    e.map
        .protect(&e.pmap, BASE, BASE + SP, Prot::READ, false)
        .unwrap();
    assert_eq!((e.pmap.demotions.get(), entries(&e)), (1, (1, 512)));
    assert_eq!(e.pmap.extract(BASE + 77 * PG).unwrap().1, Prot::READ);
    check_translations(&e, range, 1024, &[]);
    teardown(e, range, obj);
}

#[test]
fn remove_all_of_one_page_demotes_then_removes_it() {
    let (e, range, obj) = aligned_1024(FaultFlags::empty());
    let id = range.first + 300;
    e.pmap.remove_all(id);
    assert_eq!(e.pmap.demotions.get(), 1);
    assert_eq!(entries(&e), (1, 511));
    assert_eq!(e.pmap.removes.get(), 1);
    check_translations(&e, range, 1024, &[300]);
    // The page is still in the object: the fault brings it back alone.
    let o = vm_fault(
        &e.map,
        &e.pmap,
        BASE + 300 * PG,
        Prot::READ,
        FaultFlags::empty(),
    )
    .unwrap();
    assert_eq!(o.path, FaultPath::Fast);
    assert_eq!(entries(&e), (1, 512));
    check_translations(&e, range, 1024, &[]);
    teardown(e, range, obj);
}

#[test]
fn wired_superpages_hold_a_wiring_per_page() {
    let (e, range, obj) = aligned_1024(FaultFlags::WIRE);
    assert_eq!(entries(&e), (2, 0));
    assert!(
        e.pmap
            .pte(BASE + 3 * PG)
            .unwrap()
            .flags
            .contains(EnterFlags::WIRED)
    );
    let wired = |i: u32| e.d.page(range.first + i).wire_count();
    assert!((0..1024).all(|i| wired(i) == 1));
    // A partial munmap unwires exactly its pages.
    e.map
        .remove(&e.pmap, BASE + 510 * PG, BASE + 514 * PG)
        .unwrap();
    assert_eq!(e.pmap.demotions.get(), 2, "the cut crosses both superpages");
    for i in 0..1024 {
        let want = u32::from(!(510..514).contains(&i));
        assert_eq!(wired(i), want, "page {i}");
    }
    e.map.remove(&e.pmap, BASE, BASE + 1024 * PG).unwrap();
    assert!((0..1024).all(|i| wired(i) == 0));
    teardown(e, range, obj);
}

#[test]
fn populate_objects_get_superpage_aligned_addresses() {
    let e = env(16);
    let obj = phys_pager_allocate(e.d.clone(), 2048);
    let anon = VmObject::allocate_default(e.d.clone(), 2048);
    // Something at the bottom, so first fit is not aligned by chance.
    map(&e, 0x1000, 1, &anon, 0);
    assert_eq!(e.map.find_space_for(Some(&obj), 2 * SP, 0), Ok(SP));
    assert_eq!(e.map.find_space_for(Some(&obj), SP, 0), Ok(SP));
    assert_eq!(e.map.find_space_for(Some(&obj), SP - PG, 0), Ok(0x2000));
    assert_eq!(e.map.find_space_for(Some(&anon), 2 * SP, 0), Ok(0x2000));
    assert_eq!(e.map.find_space_for(None, 2 * SP, 0), Ok(0x2000));
    // No aligned room left: the usual placement.
    let small = VmMap::new(e.d.clone(), 0x1000, SP + 0x3000);
    assert_eq!(small.find_space_for(Some(&obj), SP, 0), Ok(0x1000));
}

/// One operation of the model test, on pages `[a, b)` of three superpages.
#[derive(Clone, Debug)]
enum Op {
    Remove(u64, u64),
    Protect(u64, u64, bool),
    Unwire(u64, u64),
    RemoveAll(u64),
    Enter(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..3 * SUPERPAGE_PAGES, 0..3 * SUPERPAGE_PAGES)
        .prop_map(|(a, b)| (a.min(b), a.max(b) + 1));
    prop_oneof![
        range.clone().prop_map(|(a, b)| Op::Remove(a, b)),
        (range.clone(), any::<bool>()).prop_map(|((a, b), x)| Op::Protect(a, b, x)),
        range.prop_map(|(a, b)| Op::Unwire(a, b)),
        (0..3 * SUPERPAGE_PAGES).prop_map(Op::RemoveAll),
        (0..3 * SUPERPAGE_PAGES).prop_map(Op::Enter),
    ]
}

fn apply(p: &SoftPmap, op: &Op, first: PageId) -> BTreeSet<PageId> {
    let mut unwired = BTreeSet::new();
    match *op {
        Op::Remove(a, b) => p.remove(BASE + a * PG, BASE + b * PG),
        Op::Protect(a, b, exec) => {
            let prot = if exec {
                Prot::READ | Prot::EXECUTE
            } else {
                Prot::READ
            };
            p.protect(BASE + a * PG, BASE + b * PG, prot);
        }
        Op::Unwire(a, b) => p.unwire(BASE + a * PG, BASE + b * PG, &mut |id| {
            assert!(unwired.insert(id), "unwired twice");
        }),
        // `remove_all` is for pages without wirings.
        Op::RemoveAll(i) => {
            if p.pte(BASE + i * PG)
                .is_none_or(|t| !t.flags.contains(EnterFlags::WIRED))
            {
                p.remove_all(first + i as PageId);
            }
        }
        Op::Enter(i) => {
            let id = first + i as PageId;
            if p.pte(BASE + i * PG)
                .is_none_or(|t| !t.flags.contains(EnterFlags::WIRED))
            {
                p.enter(
                    BASE + i * PG,
                    id,
                    u64::from(id) * PG,
                    Prot::READ,
                    EnterFlags::MANAGED,
                )
                .unwrap();
            }
        }
    }
    unwired
}

proptest! {
    /// Three wired superpage entries behave exactly as the same pages
    /// entered one by one, under any sequence of range operations.
    #[test]
    fn superpages_behave_as_their_pages(ops in prop::collection::vec(op(), 1..12)) {
        let e = env(4 * SUPERPAGE_PAGES);
        let first: PageId = SUPERPAGE_PAGES as PageId;
        let flags = EnterFlags::MANAGED | EnterFlags::WIRED;
        let small = SoftPmap::new(e.d.clone());
        for i in 0..3 * SUPERPAGE_PAGES {
            let id = first + i as PageId;
            small.enter(BASE + i * PG, id, u64::from(id) * PG, RW, flags).unwrap();
        }
        for s in 0..3 {
            let ids: Vec<PageId> = (0..SUPERPAGE_PAGES)
                .map(|i| first + (s * SUPERPAGE_PAGES + i) as PageId)
                .collect();
            let pa = u64::from(ids[0]) * PG;
            e.pmap.enter_large(BASE + s * SP, &ids, pa, RW, flags).unwrap();
        }
        prop_assert_eq!(e.pmap.large_entries(), 3);
        for op in &ops {
            prop_assert_eq!(apply(&e.pmap, op, first), apply(&small, op, first), "{:?}", op);
            for i in 0..3 * SUPERPAGE_PAGES {
                let va = BASE + i * PG;
                prop_assert_eq!(e.pmap.pte(va), small.pte(va), "page {} after {:?}", i, op);
                let id = first + i as PageId;
                prop_assert_eq!(e.pmap.mappings_of(id), small.mappings_of(id));
            }
            prop_assert_eq!(e.pmap.len(), small.len());
            prop_assert_eq!(e.pmap.removes.get(), small.removes.get());
        }
    }
}
