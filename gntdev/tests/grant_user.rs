//! `GRANT_USER` end to end on the simulated hypervisor: domain A grants
//! pages its process already has (lent read-only, or held writable), and
//! domain B maps them through `MAP_GRANT_REF` + `mmap`. Every test ends
//! with pages, grant references, hole frames and foreign mappings back to
//! baseline on both sides.

mod common;

use common::*;
use gntdev::Errno;
use gntdev::abi::*;
use xen::grant::GrantOps;
use xen::sim::Sim;

/// A and B, with A's process and B's, and `n` pages of anonymous memory
/// in A's process at the returned address.
fn sides(n: u64) -> (Side, Side, Proc, Proc, u64) {
    let sim = Sim::new();
    let a = Side::new(&sim, 4, 16);
    let b = Side::new(&sim, 4, 16);
    let (pa, pb) = (Proc::new(&a), Proc::new(&b));
    let va = pa.anon(n);
    (a, b, pa, pb, va)
}

/// B maps `refs` of A and returns (index, address of the mapping).
fn map(pb: &Proc, a: &Side, refs: &[u32], writable: bool) -> (u64, u64) {
    let ib = pb.map_grant_ref(a.id(), refs).unwrap();
    let prot = if writable { RW } else { vm::Prot::READ };
    let vb = pb.mmap(ib, refs.len() as u64 * PAGE, prot).unwrap();
    (ib, vb)
}

/// A grants its `n` pages at `va` to B, which maps them; returns A's
/// index and B's (index, address).
fn grant_and_map(
    (a, b): (&Side, &Side),
    (pa, pb): (&Proc, &Proc),
    va: u64,
    n: u32,
    writable: bool,
) -> (u64, (u64, u64)) {
    let (ia, refs) = pa.grant_user(b.id(), va, n, writable).unwrap();
    (ia, map(pb, a, &refs, writable))
}

fn byte_at(p: &Proc, va: u64) -> u8 {
    let mut b = [0u8];
    p.read(va, &mut b).unwrap();
    b[0]
}

/// B unmaps, then both processes exit: everything back to baseline.
fn finish(a: Side, b: Side, pa: Proc, pb: Proc, (ib, vb): (u64, u64), n: u32) {
    pb.munmap(vb);
    pb.unmap_grant_ref(ib, n).unwrap();
    pb.exit();
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
}

#[test]
fn readonly_grant_lends_without_a_copy() {
    let (a, b, pa, pb, va) = sides(4);
    for i in 0..4 {
        pa.write(va + i * PAGE, &[0x10 + i as u8]).unwrap();
    }
    let free = a.vm.phys.free_count();
    let (ia, refs) = pa.grant_user(b.id(), va, 4, false).unwrap();
    assert_eq!(a.vm.phys.free_count(), free, "no page allocated");
    assert_eq!(a.dev.stats().live_pages, 0, "none from the page pool");
    assert_eq!(a.vm.loans.counters.loans.get(), 4);
    assert_eq!(a.vm.loans.counters.lent.get(), 4);
    let m = map(&pb, &a, &refs, false);
    assert_eq!(byte_at(&pb, m.1 + PAGE), 0x11);
    // A writes: its loan breaks, B keeps the old contents.
    pa.write(va + PAGE, &[0x99]).unwrap();
    assert_eq!(a.vm.loans.counters.broken.get(), 1);
    assert_eq!(
        a.vm.loans.counters.lent.get(),
        4,
        "B still borrows the original"
    );
    assert_eq!(byte_at(&pa, va + PAGE), 0x99);
    assert_eq!(
        byte_at(&pb, m.1 + PAGE),
        0x11,
        "the peer sees the old contents"
    );
    assert_eq!(
        pa.file().mmap(ia, PAGE, RW).err(),
        Some(Errno::EINVAL),
        "the process maps its own pages already"
    );
    assert_eq!(
        pa.set_notify(ia, UNMAP_NOTIFY_CLEAR_BYTE, 0),
        Err(Errno::EINVAL),
        "a lent page is never written"
    );
    pa.dealloc_gref(ia, 4).unwrap();
    finish(a, b, pa, pb, m, 4);
}

#[test]
fn writable_grant_shares_both_ways() {
    let (a, b, pa, pb, va) = sides(2);
    pa.write(va, &[1]).unwrap();
    let (ia, m) = grant_and_map((&a, &b), (&pa, &pb), va, 2, true);
    pb.write(m.1 + PAGE, &[0x22]).unwrap();
    assert_eq!(byte_at(&pa, va + PAGE), 0x22, "A sees B's write");
    pa.write(va, &[0x33]).unwrap();
    assert_eq!(byte_at(&pb, m.1), 0x33, "B sees A's write");
    assert_eq!(a.vm.loans.counters.broken.get(), 0, "no copy-on-write");
    pa.dealloc_gref(ia, 2).unwrap();
    finish(a, b, pa, pb, m, 2);
}

#[test]
fn untouched_pages_grant_one_zero_page() {
    const N: u32 = 48;
    let (a, b, pa, pb, va) = sides(u64::from(N));
    let free = a.vm.phys.free_count();
    let (ia, refs) = pa.grant_user(b.id(), va, N, false).unwrap();
    assert_eq!(a.vm.phys.free_count(), free - 1, "one physical page");
    assert_eq!(a.vm.loans.counters.zero.get(), u64::from(N));
    assert_eq!(vm::loan::zero_page_loans(&a.vm), N);
    assert_eq!(a.vm.loans.counters.lent.get(), 1, "one page backs them all");
    let m = map(&pb, &a, &refs, false);
    assert_eq!(byte_at(&pb, m.1 + 47 * PAGE), 0);
    // A's first write is an ordinary zero fill: nothing to break.
    pa.write(va, &[5]).unwrap();
    assert_eq!(byte_at(&pb, m.1), 0);
    pa.dealloc_gref(ia, N).unwrap();
    finish(a, b, pa, pb, m, N);
}

#[test]
fn pages_outlive_the_owner_while_the_peer_maps() {
    let (a, b, pa, pb, va) = sides(2);
    pa.write(va, &[0x44]).unwrap();
    let (_, m) = grant_and_map((&a, &b), (&pa, &pb), va, 2, false);
    assert_eq!(byte_at(&pb, m.1), 0x44);
    pa.exit();
    a.dev.reap();
    assert_eq!(a.dev.stats().pending_grants, 2, "ends wait for B");
    assert_eq!(
        a.vm.loans.counters.lent.get(),
        2,
        "lent past the owner's exit"
    );
    assert_eq!(byte_at(&pb, m.1), 0x44, "still the owner's page");
    pb.munmap(m.1);
    pb.unmap_grant_ref(m.0, 2).unwrap();
    pb.exit();
    a.dev.reap();
    assert_eq!(a.vm.loans.counters.lent.get(), 0);
    a.assert_baseline();
    b.assert_baseline();
}

#[test]
fn what_cannot_be_lent_fails_with_nothing_held() {
    let (a, b, pa, pb, va) = sides(3);
    pa.write(va, &[1]).unwrap();
    let (ig, _) = pa.alloc_gref(b.id(), 1, true).unwrap();
    let gv = pa.mmap(ig, PAGE, RW).unwrap();
    pa.write(gv, &[2]).unwrap();
    // Two pages of anonymous memory, then a hole.
    pa.munmap_range(va + 2 * PAGE, PAGE);
    let refuse = |vaddr, n| pa.grant_user(b.id(), vaddr, n, false).err();
    assert_eq!(refuse(gv, 1), Some(Errno::EINVAL), "a gntdev mapping");
    assert_eq!(refuse(0x1000, 1), Some(Errno::EINVAL), "unmapped");
    assert_eq!(refuse(va, 3), Some(Errno::EFAULT), "partly unmapped");
    assert_eq!(refuse(va + 1, 1), Some(Errno::EINVAL), "unaligned");
    assert_eq!(refuse(va, 0), Some(Errno::EINVAL), "empty");
    assert_eq!(
        pa.grant_user(b.id(), va, 1, true).err(),
        None,
        "the process's own memory is fine"
    );
    assert_eq!(a.dom.grants().stats().live_refs, 2, "ALLOC_GREF's and one");
    assert_eq!(pa.file().grants_held(), 2, "the failures reserved nothing");
    pa.munmap(gv);
    pa.exit();
    pb.exit();
    a.assert_baseline();
    b.assert_baseline();
}

#[test]
fn a_full_grant_table_gives_every_page_back() {
    let sim = Sim::new();
    // One frame of grant table: 512 entries, fewer than the pages.
    let a = Side::new(&sim, 1, 16);
    let b = Side::new(&sim, 4, 16);
    let pa = Proc::new(&a);
    let va = pa.anon(600);
    pa.write(va, &[7]).unwrap();
    let free = a.vm.phys.free_count();
    assert_eq!(
        pa.grant_user(b.id(), va, 600, false).err(),
        Some(Errno::ENOMEM),
        "GNTST_no_space"
    );
    assert_eq!(a.vm.loans.zero_page(), None, "the zero page went back");
    assert_eq!(a.vm.phys.free_count(), free);
    assert_eq!(pa.file().grants_held(), 0);
    assert_eq!(byte_at(&pa, va), 7, "the owner's memory as it was");
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
}
