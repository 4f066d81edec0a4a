//! gntdev end to end on the simulated hypervisor: domain A shares through
//! `ALLOC_GREF`, domain B maps through `MAP_GRANT_REF` + `mmap`, and the
//! process's faults go through the managed device pager's populate.
//! Every test ends with pages, grant references, hole frames and foreign
//! mappings back to baseline on both sides.

mod common;

use common::*;
use gntdev::abi::*;
use gntdev::errno::{E2BIG, EACCES, ENOSPC, ENOSYS};
use gntdev::{Errno, GntdevStats};
use vm::Prot;
use vm::pager::PagerResult;
use xen::event_channel::EventOps;
use xen::grant::GrantOps;
use xen::sim::Sim;

/// Shares `n` pages A -> B with the share protocol's contents and checks
/// B's mapping takes one fault, one map hypercall and one unmap
/// hypercall.
fn share_and_map(n: u32, frames: u32) {
    let sim = Sim::new();
    let a = Side::new(&sim, frames, n);
    let b = Side::new(&sim, 4, 1);
    let (pa, pb) = (Proc::new(&a), Proc::new(&b));
    let seed = 0x5eed_0000;

    // A: grant, mmap, fill, and dealloc at once (libxengnttab's share).
    let (ia, refs) = pa.alloc_gref(b.id(), n, true).unwrap();
    let va = pa.mmap(ia, u64::from(n) * PAGE, RW).unwrap();
    let before = a.dev.stats();
    for i in 0..n as usize {
        let words: Vec<u8> = (0..1024)
            .flat_map(|k| word(seed, i, k).to_le_bytes())
            .collect();
        pa.write(va + i as u64 * PAGE, &words).unwrap();
    }
    assert_eq!(
        a.dev.stats().populates - before.populates,
        1,
        "one fault for A's whole region"
    );
    pa.dealloc_gref(ia, n).unwrap();

    // B: map, mmap, one fault maps everything.
    let ib = pb.map_grant_ref(a.id(), &refs).unwrap();
    let vb = pb.mmap(ib, u64::from(n) * PAGE, RW).unwrap();
    let (m0, s0) = (b.map_hypercalls(), b.dev.stats());
    for i in 0..n as usize {
        let mut page = vec![0u8; PAGE as usize];
        pb.read(vb + i as u64 * PAGE, &mut page).unwrap();
        let ok = page
            .chunks(4)
            .enumerate()
            .all(|(k, w)| u32::from_le_bytes(w.try_into().unwrap()) == word(seed, i, k));
        assert!(ok, "page {i} has the sharer's words");
        pb.write(vb + i as u64 * PAGE, &(!word(seed, i, 0)).to_le_bytes())
            .unwrap();
    }
    let s1 = b.dev.stats();
    assert_eq!(s1.populates - s0.populates, 1, "ONE fault per mapping");
    assert_eq!(b.map_hypercalls() - m0, 1, "ONE map hypercall per mapping");
    assert_eq!(s1.map_hypercalls - s0.map_hypercalls, 1);
    assert_eq!(s1.mappings - s0.mappings, 1);
    eprintln!(
        "n={n}: B faults={} map hypercalls={} (sim {})",
        s1.populates - s0.populates,
        s1.map_hypercalls - s0.map_hypercalls,
        b.map_hypercalls() - m0
    );

    // A sees the replies.
    for i in 0..n as usize {
        let mut w = [0u8; 4];
        pa.read(va + i as u64 * PAGE, &mut w).unwrap();
        assert_eq!(u32::from_le_bytes(w), !word(seed, i, 0));
    }
    // A unshares (munmap) while B still maps: ends are deferred.
    pa.munmap(va);
    assert_eq!(a.dev.stats().pending_grants, u64::from(n));
    assert!(a.dev.reap().is_empty());
    assert_eq!(
        a.dev.stats().pending_grants,
        u64::from(n),
        "still mapped by B"
    );

    // B unmaps as libxengnttab does: offset, munmap, UNMAP_GRANT_REF.
    assert_eq!(pb.get_offset(vb + PAGE / 2).unwrap(), (ib, n));
    let u0 = b.unmap_hypercalls();
    pb.munmap(vb);
    assert_eq!(
        b.unmap_hypercalls() - u0,
        1,
        "ONE unmap hypercall per mapping"
    );
    pb.unmap_grant_ref(ib, n).unwrap();
    eprintln!("n={n}: B unmap hypercalls={}", b.unmap_hypercalls() - u0);

    a.assert_baseline();
    b.assert_baseline();
    pa.exit();
    pb.exit();
    a.assert_baseline();
    b.assert_baseline();
}

#[test]
fn share_map_1() {
    share_and_map(1, 4);
}

#[test]
fn share_map_16() {
    share_and_map(16, 4);
}

#[test]
fn share_map_1024() {
    share_and_map(1024, 4);
}

#[test]
fn share_map_65536() {
    // 65536 references + 8 reserved: 129 frames of 512 entries.
    share_and_map(65536, 132);
}

#[test]
fn notify_clears_byte_then_sends_event() {
    let p = pair(2, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, 2 * PAGE, RW).unwrap();
    let va = p.pa.mmap(p.ia, 2 * PAGE, RW).unwrap();
    p.pa.write(va + PAGE + 7, &[0xff]).unwrap();
    // The channel: A unbound for B, B binds.
    let port_a = p.a.dom.alloc_unbound(p.b.id()).unwrap();
    let port_b = p.b.dom.bind_interdomain(p.a.id(), port_a).unwrap();
    let mut x = [0u8];
    p.pb.read(vb + PAGE + 7, &mut x).unwrap();
    assert_eq!(x, [0xff]);
    // The last call wins: first only the event, then byte + event.
    p.pb.set_notify(ib, UNMAP_NOTIFY_SEND_EVENT, port_b)
        .unwrap();
    p.pb.set_notify(
        ib + PAGE + 7,
        UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT,
        port_b,
    )
    .unwrap();
    assert!(p.a.dom.take_events().is_empty());
    p.pb.munmap(vb);
    p.pa.read(va + PAGE + 7, &mut x).unwrap();
    assert_eq!(x, [0], "byte cleared before the unmap");
    assert_eq!(
        p.a.dom.take_events(),
        [port_a],
        "event observed by the peer"
    );
    let s = p.b.dev.stats();
    assert_eq!((s.bytes_cleared, s.events_sent), (1, 1));
    p.pb.unmap_grant_ref(ib, 2).unwrap();
    p.pa.munmap(va);
    p.pa.dealloc_gref(p.ia, 2).unwrap();
    p.finish();
}

#[test]
fn notify_on_allocated_grants_runs_at_destruction() {
    let p = pair(1, true);
    let port_b = p.b.dom.alloc_unbound(p.a.id()).unwrap();
    let port_a = p.a.dom.bind_interdomain(p.b.id(), port_b).unwrap();
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, PAGE, Prot::READ).unwrap();
    let va = p.pa.mmap(p.ia, PAGE, RW).unwrap();
    p.pa.write(va + 9, &[1]).unwrap();
    let mut x = [0u8];
    p.pb.read(vb + 9, &mut x).unwrap();
    assert_eq!(x, [1]);
    p.pa.set_notify(
        p.ia + 9,
        UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT,
        port_a,
    )
    .unwrap();
    p.pa.dealloc_gref(p.ia, 1).unwrap();
    assert!(p.b.dom.take_events().is_empty(), "still mapped by A");
    p.pa.munmap(va);
    assert_eq!(p.b.dom.take_events(), [port_b]);
    p.pb.read(vb + 9, &mut x).unwrap();
    assert_eq!(x, [0], "the peer sees the byte cleared");
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 1).unwrap();
    p.finish();
}

#[test]
fn dealloc_while_peer_maps_defers_then_reaps() {
    let p = pair(4, false);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, 4 * PAGE, Prot::READ).unwrap();
    let mut x = [0u8; 4];
    p.pb.read(vb, &mut x).unwrap();
    assert_eq!(
        p.pb.write(vb, &[1]),
        Err(PagerResult::Error),
        "read-only mapping"
    );
    p.pa.dealloc_gref(p.ia, 4).unwrap();
    let s = p.a.dev.stats();
    assert_eq!(
        (s.pending_grants, s.live_pages),
        (4, 4),
        "pages stay while the peer maps"
    );
    assert!(p.a.dev.reap().is_empty());
    p.pb.munmap(vb);
    p.a.dev.reap();
    let s = p.a.dev.stats();
    assert_eq!(
        (s.pending_grants, s.live_pages),
        (0, 0),
        "reaped after the peer unmapped"
    );
    p.pb.unmap_grant_ref(ib, 4).unwrap();
    p.finish();
}

#[test]
fn several_mmaps_share_one_object_and_one_map() {
    let p = pair(3, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let v1 = p.pb.mmap(ib, 3 * PAGE, RW).unwrap();
    let v2 = p.pb.mmap(ib, PAGE, Prot::READ).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &p.pb.object_of(v1),
        &p.pb.object_of(v2)
    ));
    p.pb.write(v1 + 2 * PAGE, &[5]).unwrap();
    let mut x = [0u8];
    p.pb.read(v1 + 2 * PAGE, &mut x).unwrap();
    p.pb.read(v2, &mut x).unwrap();
    let s = p.b.dev.stats();
    assert_eq!(
        (s.map_hypercalls, s.populates),
        (1, 1),
        "second mapping finds the pages resident"
    );
    // GET_OFFSET_FOR_VADDR needs an entry mapping all the grants.
    assert_eq!(p.pb.get_offset(v2), Err(Errno::EINVAL));
    assert_eq!(p.pb.get_offset(v1 + 3 * PAGE - 1), Ok((ib, 3)));
    assert_eq!(p.pb.get_offset(0x1000), Err(Errno::EINVAL), "not mapped");
    p.pb.munmap(v1);
    assert_eq!(p.b.dev.stats().unmap_hypercalls, 0, "v2 still maps it");
    p.pb.munmap(v2);
    assert_eq!(p.b.dev.stats().unmap_hypercalls, 1);
    // A new mmap after all munmaps maps again.
    let v3 = p.pb.mmap(ib, 3 * PAGE, Prot::READ).unwrap();
    p.pb.read(v3, &mut x).unwrap();
    assert_eq!(p.b.dev.stats().map_hypercalls, 2);
    // Read-only object: a writable mmap is refused, as is CLEAR_BYTE.
    assert_eq!(p.pb.mmap(ib, PAGE, RW), Err(EACCES));
    assert_eq!(
        p.pb.set_notify(ib, UNMAP_NOTIFY_CLEAR_BYTE, 0),
        Err(Errno::EINVAL)
    );
    p.pb.munmap(v3);
    p.pa.dealloc_gref(p.ia, 3).unwrap();
    p.finish();
}

#[test]
fn bad_input_gives_each_errno() {
    let sim = Sim::new();
    let a = Side::new(&sim, 4, 8);
    let pa = Proc::new(&a);
    // Records only: any domain but ours.
    let other = a.id() + 1;
    let u = &pa.user;
    let unmapped = u.alloc(8) + PAGE; // the guard gap
    let bad_ptrs = [0, unmapped, KERNEL_BASE + 0x1000, u64::MAX - 3];
    // Bad struct pointers.
    for p in bad_ptrs {
        assert_eq!(pa.ioctl(IOCTL_GNTDEV_ALLOC_GREF, p), Err(Errno::EFAULT));
        assert_eq!(pa.ioctl(IOCTL_GNTDEV_MAP_GRANT_REF, p), Err(Errno::EFAULT));
    }
    // Bad array pointers: nothing allocated, granted or recorded.
    for p in bad_ptrs {
        let arg = AllocGref {
            domid: 0,
            flags: 0,
            count: 2,
            index: 0,
            gref_ids: p,
        };
        assert_eq!(
            pa.ioctl_arg(IOCTL_GNTDEV_ALLOC_GREF, &arg),
            Err(Errno::EFAULT)
        );
        let arg = MapGrantRef {
            count: 2,
            pad0: 0,
            index: 0,
            refs: p,
        };
        assert_eq!(
            pa.ioctl_arg(IOCTL_GNTDEV_MAP_GRANT_REF, &arg),
            Err(Errno::EFAULT)
        );
        a.assert_baseline();
        assert_eq!(pa.file().grants_held(), 0);
    }
    let ids = u.alloc(8);
    let arg = AllocGref {
        domid: 0,
        flags: 0,
        count: u32::MAX / 4,
        index: 0,
        gref_ids: ids,
    };
    assert_eq!(
        pa.ioctl_arg(IOCTL_GNTDEV_ALLOC_GREF, &arg),
        Err(ENOSPC),
        "above the limit"
    );
    // Count 0.
    assert_eq!(pa.alloc_gref(0, 0, false), Err(Errno::EINVAL));
    assert_eq!(pa.map_grant_ref(0, &[]), Err(Errno::EINVAL));
    // Above the per-open limit: ENOSPC (documented choice).
    let big = MapGrantRef {
        count: 65537,
        pad0: 0,
        index: 0,
        refs: ids,
    };
    assert_eq!(pa.ioctl_arg(IOCTL_GNTDEV_MAP_GRANT_REF, &big), Err(ENOSPC));
    assert_eq!(
        pa.ioctl_arg(IOCTL_GNTDEV_SET_MAX_GRANTS, &SetMaxGrants { count: 65537 }),
        Err(E2BIG)
    );
    pa.ioctl_arg(IOCTL_GNTDEV_SET_MAX_GRANTS, &SetMaxGrants { count: 3 })
        .unwrap();
    let i0 = pa.map_grant_ref(other, &[8, 9]).unwrap();
    assert_eq!(pa.map_grant_ref(other, &[8, 9]), Err(ENOSPC), "2 + 2 > 3");
    assert_eq!(pa.alloc_gref(1, 2, false), Err(ENOSPC));
    let i1 = pa.map_grant_ref(other, &[10]).unwrap();
    assert_eq!(i1, i0 + 2 * PAGE, "first fit");
    // Domain ids above 16 bits.
    let refs = u.alloc(8);
    u.put(refs, &[0, 0, 1, 0, 8, 0, 0, 0]);
    pa.ioctl_arg(IOCTL_GNTDEV_SET_MAX_GRANTS, &SetMaxGrants { count: 65536 })
        .unwrap();
    let arg = MapGrantRef {
        count: 1,
        pad0: 0,
        index: 0,
        refs,
    };
    assert_eq!(
        pa.ioctl_arg(IOCTL_GNTDEV_MAP_GRANT_REF, &arg),
        Err(Errno::EINVAL)
    );
    // Index + count overflow, unknown index, wrong count, double unmap.
    assert_eq!(
        pa.unmap_grant_ref(u64::MAX - PAGE + 1, 2),
        Err(Errno::EINVAL)
    );
    assert_eq!(pa.dealloc_gref(u64::MAX - PAGE + 1, 2), Err(Errno::EINVAL));
    assert_eq!(pa.unmap_grant_ref(0x100 * PAGE, 1), Err(Errno::EINVAL));
    assert_eq!(
        pa.dealloc_gref(i0, 2),
        Err(Errno::EINVAL),
        "a map, not allocated grants"
    );
    assert_eq!(pa.unmap_grant_ref(i0, 1), Err(Errno::EINVAL), "wrong count");
    pa.unmap_grant_ref(i0, 2).unwrap();
    assert_eq!(
        pa.unmap_grant_ref(i0, 2),
        Err(Errno::EINVAL),
        "double unmap"
    );
    // Notify: bad action, unknown index.
    assert_eq!(pa.set_notify(i1, 4, 0), Err(Errno::EINVAL));
    assert_eq!(
        pa.set_notify(i1 + PAGE, UNMAP_NOTIFY_SEND_EVENT, 0),
        Err(Errno::EINVAL)
    );
    // mmap: not an index, inside a run, too long, unaligned, empty.
    assert_eq!(pa.mmap(0x100 * PAGE, PAGE, Prot::READ), Err(Errno::EINVAL));
    let (ig, _) = pa.alloc_gref(1, 2, false).unwrap();
    assert_eq!(pa.mmap(ig + PAGE, PAGE, Prot::READ), Err(Errno::EINVAL));
    assert_eq!(pa.mmap(ig, 3 * PAGE, Prot::READ), Err(Errno::EINVAL));
    assert_eq!(pa.mmap(i1, 2 * PAGE, Prot::READ), Err(Errno::EINVAL));
    assert_eq!(pa.mmap(ig + 1, PAGE, Prot::READ), Err(Errno::EINVAL));
    assert_eq!(pa.mmap(ig, 0, Prot::READ), Err(Errno::EINVAL));
    // Unknown ioctls, and a known nr with the wrong size.
    assert_eq!(pa.ioctl(ioc(IOC_INOUT, b'E', 6, 8), ids), Err(ENOSYS));
    assert_eq!(pa.ioctl(ioc(IOC_IN, b'E', 2, 8), ids), Err(ENOSYS));
    assert_eq!(pa.ioctl(0, ids), Err(ENOSYS));
    // Flags other than WRITABLE.
    let arg = AllocGref {
        domid: 1,
        flags: 2,
        count: 1,
        index: 0,
        gref_ids: ids,
    };
    assert_eq!(
        pa.ioctl_arg(IOCTL_GNTDEV_ALLOC_GREF, &arg),
        Err(Errno::EINVAL)
    );
    pa.exit();
    a.assert_baseline();
}

#[test]
fn alloc_failure_rolls_back_everything() {
    let sim = Sim::new();
    let a = Side::new(&sim, 4, 3);
    let pa = Proc::new(&a);
    assert_eq!(pa.alloc_gref(2, 5, true), Err(Errno::ENOMEM), "pool of 3");
    a.assert_baseline();
    // Grant table full: 1 frame of 512 entries minus 8 reserved.
    let big = Side::new(&sim, 1, 600);
    let pb = Proc::new(&big);
    assert_eq!(
        pb.alloc_gref(2, 600, true),
        Err(Errno::ENOMEM),
        "GNTST_no_space"
    );
    big.assert_baseline();
    let (i, refs) = pb.alloc_gref(2, 504, true).unwrap();
    assert_eq!(refs.len(), 504);
    pb.dealloc_gref(i, 504).unwrap();
    pa.exit();
    pb.exit();
    big.assert_baseline();
}

#[test]
fn bad_refs_fail_populate_and_leak_nothing() {
    let p = pair(2, true);
    let mut refs = p.refs.clone();
    refs.push(9999);
    let ib = p.pb.map_grant_ref(p.a.id(), &refs).unwrap();
    let vb = p.pb.mmap(ib, 3 * PAGE, RW).unwrap();
    let u0 = p.b.unmap_hypercalls();
    assert_eq!(p.pb.touch(vb, false), Err(PagerResult::Error), "SIGSEGV");
    assert_eq!(p.b.dom.mappings(), 0, "the good ones were unmapped again");
    assert_eq!(p.b.unmap_hypercalls() - u0, 1, "one batched rollback");
    assert!(!p.a.dom.grants().in_use(p.refs[0]));
    let s = p.b.dev.stats();
    assert_eq!((s.map_failures, s.mappings), (1, 0));
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 3).unwrap();
    p.pa.dealloc_gref(p.ia, 2).unwrap();
    p.finish();
}

#[test]
fn read_only_grant_mapped_writable_fails() {
    let p = pair(1, false);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, PAGE, RW).unwrap();
    assert_eq!(p.pb.touch(vb, false), Err(PagerResult::Error));
    p.pb.munmap(vb);
    let vb = p.pb.mmap(ib, PAGE, Prot::READ).unwrap();
    p.pb.touch(vb, false).unwrap();
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 1).unwrap();
    p.pa.dealloc_gref(p.ia, 1).unwrap();
    p.finish();
}

#[test]
fn peer_revokes() {
    let p = pair(2, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    // Revoked before the first fault: the map fails.
    p.a.dom.revoke(p.refs[1]);
    let vb = p.pb.mmap(ib, 2 * PAGE, RW).unwrap();
    assert_eq!(p.pb.touch(vb, false), Err(PagerResult::Error));
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 2).unwrap();
    // Revoked after: the mapping stays, as on Xen.
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs[..1]).unwrap();
    let vb = p.pb.mmap(ib, PAGE, RW).unwrap();
    p.pb.write(vb, &[3]).unwrap();
    p.a.dom.revoke(p.refs[0]);
    let mut x = [0u8];
    p.pb.read(vb, &mut x).unwrap();
    assert_eq!(x, [3]);
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 1).unwrap();
    p.pa.dealloc_gref(p.ia, 2).unwrap();
    p.finish();
}

#[test]
fn eagain_storms() {
    let p = pair(8, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    // A short storm: retried inside GrantOps::map, still one fault.
    p.b.dom.inject_eagain(12);
    let vb = p.pb.mmap(ib, 8 * PAGE, RW).unwrap();
    p.pb.touch(vb, true).unwrap();
    let s = p.b.dev.stats();
    assert_eq!(s.populates, 1);
    assert!(s.map_hypercalls > 1 && s.eagain_retries >= 12, "{s:?}");
    eprintln!(
        "eagain storm of 12: map hypercalls={} retried ops={}",
        s.map_hypercalls, s.eagain_retries
    );
    p.pb.munmap(vb);
    // An endless one: the fault fails with AGAIN, nothing stays mapped.
    p.b.dom.inject_eagain(1_000_000);
    let vb = p.pb.mmap(ib, 8 * PAGE, RW).unwrap();
    assert_eq!(p.pb.touch(vb, false), Err(PagerResult::Again));
    assert_eq!(p.b.dom.mappings(), 0);
    p.b.dom.inject_eagain(0);
    p.pb.touch(vb, false).unwrap();
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 8).unwrap();
    p.pa.dealloc_gref(p.ia, 8).unwrap();
    p.finish();
}

#[test]
fn peer_dies_while_mapped() {
    let sim = Sim::new();
    let a = Side::new(&sim, 4, 4);
    let b = Side::new(&sim, 4, 1);
    let (pa, pb) = (Proc::new(&a), Proc::new(&b));
    let (ia, refs) = pa.alloc_gref(b.id(), 4, true).unwrap();
    let port_a = a.dom.alloc_unbound(b.id()).unwrap();
    let port_b = b.dom.bind_interdomain(a.id(), port_a).unwrap();
    let ib = pb.map_grant_ref(a.id(), &refs).unwrap();
    let vb = pb.mmap(ib, 4 * PAGE, RW).unwrap();
    pb.write(vb + 3 * PAGE, &[7]).unwrap();
    pb.set_notify(
        ib,
        UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT,
        port_b,
    )
    .unwrap();
    let _ = ia;
    sim.destroy(a.id());
    drop(pa);
    // The dead peer's pages stay alive for us.
    let mut x = [0u8];
    pb.read(vb + 3 * PAGE, &mut x).unwrap();
    assert_eq!(x, [7]);
    pb.munmap(vb);
    assert_eq!(b.dev.stats().unmap_errors, 0);
    pb.exit();
    b.assert_baseline();
}

#[test]
fn process_exit_and_close_tear_everything_down() {
    let p = pair(6, true);
    let port_a = p.a.dom.alloc_unbound(p.b.id()).unwrap();
    let port_b = p.b.dom.bind_interdomain(p.a.id(), port_a).unwrap();
    // B: two maps mapped and faulted, one recorded only.
    let i1 = p.pb.map_grant_ref(p.a.id(), &p.refs[..3]).unwrap();
    let i2 = p.pb.map_grant_ref(p.a.id(), &p.refs[3..5]).unwrap();
    p.pb.map_grant_ref(p.a.id(), &p.refs[5..]).unwrap();
    let v1 = p.pb.mmap(i1, 3 * PAGE, RW).unwrap();
    let v2 = p.pb.mmap(i2, 2 * PAGE, Prot::READ).unwrap();
    p.pb.touch(v1, true).unwrap();
    p.pb.touch(v2, false).unwrap();
    p.pb.set_notify(i1, UNMAP_NOTIFY_SEND_EVENT, port_b)
        .unwrap();
    // A: its grants mapped by itself, not deallocated; plus one run never
    // mapped.
    let va = p.pa.mmap(p.ia, 6 * PAGE, RW).unwrap();
    p.pa.touch(va, true).unwrap();
    let u0 = p.b.unmap_hypercalls();
    let Pair { a, b, pa, pb, .. } = p;
    pb.exit();
    assert_eq!(b.unmap_hypercalls() - u0, 2, "one unmap per mapping");
    assert_eq!(a.dom.take_events(), [port_a]);
    b.assert_baseline();
    pa.exit();
    a.assert_baseline();
}

#[test]
fn grant_copy_to_and_from_user_buffers() {
    let p = pair(1, true);
    let va = p.pa.mmap(p.ia, PAGE, RW).unwrap();
    p.pa.write(va + 100, b"from A").unwrap();
    let u = &p.pb.user;
    let buf = u.alloc(64);
    u.put(buf + 32, b"from B");
    let gref = p.refs[0];
    let dom = p.a.id();
    let seg = |src: CopySideArg, dst: CopySideArg, len: u16, flags: u16| GrantCopySegment {
        source: src.encode(),
        dest: dst.encode(),
        len,
        flags,
        status: 99,
    };
    let foreign = |offset| CopySideArg::Foreign {
        gref,
        offset,
        domid: dom,
    };
    use xen::abi::grant_table::{GNTCOPY_dest_gref as DST, GNTCOPY_source_gref as SRC};
    let segs = [
        seg(foreign(100), CopySideArg::Virt(buf), 6, SRC),
        seg(CopySideArg::Virt(buf + 32), foreign(200), 6, DST),
        seg(
            CopySideArg::Foreign {
                gref: 9999,
                offset: 0,
                domid: dom,
            },
            CopySideArg::Virt(buf),
            1,
            SRC,
        ),
    ];
    let arr = u.alloc(segs.len() * GrantCopySegment::SIZE);
    for (i, s) in segs.iter().enumerate() {
        let mut b = vec![0; GrantCopySegment::SIZE];
        s.encode(&mut b);
        u.put(arr + (i * GrantCopySegment::SIZE) as u64, &b);
    }
    let h0 = p.b.dom.hypercalls(xen::abi::op::GRANT_TABLE_OP);
    p.pb.ioctl_arg(
        IOCTL_GNTDEV_GRANT_COPY,
        &GrantCopy {
            count: 3,
            segments: arr,
        },
    )
    .unwrap();
    assert_eq!(
        p.b.dom.hypercalls(xen::abi::op::GRANT_TABLE_OP) - h0,
        1,
        "one batch"
    );
    assert_eq!(u.get(buf, 6), b"from A");
    let mut x = [0u8; 6];
    p.pa.read(va + 200, &mut x).unwrap();
    assert_eq!(&x, b"from B");
    let status = |i: usize| {
        u.get_arg::<GrantCopySegment>(arr + (i * GrantCopySegment::SIZE) as u64)
            .status
    };
    assert_eq!((status(0), status(1)), (0, 0));
    assert_eq!(status(2), xen::abi::grant_table::GNTST_bad_gntref);
    // Invalid segments fail the ioctl: user to user, crossing the page,
    // unknown flags; a bad segment pointer faults.
    for bad in [
        seg(CopySideArg::Virt(buf), CopySideArg::Virt(buf + 8), 1, 0),
        seg(foreign(4000), CopySideArg::Virt(buf), 200, SRC),
        seg(foreign(0), CopySideArg::Virt(buf), 1, SRC | 4),
        seg(foreign(0), CopySideArg::Virt(buf), 4097, SRC),
    ] {
        let mut b = vec![0; GrantCopySegment::SIZE];
        bad.encode(&mut b);
        u.put(arr, &b);
        assert_eq!(
            p.pb.ioctl_arg(
                IOCTL_GNTDEV_GRANT_COPY,
                &GrantCopy {
                    count: 1,
                    segments: arr
                }
            ),
            Err(Errno::EINVAL)
        );
    }
    let bad = GrantCopy {
        count: 1,
        segments: KERNEL_BASE,
    };
    assert_eq!(
        p.pb.ioctl_arg(IOCTL_GNTDEV_GRANT_COPY, &bad),
        Err(Errno::EFAULT)
    );
    let one = seg(foreign(0), CopySideArg::Virt(0), 1, SRC);
    let mut b = vec![0; GrantCopySegment::SIZE];
    one.encode(&mut b);
    u.put(arr, &b);
    assert_eq!(
        p.pb.ioctl_arg(
            IOCTL_GNTDEV_GRANT_COPY,
            &GrantCopy {
                count: 1,
                segments: arr
            }
        ),
        Err(Errno::EFAULT)
    );
    p.pa.munmap(va);
    p.pa.dealloc_gref(p.ia, 1).unwrap();
    p.finish();
}

/// A long copy of `n` whole pages from A's grants into a buffer of B, a
/// domain with `b_pages` free pages; returns B's grant-table hypercalls.
fn long_copy(n: usize, b_pages: u32) -> u64 {
    use xen::abi::grant_table::GNTCOPY_source_gref as SRC;
    let sim = Sim::new();
    let a = Side::new(&sim, 4, n as u32 + 16);
    let b = Side::new(&sim, 4, b_pages);
    let (pa, pb) = (Proc::new(&a), Proc::new(&b));
    let (ia, refs) = pa.alloc_gref(b.id(), n as u32, true).unwrap();
    let va = pa.mmap(ia, n as u64 * PAGE, RW).unwrap();
    for i in 0..n as u64 {
        pa.write(va + i * PAGE + 8, &i.to_le_bytes()).unwrap();
    }
    let u = &pb.user;
    let buf = u.alloc(n * PAGE as usize);
    let arr = u.alloc(n * GrantCopySegment::SIZE);
    for (i, &gref) in refs.iter().enumerate() {
        let s = GrantCopySegment {
            source: CopySideArg::Foreign {
                gref,
                offset: 0,
                domid: a.id(),
            }
            .encode(),
            dest: CopySideArg::Virt(buf + i as u64 * PAGE).encode(),
            len: PAGE as u16,
            flags: SRC,
            status: 99,
        };
        let mut e = vec![0; GrantCopySegment::SIZE];
        s.encode(&mut e);
        u.put(arr + (i * GrantCopySegment::SIZE) as u64, &e);
    }
    let h0 = b.dom.hypercalls(xen::abi::op::GRANT_TABLE_OP);
    pb.ioctl_arg(
        IOCTL_GNTDEV_GRANT_COPY,
        &GrantCopy {
            count: n as u32,
            segments: arr,
        },
    )
    .unwrap();
    let calls = b.dom.hypercalls(xen::abi::op::GRANT_TABLE_OP) - h0;
    for i in 0..n as u64 {
        assert_eq!(u.get(buf + i * PAGE + 8, 8), i.to_le_bytes(), "page {i}");
        let st = u
            .get_arg::<GrantCopySegment>(arr + i * GrantCopySegment::SIZE as u64)
            .status;
        assert_eq!(st, 0, "segment {i}");
    }
    pa.munmap(va);
    pa.dealloc_gref(ia, n as u32).unwrap();
    pb.exit();
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
    calls
}

/// 130 pages take three copy hypercalls (batches of 64; Linux's 16 would
/// take nine).
#[test]
fn grant_copy_batches_64_segments_per_hypercall() {
    assert_eq!(long_copy(130, 80), 3);
}

/// With room for only 16 bounce pages the copy still completes, in
/// batches of 16.
#[test]
fn grant_copy_short_of_memory_makes_smaller_batches() {
    assert_eq!(long_copy(130, 16), 9);
}

/// The device-wide limit holds across opens: a second open cannot take
/// what the first holds (`ENOSPC`), and gets it once the first closes.
#[test]
fn device_wide_grant_limit_across_opens() {
    let sim = Sim::new();
    let a = Side::new(&sim, 4, 16);
    let b = Side::with_max_grants(&sim, 4, 16, 100);
    let (pa, pb1, pb2) = (Proc::new(&a), Proc::new(&b), Proc::new(&b));
    let (_, refs) = pa.alloc_gref(b.id(), 8, true).unwrap();
    let many: Vec<u32> = (0..60).map(|i| refs[i % refs.len()]).collect();
    pb1.map_grant_ref(a.id(), &many).unwrap();
    assert_eq!(pb2.map_grant_ref(a.id(), &many), Err(ENOSPC));
    assert!(
        pb2.map_grant_ref(a.id(), &many[..40]).is_ok(),
        "what is left"
    );
    assert_eq!(pb2.map_grant_ref(a.id(), &many[..1]), Err(ENOSPC));
    pb1.exit();
    pb2.map_grant_ref(a.id(), &many).unwrap();
    pb2.exit();
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
}

/// Our own grants are refused (`EINVAL`): mapping them would take the
/// granted RAM out of our physical map on Xen.
#[test]
fn own_grants_are_refused() {
    let sim = Sim::new();
    let a = Side::new(&sim, 4, 16);
    let p = Proc::new(&a);
    let (ia, refs) = p.alloc_gref(a.id(), 2, true).unwrap();
    assert_eq!(p.map_grant_ref(a.id(), &refs), Err(Errno::EINVAL));
    assert_eq!(
        p.map_grant_ref(xen::abi::DOMID_SELF, &refs),
        Err(Errno::EINVAL)
    );
    p.dealloc_gref(ia, 2).unwrap();
    p.exit();
    a.assert_baseline();
}

#[test]
fn stats_start_at_zero() {
    let sim = Sim::new();
    let a = Side::new(&sim, 4, 1);
    assert_eq!(a.dev.stats(), GntdevStats::default());
}

/// B maps `n` grants of A's pages, each page's first word its index;
/// returns the pair, B's index and B's address, with B's mapping faulted
/// in by one read.
fn large_pair(n: u32) -> (Pair, u64, u64) {
    let p = pair(n, true);
    let va = p.pa.mmap(p.ia, u64::from(n) * PAGE, RW).unwrap();
    for i in 0..u64::from(n) {
        p.pa.write(va + i * PAGE, &(i as u32).to_le_bytes())
            .unwrap();
    }
    // A one-grant mapping first takes the lowest address and hole frame,
    // so that first fit would place the large one off a 2 MiB boundary.
    let mut w = [0u8; 4];
    let i1 = p.pb.map_grant_ref(p.a.id(), &p.refs[..1]).unwrap();
    let v1 = p.pb.mmap(i1, PAGE, RW).unwrap();
    p.pb.read(v1, &mut w).unwrap();
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, u64::from(n) * PAGE, RW).unwrap();
    p.pb.read(vb + 3 * PAGE, &mut w).unwrap();
    assert_eq!(u32::from_le_bytes(w), 3);
    p.pb.munmap(v1);
    p.pb.unmap_grant_ref(i1, 1).unwrap();
    (p, ib, vb)
}

/// Page `i` of B's mapping at `vb` reads its index.
fn reads_index(p: &Pair, vb: u64, i: u64) -> bool {
    let mut w = [0u8; 4];
    p.pb.read(vb + i * PAGE, &mut w).is_ok() && u32::from_le_bytes(w) == i as u32
}

/// 1024 grants: the hole and the address are 2 MiB-aligned, so the one
/// populate fault enters two 2 MiB entries (not 1024 4 KiB ones).
#[test]
fn mapping_1024_grants_takes_two_superpage_entries() {
    let (p, _, vb) = large_pair(1024);
    assert_eq!(vb % (2 << 20), 0, "a 2 MiB-aligned address");
    assert_eq!(
        p.pb.pte(vb).unwrap().pa % (2 << 20),
        0,
        "a 2 MiB-aligned hole"
    );
    assert_eq!(
        (p.pb.pmap.large_entries(), p.pb.pmap.small_entries()),
        (2, 0)
    );
    assert_eq!(p.b.dev.stats().populates, 2, "one per mapping");
    assert!((0..1024).all(|i| reads_index(&p, vb, i)));
    p.finish();
}

/// 1000 grants: one 2 MiB entry, and 488 4 KiB entries for the tail.
#[test]
fn mapping_1000_grants_takes_one_superpage_and_the_tail() {
    let (p, _, vb) = large_pair(1000);
    assert_eq!(
        (p.pb.pmap.large_entries(), p.pb.pmap.small_entries()),
        (1, 488)
    );
    assert!((0..1000).all(|i| reads_index(&p, vb, i)));
    p.finish();
}

/// A munmap of 4 pages inside a 2 MiB entry demotes it; the rest still
/// reads A's pages, the grants stay mapped, and the exit unmaps them all
/// with one hypercall.
#[test]
fn partial_munmap_of_a_large_grant_mapping() {
    let (p, _, vb) = large_pair(1024);
    let u0 = p.b.unmap_hypercalls();
    p.pb.munmap_range(vb + 100 * PAGE, 4 * PAGE);
    assert_eq!(p.pb.pmap.demotions.get(), 1);
    assert_eq!(
        (p.pb.pmap.large_entries(), p.pb.pmap.small_entries()),
        (1, 508)
    );
    assert_eq!(p.b.unmap_hypercalls(), u0, "the rest is still mapped");
    for i in 0..1024 {
        let gone = (100..104).contains(&i);
        assert_eq!(reads_index(&p, vb, i), !gone, "page {i}");
    }
    let Pair { a, b, pa, pb, .. } = p;
    pb.exit();
    assert_eq!(b.unmap_hypercalls() - u0, 1, "one unmap for the rest");
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
}
