//! Defects found by random testing of gntdev against the simulator (issue
//! 14, items 1 to 5; defect 6 by `tests/state_machine.rs`), each kept as
//! its regression test.

mod common;

use common::*;
use gntdev::abi::*;
use gntdev::errno::EACCES;
use vm::Prot;
use vm::pager::PagerResult;
use xen::abi::grant_table::{GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTST_okay};
use xen::event_channel::EventOps;
use xen::grant::GrantOps;

/// Defect 1: a read-only grant mapping never becomes writable. The grants
/// are mapped `GNTMAP_readonly` for `mmap(PROT_READ)`; `mprotect` to
/// read-write must fail with `EACCES` (the device reports a maximum
/// protection without `WRITE`) and a write fault must be refused, through
/// the populate path and through the page-at-a-time path
/// (`vm.populate=0`) alike.
#[test]
fn read_only_grant_mapping_stays_read_only() {
    for nopopulate in [false, true] {
        let p = pair(2, true);
        p.pb.nopopulate
            .store(nopopulate, std::sync::atomic::Ordering::Relaxed);
        let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
        let vb = p.pb.mmap(ib, 2 * PAGE, Prot::READ).unwrap();
        let mut x = [0u8];
        p.pb.read(vb, &mut x).unwrap();
        assert_eq!(p.pb.touch(vb, true), Err(PagerResult::Error), "SIGSEGV");
        assert_eq!(
            p.pb.mprotect(vb, 2 * PAGE, RW),
            Err(EACCES),
            "beyond the maximum protection (populate {})",
            !nopopulate
        );
        assert_eq!(p.pb.touch(vb, true), Err(PagerResult::Error));
        assert_eq!(p.pb.touch(vb + PAGE, true), Err(PagerResult::Error));
        for va in [vb, vb + PAGE] {
            let pte = p.pb.pte(va);
            assert!(
                pte.is_none_or(|t| !t.prot.contains(Prot::WRITE)),
                "no writable translation"
            );
        }
        // Lowering stays allowed.
        p.pb.mprotect(vb, 2 * PAGE, Prot::empty()).unwrap();
        p.pb.mprotect(vb, 2 * PAGE, Prot::READ).unwrap();
        p.pb.munmap(vb);
        p.pb.unmap_grant_ref(ib, 2).unwrap();
        p.pa.dealloc_gref(p.ia, 2).unwrap();
        p.finish();
    }
}

/// Defect 2: a `CLEAR_BYTE` notify set before the first `mmap` (the map
/// is still "writable" then) would have to be written through the
/// read-only mapping a later `mmap(PROT_READ)` makes. That `mmap` is
/// refused with `EACCES`; a writable one clears the byte at teardown.
#[test]
fn clear_byte_notify_then_read_only_mmap_is_refused() {
    let p = pair(1, true);
    let va = p.pa.mmap(p.ia, PAGE, RW).unwrap();
    p.pa.write(va + 5, &[0xaa]).unwrap();
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    p.pb.set_notify(ib + 5, UNMAP_NOTIFY_CLEAR_BYTE, 0).unwrap();
    assert_eq!(p.pb.mmap(ib, PAGE, Prot::READ), Err(EACCES));
    let vb = p.pb.mmap(ib, PAGE, RW).unwrap();
    let mut x = [0u8];
    p.pb.read(vb + 5, &mut x).unwrap();
    assert_eq!(x, [0xaa]);
    p.pb.munmap(vb);
    p.pa.read(va + 5, &mut x).unwrap();
    assert_eq!(x, [0], "the byte cleared at teardown");
    let s = p.b.dev.stats();
    assert_eq!((s.bytes_cleared, s.notify_errors), (1, 0));
    p.pb.unmap_grant_ref(ib, 1).unwrap();
    p.pa.munmap(va);
    p.pa.dealloc_gref(p.ia, 1).unwrap();
    p.finish();
}

/// Defect 3: a failed unmap hypercall no longer leaks for good. The
/// mapping whose unmap failed is retried by [`gntdev::Gntdev::reap`] with
/// a back-off that doubles (retries at the 1st, 3rd and 7th reap after
/// three failures), each retry counted; once the unmap succeeds the hole,
/// the fictitious pages and the granter's grants come back.
#[test]
fn failed_unmap_is_retried_until_baseline() {
    let p = pair(2, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, 2 * PAGE, RW).unwrap();
    p.pb.write(vb + PAGE, &[1]).unwrap();
    p.pa.dealloc_gref(p.ia, 2).unwrap();
    // The teardown's op for the 1st grant fails, then the first 2 retries.
    p.b.dom.inject_unmap_failures(1);
    let u0 = p.b.unmap_hypercalls();
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 2).unwrap();
    let s = p.b.dev.stats();
    assert_eq!((s.unmap_errors, s.pending_unmaps), (1, 1));
    assert_eq!(p.b.dom.mappings(), 1, "the failed op's grant is mapped");
    p.b.dom.inject_unmap_failures(2);
    let mut retried_at = Vec::new();
    for pass in 1..=10 {
        let before = p.b.unmap_hypercalls();
        p.b.dev.reap();
        if p.b.unmap_hypercalls() > before {
            retried_at.push(pass);
        }
    }
    assert_eq!(retried_at, [1, 3, 7], "back-off doubles");
    assert_eq!(p.b.unmap_hypercalls() - u0, 4, "teardown + 3 retries");
    let s = p.b.dev.stats();
    assert_eq!(
        (s.unmap_retries, s.unmap_errors, s.pending_unmaps),
        (3, 3, 0)
    );
    p.a.dev.reap();
    p.finish();
}

/// Defect 4: the `SEND_EVENT` notify of a map is sent on release even if
/// it was never mmapped (Linux does; libxenvchan relies on it): at
/// `UNMAP_GRANT_REF`, and at close.
#[test]
fn send_event_notify_without_mmap() {
    let p = pair(2, true);
    let port_a = p.a.dom.alloc_unbound(p.b.id()).unwrap();
    let port_b = p.b.dom.bind_interdomain(p.a.id(), port_a).unwrap();
    let i1 = p.pb.map_grant_ref(p.a.id(), &p.refs[..1]).unwrap();
    let i2 = p.pb.map_grant_ref(p.a.id(), &p.refs[1..]).unwrap();
    p.pb.set_notify(i1, UNMAP_NOTIFY_SEND_EVENT, port_b)
        .unwrap();
    p.pb.set_notify(
        i2,
        UNMAP_NOTIFY_SEND_EVENT | UNMAP_NOTIFY_CLEAR_BYTE,
        port_b,
    )
    .unwrap();
    assert!(p.a.dom.take_events().is_empty());
    p.pb.unmap_grant_ref(i1, 1).unwrap();
    assert_eq!(p.a.dom.take_events(), [port_a], "at UNMAP_GRANT_REF");
    let Pair {
        a, b, pa, pb, ia, ..
    } = p;
    pb.exit();
    assert_eq!(a.dom.take_events(), [port_a], "at close");
    let s = b.dev.stats();
    assert_eq!(
        (s.events_sent, s.bytes_cleared),
        (2, 0),
        "no byte: not mapped"
    );
    pa.dealloc_gref(ia, 2).unwrap();
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
}

/// Defect 5: a zero-length `GRANT_COPY` segment with a null user pointer
/// is accepted and copies nothing (as Linux), in either direction.
#[test]
fn zero_length_copy_segment_with_null_pointer() {
    let p = pair(1, true);
    let va = p.pa.mmap(p.ia, PAGE, RW).unwrap();
    p.pa.write(va, &[7]).unwrap();
    let foreign = CopySideArg::Foreign {
        gref: p.refs[0],
        offset: 0,
        domid: p.a.id(),
    };
    let segs = [
        (CopySideArg::Virt(0), foreign, GNTCOPY_dest_gref),
        (foreign, CopySideArg::Virt(0), GNTCOPY_source_gref),
    ];
    let u = &p.pb.user;
    let arr = u.alloc(segs.len() * GrantCopySegment::SIZE);
    for (i, &(src, dst, flags)) in segs.iter().enumerate() {
        let mut b = vec![0; GrantCopySegment::SIZE];
        GrantCopySegment {
            source: src.encode(),
            dest: dst.encode(),
            len: 0,
            flags,
            status: 99,
        }
        .encode(&mut b);
        u.put(arr + (i * GrantCopySegment::SIZE) as u64, &b);
    }
    let copy = GrantCopy {
        count: 2,
        segments: arr,
    };
    p.pb.ioctl_arg(IOCTL_GNTDEV_GRANT_COPY, &copy).unwrap();
    for i in 0..2 {
        let s: GrantCopySegment = u.get_arg(arr + (i * GrantCopySegment::SIZE) as u64);
        assert_eq!(s.status, GNTST_okay);
    }
    let mut x = [0u8];
    p.pa.read(va, &mut x).unwrap();
    assert_eq!(x, [7], "nothing copied");
    p.pa.munmap(va);
    p.pa.dealloc_gref(p.ia, 1).unwrap();
    p.finish();
}

/// Defect 6: a map that fails and whose rollback unmap fails too leaves
/// its good grants mapped ("stuck") until the teardown unmaps them. A
/// second fault that fails again replaced that list with its own (empty)
/// one: the stuck mapping was never unmapped, its hole was given back
/// under it, and the granter's grant stayed in use. Now every stuck
/// mapping is unmapped at the `munmap`, and the grant is released.
#[test]
fn stuck_rollback_survives_another_failed_fault() {
    let p = pair(1, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &[p.refs[0], 9999]).unwrap();
    let vb = p.pb.mmap(ib, 2 * PAGE, RW).unwrap();
    p.b.dom.inject_unmap_failures(1);
    assert_eq!(p.pb.touch(vb, false), Err(PagerResult::Error));
    assert_eq!(p.b.dom.mappings(), 1, "the rollback failed: still mapped");
    assert_eq!(p.pb.touch(vb, false), Err(PagerResult::Error), "again");
    p.pb.munmap(vb);
    assert_eq!(p.b.dom.mappings(), 0, "unmapped at the teardown");
    assert!(!p.a.dom.grants().in_use(p.refs[0]), "released");
    let s = p.b.dev.stats();
    assert_eq!((s.unmap_errors, s.pending_unmaps), (1, 0));
    p.pb.unmap_grant_ref(ib, 2).unwrap();
    p.pa.dealloc_gref(p.ia, 1).unwrap();
    p.finish();
}

/// A `SEND_EVENT` notify set before the domain moved (`xl restore`,
/// `xl migrate`) is not sent after it: its port is gone with the old
/// domain, and its number may name another port by now. It counts as a
/// notify error; the byte is still cleared.
#[test]
fn notify_of_an_earlier_domain_sends_no_event() {
    let p = pair(2, true);
    let port_a = p.a.dom.alloc_unbound(p.b.id()).unwrap();
    let port_b = p.b.dom.bind_interdomain(p.a.id(), port_a).unwrap();
    let i1 = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let va = p.pb.mmap(i1, 2 * PAGE, RW).unwrap();
    p.pb.set_notify(
        i1,
        UNMAP_NOTIFY_SEND_EVENT | UNMAP_NOTIFY_CLEAR_BYTE,
        port_b,
    )
    .unwrap();
    p.pb.read(va, &mut [0; 1]).unwrap();
    p.b.generation
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    let Pair {
        a, b, pa, pb, ia, ..
    } = p;
    pb.exit();
    assert!(a.dom.take_events().is_empty(), "no event on a stale port");
    let s = b.dev.stats();
    assert_eq!((s.events_sent, s.notify_errors, s.bytes_cleared), (0, 1, 1));
    pa.dealloc_gref(ia, 2).unwrap();
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
}
