//! End-to-end tests of the grant table and event channels on the
//! simulated hypervisor: the real `GrantTable` code against simulated Xen.

use xen::abi::grant_table::{GNTTABOP_copy, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref};
use xen::abi::op::GRANT_TABLE_OP;
use xen::event_channel::EventOps;
use xen::grant::{
    CopyOp, CopySide, EndAccess, GrantError, GrantOps, MapRequest, RetryPolicy, UnmapRequest,
};
use xen::hypercall::XenErrno;
use xen::sim::Sim;

const PAGE: u64 = 4096;

#[test]
fn share_map_write_unmap_and_deferred_end() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain(), sim.create_domain());
    let page = a.alloc_page();
    a.write(page * PAGE, b"hello").unwrap();
    let gref = a.grants().grant_access(b.id(), page, false).unwrap();
    assert!(gref >= 8, "reserved refs are never used");

    let hole = b.alloc_hole(1);
    let req = MapRequest {
        dom: a.id(),
        gref,
        slot: 0,
        readonly: false,
    };
    let handle = b.grants().map(&hole, &[req])[0].unwrap();
    assert!(a.grants().in_use(gref));
    let mut buf = [0; 5];
    b.read(hole.gpa(0).unwrap(), &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    b.write(hole.gpa(0).unwrap() + 100, b"peer").unwrap();
    let mut buf = [0; 4];
    a.read(page * PAGE + 100, &mut buf).unwrap();
    assert_eq!(&buf, b"peer");

    // The owner ends access while the peer still maps: deferred.
    assert_eq!(a.grants().end_access(gref), Ok(EndAccess::Deferred));
    assert_eq!(a.grants().end_access(gref), Err(GrantError::BadGntref));
    let st = a.grants().stats();
    assert_eq!((st.live_refs, st.pending_refs), (0, 1));
    assert!(a.grants().reap().is_empty(), "still mapped");

    let un = b.grants().unmap(&hole, &[UnmapRequest { slot: 0, handle }]);
    assert_eq!(un, [Ok(())]);
    assert!(!b.is_populated(hole.gfn(0).unwrap()));
    let reaped = a.grants().reap();
    assert_eq!(reaped.len(), 1);
    assert_eq!((reaped[0].gref, reaped[0].gfn), (gref, page));
    let st = a.grants().stats();
    assert_eq!((st.live_refs, st.pending_refs), (0, 0));
    // The freed reference is handed out again.
    assert_eq!(a.grants().grant_access(b.id(), page, true), Ok(gref));
}

#[test]
fn one_hypercall_maps_a_batch_with_per_op_status() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain(), sim.create_domain());
    let refs: Vec<u32> = (0..16)
        .map(|i| {
            let p = a.alloc_page();
            a.write(p * PAGE, &[i as u8]).unwrap();
            a.grants().grant_access(b.id(), p, true).unwrap()
        })
        .collect();
    let hole = b.alloc_hole(17);
    let mut reqs: Vec<MapRequest> = refs
        .iter()
        .enumerate()
        .map(|(i, &gref)| MapRequest {
            dom: a.id(),
            gref,
            slot: i as u64,
            readonly: true,
        })
        .collect();
    // Two bad ones: an unknown ref and a slot outside the hole.
    reqs.push(MapRequest {
        dom: a.id(),
        gref: 3000,
        slot: 16,
        readonly: true,
    });
    reqs.push(MapRequest {
        dom: a.id(),
        gref: refs[0],
        slot: 99,
        readonly: true,
    });
    let res = b.grants().map(&hole, &reqs);
    assert_eq!(b.gnttab_hypercalls(GNTTABOP_map_grant_ref), 1);
    assert!(res[..16].iter().all(Result::is_ok));
    assert_eq!(res[16], Err(GrantError::BadGntref));
    assert_eq!(res[17], Err(GrantError::BadVirtAddr));
    for i in 0..16 {
        let mut byte = [0];
        b.read(hole.gpa(i).unwrap(), &mut byte).unwrap();
        assert_eq!(byte[0], i as u8);
    }
    // Read-only mapping: writes fail.
    assert_eq!(b.write(hole.gpa(0).unwrap(), b"x"), Err(XenErrno::EACCES));
    let unmaps: Vec<UnmapRequest> = res[..16]
        .iter()
        .enumerate()
        .map(|(i, r)| UnmapRequest {
            slot: i as u64,
            handle: r.unwrap(),
        })
        .collect();
    assert!(b.grants().unmap(&hole, &unmaps).iter().all(Result::is_ok));
    assert_eq!(b.gnttab_hypercalls(GNTTABOP_unmap_grant_ref), 1);
    assert_eq!(b.mappings(), 0);
    let st = b.grants().stats();
    assert_eq!((st.map_ops, st.unmap_ops, st.hypercalls), (17, 16, 2));
    assert_eq!(
        b.hypercalls(GRANT_TABLE_OP),
        3,
        "query_size at setup + map + unmap"
    );
}

#[test]
fn eagain_storm_is_retried_then_given_up() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain(), sim.create_domain());
    let refs: Vec<u32> = (0..8)
        .map(|_| {
            a.grants()
                .grant_access(b.id(), a.alloc_page(), false)
                .unwrap()
        })
        .collect();
    let hole = b.alloc_hole(8);
    let reqs: Vec<MapRequest> = refs
        .iter()
        .enumerate()
        .map(|(i, &gref)| MapRequest {
            dom: a.id(),
            gref,
            slot: i as u64,
            readonly: false,
        })
        .collect();
    // The first 5 ops answer eagain: round 1 retries exactly those 5.
    b.inject_eagain(5);
    let res = b.grants().map(&hole, &reqs[..4]);
    assert!(res.iter().all(Result::is_ok));
    let st = b.grants().stats();
    // 4 eagain on the first try, then 1 more on the first retry.
    assert_eq!((st.eagain_retries, st.eagain_gave_up), (4 + 1, 0));
    assert_eq!(st.hypercalls, 3);

    // A storm longer than the policy: those ops fail with Eagain.
    let b2 = sim.create_domain();
    let refs2: Vec<u32> = (0..2)
        .map(|_| {
            a.grants()
                .grant_access(b2.id(), a.alloc_page(), false)
                .unwrap()
        })
        .collect();
    let g = b2.grants_arc();
    let hole2 = b2.alloc_hole(2);
    b2.inject_eagain(1000);
    let reqs2: Vec<MapRequest> = refs2
        .iter()
        .enumerate()
        .map(|(i, &gref)| MapRequest {
            dom: a.id(),
            gref,
            slot: i as u64,
            readonly: false,
        })
        .collect();
    let res = g.map(&hole2, &reqs2);
    assert_eq!(res, [Err(GrantError::Eagain), Err(GrantError::Eagain)]);
    let st = g.stats();
    let rounds = u64::from(RetryPolicy::default().max_rounds);
    assert_eq!(st.eagain_retries, 2 * rounds);
    assert_eq!(st.eagain_gave_up, 2);
    assert_eq!(st.hypercalls, 1 + rounds);
    assert_eq!(res[0].unwrap_err().errno(), XenErrno::EAGAIN);
}

#[test]
fn bad_refs_readonly_grants_and_hypercall_failures() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain(), sim.create_domain());
    let c = sim.create_domain();
    let p = a.alloc_page();
    let ro = a.grants().grant_access(b.id(), p, true).unwrap();
    let for_c = a.grants().grant_access(c.id(), p, false).unwrap();
    let hole = b.alloc_hole(4);
    let m = |gref, slot, readonly| MapRequest {
        dom: a.id(),
        gref,
        slot,
        readonly,
    };
    let res = b
        .grants()
        .map(&hole, &[m(ro, 0, false), m(for_c, 1, true), m(7, 2, true)]);
    // As Xen: a writable map of a r/o grant, or a grant to someone else,
    // is a general error; a reserved/unused ref too.
    assert_eq!(res, [Err(GrantError::General); 3]);
    let res = b.grants().map(
        &hole,
        &[MapRequest {
            dom: 999,
            gref: ro,
            slot: 0,
            readonly: true,
        }],
    );
    assert_eq!(res, [Err(GrantError::BadDomain)]);
    assert_eq!(res[0].unwrap_err().errno(), XenErrno::ESRCH);

    b.inject_hypercall_error(XenErrno::EFAULT);
    let res = b.grants().map(&hole, &[m(ro, 0, true)]);
    assert_eq!(res, [Err(GrantError::Hypercall(XenErrno::EFAULT))]);
    assert_eq!(b.mappings(), 0);
    assert!(b.grants().map(&hole, &[m(ro, 0, true)])[0].is_ok());
    // A second map at an occupied slot is refused.
    assert_eq!(
        b.grants().map(&hole, &[m(ro, 0, true)]),
        [Err(GrantError::BadVirtAddr)]
    );
}

#[test]
fn revoked_grant_keeps_existing_mapping() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain(), sim.create_domain());
    let p = a.alloc_page();
    a.write(p * PAGE, b"data").unwrap();
    let gref = a.grants().grant_access(b.id(), p, true).unwrap();
    let hole = b.alloc_hole(2);
    let r = MapRequest {
        dom: a.id(),
        gref,
        slot: 0,
        readonly: true,
    };
    let h = b.grants().map(&hole, &[r])[0].unwrap();
    a.revoke(gref);
    assert_eq!(
        b.grants().map(&hole, &[MapRequest { slot: 1, ..r }]),
        [Err(GrantError::General)]
    );
    let mut buf = [0; 4];
    b.read(hole.gpa(0).unwrap(), &mut buf).unwrap();
    assert_eq!(&buf, b"data");
    assert_eq!(
        b.grants()
            .unmap(&hole, &[UnmapRequest { slot: 0, handle: h }]),
        [Ok(())]
    );
    assert_eq!(a.grants().end_access(gref), Ok(EndAccess::Ended));
}

#[test]
fn dying_peers() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain(), sim.create_domain());
    let p = a.alloc_page();
    let gref = a.grants().grant_access(b.id(), p, false).unwrap();
    let hole = b.alloc_hole(1);
    let r = MapRequest {
        dom: a.id(),
        gref,
        slot: 0,
        readonly: false,
    };
    b.grants().map(&hole, &[r])[0].unwrap();
    assert!(a.grants().in_use(gref));
    // The mapper dies: its mappings go and the grant is free to end.
    sim.destroy(b.id());
    assert!(!sim.is_alive(b.id()));
    assert!(!a.grants().in_use(gref));
    assert_eq!(a.grants().end_access(gref), Ok(EndAccess::Ended));

    // The granter dies while mapped: the page lives on for the mapper.
    let c = sim.create_domain();
    let p = a.alloc_page();
    a.write(p * PAGE, b"last words").unwrap();
    let gref = a.grants().grant_access(c.id(), p, true).unwrap();
    let hole = c.alloc_hole(2);
    let r = MapRequest {
        dom: a.id(),
        gref,
        slot: 0,
        readonly: true,
    };
    let h = c.grants().map(&hole, &[r])[0].unwrap();
    sim.destroy(a.id());
    let mut buf = [0; 10];
    c.read(hole.gpa(0).unwrap(), &mut buf).unwrap();
    assert_eq!(&buf, b"last words");
    assert_eq!(
        c.grants().map(&hole, &[MapRequest { slot: 1, ..r }]),
        [Err(GrantError::BadDomain)]
    );
    assert_eq!(
        c.grants()
            .unmap(&hole, &[UnmapRequest { slot: 0, handle: h }]),
        [Ok(())]
    );
}

#[test]
fn table_grows_on_demand_up_to_its_maximum() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain_with(2), sim.create_domain());
    let p = a.alloc_page();
    assert_eq!(a.grants().stats().frames, 1);
    for _ in 0..(2 * 512 - 8) {
        a.grants().grant_access(b.id(), p, true).unwrap();
    }
    assert_eq!(a.grants().stats().frames, 2);
    assert_eq!(
        a.grants().grant_access(b.id(), p, true),
        Err(GrantError::NoSpace)
    );
    let size = a.grants().query_size().unwrap();
    assert_eq!((size.frames, size.max_frames), (2, 2));
    assert_eq!(a.grants().stats().live_refs, 2 * 512 - 8);
}

#[test]
fn grant_copy() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain(), sim.create_domain());
    let pa = a.alloc_page();
    a.write(pa * PAGE + 10, b"copied").unwrap();
    let gref = a.grants().grant_access(b.id(), pa, true).unwrap();
    let pb = b.alloc_page();
    let op = CopyOp {
        src: CopySide::Grant {
            dom: a.id(),
            gref,
            offset: 10,
        },
        dst: CopySide::Local { gfn: pb, offset: 0 },
        len: 6,
    };
    let bad = CopyOp { len: 4090, ..op };
    let to_ro = CopyOp {
        src: op.dst,
        dst: op.src,
        len: 6,
    };
    // SAFETY: the local destination is simulated memory.
    let res = unsafe { b.grants().copy(&[op, bad, to_ro]) };
    assert_eq!(
        res,
        [
            Ok(()),
            Err(GrantError::BadCopyArg),
            Err(GrantError::General)
        ]
    );
    assert_eq!(b.gnttab_hypercalls(GNTTABOP_copy), 1);
    let mut buf = [0; 6];
    b.read(pb * PAGE, &mut buf).unwrap();
    assert_eq!(&buf, b"copied");
}

#[test]
fn event_channels_between_domains() {
    let sim = Sim::new();
    let (a, b) = (sim.create_domain(), sim.create_domain());
    let pa = a.alloc_unbound(b.id()).unwrap();
    let pb = b.bind_interdomain(a.id(), pa).unwrap();
    assert_eq!(
        b.bind_interdomain(a.id(), pa),
        Err(XenErrno::EINVAL),
        "already bound"
    );
    b.send(pb).unwrap();
    b.send(pb).unwrap();
    assert_eq!(a.take_events(), [pa], "two sends, one pending bit");
    a.send(pa).unwrap();
    assert_eq!(b.take_events(), [pb]);
    assert_eq!(b.events_sent(), 2);

    // Masked: stays pending until unmasked.
    xen::event_channel::mask(&a.shared_info(), pa);
    b.send(pb).unwrap();
    assert!(a.take_events().is_empty());
    a.unmask(pa).unwrap();
    assert_eq!(a.take_events(), [pa]);

    // VIRQs.
    let t = a.bind_virq(xen::abi::event_channel::VIRQ_TIMER, 0).unwrap();
    a.raise_virq(xen::abi::event_channel::VIRQ_TIMER);
    assert_eq!(a.take_events(), [t]);

    // The peer dies: sends are dropped silently, as Xen does.
    sim.destroy(a.id());
    assert_eq!(b.send(pb), Ok(()));
    b.close(pb).unwrap();
    assert_eq!(b.send(pb), Err(XenErrno::EINVAL));
}
