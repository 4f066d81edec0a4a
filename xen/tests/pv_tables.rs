//! The PV page-table builder against a simulated MMU that applies Xen's
//! rules: entries hold machine frames; `mmu_update` writes only into
//! frames in use as tables; a frame linked as a table must have no
//! writable mapping, and a leaf may map a table frame read-only only; the
//! guest writes plainly only to frames that are not tables.

use std::collections::HashMap;

use xen::abi::pv::MmuUpdate;
use xen::hypercall::XenErrno;
use xen::pv::{
    DATA_FLAGS, INVALID_MFN, MapError, MmuOps, PTE_FRAME, PTE_P, PTE_RW, PvMemory, TABLE_FLAGS,
    TABLE_VIEW_FLAGS, TableBuilder, index,
};

const PAGE: u64 = 4096;

/// The machine: frames by mfn, the level of each frame in use as a table.
#[derive(Default)]
struct Machine {
    frames: HashMap<u64, Vec<u64>>,
    level: HashMap<u64, u32>,
    /// Writable mappings of each frame in live L1 tables.
    rw: HashMap<u64, usize>,
    calls: u64,
    updates: u64,
}

impl Machine {
    fn entry(&self, mfn: u64, i: usize) -> u64 {
        self.frames.get(&mfn).map_or(0, |f| f[i])
    }

    /// Writable mappings of `mfn` in every live L1.
    fn writable_maps(&self, mfn: u64) -> usize {
        self.rw.get(&mfn).copied().unwrap_or(0)
    }

    /// Counts (`delta` 1) or uncounts (-1) leaf entry `e` of a live L1.
    fn count(&mut self, e: u64, delta: isize) {
        if e & PTE_P != 0 && e & PTE_RW != 0 {
            let c = self.rw.entry((e & PTE_FRAME) >> 12).or_insert(0);
            *c = c.checked_add_signed(delta).expect("count");
        }
    }

    /// Marks the tables below `mfn` (of `level`) as tables, as pinning does.
    fn adopt(&mut self, mfn: u64, level: u32) {
        if self.level.insert(mfn, level).is_some() {
            return;
        }
        if level == 1 {
            for i in 0..512 {
                let e = self.entry(mfn, i);
                self.count(e, 1);
            }
        } else {
            for i in 0..512 {
                let e = self.entry(mfn, i);
                if e & PTE_P != 0 {
                    self.adopt((e & PTE_FRAME) >> 12, level - 1);
                }
            }
        }
    }
}

/// A guest of `pages` frames with p2m `pfn -> 3 * pfn + 1000`.
struct Guest {
    m: Machine,
    pages: u64,
}

fn mfn_of(pfn: u64) -> u64 {
    3 * pfn + 1000
}

impl PvMemory for Guest {
    fn mfn(&self, pfn: u64) -> u64 {
        if pfn < self.pages {
            mfn_of(pfn)
        } else {
            INVALID_MFN
        }
    }

    fn pfn(&self, mfn: u64) -> u64 {
        (mfn - 1000) / 3
    }

    fn read_entry(&self, pfn: u64, i: usize) -> u64 {
        self.m.entry(mfn_of(pfn), i)
    }

    fn write_plain(&mut self, pfn: u64, i: usize, val: u64) {
        let mfn = mfn_of(pfn);
        assert!(
            !self.m.level.contains_key(&mfn),
            "plain write to table frame {pfn}"
        );
        self.m.frames.entry(mfn).or_insert_with(|| vec![0; 512])[i] = val;
    }
}

struct Sim<'a>(&'a std::cell::RefCell<Machine>);

impl MmuOps for Sim<'_> {
    unsafe fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> Result<(), XenErrno> {
        let mut m = self.0.borrow_mut();
        m.calls += 1;
        for r in reqs {
            let (table, i) = (r.ptr >> 12, ((r.ptr & 0xfff) / 8) as usize);
            let Some(&level) = m.level.get(&table) else {
                return Err(XenErrno::EINVAL);
            };
            let target = (r.val & PTE_FRAME) >> 12;
            if r.val & PTE_P != 0 {
                if level == 1 && r.val & PTE_RW != 0 && m.level.contains_key(&target) {
                    return Err(XenErrno::EPERM);
                }
                if level > 1 {
                    if m.writable_maps(target) > 0 {
                        return Err(XenErrno::EPERM);
                    }
                    m.adopt(target, level - 1);
                }
            }
            if level == 1 {
                let old = m.entry(table, i);
                m.count(old, -1);
                m.count(r.val, 1);
            }
            m.frames.entry(table).or_insert_with(|| vec![0; 512])[i] = r.val;
            m.updates += 1;
        }
        Ok(())
    }
}

/// Boot state like Xen's builder: L4, L3, L2, L1 at pfns 16..20, one L1
/// mapping pfns 0..`mapped` (tables read-only).
fn boot(pages: u64, mapped: u64) -> Guest {
    let mut g = Guest {
        m: Machine::default(),
        pages,
    };
    let (l4, l3, l2, l1) = (16, 17, 18, 19);
    g.write_plain(l4, 0, (mfn_of(l3) << 12) | TABLE_FLAGS);
    g.write_plain(l3, 0, (mfn_of(l2) << 12) | TABLE_FLAGS);
    g.write_plain(l2, 0, (mfn_of(l1) << 12) | TABLE_FLAGS);
    for p in 0..mapped {
        let flags = if (16..20).contains(&p) {
            TABLE_VIEW_FLAGS
        } else {
            DATA_FLAGS
        };
        g.write_plain(l1, p as usize, (mfn_of(p) << 12) | flags);
    }
    g.m.adopt(mfn_of(l4), 4);
    g
}

/// The walk of `va` on the machine: the mfn and flags of its leaf.
fn walk(g: &Guest, va: u64) -> Option<u64> {
    let mut t = mfn_of(16);
    for level in (1..=4).rev() {
        let e = g.m.entry(t, index(va, level));
        if e & PTE_P == 0 {
            return None;
        }
        if level == 1 {
            return Some(e);
        }
        t = (e & PTE_FRAME) >> 12;
    }
    None
}

#[test]
fn identity_map_of_all_ram_obeys_xens_rules_and_batches() {
    // 3 GiB + 6 MiB: three L2s more, hundreds of L1s, a tail chunk.
    let pages = (3 << 18) + 1536;
    let mut g = boot(pages, 200);
    let machine = std::cell::RefCell::new(std::mem::take(&mut g.m));
    // The builder sees the machine through the guest; keep both in step
    // by letting the guest own it and the MMU borrow it.
    struct Shared<'a> {
        cell: &'a std::cell::RefCell<Machine>,
        pages: u64,
    }
    impl PvMemory for Shared<'_> {
        fn mfn(&self, pfn: u64) -> u64 {
            if pfn < self.pages {
                mfn_of(pfn)
            } else {
                INVALID_MFN
            }
        }
        fn pfn(&self, mfn: u64) -> u64 {
            (mfn - 1000) / 3
        }
        fn read_entry(&self, pfn: u64, i: usize) -> u64 {
            self.cell.borrow().entry(mfn_of(pfn), i)
        }
        fn write_plain(&mut self, pfn: u64, i: usize, val: u64) {
            let mut m = self.cell.borrow_mut();
            let mfn = mfn_of(pfn);
            assert!(
                !m.level.contains_key(&mfn),
                "plain write to table frame {pfn}"
            );
            m.frames.entry(mfn).or_insert_with(|| vec![0; 512])[i] = val;
        }
    }
    let mut mem = Shared {
        cell: &machine,
        pages,
    };
    // A hole page far above RAM gets an empty L1 (and an L2 for its GiB).
    let hole = 0xf000_0000;
    let (tables, hole_entry, next) = {
        let mut b = TableBuilder::new(&mut mem, Sim(&machine), 16, 20..pages);
        // SAFETY: the simulated frames are plain data.
        unsafe { b.map_identity(0..pages) }.expect("identity map");
        let tables = b.tables_made();
        b.ensure_l1(hole).expect("hole L1");
        let hole_entry = b
            .entry_address(hole)
            .unwrap()
            .expect("an L1 covers the hole");
        (tables, hole_entry, b.unused().start)
    };
    g.m = machine.into_inner();
    // Every RAM page is mapped at its own address, writable unless it is
    // a table, whose view is read-only.
    for pfn in 0..pages {
        let e = walk(&g, pfn * PAGE).unwrap_or_else(|| panic!("pfn {pfn} unmapped"));
        assert_eq!((e & PTE_FRAME) >> 12, mfn_of(pfn), "pfn {pfn}");
        let is_table = g.m.level.contains_key(&mfn_of(pfn));
        assert_eq!(
            e & PTE_RW == 0,
            is_table,
            "pfn {pfn}: writable iff not a table"
        );
    }
    assert!(walk(&g, pages * PAGE).is_none(), "nothing past RAM");
    assert_eq!(walk(&g, hole), None, "the hole's L1 is empty");
    assert_eq!(hole_entry >> 12, {
        let l1 = next - 1;
        mfn_of(l1)
    });
    // One L1 per 2 MiB past the boot L1, one L2 per GiB past the first.
    let expect_tables = pages.div_ceil(512) - 1 + 3;
    assert_eq!(tables, expect_tables);
    let per_call = g.m.updates as f64 / g.m.calls as f64;
    eprintln!(
        "{} tables, {} entries in {} mmu_update calls ({per_call:.1} per call)",
        tables, g.m.updates, g.m.calls
    );
    assert!(per_call >= 64.0, "{per_call:.1} entries per call");
}

#[test]
fn a_frame_outside_the_mapped_region_is_refused_for_a_table() {
    let mut g = boot(4096, 64);
    let machine = std::cell::RefCell::new(std::mem::take(&mut g.m));
    struct Shared<'a>(&'a std::cell::RefCell<Machine>);
    impl PvMemory for Shared<'_> {
        fn mfn(&self, pfn: u64) -> u64 {
            mfn_of(pfn)
        }
        fn pfn(&self, mfn: u64) -> u64 {
            (mfn - 1000) / 3
        }
        fn read_entry(&self, pfn: u64, i: usize) -> u64 {
            self.0.borrow().entry(mfn_of(pfn), i)
        }
        fn write_plain(&mut self, _: u64, _: usize, _: u64) {
            panic!("no plain write may happen");
        }
    }
    let mut mem = Shared(&machine);
    // Frames 100.. are not mapped by the boot L1 (0..64).
    let mut b = TableBuilder::new(&mut mem, Sim(&machine), 16, 100..120);
    // SAFETY: simulated frames.
    let r = unsafe { b.map_identity(512..1024) };
    assert_eq!(r, Err(MapError::TableFrameNotMapped(100)));
}
