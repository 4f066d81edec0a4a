//! The grant-bug regression suite (issue 14): one test per bug others
//! found in gntdev and grant mapping (Xen security advisories, Qubes),
//! against the simulator and through the real VM fault path. Each ends
//! with both domains at their baseline.

mod common;

use common::*;
use gntdev::abi::*;
use gntdev::errno::ENOSPC;
use vm::Prot;
use vm::pager::PagerResult;
use xen::abi::grant_table::{GNTCOPY_source_gref, GNTST_okay, GNTTABOP_set_version};
use xen::event_channel::EventOps;
use xen::grant::GrantOps;
use xen::sim::Sim;

/// XSA-361: a batched map with one bad reference first, in the middle or
/// last fails as a whole: the good ops are unmapped again in one rollback,
/// nothing stays mapped, the process gets SIGSEGV, the baseline is back.
#[test]
fn xsa_361_batch_map_bad_ref_first_middle_last() {
    for bad in 0..3 {
        let p = pair(2, true);
        let mut refs = p.refs.clone();
        refs.insert(bad, 9999);
        let ib = p.pb.map_grant_ref(p.a.id(), &refs).unwrap();
        let vb = p.pb.mmap(ib, 3 * PAGE, RW).unwrap();
        let u0 = p.b.unmap_hypercalls();
        assert_eq!(
            p.pb.touch(vb, false),
            Err(PagerResult::Error),
            "bad ref {bad}"
        );
        assert_eq!(p.b.dom.mappings(), 0, "bad ref {bad}: nothing stays mapped");
        assert_eq!(p.b.unmap_hypercalls() - u0, 1, "one rollback");
        assert!(p.refs.iter().all(|&r| !p.a.dom.grants().in_use(r)));
        let s = p.b.dev.stats();
        assert_eq!((s.map_failures, s.mappings, s.unmap_errors), (1, 0, 0));
        p.pb.munmap(vb);
        p.pb.unmap_grant_ref(ib, 3).unwrap();
        p.pa.dealloc_gref(p.ia, 2).unwrap();
        p.finish();
    }
}

/// XSA-316: a nonzero positive status (Xen's error paths once returned
/// +1) is a failure, not a mapping: the batch rolls back and faults.
#[test]
fn xsa_316_positive_status_is_a_failure() {
    let p = pair(2, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, 2 * PAGE, RW).unwrap();
    p.b.dom.inject_map_status(1);
    assert_eq!(p.pb.touch(vb + PAGE, true), Err(PagerResult::Error));
    assert_eq!(p.b.dom.mappings(), 0);
    let s = p.b.dev.stats();
    assert_eq!((s.map_failures, s.mappings), (1, 0));
    assert!(p.pb.pte(vb).is_none() && p.pb.pte(vb + PAGE).is_none());
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 2).unwrap();
    p.pa.dealloc_gref(p.ia, 2).unwrap();
    p.finish();
}

/// XSA-396: the sharer deallocates (and unmaps) while the peer maps: the
/// grant stays valid and the peer keeps reading the data; the page is not
/// handed out again until the peer unmaps, then it is reclaimed.
#[test]
fn xsa_396_dealloc_while_peer_maps() {
    let p = pair(1, true);
    let va = p.pa.mmap(p.ia, PAGE, RW).unwrap();
    p.pa.write(va, b"kept").unwrap();
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, PAGE, RW).unwrap();
    let mut x = [0u8; 4];
    p.pb.read(vb, &mut x).unwrap();
    p.pa.munmap(va);
    p.pa.dealloc_gref(p.ia, 1).unwrap();
    assert!(p.a.dev.reap().is_empty());
    assert!(p.a.dom.grants().in_use(p.refs[0]), "grant still valid");
    assert_eq!(p.a.dev.stats().pending_grants, 1);
    // Every other page of A's pool is handed out: never the pending one.
    let free = p.a.pool.free_count() as u32;
    let (i2, _) = p.pa.alloc_gref(p.b.id(), free, true).unwrap();
    assert_eq!(p.pa.alloc_gref(p.b.id(), 1, true), Err(vm::Errno::ENOMEM));
    p.pb.write(vb, b"peer").unwrap();
    p.pb.read(vb, &mut x).unwrap();
    assert_eq!(&x, b"peer", "the peer's page is still the shared one");
    p.pa.dealloc_gref(i2, free).unwrap();
    p.pb.munmap(vb);
    p.a.dev.reap();
    assert_eq!(
        p.a.dev.stats().pending_grants,
        0,
        "reclaimed after the unmap"
    );
    p.pb.unmap_grant_ref(ib, 1).unwrap();
    p.finish();
}

/// XSA-224/218: the same grants mmapped twice and unmapped: one object,
/// one unmap (no double unmap), the notify fired once at the last
/// munmap, and the granter's entry flags cleared only then.
#[test]
fn xsa_224_same_grants_mmapped_twice() {
    let p = pair(2, true);
    let port_a = p.a.dom.alloc_unbound(p.b.id()).unwrap();
    let port_b = p.b.dom.bind_interdomain(p.a.id(), port_a).unwrap();
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let v1 = p.pb.mmap(ib, 2 * PAGE, RW).unwrap();
    let v2 = p.pb.mmap(ib, 2 * PAGE, RW).unwrap();
    p.pb.write(v1, &[1]).unwrap();
    p.pb.read(v2, &mut [0u8]).unwrap();
    p.pb.set_notify(ib, UNMAP_NOTIFY_SEND_EVENT, port_b)
        .unwrap();
    p.pb.munmap(v1);
    assert!(p.a.dom.take_events().is_empty(), "v2 still maps them");
    assert!(p.refs.iter().all(|&r| p.a.dom.grants().in_use(r)));
    p.pb.munmap(v2);
    assert_eq!(p.a.dom.take_events(), [port_a], "notified once");
    assert!(
        p.refs.iter().all(|&r| !p.a.dom.grants().in_use(r)),
        "flags cleared"
    );
    p.pb.unmap_grant_ref(ib, 2).unwrap();
    assert!(p.a.dom.take_events().is_empty(), "not again at release");
    let s = p.b.dev.stats();
    assert_eq!(
        (s.unmap_hypercalls, s.unmap_errors, s.events_sent),
        (1, 0, 1)
    );
    p.pa.dealloc_gref(p.ia, 2).unwrap();
    p.finish();
}

/// Qubes #7631: mmap 4 pages, munmap the second, mmap another region into
/// that hole, close: every grant handle is unmapped exactly once.
#[test]
fn xsa_qubes_7631_partial_munmap() {
    let p = pair(5, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs[..4]).unwrap();
    let ic = p.pb.map_grant_ref(p.a.id(), &p.refs[4..]).unwrap();
    let vb = p.pb.mmap(ib, 4 * PAGE, RW).unwrap();
    for i in 0..4 {
        p.pb.write(vb + i * PAGE, &[i as u8]).unwrap();
    }
    p.pb.munmap_range(vb + PAGE, PAGE);
    assert_eq!(p.b.dom.mappings(), 4, "the rest still maps the run");
    p.pb.mmap_at(vb + PAGE, ic, PAGE, RW).unwrap();
    p.pb.write(vb + PAGE, &[9]).unwrap();
    assert_eq!(p.b.dom.mappings(), 5);
    let Pair {
        a, b, pa, pb, ia, ..
    } = p;
    pb.exit();
    let s = b.dev.stats();
    assert_eq!(b.dom.mappings(), 0, "every handle unmapped");
    assert_eq!((s.unmap_hypercalls, s.unmap_errors), (2, 0), "each once");
    pa.dealloc_gref(ia, 5).unwrap();
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
}

/// Exhaustion: grants up to the device's limit, then `ENOSPC` (nothing
/// taken by the refused call), then everything freed and the whole limit
/// usable again.
#[test]
fn xsa_exhaustion_enospc_and_recovery() {
    let sim = Sim::new();
    let a = Side::with_max_grants(&sim, 4, 64, 64);
    let b = Side::new(&sim, 4, 1);
    let pa = Proc::new(&a);
    for round in 0..2 {
        let runs: Vec<u64> = (0..8)
            .map(|_| pa.alloc_gref(b.id(), 8, true).unwrap().0)
            .collect();
        assert_eq!(pa.alloc_gref(b.id(), 1, true), Err(ENOSPC), "round {round}");
        assert_eq!(a.pool.free_count(), 0);
        for i in runs {
            pa.dealloc_gref(i, 8).unwrap();
        }
        a.assert_baseline();
        assert_eq!(pa.file().grants_held(), 0);
    }
    pa.exit();
    a.assert_baseline();
    b.assert_baseline();
}

/// A zero-length `GRANT_COPY` segment with a junk reference and domain
/// succeeds with nothing copied and no op issued.
#[test]
fn xsa_zero_length_copy_with_junk_ref() {
    let sim = Sim::new();
    let b = Side::new(&sim, 4, 4);
    let pb = Proc::new(&b);
    let u = &pb.user;
    let buf = u.alloc(8);
    let mut raw = vec![0; GrantCopySegment::SIZE];
    GrantCopySegment {
        source: CopySideArg::Foreign {
            gref: 0xdead_beef,
            offset: 0xffff,
            domid: 0x7ff0,
        }
        .encode(),
        dest: CopySideArg::Virt(buf).encode(),
        len: 0,
        flags: GNTCOPY_source_gref,
        status: 99,
    }
    .encode(&mut raw);
    let arr = u.alloc(raw.len());
    u.put(arr, &raw);
    let h0 = b.dom.hypercalls(xen::abi::op::GRANT_TABLE_OP);
    pb.ioctl_arg(
        IOCTL_GNTDEV_GRANT_COPY,
        &GrantCopy {
            count: 1,
            segments: arr,
        },
    )
    .unwrap();
    assert_eq!(u.get_arg::<GrantCopySegment>(arr).status, GNTST_okay);
    assert_eq!(b.dom.hypercalls(xen::abi::op::GRANT_TABLE_OP), h0, "no op");
    pb.exit();
    b.assert_baseline();
}

/// Grant table v1 only: a whole share, map, copy and unmap never asks Xen
/// for another grant table version.
#[test]
fn xsa_grant_table_v1_only() {
    let p = pair(1, true);
    let ib = p.pb.map_grant_ref(p.a.id(), &p.refs).unwrap();
    let vb = p.pb.mmap(ib, PAGE, Prot::READ).unwrap();
    p.pb.read(vb, &mut [0u8]).unwrap();
    p.pb.munmap(vb);
    p.pb.unmap_grant_ref(ib, 1).unwrap();
    p.pa.dealloc_gref(p.ia, 1).unwrap();
    for side in [&p.a, &p.b] {
        assert_eq!(side.dom.gnttab_hypercalls(GNTTABOP_set_version), 0);
    }
    p.finish();
}
