//! Host tests of the rings and the stream against a simulated peer: both
//! ends over one page of ordinary memory, the peer's misbehaviour
//! written straight into the page.

extern crate std;

use std::alloc::{Layout as Alloc, alloc_zeroed, dealloc};
use std::cell::Cell;
use std::rc::Rc;
use std::vec::Vec;

use crate::shared::*;
use crate::stream::{Events, Vchan};
use crate::{Error, parse_key};

/// Page-aligned zeroed memory.
struct Mem {
    ptr: *mut u8,
    alloc: Alloc,
}

impl Mem {
    fn new(pages: usize) -> Self {
        let alloc = Alloc::from_size_align(pages * 4096, 4096).unwrap();
        // SAFETY: a non-zero size.
        let ptr = unsafe { alloc_zeroed(alloc) };
        assert!(!ptr.is_null());
        Self { ptr, alloc }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated by `new` with this layout.
        unsafe { dealloc(self.ptr, self.alloc) }
    }
}

/// The simulated event channel: counts kicks and waits; the peer's
/// domain lives while `alive`.
#[derive(Clone, Default)]
struct Sim {
    kicks: Rc<Cell<u32>>,
    waits: Rc<Cell<u32>>,
    dead: Rc<Cell<bool>>,
}

impl Events for Sim {
    fn notify(&mut self) -> Result<(), Error> {
        self.kicks.set(self.kicks.get() + 1);
        Ok(())
    }
    fn wait(&mut self) -> Result<bool, Error> {
        self.waits.set(self.waits.get() + 1);
        assert!(self.waits.get() < 100, "waiting without end");
        Ok(false)
    }
    fn peer_alive(&mut self, _connected: bool) -> bool {
        !self.dead.get()
    }
}

/// A server and a client over one page (fields drop in order: the ends
/// before their memory).
struct Pair {
    srv: Vchan<Sim>,
    cli: Vchan<Sim>,
    shared: Shared,
    srv_sim: Sim,
    cli_sim: Sim,
    _mem: Vec<Mem>,
}

fn pair(lo: u16, ro: u16) -> Pair {
    let layout = Layout::new(lo, ro).unwrap();
    let page = Mem::new(1);
    let mut mem = Vec::new();
    let mut at = |p: Place| match p {
        // SAFETY: inside the page.
        Place::InPage(off) => unsafe { page.ptr.add(off) },
        Place::Pages(n) => {
            let m = Mem::new(n);
            let ptr = m.ptr;
            mem.push(m);
            ptr
        }
    };
    let (left, right) = (at(layout.left()), at(layout.right()));
    let base = page.ptr;
    mem.push(page);
    let (srv_sim, cli_sim) = (Sim::default(), Sim::default());
    // SAFETY: the page and rings live as long as the pair (`_mem`).
    let (srv, cli) =
        unsafe { crate::local::join(base, left, right, layout, srv_sim.clone(), cli_sim.clone()) };
    Pair {
        srv,
        cli,
        // SAFETY: as above.
        shared: unsafe { Shared::new(base) },
        srv_sim,
        cli_sim,
        _mem: mem,
    }
}

/// A seeded byte sequence.
fn bytes(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Streams `n` bytes each way through `p` without blocking, in pieces
/// of varying size, checking them; returns the kicks each side sent.
fn stream(p: &mut Pair, n: usize) -> (u64, u64) {
    p.srv.set_blocking(false);
    p.cli.set_blocking(false);
    let (a, b) = (bytes(1, n), bytes(2, n));
    let (mut sent_a, mut sent_b, mut got_a, mut got_b) = (0, 0, Vec::new(), Vec::new());
    let mut buf = [0u8; 5000];
    let mut step = 1usize;
    while got_a.len() < n || got_b.len() < n {
        step = (step * 7 + 3) % 4999 + 1;
        let k = step.min(n - sent_a);
        sent_a += p.cli.write(&a[sent_a..sent_a + k]).unwrap();
        let k = step.min(n - sent_b);
        sent_b += p.srv.write(&b[sent_b..sent_b + k]).unwrap();
        let r = p.srv.read(&mut buf[..step]).unwrap();
        got_a.extend_from_slice(&buf[..r]);
        let r = p.cli.read(&mut buf[..step]).unwrap();
        got_b.extend_from_slice(&buf[..r]);
    }
    assert!(got_a == a, "client to server bytes differ");
    assert!(got_b == b, "server to client bytes differ");
    (p.srv.kicks(), p.cli.kicks())
}

#[test]
fn in_page_rings_stream_both_ways() {
    let mut p = pair(10, 11);
    assert_eq!(p.srv.ring_sizes(), (1024, 2048));
    assert_eq!(p.cli.ring_sizes(), (2048, 1024));
    stream(&mut p, 200_000);
}

#[test]
fn page_rings_stream_both_ways() {
    for (lo, ro) in [(12, 13), (16, 16), (11, 20), (20, 12)] {
        let mut p = pair(lo, ro);
        stream(&mut p, 300_000);
    }
}

#[test]
fn kicks_only_when_asked() {
    let mut p = pair(16, 16);
    p.cli.set_blocking(false);
    // The server asked at set-up (cli_notify = WRITE): one kick, then none
    // until it asks again.
    for _ in 0..10 {
        p.cli.write(&[1; 100]).unwrap();
    }
    assert_eq!(p.cli.kicks(), 1);
    assert_eq!(p.srv.data_ready(), 1000);
    p.cli.write(&[1; 100]).unwrap();
    assert_eq!((p.cli.kicks(), p.cli_sim.kicks.get()), (2, 2));
    // The client never asked for space: reading kicks nobody.
    let mut b = [0u8; 1100];
    assert_eq!(p.srv.read(&mut b).unwrap(), 1100);
    assert_eq!(p.srv.kicks(), 0);
    // Far fewer kicks than writes in a long stream.
    let (s, c) = stream(&mut p, 2_000_000);
    assert!(s + c < 2_000_000 / 5000, "{s} + {c} kicks");
}

#[test]
fn indexes_run_free_across_the_wrap() {
    let mut p = pair(12, 12);
    for idx in [LEFT, RIGHT] {
        for f in [CONS, PROD] {
            p.shared
                .u32_at(idx + f)
                .store(0xffff_ff00, core::sync::atomic::Ordering::SeqCst);
        }
    }
    stream(&mut p, 100_000);
    assert!(
        p.shared
            .u32_at(LEFT + PROD)
            .load(core::sync::atomic::Ordering::SeqCst)
            < 0xffff_ff00
    );
}

#[test]
fn garbage_indexes_are_a_protocol_error() {
    use core::sync::atomic::Ordering::SeqCst;
    let mut p = pair(10, 11);
    p.srv.set_blocking(false);
    p.cli.set_blocking(false);
    // The client claims 1025 bytes in a 1024-byte ring.
    p.shared.u32_at(LEFT + PROD).store(1025, SeqCst);
    assert_eq!(p.srv.data_ready(), 0);
    assert!(matches!(p.srv.read(&mut [0; 16]), Err(Error::Protocol)));
    // The server claims to have read past what the client wrote: the
    // client's ring is inconsistent for writing.
    p.shared.u32_at(LEFT + CONS).store(4000, SeqCst);
    assert_eq!(p.cli.buffer_space(), 0);
    assert!(matches!(p.cli.write(&[0; 16]), Err(Error::Protocol)));
    // Any u32 values: never out of the ring (the masks), an error or data.
    let mut x = 0x1234_5678u32;
    for _ in 0..10_000 {
        for off in [LEFT + CONS, LEFT + PROD, RIGHT + CONS, RIGHT + PROD] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p.shared.u32_at(off).store(x, SeqCst);
        }
        let _ = p.srv.read(&mut [0; 3000]);
        let _ = p.cli.write(&[7; 3000]);
        let _ = p.srv.write(&[7; 3000]);
        let _ = p.cli.read(&mut [0; 3000]);
    }
    // Consistent again: the stream works.
    for off in [LEFT + CONS, LEFT + PROD, RIGHT + CONS, RIGHT + PROD] {
        p.shared.u32_at(off).store(77, SeqCst);
    }
    stream(&mut p, 10_000);
}

#[test]
fn flush_waits_for_the_reader() {
    let mut p = pair(12, 12);
    p.srv.write(&[5; 3000]).unwrap();
    // The client reads nothing: the flush waits, finds the peer gone.
    p.srv_sim.dead.set(true);
    assert!(matches!(p.srv.flush(), Err(Error::Closed)));
    p.srv_sim.dead.set(false);
    assert_eq!(p.cli.read(&mut [0; 4096]).unwrap(), 3000);
    p.srv.flush().unwrap();
}

#[test]
fn close_is_seen_after_the_data() {
    let mut p = pair(10, 11);
    p.cli.write(b"last words").unwrap();
    assert!(p.srv.is_open());
    drop(p.cli);
    assert_eq!(p.shared.byte(CLI_LIVE), LIVE_CLOSED);
    assert_eq!(p.cli_sim.kicks.get(), 2, "the data kick and the close kick");
    assert!(!p.srv.is_open());
    let mut b = [0u8; 64];
    assert_eq!(p.srv.read(&mut b).unwrap(), 10);
    assert_eq!(&b[..10], b"last words");
    assert!(matches!(p.srv.read(&mut b), Err(Error::Closed)));
    assert!(matches!(p.srv.write(b"x"), Err(Error::Closed)));
}

#[test]
fn blocked_read_returns_when_the_peer_domain_dies() {
    let mut p = pair(10, 11);
    p.srv_sim.dead.set(true);
    // Blocking, nothing ready, the live byte still set: the wait times
    // out, the domain is found gone, the read returns.
    assert!(matches!(p.srv.read(&mut [0; 8]), Err(Error::Closed)));
    assert_eq!(p.srv_sim.waits.get(), 1);
    assert!(!p.srv.is_open());
    let kicks = p.srv_sim.kicks.get();
    drop(p.srv);
    assert_eq!(p.srv_sim.kicks.get(), kicks, "no kick to a dead peer");
}

#[test]
fn layouts_follow_libxenvchan() {
    let l = Layout::for_sizes(0, 0).unwrap();
    assert_eq!((l.left_order, l.right_order), (10, 11));
    assert_eq!(
        Layout::for_sizes(2048, 1024).unwrap().left(),
        Place::InPage(2048)
    );
    let l = Layout::for_sizes(65536, 65536).unwrap();
    assert_eq!((l.left_order, l.right_order, l.grant_count()), (16, 16, 32));
    let l = Layout::for_sizes(100, 5000).unwrap();
    assert_eq!((l.left_order, l.right_order), (11, 13));
    assert_eq!(Layout::for_sizes(1 << 21, 0), Err(LayoutError::Order(21)));
    assert_eq!(Layout::new(9, 11), Err(LayoutError::Order(9)));
    assert_eq!(Layout::new(12, 21), Err(LayoutError::Order(21)));
    assert_eq!(Layout::new(0xffff, 12), Err(LayoutError::Order(0xffff)));
    assert_eq!(Layout::new(11, 11), Err(LayoutError::SameSlot));
    assert_eq!(Layout::new(10, 20), Err(LayoutError::GrantsOverflow));
    assert_eq!(Layout::new(20, 20).unwrap().grant_count(), 512);
    assert!(Layout::new(11, 20).is_ok());
}

#[test]
fn junk_orders_and_grant_lists_are_refused() {
    let page = Mem::new(1);
    // SAFETY: one page, live for the test.
    let shared = unsafe { Shared::new(page.ptr) };
    for (lo, ro) in [
        (0, 0),
        (9, 12),
        (21, 12),
        (11, 11),
        (10, 20),
        (0xffff, 0x8000),
    ] {
        shared.init_server(lo, ro);
        assert!(Layout::read(&shared).is_err(), "{lo} {ro}");
    }
    shared.init_server(20, 20);
    assert!(Layout::read(&shared).is_ok());
    assert!(shared.grant(1017).is_some());
    assert_eq!(shared.grant(1018), None, "past the page");
    assert_eq!(shared.grant(usize::MAX), None);
}

#[test]
fn junk_xenstore_values_are_refused() {
    assert_eq!(parse_key("ring-ref", b"8").unwrap(), 8);
    assert_eq!(parse_key("ring-ref", b"4294967295").unwrap(), u32::MAX);
    for junk in [
        &b""[..],
        b"0",
        b"00",
        b"-1",
        b" 8",
        b"8\n",
        b"8\0",
        b"0x10",
        b"4294967296",
        b"99999999999",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(
                parse_key("event-channel", junk),
                Err(Error::BadKey("event-channel"))
            ),
            "{junk:?}"
        );
    }
}
