//! Host tests of page loaning against the software pmap, and a property
//! test of random loan, unloan, owner write, owner read and munmap
//! sequences.

use alloc::sync::Arc;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::fault::{FaultFlags, vm_fault};
use crate::map::{EntryFlags, Inheritance, MapEntry};
use crate::pager::phys::phys_pager_allocate;
use crate::pmap::SoftPmap;
use crate::testutil::{FakeMem, domain_with};

pub(crate) const BASE: u64 = 0x40_0000;
pub(crate) const RW: Prot = Prot::READ.union(Prot::WRITE);

pub(crate) struct Env {
    pub d: Arc<VmDomain>,
    pub mem: Arc<FakeMem>,
    pub map: VmMap,
    pub pmap: SoftPmap,
}

/// A domain of `npages` pages filled with 0x5a, so that a page lent as
/// zeroes must really have been zeroed.
pub(crate) fn env(npages: u64) -> Env {
    let (d, mem) = domain_with(npages);
    for i in 0..npages {
        mem.fill(i * PAGE_SIZE, 0x5a);
    }
    let map = VmMap::new(d.clone(), PAGE_SIZE, 0x8000_0000);
    let pmap = SoftPmap::new(d.clone());
    Env { d, mem, map, pmap }
}

pub(crate) fn entry(
    start: u64,
    npages: u64,
    object: Option<Arc<VmObject>>,
    flags: EntryFlags,
) -> MapEntry {
    MapEntry {
        start,
        end: start + npages * PAGE_SIZE,
        object,
        offset: 0,
        protection: RW,
        max_protection: Prot::all(),
        inheritance: Inheritance::Share,
        flags,
    }
}

impl Env {
    /// Anonymous memory of `npages` at `start`.
    pub(crate) fn anon(&self, start: u64, npages: u64) {
        self.map
            .insert(entry(start, npages, None, EntryFlags::empty()))
            .unwrap();
    }

    /// The owner writes `v` over the page at `va`.
    pub(crate) fn write(&self, va: u64, v: u8) {
        vm_fault(&self.map, &self.pmap, va, RW, FaultFlags::empty()).unwrap();
        let (pa, prot) = self.pmap.extract(va).unwrap();
        assert!(prot.contains(Prot::WRITE), "write fault maps writable");
        self.mem.fill(pa, v);
    }

    /// What the owner reads at `va`.
    pub(crate) fn read(&self, va: u64) -> u8 {
        vm_fault(&self.map, &self.pmap, va, Prot::READ, FaultFlags::empty()).unwrap();
        self.mem.byte(self.pmap.extract(va).unwrap().0)
    }

    pub(crate) fn byte(&self, id: PageId) -> u8 {
        self.mem.byte(self.d.page(id).phys_addr())
    }

    /// Every mapping of a loaned page is read-only.
    fn check_read_only(&self, start: u64, npages: u64) {
        for i in 0..npages {
            let va = start + i * PAGE_SIZE;
            if let Some(pte) = self.pmap.pte(va) {
                assert!(
                    !self.d.page(pte.page).is_loaned() || !pte.prot.contains(Prot::WRITE),
                    "loaned page mapped writable at {va:#x}"
                );
            }
        }
    }
}

/// An environment of 32 pages with anonymous memory of `npages` at
/// `BASE` whose first page the owner filled with `v`; and the free page
/// count before.
pub(crate) fn written(npages: u64, v: u8) -> (Env, u64) {
    let e = env(32);
    let free0 = e.d.phys.free_count();
    e.anon(BASE, npages);
    e.write(BASE, v);
    (e, free0)
}

#[test]
fn owner_write_breaks_the_loan() {
    let (e, free0) = written(2, 0xaa);
    let owner = e.pmap.pte(BASE).unwrap().page;
    let l = loan(&e.map, &e.pmap, BASE, PAGE_SIZE).unwrap();
    assert_eq!(l.pages(), &[owner], "lent as it is, without a copy");
    assert!(e.pmap.pte(BASE).is_none(), "mappings removed");
    assert_eq!(e.read(BASE), 0xaa);
    assert_eq!(
        e.pmap.pte(BASE).unwrap().prot,
        Prot::READ,
        "remapped read-only"
    );
    assert_eq!(e.pmap.pte(BASE).unwrap().page, owner);
    e.write(BASE, 0xbb);
    assert_ne!(
        e.pmap.pte(BASE).unwrap().page,
        owner,
        "the owner got a copy"
    );
    assert_eq!(e.byte(owner), 0xaa, "the borrower keeps the old contents");
    assert_eq!(e.read(BASE), 0xbb);
    assert_eq!(e.d.loans.counters.broken.get(), 1);
    assert_eq!(e.d.loans.counters.lent.get(), 1, "the original, still lent");
    let m = e.d.page(owner);
    assert_eq!(
        (m.loan_count(), m.ref_count()),
        (1, 1),
        "only the loan holds it"
    );
    drop(l);
    assert_eq!(e.d.loans.counters.lent.get(), 0);
    assert_eq!(e.d.phys.free_count(), free0 - 1, "the original freed");
    e.map.remove(&e.pmap, BASE, BASE + 2 * PAGE_SIZE).unwrap();
    assert_eq!(e.d.phys.free_count(), free0);
    assert_eq!(e.d.counters.wired.get(), 0);
}

#[test]
fn untouched_pages_share_the_zero_page() {
    let e = env(64);
    let free0 = e.d.phys.free_count();
    e.anon(BASE, 16);
    let a = loan(&e.map, &e.pmap, BASE, 16 * PAGE_SIZE).unwrap();
    let b = loan(&e.map, &e.pmap, BASE + 4 * PAGE_SIZE, 4 * PAGE_SIZE).unwrap();
    let z = e.d.loans.zero_page().unwrap();
    assert!(a.pages().iter().chain(b.pages()).all(|&id| id == z));
    assert_eq!(e.d.phys.free_count(), free0 - 1, "one page for 20 loans");
    assert_eq!(e.byte(z), 0, "zeroed");
    assert_eq!(e.d.page(z).loan_count(), 20);
    assert_eq!(e.d.loans.counters.zero.get(), 20);
    assert_eq!(zero_page_loans(&e.d), 20);
    assert_eq!(e.d.loans.counters.lent.get(), 1, "one page lent 20 times");
    // The owner's first touch is an ordinary zero fill, no loan to break.
    e.write(BASE, 7);
    assert_eq!(e.byte(z), 0);
    assert_eq!(e.d.loans.counters.broken.get(), 0);
    drop(a);
    assert_eq!(e.d.loans.zero_page(), Some(z));
    assert_eq!(zero_page_loans(&e.d), 4);
    drop(b);
    assert_eq!(e.d.loans.zero_page(), None, "the last unloan frees it");
    assert_eq!(zero_page_loans(&e.d), 0);
    assert_eq!(e.d.loans.counters.lent.get(), 0);
    e.map.remove(&e.pmap, BASE, BASE + 16 * PAGE_SIZE).unwrap();
    assert_eq!(e.d.phys.free_count(), free0);
}

#[test]
fn owner_unmap_leaves_the_page_to_the_borrower() {
    let (e, free0) = written(1, 0x11);
    let l = loan(&e.map, &e.pmap, BASE, 1).unwrap();
    e.map.remove(&e.pmap, BASE, BASE + PAGE_SIZE).unwrap();
    assert_eq!(e.byte(l.pages()[0]), 0x11, "alive after munmap");
    assert_eq!(e.d.phys.free_count(), free0 - 1);
    drop(l);
    assert_eq!(e.d.phys.free_count(), free0, "freed once, by the borrower");
}

#[test]
fn a_backing_page_is_lent_and_a_write_copies_it() {
    let (e, _) = written(1, 0x22);
    let obj = e.map.entries()[0].object.clone().unwrap();
    let mut cow = entry(BASE + PAGE_SIZE, 1, Some(obj), EntryFlags::COW);
    cow.flags |= EntryFlags::NEEDS_COPY;
    e.map.insert(cow).unwrap();
    let shared = e.pmap.pte(BASE).unwrap().page;
    let l = loan(&e.map, &e.pmap, BASE + PAGE_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(l.pages(), &[shared]);
    e.write(BASE + PAGE_SIZE, 0x33);
    assert_eq!(e.read(BASE), 0x22);
    assert_eq!(e.byte(shared), 0x22);
    // The shared mapping's write breaks the loan too.
    e.write(BASE, 0x44);
    assert_eq!(e.byte(shared), 0x22, "the borrower's page never changes");
    assert_eq!(e.read(BASE + PAGE_SIZE), 0x33);
    assert_eq!(e.d.loans.counters.broken.get(), 1);
}

#[test]
fn failures_lend_nothing() {
    let e = env(64);
    e.anon(BASE, 2);
    e.write(BASE, 1);
    let free0 = e.d.phys.free_count();
    let hole = BASE + 8 * PAGE_SIZE;
    assert_eq!(
        loan(&e.map, &e.pmap, hole, PAGE_SIZE).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        loan(&e.map, &e.pmap, BASE, 3 * PAGE_SIZE).err(),
        Some(Errno::EFAULT),
        "partly unmapped"
    );
    assert_eq!(
        loan(&e.map, &e.pmap, BASE + 1, PAGE_SIZE).err(),
        Some(Errno::EINVAL)
    );
    let phys = phys_pager_allocate(e.d.clone(), 4);
    e.map
        .insert(entry(
            BASE + 2 * PAGE_SIZE,
            1,
            Some(phys),
            EntryFlags::empty(),
        ))
        .unwrap();
    assert_eq!(
        loan(&e.map, &e.pmap, BASE, 3 * PAGE_SIZE).err(),
        Some(Errno::EINVAL),
        "not anonymous memory"
    );
    // A page wired before its first loan (a hold in progress) is refused.
    assert_eq!(e.read(BASE), 1, "the failed loans' unmapping is refaulted");
    let held = e.pmap.extract_and_hold(BASE, Prot::READ).unwrap();
    assert_eq!(
        loan(&e.map, &e.pmap, BASE, 2 * PAGE_SIZE).err(),
        Some(Errno::EBUSY)
    );
    e.d.unwire(held, PageQueue::Active);
    assert_eq!(e.d.phys.free_count(), free0, "no zero page left behind");
    assert_eq!(e.d.loans.zero_page(), None);
    assert_eq!(e.d.page(held).loan_count(), 0);
    assert_eq!(e.d.counters.wired.get(), 0);
    let l = loan(&e.map, &e.pmap, BASE, 2 * PAGE_SIZE).unwrap();
    assert_eq!(l.pages()[0], held);
}

#[test]
fn a_wiring_fault_breaks_the_loan() {
    let (e, _) = written(1, 0x55);
    let l = loan(&e.map, &e.pmap, BASE, PAGE_SIZE).unwrap();
    vm_fault(&e.map, &e.pmap, BASE, Prot::READ, FaultFlags::WIRE).unwrap();
    let pte = e.pmap.pte(BASE).unwrap();
    assert_ne!(pte.page, l.pages()[0], "wired on a copy");
    assert!(!e.d.page(pte.page).is_loaned());
    assert_eq!(e.read(BASE), 0x55);
    e.map.remove(&e.pmap, BASE, BASE + PAGE_SIZE).unwrap();
    assert_eq!(e.byte(l.pages()[0]), 0x55);
}

/// One step of the property test; pages are numbered 0..16 over an
/// anonymous region (0..8) and a private copy-on-write region (8..16)
/// over an object whose even pages are resident.
#[derive(Clone, Debug)]
enum Op {
    Write { page: u64, v: u8 },
    Read { page: u64 },
    Loan { page: u64, n: u64 },
    Unloan { pick: usize },
    Hold { page: u64, n: u64 },
    Unhold { pick: usize },
    Unmap { page: u64 },
}

const PAGES: u64 = 16;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PAGES, 1u8..255).prop_map(|(page, v)| Op::Write { page, v }),
        2 => (0..PAGES).prop_map(|page| Op::Read { page }),
        4 => (0..PAGES, 1u64..5).prop_map(|(page, n)| Op::Loan { page, n }),
        2 => any::<usize>().prop_map(|pick| Op::Unloan { pick }),
        1 => (0..PAGES, 1u64..3).prop_map(|(page, n)| Op::Hold { page, n }),
        1 => any::<usize>().prop_map(|pick| Op::Unhold { pick }),
        1 => (0..PAGES).prop_map(|page| Op::Unmap { page }),
    ]
}

fn va(page: u64) -> u64 {
    BASE + page * PAGE_SIZE
}

/// A writable hold: per page, its index and, once the owner unmapped
/// it, the contents it kept (until then it follows the owner's writes).
type HoldModel = (UserPages, Vec<(usize, Option<u8>)>);

/// What the test expects.
struct Model {
    /// What the owner sees at each page; None once unmapped.
    owner: Vec<Option<u8>>,
    /// Loans and the contents they had at loan time.
    loans: Vec<(UserPages, Vec<u8>)>,
    holds: Vec<HoldModel>,
}

impl Model {
    /// The error a loan or hold of `n` pages from `page` fails with for
    /// holes: `EINVAL` if nothing is mapped, `EFAULT` if part is.
    fn hole_error(&self, page: u64, n: u64) -> Option<Errno> {
        let mapped = self.owner[page as usize..][..n as usize]
            .iter()
            .filter(|w| w.is_some())
            .count();
        match mapped {
            0 => Some(Errno::EINVAL),
            k if k < n as usize => Some(Errno::EFAULT),
            _ => None,
        }
    }

    /// Whether the owner's page `i` is held (it is then wired: no loan).
    fn held(&self, i: usize) -> bool {
        self.holds
            .iter()
            .any(|(_, ps)| ps.iter().any(|&(p, kept)| p == i && kept.is_none()))
    }

    /// The contents every borrower and holder must see, and read-only
    /// owner mappings of loaned pages.
    fn check(&self, e: &Env) {
        let lent: alloc::collections::BTreeSet<PageId> = self
            .loans
            .iter()
            .flat_map(|(l, _)| l.pages().iter().copied())
            .collect();
        assert_eq!(
            e.d.loans.counters.lent.get(),
            lent.len() as u64,
            "each lent page counted once"
        );
        for (l, want) in &self.loans {
            for (&id, &w) in l.pages().iter().zip(want) {
                assert!(e.d.page(id).is_loaned());
                assert_eq!(e.byte(id), w, "the borrower sees the contents at loan time");
            }
        }
        for (h, ps) in &self.holds {
            for (&id, &(p, kept)) in h.pages().iter().zip(ps) {
                assert!(!e.d.page(id).is_loaned(), "a held page is never lent");
                let want = kept.or(self.owner[p]).unwrap();
                assert_eq!(e.byte(id), want, "the holder shares the owner's page");
            }
        }
        e.check_read_only(BASE, PAGES);
    }
}

fn run(ops: &[Op]) {
    let e = env(128);
    let free0 = e.d.phys.free_count();
    let mut m = Model {
        owner: Vec::new(),
        loans: Vec::new(),
        holds: Vec::new(),
    };
    e.anon(BASE, 8);
    m.owner.resize(8, Some(0));
    let backing = VmObject::allocate_default(e.d.clone(), 8);
    for i in 0..8 {
        let v = if i % 2 == 0 {
            let id = crate::grab::grab(&backing, i, GrabFlags::ZERO)
                .unwrap()
                .unwrap();
            let v = 0x10 * (i as u8 + 1);
            e.mem.fill(e.d.page(id).phys_addr(), v);
            e.d.page(id).xunbusy(e.d.wait());
            v
        } else {
            0
        };
        m.owner.push(Some(v));
    }
    let cow = EntryFlags::COW | EntryFlags::NEEDS_COPY;
    e.map.insert(entry(va(8), 8, Some(backing), cow)).unwrap();
    for op in ops {
        match *op {
            Op::Write { page, v } => {
                if m.owner[page as usize].is_some() {
                    e.write(va(page), v);
                    m.owner[page as usize] = Some(v);
                }
            }
            Op::Read { page } => {
                if let Some(v) = m.owner[page as usize] {
                    assert_eq!(e.read(va(page)), v, "the owner sees its writes");
                }
            }
            Op::Loan { page, n } => {
                let n = n.min(PAGES - page);
                let r = loan(&e.map, &e.pmap, va(page), n * PAGE_SIZE);
                let range = page as usize..(page + n) as usize;
                let busy = range.clone().any(|i| m.held(i));
                match m.hole_error(page, n) {
                    Some(err) => assert_eq!(r.err(), Some(err)),
                    None if busy => assert_eq!(r.err(), Some(Errno::EBUSY)),
                    None => {
                        let want = m.owner[range].iter().flatten().copied().collect();
                        m.loans.push((r.unwrap(), want));
                    }
                }
            }
            Op::Hold { page, n } => {
                let n = n.min(PAGES - page);
                let r = crate::hold::hold_pages(&e.map, &e.pmap, va(page), n * PAGE_SIZE, RW);
                match m.hole_error(page, n) {
                    Some(err) => assert_eq!(r.err(), Some(err)),
                    None => {
                        let ps = (page..page + n).map(|p| (p as usize, None)).collect();
                        m.holds.push((r.unwrap(), ps));
                    }
                }
            }
            Op::Unloan { pick } => {
                if !m.loans.is_empty() {
                    m.loans.remove(pick % m.loans.len());
                }
            }
            Op::Unhold { pick } => {
                if !m.holds.is_empty() {
                    m.holds.remove(pick % m.holds.len());
                }
            }
            Op::Unmap { page } => {
                e.map.remove(&e.pmap, va(page), va(page + 1)).unwrap();
                let was = m.owner[page as usize].take();
                for (_, ps) in &mut m.holds {
                    for (p, kept) in ps.iter_mut() {
                        if *p == page as usize && kept.is_none() {
                            *kept = was;
                        }
                    }
                }
            }
        }
        m.check(&e);
    }
    let lent: u64 = m.loans.iter().map(|(l, _)| l.pages().len() as u64).sum();
    let c = &e.d.loans.counters;
    assert!(c.loans.get() >= lent && c.zero.get() <= c.loans.get());
    drop(m);
    assert_eq!(c.lent.get(), 0, "every loan given back");
    assert_eq!(e.d.loans.zero_page(), None);
    e.map.remove(&e.pmap, BASE, va(PAGES)).unwrap();
    assert_eq!(e.d.phys.free_count(), free0, "every page freed, once");
    assert_eq!(e.d.counters.wired.get(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn loan_hold_cow_sequences(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}
