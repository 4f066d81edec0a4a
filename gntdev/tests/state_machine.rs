//! State-machine tests of gntdev (issue 14): `proptest` generates
//! sequences of random operations on two simulated domains, runs them
//! against the harness (`common`) and against a reference model, and
//! shrinks a failing sequence to a minimal one.
//!
//! Domain A grants (`ALLOC_GREF`, `DEALLOC_GREF`), domain B maps
//! (`MAP_GRANT_REF`, `UNMAP_GRANT_REF`) and copies (`GRANT_COPY`); on both,
//! processes open the device, `mmap`, `munmap` (whole or part), `mprotect`,
//! read and write pages through faults, set unmap notifies (`CLEAR_BYTE`,
//! `SEND_EVENT`, good and bad offsets and ports), change their limit, ask
//! `GET_OFFSET_FOR_VADDR`, close their file and exit; a domain reaps, B's
//! unmaps may fail (injected: a rollback left mapped, a teardown retried
//! by the reaper), and one of the two domains may die. Inputs are good or bad (unknown offsets, wrong
//! counts, bad pointers, foreign domains, junk references).
//!
//! After each step: the result is the model's (the errno the ABI gives,
//! the granter's bytes read through a fault, a write to a read-only
//! mapping refused, a map of a bad reference failed, each copy segment's
//! status), and so is the state each domain exposes: grant references
//! live and pending and which the peer maps, pool pages, holes and their
//! frames, foreign mappings, each open's grants, notify bytes cleared,
//! events sent and failed, unmaps failed and retried, and the events each
//! domain received. After
//! each sequence every process exits and the surviving domains are back
//! at their baseline, with no reference to their device left.
//!
//! A second property feeds every ioctl arbitrary bytes and arbitrary
//! pointers and counts, and checks the result against the input.
//!
//! A failure prints its seed; `PROPTEST_RNG_SEED=<seed>` replays it. The
//! long variant runs at least a million operations:
//! `cargo test -p gntdev --release --test state_machine -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::*;
use gntdev::abi::*;
use gntdev::errno::{E2BIG, EACCES, ENOSPC, ENOSYS};
use gntdev::{Errno, GntdevStats};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use vm::Prot;
use vm::pager::PagerResult;
use xen::abi::DOMID_SELF;
use xen::abi::grant_table::{
    ENTRIES_PER_FRAME, GNTST_bad_domain, GNTST_bad_gntref, GNTST_general_error, GNTST_okay,
};
use xen::event_channel::EventOps;
use xen::grant::GrantOps;
use xen::sim::Sim;

/// The granting domain's index in a [`World`]'s arrays.
const A: usize = 0;
/// The mapping domain's index.
const B: usize = 1;
/// Pool pages: what A can grant; B's are only `GRANT_COPY` bounce pages.
const POOL: [u32; 2] = [12, 16];
/// Device-wide grant limits (`Services::max_grants`).
const DEVICE_MAX: [u64; 2] = [16, 12];
/// Processes per domain, at most.
const MAX_PROCS: usize = 3;
/// A domain that does not exist.
const NO_DOM: u16 = 0x1234;
/// A grant reference past any table.
const JUNK_REF: u32 = 9999;
/// An event port never allocated.
const NO_PORT: u32 = 77;
/// A file offset no region ever reaches.
const FAR: u64 = 0x40_0000_0000;
/// Addresses no user access reaches: null, unmapped, kernel, wrapping.
const BAD_PTRS: [u64; 4] = [0, 0x8_0000, KERNEL_BASE + 0x1000, u64::MAX - 3];
const EINVAL: Errno = Errno::EINVAL;
const EFAULT: Errno = Errno::EFAULT;
const EBUSY: Errno = Errno::EBUSY;
const SRC: u16 = GNTCOPY_SOURCE_GREF;
const DST: u16 = GNTCOPY_DEST_GREF;
const CLEAR: u32 = UNMAP_NOTIFY_CLEAR_BYTE;
const SEND: u32 = UNMAP_NOTIFY_SEND_EVENT;

/// The choice of the first `(bound, choice)` with `sel < bound`, else
/// the last: selectors below the first bound, 0 included, are the plain
/// case.
fn pick<T: Copy>(sel: u8, choices: &[(u8, T)]) -> T {
    let hit = choices.iter().find(|&&(bound, _)| sel < bound);
    hit.unwrap_or(&choices[choices.len() - 1]).1
}

/// `good`, or (for a few selectors) an address that faults.
fn ptr(sel: u8, good: u64) -> u64 {
    if sel < 230 {
        good
    } else {
        BAD_PTRS[usize::from(sel) % BAD_PTRS.len()]
    }
}

/// Mostly read-write, else read-only, rarely none.
fn protection(sel: u8) -> Prot {
    pick(sel, &[(160, RW), (230, Prot::READ), (0, Prot::empty())])
}

/// One step of a sequence. Selectors (`p` a process, `r` a region, `e` a
/// mapping...) pick among what exists when the step runs, so that every
/// sequence stays meaningful while proptest shrinks it; 0 is the plain
/// case.
#[derive(Clone, Debug)]
enum Op {
    Open {
        side: usize,
        nopopulate: bool,
    },
    Close {
        side: usize,
        p: u8,
    },
    Exit {
        side: usize,
        p: u8,
    },
    Alloc {
        p: u8,
        count: u8,
        flags: u8,
        to: u8,
        ids: u8,
    },
    Dealloc {
        p: u8,
        r: u8,
        how: u8,
    },
    Map {
        p: u8,
        refs: Vec<(u8, u8)>,
        count: u8,
        ptr: u8,
    },
    Unmap {
        p: u8,
        r: u8,
        how: u8,
    },
    Mmap {
        side: usize,
        p: u8,
        r: u8,
        pages: u8,
        prot: u8,
        how: u8,
    },
    Munmap {
        side: usize,
        p: u8,
        e: u8,
        first: u8,
        len: u8,
    },
    Mprotect {
        side: usize,
        p: u8,
        e: u8,
        first: u8,
        len: u8,
        prot: u8,
    },
    Touch {
        side: usize,
        p: u8,
        e: u8,
        page: u8,
        write: bool,
        at: u16,
        len: u8,
    },
    Copy {
        p: u8,
        segs: Vec<Seg>,
        count: u8,
    },
    Notify {
        side: usize,
        p: u8,
        r: u8,
        at: u16,
        action: u8,
        port: u8,
    },
    SetMax {
        side: usize,
        p: u8,
        count: u8,
    },
    GetOffset {
        side: usize,
        p: u8,
        e: u8,
        page: u8,
    },
    Reap {
        side: usize,
    },
    Kill {
        side: usize,
    },
    InjectUnmapFailures {
        count: u8,
    },
}

/// A `GRANT_COPY` segment: `kind` picks grant to user, user to grant,
/// grant to grant, empty, bad flags or crossing the page.
#[derive(Clone, Debug)]
struct Seg {
    kind: u8,
    r: [u8; 2],
    off: [u16; 2],
    len: u8,
    dom: u8,
    ptr: u8,
    val: u8,
}

fn seg() -> impl Strategy<Value = Seg> {
    any::<(u8, [u8; 2], [u16; 2], u8, u8, u8, u8)>().prop_map(
        |(kind, r, off, len, dom, ptr, val)| Seg {
            kind,
            r,
            off,
            len,
            dom,
            ptr,
            val,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let side = || 0..2usize;
    let b = any::<u8>;
    prop_oneof![
        1 => (side(), any::<bool>()).prop_map(|(side, nopopulate)| Op::Open { side, nopopulate }),
        1 => (side(), b()).prop_map(|(side, p)| Op::Close { side, p }),
        1 => (side(), b()).prop_map(|(side, p)| Op::Exit { side, p }),
        8 => (b(), b(), b(), b(), b()).prop_map(|(p, count, flags, to, ids)| {
            Op::Alloc { p, count, flags, to, ids }
        }),
        4 => (b(), b(), b()).prop_map(|(p, r, how)| Op::Dealloc { p, r, how }),
        8 => (b(), vec((b(), b()), 1..=4), b(), b()).prop_map(|(p, refs, count, ptr)| {
            Op::Map { p, refs, count, ptr }
        }),
        4 => (b(), b(), b()).prop_map(|(p, r, how)| Op::Unmap { p, r, how }),
        10 => (side(), b(), b(), b(), b(), b()).prop_map(|(side, p, r, pages, prot, how)| {
            Op::Mmap { side, p, r, pages, prot, how }
        }),
        4 => (side(), b(), b(), b(), b()).prop_map(|(side, p, e, first, len)| {
            Op::Munmap { side, p, e, first, len }
        }),
        4 => (side(), b(), b(), b(), b(), b()).prop_map(|(side, p, e, first, len, prot)| {
            Op::Mprotect { side, p, e, first, len, prot }
        }),
        14 => (side(), b(), b(), b(), any::<bool>(), any::<u16>(), b()).prop_map(
            |(side, p, e, page, write, at, len)| Op::Touch { side, p, e, page, write, at, len }
        ),
        5 => (b(), vec(seg(), 1..=4), b()).prop_map(|(p, segs, count)| Op::Copy { p, segs, count }),
        5 => (side(), b(), b(), any::<u16>(), b(), b()).prop_map(|(side, p, r, at, action, port)| {
            Op::Notify { side, p, r, at, action, port }
        }),
        1 => (side(), b(), b()).prop_map(|(side, p, count)| Op::SetMax { side, p, count }),
        2 => (side(), b(), b(), b()).prop_map(|(side, p, e, page)| Op::GetOffset { side, p, e, page }),
        3 => side().prop_map(|side| Op::Reap { side }),
        1 => side().prop_map(|side| Op::Kill { side }),
        1 => b().prop_map(|count| Op::InjectUnmapFailures { count }),
    ]
}

/// A grant of A's table: its page (in [`World::pages`]), the domain it is
/// for, and whether its end was deferred (it waits for a reap).
struct Grant {
    page: usize,
    to: u16,
    writable: bool,
    ended: bool,
}

/// A `SET_UNMAP_NOTIFY`.
#[derive(Clone, Copy)]
struct Notify {
    index: u64,
    action: u32,
    port: u32,
}

/// A mapping object of foreign grants: writable or not, the pages its
/// grants mapped once populated, and the `(slot, reference)` of mappings
/// a failed map could not unmap ("stuck" until the teardown).
struct MapObject {
    writable: bool,
    pages: Option<Vec<usize>>,
    stuck: Vec<(usize, u32)>,
}

/// A torn-down mapping whose unmap failed: the references still mapped,
/// its hole's frames, and the reaper's back-off.
struct FailedUnmap {
    grefs: Vec<u32>,
    frames: u64,
    delay: u32,
    wait: u32,
}

enum Kind {
    /// `ALLOC_GREF`: our references and pages.
    Run { refs: Vec<u32>, pages: Vec<usize> },
    /// `MAP_GRANT_REF`: `(domain, reference)` pairs, whether the last
    /// object was writable (true before any), the live object.
    Map {
        refs: Vec<(u32, u32)>,
        writable: bool,
        object: Option<MapObject>,
    },
}

/// A region of one open: alive while recorded in the file or mmapped.
struct Region {
    index: u64,
    count: u32,
    recorded: bool,
    notify: Option<Notify>,
    kind: Kind,
}

impl Region {
    /// The live object of a map region.
    fn object(&self) -> Option<&MapObject> {
        match &self.kind {
            Kind::Map { object, .. } => object.as_ref(),
            Kind::Run { .. } => None,
        }
    }

    /// The references its live object has mapped (all of A's).
    fn mapped(&self) -> Vec<u32> {
        let (Kind::Map { refs, .. }, Some(o)) = (&self.kind, self.object()) else {
            return Vec::new();
        };
        let populated = refs.iter().filter(|_| o.pages.is_some()).map(|&(_, r)| r);
        populated.chain(o.stuck.iter().map(|&(_, r)| r)).collect()
    }
}

/// An entry of a process's address space (as `vm::map` clips them).
#[derive(Clone, Copy)]
struct Entry {
    start: u64,
    end: u64,
    region: usize,
    offset: u64,
    prot: Prot,
    max: Prot,
}

/// A process and what the model knows of it.
struct Process {
    proc: Proc,
    open: bool,
    limit: u32,
    regions: Vec<Region>,
    entries: BTreeMap<u64, Entry>,
}

impl Process {
    /// Ids of the recorded regions, by offset.
    fn recorded(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.regions.len())
            .filter(|&id| self.regions[id].recorded)
            .collect();
        ids.sort_by_key(|&id| self.regions[id].index);
        ids
    }

    /// Grants the open holds.
    fn used(&self) -> u64 {
        self.recorded()
            .iter()
            .map(|&id| u64::from(self.regions[id].count))
            .sum()
    }

    /// The recorded region holding byte `index`.
    fn region_at(&self, index: u64) -> Option<usize> {
        self.recorded().into_iter().find(|&id| {
            let g = &self.regions[id];
            index >= g.index && index - g.index < u64::from(g.count) * PAGE
        })
    }

    /// The offset a region of `count` pages gets (first fit).
    fn first_fit(&self, count: u32) -> u64 {
        let mut at = 0;
        for id in self.recorded() {
            let g = &self.regions[id];
            if g.index - at >= u64::from(count) * PAGE {
                break;
            }
            at = g.index + u64::from(g.count) * PAGE;
        }
        at
    }

    fn mapped(&self, id: usize) -> bool {
        self.entries.values().any(|e| e.region == id)
    }

    /// Splits the entry that crosses `at`.
    fn clip(&mut self, at: u64) {
        if let Some((_, e)) = self.entries.range_mut(..at).next_back()
            && at < e.end
        {
            let right = Entry {
                start: at,
                offset: e.offset + (at - e.start),
                ..*e
            };
            e.end = at;
            self.entries.insert(at, right);
        }
    }

    /// `[start, end)` inside mapping `e` (selectors): from page `first`,
    /// to its end, `len` pages, or one page past it.
    fn range(&self, e: u8, first: u8, len: u8) -> Option<(u64, u64)> {
        let en = self
            .entries
            .values()
            .nth(usize::from(e) % self.entries.len().max(1))?;
        let np = (en.end - en.start) / PAGE;
        let first = u64::from(first) % np;
        let rest = np - first;
        let n = match u64::from(len) % (rest + 1) {
            0 => rest,
            k if k == rest => rest + 1,
            k => k,
        };
        let start = en.start + first * PAGE;
        Some((start, start + n * PAGE))
    }
}

/// What a step should do besides its result, per domain.
#[derive(Clone, Copy, Default)]
struct Expect {
    cleared: u64,
    sent: u64,
    notify_errors: u64,
    mappings: u64,
    map_failures: u64,
    unmap_errors: u64,
    unmap_retries: u64,
    /// The peer signalled our port.
    event: bool,
}

/// A copy segment's side.
#[derive(Clone, Copy)]
enum End {
    User { addr: u64, good: bool },
    Grant { dom: u16, gref: u32, off: u16 },
}

impl End {
    fn encode(self) -> u64 {
        match self {
            End::User { addr, .. } => CopySideArg::Virt(addr).encode(),
            End::Grant { dom, gref, off } => CopySideArg::Foreign {
                gref,
                offset: off,
                domid: dom,
            }
            .encode(),
        }
    }
}

/// A copy segment as sent, with the bytes of its user source.
struct Plan {
    flags: u16,
    src: End,
    dst: End,
    len: u16,
    data: Vec<u8>,
}

/// Both domains, their processes, and the model.
struct World {
    sim: Sim,
    sides: [Side; 2],
    procs: [Vec<Process>; 2],
    /// Each domain's end of the channel between them.
    ports: [u32; 2],
    dead: Option<usize>,
    /// A's grant table.
    grants: BTreeMap<u32, Grant>,
    /// Every reference A handed out, for stale ones.
    seen: Vec<u32>,
    /// Contents of the pages A granted.
    pages: Vec<Vec<u8>>,
    /// B's unmap ops still to fail, and its failed unmaps.
    unmap_failures: u32,
    failed: Vec<FailedUnmap>,
    expect: [Expect; 2],
}

impl World {
    /// The two domains, each with a process whose faults populate or not
    /// (`nopopulate`), and the start most sequences need.
    fn new(nopopulate: bool) -> Self {
        let sim = Sim::new();
        let sides = [A, B].map(|s| Side::with_max_grants(&sim, 4, POOL[s], DEVICE_MAX[s]));
        let port_a = sides[A].dom.alloc_unbound(sides[B].id()).unwrap();
        let port_b = sides[B]
            .dom
            .bind_interdomain(sides[A].id(), port_a)
            .unwrap();
        let mut w = Self {
            sim,
            sides,
            procs: [Vec::new(), Vec::new()],
            ports: [port_a, port_b],
            dead: None,
            grants: BTreeMap::new(),
            seen: Vec::new(),
            pages: Vec::new(),
            unmap_failures: 0,
            failed: Vec::new(),
            expect: Default::default(),
        };
        w.open(A, nopopulate);
        w.open(B, nopopulate);
        // Most sequences start from here: A shares two pages, which B
        // records.
        let alloc = Op::Alloc {
            p: 0,
            count: 1,
            flags: 0,
            to: 0,
            ids: 0,
        };
        let refs = vec![(0, 0), (0, 1)];
        let map = Op::Map {
            p: 0,
            refs,
            count: 0,
            ptr: 0,
        };
        assert!(w.step(&alloc) && w.step(&map));
        w
    }

    /// Runs `op`; `false` if it does not apply now (nothing done).
    fn step(&mut self, op: &Op) -> bool {
        let before = [A, B].map(|s| self.sides[s].dev.stats());
        self.expect = Default::default();
        let done = match *op {
            Op::Open { side, nopopulate } => self.open(side, nopopulate),
            Op::Close { side, p } => self.close(side, p),
            Op::Exit { side, p } => self.exit(side, p),
            Op::Alloc {
                p,
                count,
                flags,
                to,
                ids,
            } => self.alloc(p, count, flags, to, ids),
            Op::Dealloc { p, r, how } => self.release(A, p, r, how),
            Op::Map {
                p,
                ref refs,
                count,
                ptr,
            } => self.map(p, refs, count, ptr),
            Op::Unmap { p, r, how } => self.release(B, p, r, how),
            Op::Mmap {
                side,
                p,
                r,
                pages,
                prot,
                how,
            } => self.mmap(side, p, r, pages, protection(prot), how),
            Op::Munmap {
                side,
                p,
                e,
                first,
                len,
            } => self.munmap(side, p, e, first, len),
            Op::Mprotect {
                side,
                p,
                e,
                first,
                len,
                prot,
            } => self.mprotect(side, p, (e, first, len), protection(prot)),
            Op::Touch {
                side,
                p,
                e,
                page,
                write,
                at,
                len,
            } => self.touch(side, p, (e, page), write, at, len),
            Op::Copy { p, ref segs, count } => self.copy(p, segs, count),
            Op::Notify {
                side,
                p,
                r,
                at,
                action,
                port,
            } => self.notify(side, p, r, at, action, port),
            Op::SetMax { side, p, count } => self.set_max(side, p, count),
            Op::GetOffset { side, p, e, page } => self.get_offset(side, p, e, page),
            Op::Reap { side } => self.reap(side),
            Op::Kill { side } => self.kill(side),
            Op::InjectUnmapFailures { count } => self.inject(count),
        };
        if done {
            self.check(&before);
        }
        done
    }

    fn alive(&self, side: usize) -> bool {
        self.dead != Some(side)
    }

    /// Process `p` (modulo) of a living `side`; with `open`, only if its
    /// file is open.
    fn pick(&self, side: usize, p: u8, open: bool) -> Option<usize> {
        let procs = &self.procs[side];
        if !self.alive(side) || procs.is_empty() {
            return None;
        }
        let i = usize::from(p) % procs.len();
        (!open || procs[i].open).then_some(i)
    }

    /// A reference to map or copy: mostly one of A's grants, else one A
    /// once handed out, else junk.
    fn pick_ref(&self, sel: u8) -> u32 {
        let live: Vec<u32> = self.grants.keys().copied().collect();
        let sel = usize::from(sel);
        match sel {
            0..236 if !live.is_empty() => live[sel % live.len()],
            0..250 if !self.seen.is_empty() => self.seen[sel % self.seen.len()],
            _ => JUNK_REF,
        }
    }

    /// Grants all opens of `side` hold.
    fn held(&self, side: usize) -> u64 {
        self.procs[side].iter().map(Process::used).sum()
    }

    /// The references of A's that B maps: in its live objects, and in
    /// the failed unmaps its reaper retries.
    fn b_mappings(&self) -> Vec<u32> {
        let regions = self.procs[B].iter().flat_map(|p| &p.regions);
        let failed = self.failed.iter().flat_map(|f| f.grefs.iter().copied());
        regions.flat_map(Region::mapped).chain(failed).collect()
    }

    /// B's mappings of A's `gref`.
    fn pins(&self, gref: u32) -> usize {
        if !self.alive(B) {
            return 0;
        }
        self.b_mappings().into_iter().filter(|&r| r == gref).count()
    }

    /// One batched unmap by B: returns the ops that fail, the first
    /// ones while failures are injected.
    fn unmap_ops<T>(&mut self, ops: Vec<T>) -> Vec<T> {
        let n = (self.unmap_failures as usize).min(ops.len());
        self.unmap_failures -= n as u32;
        self.expect[B].unmap_errors += n as u64;
        ops.into_iter().take(n).collect()
    }

    /// The `GNTST_*` Xen gives B for mapping or copying `gref` of `dom`
    /// (`write`: to write it).
    fn grant_status(&self, dom: u32, gref: u32, write: bool) -> i16 {
        if dom != u32::from(self.sides[A].id()) || !self.alive(A) {
            return GNTST_bad_domain;
        }
        match self.grants.get(&gref) {
            Some(g) if g.to == self.sides[B].id() && (!write || g.writable) => GNTST_okay,
            _ => {
                let frames = self.sides[A].dom.grants().stats().frames as usize;
                if gref as usize >= frames * ENTRIES_PER_FRAME {
                    GNTST_bad_gntref
                } else {
                    GNTST_general_error
                }
            }
        }
    }

    /// A new zeroed page of A's.
    fn new_page(&mut self) -> usize {
        self.pages.push(vec![0; PAGE as usize]);
        self.pages.len() - 1
    }

    /// Runs notify `n` of `side`, clearing the byte `(page, offset)` if
    /// given.
    fn fire(&mut self, side: usize, n: Notify, byte: Option<(usize, u64)>) {
        if n.action & CLEAR != 0
            && let Some((page, off)) = byte
        {
            self.pages[page][off as usize] = 0;
            self.expect[side].cleared += 1;
        }
        if n.action & SEND != 0 {
            if n.port == self.ports[side] {
                self.expect[side].sent += 1;
                // A dead peer's end is unbound: the event is dropped.
                if self.alive(1 - side) {
                    self.expect[1 - side].event = true;
                }
            } else {
                self.expect[side].notify_errors += 1;
            }
        }
    }

    /// Region `id` is no longer in its file: gone now if not mapped.
    fn unrecord(&mut self, side: usize, i: usize, id: usize) {
        self.procs[side][i].regions[id].recorded = false;
        if self.procs[side][i].mapped(id) {
            return;
        }
        let g = &mut self.procs[side][i].regions[id];
        let notify = g.notify.take();
        match g.kind {
            Kind::Run { .. } => self.destroy_run(side, i, id, notify),
            // Never mapped now: no byte to clear.
            Kind::Map { .. } => notify.into_iter().for_each(|n| self.fire(side, n, None)),
        }
    }

    /// The last mapping of region `id` went: its object dies.
    fn object_died(&mut self, side: usize, i: usize, id: usize) {
        let g = &mut self.procs[side][i].regions[id];
        if let Kind::Run { .. } = g.kind {
            if !g.recorded {
                let notify = g.notify.take();
                self.destroy_run(side, i, id, notify);
            }
            return;
        }
        // Notify, then ONE unmap of every grant the object mapped.
        let ops = g.mapped();
        let (index, frames, notify) = (g.index, u64::from(g.count), g.notify.take());
        let Kind::Map { object, .. } = &mut g.kind else {
            unreachable!("a map")
        };
        let o = object.take().expect("a mapped region has its object");
        if let Some(n) = notify {
            // The byte is there only while the grants are mapped.
            let byte = (o.pages).map(|p| (p[((n.index - index) / PAGE) as usize], n.index % PAGE));
            self.fire(side, n, byte);
        }
        let grefs = self.unmap_ops(ops);
        if !grefs.is_empty() {
            self.failed.push(FailedUnmap {
                grefs,
                frames,
                delay: 1,
                wait: 1,
            });
        }
    }

    /// A's run `id` is deallocated and unmapped: notify, end its grants.
    fn destroy_run(&mut self, side: usize, i: usize, id: usize, notify: Option<Notify>) {
        let g = &self.procs[side][i].regions[id];
        let Kind::Run { refs, pages } = &g.kind else {
            unreachable!("a run")
        };
        let (refs, byte) = (
            refs.clone(),
            notify.map(|n| (pages[((n.index - g.index) / PAGE) as usize], n.index % PAGE)),
        );
        if let Some(n) = notify {
            self.fire(side, n, byte);
        }
        for r in refs {
            if self.pins(r) == 0 {
                self.grants.remove(&r);
            } else {
                self.grants.get_mut(&r).expect("granted").ended = true;
            }
        }
    }

    /// `munmap(start, end - start)` in the model.
    fn unmap_model(&mut self, side: usize, i: usize, start: u64, end: u64) {
        let p = &mut self.procs[side][i];
        p.clip(start);
        p.clip(end);
        let starts: Vec<u64> = p.entries.range(start..end).map(|(&s, _)| s).collect();
        let removed: Vec<usize> = starts
            .iter()
            .map(|s| p.entries.remove(s).expect("listed").region)
            .collect();
        // The entries go in address order: an object dies with the last
        // one that maps it.
        let mut touched: Vec<usize> = Vec::new();
        for &id in removed.iter().rev() {
            if !touched.contains(&id) {
                touched.insert(0, id);
            }
        }
        for id in touched {
            if !self.procs[side][i].mapped(id) {
                self.object_died(side, i, id);
            }
        }
    }

    /// The model's close of process `i`'s file.
    fn close_model(&mut self, side: usize, i: usize) {
        self.procs[side][i].open = false;
        for id in self.procs[side][i].recorded() {
            self.unrecord(side, i, id);
        }
    }

    fn open(&mut self, side: usize, nopopulate: bool) -> bool {
        if !self.alive(side) || self.procs[side].len() >= MAX_PROCS {
            return false;
        }
        let proc = Proc::new(&self.sides[side]);
        proc.nopopulate.store(nopopulate, Relaxed);
        self.procs[side].push(Process {
            proc,
            open: true,
            limit: DEFAULT_MAX_GRANTS,
            regions: Vec::new(),
            entries: BTreeMap::new(),
        });
        true
    }

    fn close(&mut self, side: usize, p: u8) -> bool {
        let Some(i) = self.pick(side, p, true) else {
            return false;
        };
        self.procs[side][i].proc.file = None;
        self.close_model(side, i);
        true
    }

    fn exit(&mut self, side: usize, p: u8) -> bool {
        let Some(i) = self.pick(side, p, false) else {
            return false;
        };
        self.unmap_model(side, i, 0, u64::MAX);
        if self.procs[side][i].open {
            self.close_model(side, i);
        }
        self.procs[side].remove(i).proc.exit();
        true
    }

    fn alloc(&mut self, p: u8, count: u8, flags: u8, to: u8, ids: u8) -> bool {
        let Some(i) = self.pick(A, p, true) else {
            return false;
        };
        let count = match count {
            0..200 => 1 + u32::from(count % 4),
            200..220 => 0,
            220..240 => POOL[A] + 1,
            _ => DEFAULT_MAX_GRANTS + 1,
        };
        let flags = pick(
            flags,
            &[(200, GNTDEV_ALLOC_FLAG_WRITABLE), (244, 0), (0, 2)],
        );
        let to = pick(to, &[(240, self.sides[B].id()), (0, NO_DOM)]);
        let pr = &self.procs[A][i];
        let buf = pr.proc.user.alloc(count.min(64) as usize * 4 + 4);
        let at = ptr(ids, buf);
        let n = u64::from(count);
        let want = if flags & !GNTDEV_ALLOC_FLAG_WRITABLE != 0 || count == 0 {
            Err(EINVAL)
        } else if pr.used() + n > u64::from(pr.limit) || self.held(A) + n > DEVICE_MAX[A] {
            Err(ENOSPC)
        } else if self.grants.len() as u64 + n > u64::from(POOL[A]) {
            Err(Errno::ENOMEM)
        } else if at != buf {
            Err(EFAULT)
        } else {
            Ok(())
        };
        let arg = AllocGref {
            domid: to,
            flags,
            count,
            index: 0,
            gref_ids: at,
        };
        let got = pr.proc.ioctl_arg(IOCTL_GNTDEV_ALLOC_GREF, &arg);
        assert_eq!(got.map(drop), want, "{arg:?}");
        let Ok(out) = got else { return true };
        assert_eq!(out.index, pr.first_fit(count), "first fit");
        let refs: Vec<u32> = pr
            .proc
            .user
            .get(buf, count as usize * 4)
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        let mut pages = Vec::new();
        for &r in &refs {
            assert!(!self.grants.contains_key(&r), "ref {r} handed out twice");
            let page = self.new_page();
            pages.push(page);
            let writable = flags != 0;
            let ended = false;
            self.grants.insert(
                r,
                Grant {
                    page,
                    to,
                    writable,
                    ended,
                },
            );
            if !self.seen.contains(&r) {
                self.seen.push(r);
            }
        }
        self.procs[A][i].regions.push(Region {
            index: out.index,
            count,
            recorded: true,
            notify: None,
            kind: Kind::Run { refs, pages },
        });
        true
    }

    /// `DEALLOC_GREF` (A) or `UNMAP_GRANT_REF` (B) of a region, or of a
    /// wrong count or offset.
    fn release(&mut self, side: usize, p: u8, r: u8, how: u8) -> bool {
        let Some(i) = self.pick(side, p, true) else {
            return false;
        };
        let pr = &self.procs[side][i];
        let ids = pr.recorded();
        let (index, count) = match ids.get(usize::from(r) % ids.len().max(1)) {
            Some(&id) => (pr.regions[id].index, pr.regions[id].count),
            None => (0, 1),
        };
        let (index, count) = pick(
            how,
            &[
                (192, (index, count)),
                (213, (index, count + 1)),
                (234, (index + PAGE, count)),
                (0, (u64::MAX - PAGE + 1, 2)),
            ],
        );
        let target = ids.into_iter().find(|&id| {
            let g = &pr.regions[id];
            let run = matches!(g.kind, Kind::Run { .. });
            g.index == index && g.count == count && run == (side == A)
        });
        let got = if side == A {
            pr.proc.dealloc_gref(index, count)
        } else {
            pr.proc.unmap_grant_ref(index, count)
        };
        assert_eq!(got, target.map(drop).ok_or(EINVAL), "{index:#x} {count}");
        if let Some(id) = target {
            self.unrecord(side, i, id);
        }
        true
    }

    fn map(&mut self, p: u8, refs: &[(u8, u8)], count: u8, ptr_sel: u8) -> bool {
        let Some(i) = self.pick(B, p, true) else {
            return false;
        };
        let (a, b) = (u32::from(self.sides[A].id()), u32::from(self.sides[B].id()));
        let pairs: Vec<(u32, u32)> = refs
            .iter()
            .map(|&(d, r)| {
                let dom = pick(
                    d,
                    &[
                        (240, a),
                        (244, NO_DOM.into()),
                        (248, b),
                        (252, DOMID_SELF.into()),
                        (0, 0x1_0000 | a),
                    ],
                );
                (dom, self.pick_ref(r))
            })
            .collect();
        let pr = &self.procs[B][i];
        let raw: Vec<u8> = pairs
            .iter()
            .flat_map(|&(d, r)| [d.to_ne_bytes(), r.to_ne_bytes()].concat())
            .collect();
        let buf = pr.proc.user.alloc(raw.len().max(8));
        pr.proc.user.put(buf, &raw);
        let at = ptr(ptr_sel, buf);
        let limit = DEFAULT_MAX_GRANTS + 1;
        let count = pick(count, &[(240, pairs.len() as u32), (248, 0), (0, limit)]);
        let n = u64::from(count);
        let bad_dom = |&(d, _): &(u32, u32)| d > 0xffff || d == b || d == u32::from(DOMID_SELF);
        let want = if count == 0 {
            Err(EINVAL)
        } else if pr.used() + n > u64::from(pr.limit) || self.held(B) + n > DEVICE_MAX[B] {
            Err(ENOSPC)
        } else if at != buf {
            Err(EFAULT)
        } else if pairs.iter().any(bad_dom) {
            Err(EINVAL)
        } else {
            Ok(())
        };
        let arg = MapGrantRef {
            count,
            pad0: 0,
            index: 0,
            refs: at,
        };
        let got = pr.proc.ioctl_arg(IOCTL_GNTDEV_MAP_GRANT_REF, &arg);
        assert_eq!(got.map(drop), want, "{arg:?} {pairs:?}");
        if let Ok(out) = got {
            assert_eq!(out.index, pr.first_fit(count), "first fit");
            self.procs[B][i].regions.push(Region {
                index: out.index,
                count,
                recorded: true,
                notify: None,
                kind: Kind::Map {
                    refs: pairs,
                    writable: true,
                    object: None,
                },
            });
        }
        true
    }

    fn mmap(&mut self, side: usize, p: u8, r: u8, pages: u8, prot: Prot, how: u8) -> bool {
        let Some(i) = self.pick(side, p, true) else {
            return false;
        };
        let pr = &self.procs[side][i];
        let ids = pr.recorded();
        let (offset, n) = match ids.get(usize::from(r) % ids.len().max(1)) {
            Some(&id) => {
                let g = &pr.regions[id];
                let c = u64::from(g.count);
                let part = 1 + u64::from(pages) % c;
                let n = pick(pages, &[(200, c), (236, part), (246, 0), (0, c + 1)]);
                let offset = pick(
                    how,
                    &[
                        (220, g.index),
                        (232, g.index + 1),
                        (244, g.index + PAGE),
                        (0, FAR),
                    ],
                );
                (offset, n)
            }
            None => (FAR, 1 + u64::from(pages) % 4),
        };
        let len = if n > 0 && pages & 1 != 0 {
            n * PAGE - 100
        } else {
            n * PAGE
        };
        let writable = prot.contains(Prot::WRITE);
        let region = ids.into_iter().find(|&id| pr.regions[id].index == offset);
        let want = match region.map(|id| (id, &pr.regions[id])) {
            _ if !offset.is_multiple_of(PAGE) || len == 0 => Err(EINVAL),
            None => Err(EINVAL),
            Some((_, g)) if n > u64::from(g.count) => Err(EINVAL),
            Some((id, g)) => match (&g.kind, g.object()) {
                (Kind::Run { .. }, _) => Ok(id),
                (_, Some(o)) if writable && !o.writable => Err(EACCES),
                (_, None) if !writable && g.notify.is_some_and(|n| n.action & CLEAR != 0) => {
                    Err(EACCES)
                }
                _ => Ok(id),
            },
        };
        let got = pr.proc.mmap(offset, len, prot);
        assert_eq!(got.map(drop), want.map(drop), "mmap {offset:#x} {len:#x}");
        let (Ok(va), Ok(id)) = (got, want) else {
            return true;
        };
        if let Some(other) = pr.entries.values().find(|e| e.region == id) {
            let one = Arc::ptr_eq(&pr.proc.object_of(other.start), &pr.proc.object_of(va));
            assert!(one, "the mappings of a region share its object");
        }
        let pr = &mut self.procs[side][i];
        let max = match &mut pr.regions[id].kind {
            Kind::Run { .. } => Prot::all(),
            Kind::Map {
                writable: w,
                object,
                ..
            } => {
                let o = object.get_or_insert_with(|| {
                    *w = writable;
                    MapObject {
                        writable,
                        pages: None,
                        stuck: Vec::new(),
                    }
                });
                if o.writable {
                    Prot::all()
                } else {
                    Prot::all() - Prot::WRITE
                }
            }
        };
        let end = va + n * PAGE;
        let entry = Entry {
            start: va,
            end,
            region: id,
            offset,
            prot,
            max,
        };
        pr.entries.insert(va, entry);
        true
    }

    fn munmap(&mut self, side: usize, p: u8, e: u8, first: u8, len: u8) -> bool {
        let Some(i) = self.pick(side, p, false) else {
            return false;
        };
        let Some((start, end)) = self.procs[side][i].range(e, first, len) else {
            return false;
        };
        self.procs[side][i].proc.munmap_range(start, end - start);
        self.unmap_model(side, i, start, end);
        true
    }

    fn mprotect(&mut self, side: usize, p: u8, (e, first, len): (u8, u8, u8), prot: Prot) -> bool {
        let Some(i) = self.pick(side, p, false) else {
            return false;
        };
        let pr = &mut self.procs[side][i];
        let Some((start, end)) = pr.range(e, first, len) else {
            return false;
        };
        // As `vm_map_protect`: every entry allows it, and no hole.
        let from = pr
            .entries
            .range(..=start)
            .next_back()
            .filter(|(_, en)| start < en.end)
            .map_or(start, |(&s, _)| s);
        let mut at = start;
        let mut want = Ok(());
        for en in pr.entries.range(from..end).map(|(_, en)| en) {
            if en.start > at {
                want = Err(Errno::ENOMEM);
                break;
            }
            if !en.max.contains(prot) {
                want = Err(EACCES);
                break;
            }
            at = en.end;
        }
        if want.is_ok() && at < end {
            want = Err(Errno::ENOMEM);
        }
        let got = pr.proc.mprotect(start, end - start, prot);
        assert_eq!(got, want, "mprotect {start:#x}..{end:#x} {prot:?}");
        if got.is_ok() {
            pr.clip(start);
            pr.clip(end);
            for (_, en) in pr.entries.range_mut(start..end) {
                en.prot = prot;
            }
        }
        true
    }

    /// The page an access to `va` in mapping `en` reaches, as the model
    /// sees it; a first fault of a grant map populates it.
    fn fault_model(
        &mut self,
        side: usize,
        i: usize,
        en: &Entry,
        va: u64,
        write: bool,
    ) -> Result<usize, PagerResult> {
        let need = if write { Prot::WRITE } else { Prot::READ };
        if !en.prot.contains(need) {
            return Err(PagerResult::Error);
        }
        let g = &self.procs[side][i].regions[en.region];
        let k = ((en.offset - g.index + va - en.start) / PAGE) as usize;
        let (refs, o) = match (&g.kind, g.object()) {
            (Kind::Run { pages, .. }, _) => return Ok(pages[k]),
            (Kind::Map { refs, .. }, Some(o)) => (refs, o),
            (Kind::Map { .. }, None) => unreachable!("a mapped region has its object"),
        };
        if let Some(pages) = &o.pages {
            return Ok(pages[k]);
        }
        // ONE batched map of every grant: a slot still stuck, or a bad
        // grant, fails it, and what it mapped is unmapped again.
        let mapped: Vec<(usize, u32)> = (refs.iter().enumerate())
            .filter(|&(k, &(d, r))| {
                let busy = o.stuck.iter().any(|&(s, _)| s == k);
                !busy && self.grant_status(d, r, o.writable) == GNTST_okay
            })
            .map(|(k, &(_, r))| (k, r))
            .collect();
        let (n, id) = (refs.len(), en.region);
        if mapped.len() == n {
            let pages: Vec<usize> = refs.iter().map(|(_, r)| self.grants[r].page).collect();
            let page = pages[k];
            self.map_object(side, i, id).pages = Some(pages);
            self.expect[side].mappings += 1;
            return Ok(page);
        }
        self.expect[side].map_failures += 1;
        let stuck = self.unmap_ops(mapped);
        self.map_object(side, i, id).stuck.extend(stuck);
        Err(PagerResult::Error)
    }

    /// The live object of map region `id` of process `i`.
    fn map_object(&mut self, side: usize, i: usize, id: usize) -> &mut MapObject {
        match &mut self.procs[side][i].regions[id].kind {
            Kind::Map {
                object: Some(o), ..
            } => o,
            _ => unreachable!("a mapped map region"),
        }
    }

    /// Reads or writes up to 16 bytes of one page of a mapping.
    fn touch(
        &mut self,
        side: usize,
        p: u8,
        (e, page): (u8, u8),
        write: bool,
        at: u16,
        len: u8,
    ) -> bool {
        let Some(i) = self.pick(side, p, false) else {
            return false;
        };
        let entries = &self.procs[side][i].entries;
        let Some(&en) = entries.values().nth(usize::from(e) % entries.len().max(1)) else {
            return false;
        };
        let va = en.start + u64::from(page) % ((en.end - en.start) / PAGE) * PAGE;
        let off = usize::from(at) % PAGE as usize;
        let n = (1 + usize::from(len % 16)).min(PAGE as usize - off);
        let want = self.fault_model(side, i, &en, va, write);
        let proc = &self.procs[side][i].proc;
        let va = va + off as u64;
        if write {
            let bytes: Vec<u8> = (0..n).map(|k| len.wrapping_add(k as u8) | 1).collect();
            assert_eq!(proc.write(va, &bytes), want.map(drop), "write {va:#x}");
            if let Ok(pg) = want {
                self.pages[pg][off..off + n].copy_from_slice(&bytes);
            }
        } else {
            let mut buf = vec![0; n];
            assert_eq!(proc.read(va, &mut buf), want.map(drop), "read {va:#x}");
            if let Ok(pg) = want {
                assert_eq!(buf, self.pages[pg][off..off + n], "bytes at {va:#x}");
            }
        }
        true
    }

    /// The segments of a copy by B's process `i`.
    fn copy_plan(&self, i: usize, segs: &[Seg]) -> Vec<Plan> {
        let user = &self.procs[B][i].proc.user;
        let a = self.sides[A].id();
        segs.iter()
            .map(|s| {
                let len = 1 + u16::from(s.len % 64);
                let dom = if s.dom < 240 { a } else { NO_DOM };
                let grant = |k: usize| End::Grant {
                    dom,
                    gref: self.pick_ref(s.r[k]),
                    off: s.off[k] % (PAGE as u16 - len + 1),
                };
                let data: Vec<u8> = (0..len).map(|k| s.val ^ k as u8).collect();
                let buf = user.alloc(usize::from(len).max(100));
                user.put(buf, &data);
                let addr = ptr(s.ptr, buf);
                let to_user = End::User {
                    addr,
                    good: addr == buf,
                };
                let (flags, src, dst, len) = match s.kind {
                    0..80 => (SRC, grant(0), to_user, len),
                    80..160 => (DST, to_user, grant(0), len),
                    160..220 => (SRC | DST, grant(0), grant(1), len),
                    220..236 => {
                        let junk = End::Grant {
                            dom: DOMID_SELF,
                            gref: 0xdead_beef,
                            off: 0xffff,
                        };
                        let null = End::User {
                            addr: 0,
                            good: false,
                        };
                        (SRC, junk, null, 0)
                    }
                    236..246 => ([0, SRC | 4][usize::from(s.val % 2)], grant(0), to_user, len),
                    _ => {
                        let cross = End::Grant {
                            dom,
                            gref: self.pick_ref(s.r[0]),
                            off: PAGE as u16 - 50,
                        };
                        (SRC, cross, to_user, 100)
                    }
                };
                Plan {
                    flags,
                    src,
                    dst,
                    len,
                    data,
                }
            })
            .collect()
    }

    /// The model of a copy of all of `plan`: the result, and on success
    /// each segment's status and the bytes of each user destination. The
    /// copy goes by batches of as many segments as B has bounce pages.
    #[allow(clippy::type_complexity)]
    fn copy_model(&mut self, plan: &[Plan]) -> Result<(Vec<i16>, Vec<(u64, Vec<u8>)>), Errno> {
        let (mut statuses, mut out) = (Vec::new(), Vec::new());
        for batch in plan.chunks(POOL[B] as usize) {
            // Checked, and its sources read, before any of it is copied.
            for s in batch {
                if s.flags & !(SRC | DST) != 0 || s.flags == 0 {
                    return Err(EINVAL);
                }
                if s.len == 0 {
                    continue;
                }
                for end in [s.src, s.dst] {
                    if let End::Grant { off, .. } = end
                        && u64::from(off) + u64::from(s.len) > PAGE
                    {
                        return Err(EINVAL);
                    }
                }
                if let End::User { good: false, .. } = s.src {
                    return Err(EFAULT);
                }
            }
            // The ops run in order; user destinations are written after.
            let mut res = Ok(());
            for s in batch {
                let status = |e: End, write: bool| match e {
                    End::Grant { dom, gref, .. } => self.grant_status(dom.into(), gref, write),
                    End::User { .. } => GNTST_okay,
                };
                let st = match status(s.src, false) {
                    _ if s.len == 0 => GNTST_okay,
                    st if st != GNTST_okay => st,
                    _ => status(s.dst, true),
                };
                statuses.push(st);
                if s.len == 0 || st != GNTST_okay {
                    continue;
                }
                let len = usize::from(s.len);
                let at = |e: End| match e {
                    End::Grant { gref, off, .. } => (self.grants[&gref].page, usize::from(off)),
                    End::User { .. } => unreachable!("a grant"),
                };
                match (s.src, s.dst) {
                    (End::Grant { .. }, End::Grant { .. }) => {
                        let ((sp, so), (dp, doff)) = (at(s.src), at(s.dst));
                        for k in 0..len {
                            self.pages[dp][doff + k] = self.pages[sp][so + k];
                        }
                    }
                    (End::User { .. }, dst) => {
                        let (dp, doff) = at(dst);
                        self.pages[dp][doff..doff + len].copy_from_slice(&s.data);
                    }
                    (src, End::User { addr, good }) => {
                        let (sp, so) = at(src);
                        out.push((addr, self.pages[sp][so..so + len].to_vec()));
                        if !good && res.is_ok() {
                            res = Err(EFAULT);
                        }
                    }
                }
            }
            res?;
        }
        Ok((statuses, out))
    }

    fn copy(&mut self, p: u8, segs: &[Seg], count: u8) -> bool {
        let Some(i) = self.pick(B, p, true) else {
            return false;
        };
        // Some copies take two batches.
        let reps = pick(count, &[(200, 1), (230, 6), (0, 1)]);
        let segs: Vec<Seg> = segs
            .iter()
            .cycle()
            .take(segs.len() * reps)
            .cloned()
            .collect();
        let plan = self.copy_plan(i, &segs);
        let user = &self.procs[B][i].proc.user;
        let arr = user.alloc(plan.len() * GrantCopySegment::SIZE);
        for (k, s) in plan.iter().enumerate() {
            let mut raw = [0; GrantCopySegment::SIZE];
            GrantCopySegment {
                source: s.src.encode(),
                dest: s.dst.encode(),
                len: s.len,
                flags: s.flags,
                status: 99,
            }
            .encode(&mut raw);
            user.put(arr + (k * raw.len()) as u64, &raw);
        }
        // More than the array holds: the first batch faults.
        let count = pick(count, &[(230, plan.len() as u32), (243, 0), (0, u32::MAX)]);
        let want = match count {
            0 => Ok(None),
            u32::MAX => Err(EFAULT),
            _ => self.copy_model(&plan).map(Some),
        };
        let proc = &self.procs[B][i].proc;
        let arg = GrantCopy {
            count,
            segments: arr,
        };
        let got = proc.ioctl_arg(IOCTL_GNTDEV_GRANT_COPY, &arg);
        let user = &proc.user;
        assert_eq!(got.map(drop), want.as_ref().map(drop).map_err(|e| *e));
        if let Ok(Some((statuses, out))) = want {
            for (k, st) in statuses.into_iter().enumerate() {
                let at = arr + (k * GrantCopySegment::SIZE) as u64;
                assert_eq!(
                    user.get_arg::<GrantCopySegment>(at).status,
                    st,
                    "segment {k}"
                );
            }
            for (addr, bytes) in out {
                assert_eq!(user.get(addr, bytes.len()), bytes, "copied to {addr:#x}");
            }
        }
        true
    }

    fn notify(&mut self, side: usize, p: u8, r: u8, at: u16, action: u8, port: u8) -> bool {
        let Some(i) = self.pick(side, p, true) else {
            return false;
        };
        let pr = &self.procs[side][i];
        let ids = pr.recorded();
        let index = match ids.get(usize::from(r) % ids.len().max(1)) {
            Some(&id) => {
                let g = &pr.regions[id];
                g.index + u64::from(at) % ((u64::from(g.count) + 1) * PAGE)
            }
            None => FAR,
        };
        let action = pick(
            action,
            &[
                (100, CLEAR | SEND),
                (150, SEND),
                (200, CLEAR),
                (225, 0),
                (240, 4),
                (0, CLEAR | 8),
            ],
        );
        let port = pick(port, &[(200, self.ports[side]), (228, 0), (0, NO_PORT)]);
        let want = match pr.region_at(index) {
            _ if action & !(CLEAR | SEND) != 0 => Err(EINVAL),
            None => Err(EINVAL),
            Some(id) => match pr.regions[id].kind {
                Kind::Map {
                    writable: false, ..
                } if action & CLEAR != 0 => Err(EINVAL),
                _ => Ok(id),
            },
        };
        let got = pr.proc.set_notify(index, action, port);
        assert_eq!(got, want.map(drop), "notify {index:#x} {action} {port}");
        if let Ok(id) = want {
            let n = Notify {
                index,
                action,
                port,
            };
            self.procs[side][i].regions[id].notify = Some(n);
        }
        true
    }

    fn set_max(&mut self, side: usize, p: u8, count: u8) -> bool {
        let Some(i) = self.pick(side, p, true) else {
            return false;
        };
        let limits = [
            DEFAULT_MAX_GRANTS,
            0,
            1,
            2,
            3,
            8,
            DEFAULT_MAX_GRANTS + 1,
            u32::MAX,
        ];
        let count = limits[usize::from(count) % limits.len()];
        let pr = &mut self.procs[side][i];
        let got = pr
            .proc
            .ioctl_arg(IOCTL_GNTDEV_SET_MAX_GRANTS, &SetMaxGrants { count });
        let want = if count > DEFAULT_MAX_GRANTS {
            Err(E2BIG)
        } else {
            Ok(())
        };
        assert_eq!(got.map(drop), want, "SET_MAX_GRANTS {count}");
        if want.is_ok() {
            pr.limit = count;
        }
        true
    }

    fn get_offset(&mut self, side: usize, p: u8, e: u8, page: u8) -> bool {
        let Some(i) = self.pick(side, p, true) else {
            return false;
        };
        let pr = &self.procs[side][i];
        let (va, want) = match pr
            .entries
            .values()
            .nth(usize::from(e) % pr.entries.len().max(1))
        {
            None => (PAGE, Err(EINVAL)),
            Some(en) => {
                let va = en.start + u64::from(page) % ((en.end - en.start) / PAGE) * PAGE + 123;
                let g = &pr.regions[en.region];
                // Only an entry mapping all of a recorded map.
                let all = en.offset == g.index && en.end - en.start == u64::from(g.count) * PAGE;
                let map = matches!(g.kind, Kind::Map { .. });
                let ok = g.recorded && map && all;
                (
                    va,
                    if ok {
                        Ok((g.index, g.count))
                    } else {
                        Err(EINVAL)
                    },
                )
            }
        };
        assert_eq!(pr.proc.get_offset(va), want, "offset of {va:#x}");
        true
    }

    fn reap(&mut self, side: usize) -> bool {
        if !self.alive(side) {
            return false;
        }
        assert!(self.sides[side].dev.reap().is_empty(), "grants not ours");
        if side == B {
            // The failed unmaps whose wait is over are retried, in order;
            // those that fail again wait twice as long, up to 64 reaps.
            self.failed.iter_mut().for_each(|f| f.wait -= 1);
            let (due, rest) = std::mem::take(&mut self.failed)
                .into_iter()
                .partition(|f| f.wait == 0);
            self.failed = rest;
            for mut f in due {
                self.expect[B].unmap_retries += 1;
                f.grefs = self.unmap_ops(f.grefs);
                if !f.grefs.is_empty() {
                    f.delay = (f.delay * 2).min(64);
                    f.wait = f.delay;
                    self.failed.push(f);
                }
            }
        }
        if side == A {
            let done: Vec<u32> = (self.grants.iter())
                .filter(|&(&r, g)| g.ended && self.pins(r) == 0)
                .map(|(&r, _)| r)
                .collect();
            for r in done {
                self.grants.remove(&r);
            }
        }
        true
    }

    fn kill(&mut self, side: usize) -> bool {
        if self.dead.is_some() {
            return false;
        }
        self.sim.destroy(self.sides[side].id());
        self.dead = Some(side);
        true
    }

    /// B's next 1 to 3 unmap ops fail (each leaves its grant mapped).
    fn inject(&mut self, count: u8) -> bool {
        if !self.alive(B) {
            return false;
        }
        self.unmap_failures = 1 + u32::from(count % 3);
        self.sides[B].dom.inject_unmap_failures(self.unmap_failures);
        true
    }

    /// What both domains expose is what the model says.
    fn check(&mut self, before: &[GntdevStats; 2]) {
        for side in [A, B] {
            if !self.alive(side) {
                continue;
            }
            let s = &self.sides[side];
            let (now, was, e) = (s.dev.stats(), before[side], self.expect[side]);
            assert_eq!(
                (
                    now.bytes_cleared - was.bytes_cleared,
                    now.events_sent - was.events_sent,
                    now.notify_errors - was.notify_errors,
                ),
                (e.cleared, e.sent, e.notify_errors),
                "side {side}: notify bytes cleared, events sent, failures"
            );
            assert_eq!(
                (
                    now.mappings - was.mappings,
                    now.map_failures - was.map_failures
                ),
                (e.mappings, e.map_failures),
                "side {side}: maps done, failed"
            );
            let pending = if side == B { self.failed.len() } else { 0 };
            assert_eq!(
                (
                    now.unmap_errors - was.unmap_errors,
                    now.unmap_retries - was.unmap_retries,
                    now.pending_unmaps
                ),
                (e.unmap_errors, e.unmap_retries, pending as u64),
                "side {side}: unmaps failed, retried, pending"
            );
            let events = if e.event {
                vec![self.ports[side]]
            } else {
                vec![]
            };
            assert_eq!(s.dom.take_events(), events, "side {side}: events");
            for p in self.procs[side].iter().filter(|p| p.open) {
                assert_eq!(p.proc.file().grants_held(), p.used(), "side {side}: held");
            }
            let pages = if side == A { self.grants.len() } else { 0 };
            assert_eq!(
                (s.pool.free_count() + pages, now.live_pages),
                (POOL[side] as usize, pages as u64),
                "side {side}: pool pages"
            );
            // Holes: one per live map object and per failed unmap.
            let regions = self.procs[side].iter().flat_map(|p| &p.regions);
            let objects: Vec<u64> = (regions.filter(|g| g.object().is_some()))
                .map(|g| u64::from(g.count))
                .collect();
            let failed: &[FailedUnmap] = if side == B { &self.failed } else { &[] };
            let holes = objects.len() + failed.len();
            let frames = objects
                .iter()
                .chain(failed.iter().map(|f| &f.frames))
                .sum::<u64>();
            assert_eq!(
                (
                    now.live_holes,
                    now.live_hole_frames,
                    *s.holes.live_frames.lock().unwrap()
                ),
                (holes as u64, frames, frames),
                "side {side}: holes"
            );
            let mapped = if side == B {
                self.b_mappings().len()
            } else {
                0
            };
            assert_eq!(s.dom.mappings(), mapped, "side {side}: foreign maps");
        }
        if self.alive(A) {
            let table = self.sides[A].dom.grants();
            let st = table.stats();
            let ended = self.grants.values().filter(|g| g.ended).count();
            assert_eq!(
                (
                    st.live_refs,
                    st.pending_refs,
                    self.sides[A].dev.stats().pending_grants
                ),
                (self.grants.len() - ended, ended, ended as u64),
                "A: references live, pending"
            );
            for &r in self.grants.keys() {
                assert_eq!(table.in_use(r), self.pins(r) > 0, "A: ref {r} mapped by B");
            }
        }
    }

    /// Every process exits (a dead domain's first, unchecked), then each
    /// survivor reaps and is at its baseline.
    fn finish(&mut self) {
        if let Some(d) = self.dead {
            for p in std::mem::take(&mut self.procs[d]) {
                p.proc.exit();
            }
        }
        for side in [B, A] {
            while !self.procs[side].is_empty() {
                self.step(&Op::Exit { side, p: 0 });
            }
        }
        // B's reaper retries its failed unmaps until none is left.
        for _ in 0..1000 {
            if self.failed.is_empty() || !self.step(&Op::Reap { side: B }) {
                break;
            }
        }
        for side in [B, A] {
            if self.step(&Op::Reap { side }) {
                self.sides[side].assert_baseline();
                let refs = Arc::strong_count(&self.sides[side].dev);
                assert_eq!(refs, 1, "side {side}: references to the device left");
            }
        }
        if self.alive(A) {
            assert!(self.grants.is_empty(), "A's grants all ended");
        }
    }
}

/// The message of a caught panic.
fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    (e.downcast_ref::<String>().cloned())
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// `PROPTEST_RNG_SEED` if set, else one from the clock.
fn seed() -> u64 {
    match Config::default().rng_seed {
        RngSeed::Fixed(s) => s,
        RngSeed::Random => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// Runs `cases` sequences of 1 to `max_ops` operations from `seed`;
/// returns the operations and the sequences run.
fn run(cases: u32, max_ops: usize, seed: u64) -> (u64, u64) {
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let (ops, seqs) = (AtomicU64::new(0), AtomicU64::new(0));
    let sequence = (any::<bool>(), vec(op(), 1..=max_ops));
    let res = TestRunner::new(config).run(&sequence, |(nopopulate, seq)| {
        seqs.fetch_add(1, Relaxed);
        let mut w = World::new(nopopulate);
        let r = catch_unwind(AssertUnwindSafe(|| {
            for op in &seq {
                if w.step(op) {
                    ops.fetch_add(1, Relaxed);
                }
            }
            w.finish();
        }));
        r.map_err(|e| {
            // Torn down outside the unwinding, whatever state it is in.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(w)));
            TestCaseError::fail(panic_message(&*e))
        })
    });
    if let Err(e) = res {
        panic!("{e}\nseed {seed}: PROPTEST_RNG_SEED={seed} replays it");
    }
    (ops.into_inner(), seqs.into_inner())
}

/// 64 sequences of up to 40 operations.
#[test]
fn random_operation_sequences() {
    let (seed, t) = (seed(), Instant::now());
    let (ops, seqs) = run(64, 40, seed);
    eprintln!(
        "{ops} operations in {seqs} sequences, {:.1} s (seed {seed})",
        t.elapsed().as_secs_f64()
    );
}

/// At least a million operations, in sequences of up to 200.
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn random_operation_sequences_long() {
    let (seed, t) = (seed(), Instant::now());
    let (mut ops, mut seqs, mut round) = (0, 0, 0);
    while ops < 1_000_000 {
        let (o, s) = run(1000, 200, seed.wrapping_add(round));
        (ops, seqs, round) = (ops + o, seqs + s, round + 1);
    }
    eprintln!(
        "{ops} operations in {seqs} sequences, {:.1} s (seeds {seed} to {})",
        t.elapsed().as_secs_f64(),
        seed.wrapping_add(round - 1)
    );
}

/// One call of the decoder property: an ioctl by A's or B's process. The
/// struct at the argument is `raw` bytes, or built from `fields` (each
/// selects an interesting pointer, count, index...); its pointers may
/// reach `buf`, arbitrary bytes unless `fields` ask for good entries.
#[derive(Clone, Debug)]
struct Call {
    on_b: bool,
    cmd: u8,
    arg: u8,
    raw: Option<Vec<u8>>,
    fields: [u8; 4],
    buf: Vec<u8>,
}

fn call() -> impl Strategy<Value = Call> {
    let raw = proptest::option::weighted(0.2, vec(any::<u8>(), 0..40));
    let head = any::<(bool, u8, u8, [u8; 4])>();
    (head, raw, vec(any::<u8>(), 0..200)).prop_map(|((on_b, cmd, arg, fields), raw, buf)| Call {
        on_b,
        cmd,
        arg,
        raw,
        fields,
        buf,
    })
}

/// The commands, with the size of their struct: the device's, an unknown
/// nr, and a known nr with another size.
const CMDS: [(u32, usize); 11] = [
    (IOCTL_GNTDEV_SET_UNMAP_NOTIFY, UnmapNotify::SIZE),
    (IOCTL_GNTDEV_ALLOC_GREF, AllocGref::SIZE),
    (IOCTL_GNTDEV_DEALLOC_GREF, DeallocGref::SIZE),
    (IOCTL_GNTDEV_MAP_GRANT_REF, MapGrantRef::SIZE),
    (IOCTL_GNTDEV_UNMAP_GRANT_REF, UnmapGrantRef::SIZE),
    (IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR, GetOffsetForVaddr::SIZE),
    (IOCTL_GNTDEV_GRANT_COPY, GrantCopy::SIZE),
    (IOCTL_GNTDEV_SET_MAX_GRANTS, SetMaxGrants::SIZE),
    (IOCTL_GNTDEV_GRANT_USER, GrantUser::SIZE),
    (ioc(IOC_INOUT, GNTDEV_GROUP, 6, 8), 8),
    (ioc(IOC_INOUT, GNTDEV_GROUP, 1, 16), 16),
];

/// What a call may return: exactly this, or success or one of these.
#[derive(Debug)]
enum Want {
    Is(Result<(), Errno>),
    OkOr(&'static [Errno]),
}

/// A shares two pages with B, which maps them (mmapped and faulted in),
/// and each process has two pages of anonymous memory, A's touched;
/// then arbitrary calls by either, each checked against its input.
struct Decoders {
    /// Each process's anonymous memory: two pages, none mapped after.
    anon: [u64; 2],
    /// `(index, address, count, writable)` of each open's `GRANT_USER`s
    /// (also in `regions`): a writable one holds its pages, which a
    /// read-only one then cannot lend (`EBUSY`).
    users: [Vec<(u64, u64, u32, bool)>; 2],
    sides: [Side; 2],
    procs: [Proc; 2],
    /// `(index, count, is a map)` recorded by each open.
    regions: [Vec<(u64, u32, bool)>; 2],
    limits: [u32; 2],
    /// Pool pages each holds.
    pages: [u32; 2],
    refs: Vec<u32>,
    /// A's first run, mapped by B: its pages stay after its dealloc.
    ia: u64,
    /// B's first map, `vb` its mapping, while recorded.
    ib: Option<u64>,
    vb: u64,
}

impl Decoders {
    fn new() -> Self {
        let sim = Sim::new();
        let sides = [A, B].map(|s| Side::with_max_grants(&sim, 4, POOL[s], DEVICE_MAX[s]));
        let procs = [Proc::new(&sides[A]), Proc::new(&sides[B])];
        let (ia, refs) = procs[A].alloc_gref(sides[B].id(), 2, true).unwrap();
        let ib = procs[B].map_grant_ref(sides[A].id(), &refs).unwrap();
        let vb = procs[B].mmap(ib, 2 * PAGE, RW).unwrap();
        procs[B].touch(vb, false).unwrap();
        let anon = [procs[A].anon(2), procs[B].anon(2)];
        procs[A].write(anon[A], &[1]).unwrap();
        Self {
            anon,
            users: [Vec::new(), Vec::new()],
            sides,
            procs,
            regions: [vec![(ia, 2, false)], vec![(ib, 2, true)]],
            limits: [DEFAULT_MAX_GRANTS; 2],
            pages: [2, 0],
            refs,
            ia,
            ib: Some(ib),
            vb,
        }
    }

    /// Places the call's argument and arrays, makes it, and checks it.
    fn run(&mut self, c: &Call) {
        let side = usize::from(c.on_b);
        let k = usize::from(c.cmd) % CMDS.len();
        let (cmd, size) = CMDS[k];
        let user = &self.procs[side].user;
        let buf = user.alloc(c.buf.len());
        user.put(buf, &c.buf);
        let argp = user.alloc(c.raw.as_ref().map_or(size, Vec::len));
        let ptrs = [
            buf,
            0,
            0x8_0000,
            KERNEL_BASE,
            u64::MAX - 3,
            buf + (c.buf.len() as u64).saturating_sub(4),
            argp,
            self.vb,
        ];
        let counts = [1, 2, 0, 3, 12, 13, 16, 17, 65536, 65537, u32::MAX];
        let f = c.fields.map(usize::from);
        let ptr = |k: usize| ptrs[f[k] % ptrs.len()];
        let count = |k: usize| counts[f[k] % counts.len()];
        let index = |k: usize| match self.regions[side].get(f[k] % 8) {
            Some(&(index, ..)) => index,
            None => [0, 1, PAGE, FAR, u64::MAX - PAGE + 1][f[k] % 5],
        };
        let (a, b) = (self.sides[A].id(), self.sides[B].id());
        let mut raw = vec![0; size];
        match cmd {
            IOCTL_GNTDEV_SET_UNMAP_NOTIFY => UnmapNotify {
                index: index(0).wrapping_add(f[1] as u64 * 37 % (3 * PAGE)),
                action: [0, 1, 2, 3, 4, 0x100][f[2] % 6],
                event_channel_port: f[3] as u32 % 4,
            }
            .encode(&mut raw),
            IOCTL_GNTDEV_ALLOC_GREF => AllocGref {
                domid: [b, a, 0, DOMID_SELF, NO_DOM, u16::MAX][f[0] % 6],
                flags: [1, 0, 2, 0xffff][f[1] % 4],
                count: count(2),
                index: 0x1234,
                gref_ids: ptr(3),
            }
            .encode(&mut raw),
            IOCTL_GNTDEV_DEALLOC_GREF | IOCTL_GNTDEV_UNMAP_GRANT_REF => DeallocGref {
                index: index(0),
                count: if f[1] % 2 == 0 { 2 } else { count(1) },
            }
            .encode(&mut raw),
            IOCTL_GNTDEV_MAP_GRANT_REF => {
                if f[2] % 2 == 0 {
                    // Good entries: A's grants (or ones of our domain).
                    let dom = u32::from([a, a, b, DOMID_SELF][f[3] % 4]);
                    for k in 0..c.buf.len() / 8 {
                        let e = [dom.to_ne_bytes(), self.refs[k % 2].to_ne_bytes()];
                        user.put(buf + k as u64 * 8, &e.concat());
                    }
                }
                let refs = ptr(1);
                MapGrantRef {
                    count: count(0),
                    pad0: 0,
                    index: 0,
                    refs,
                }
                .encode(&mut raw)
            }
            IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR => GetOffsetForVaddr {
                vaddr: [self.vb, self.vb + PAGE + 5, self.vb + 2 * PAGE, 0, buf][f[0] % 5],
                offset: 0,
                count: 0,
            }
            .encode(&mut raw),
            IOCTL_GNTDEV_GRANT_COPY => GrantCopy {
                count: count(0),
                segments: ptr(1),
            }
            .encode(&mut raw),
            IOCTL_GNTDEV_SET_MAX_GRANTS => SetMaxGrants { count: count(0) }.encode(&mut raw),
            IOCTL_GNTDEV_GRANT_USER => {
                let anon = self.anon[side];
                // Mostly good: the anonymous memory, the references to `buf`.
                GrantUser {
                    domid: [b, a][side],
                    flags: [1, 0, 1, 0, 2, 0xffff][f[1] % 6],
                    count: [1, 2, 3][f[2] % 3],
                    index: 0x1234,
                    gref_ids: if f[3] % 2 == 0 { buf } else { ptr(3) },
                    vaddr: [
                        anon,
                        anon,
                        anon + PAGE,
                        anon + 1,
                        0,
                        KERNEL_BASE,
                        buf,
                        self.vb,
                    ][f[0] % 8],
                }
                .encode(&mut raw)
            }
            _ => {}
        }
        user.put(argp, c.raw.as_deref().unwrap_or(&raw));
        let at = if c.arg < 200 {
            argp
        } else {
            ptrs[1 + f[0] % 4]
        };
        let want = if k < 9 {
            self.want(side, cmd, size, at)
        } else {
            Want::Is(Err(ENOSYS))
        };
        let got = self.procs[side].ioctl(cmd, at);
        match want {
            Want::Is(w) => assert_eq!(got, w, "{cmd:#x} at {at:#x}"),
            Want::OkOr(errs) => {
                let ok = got.map_or_else(|e| errs.contains(&e), |()| true);
                assert!(ok, "{cmd:#x}: {got:?}, not Ok or one of {errs:?}");
            }
        }
        if got.is_ok() {
            self.done(side, cmd, at);
        }
    }

    /// The result of device command `cmd`, from the bytes at `at` now.
    fn want(&self, side: usize, cmd: u32, size: usize, at: u64) -> Want {
        let user = &self.procs[side].user;
        if !user.is_mapped(at, size) {
            return Want::Is(Err(EFAULT));
        }
        let bytes = user.get(at, size);
        let regions = &self.regions[side];
        let used: u64 = regions.iter().map(|r| u64::from(r.1)).sum();
        let limit = u64::from(self.limits[side]);
        let room = |n: u64| n <= limit.saturating_sub(used) && n <= DEVICE_MAX[side] - used;
        let free = POOL[side] - self.pages[side];
        let recorded = |index: u64, count: u32, map: bool| regions.contains(&(index, count, map));
        Want::Is(match cmd {
            IOCTL_GNTDEV_SET_UNMAP_NOTIFY => {
                let a = UnmapNotify::decode(&bytes);
                let within =
                    |r: &&(u64, u32, bool)| a.index >= r.0 && a.index - r.0 < u64::from(r.1) * PAGE;
                // Every map is writable: a CLEAR_BYTE is fine on all but
                // lent pages (read-only `GRANT_USER`s).
                let lent = self.users[side]
                    .iter()
                    .any(|u| !u.3 && within(&&(u.0, u.2, false)));
                let bad = a.action & !(CLEAR | SEND) != 0 || !regions.iter().any(|r| within(&r));
                if bad || (lent && a.action & CLEAR != 0) {
                    Err(EINVAL)
                } else {
                    Ok(())
                }
            }
            IOCTL_GNTDEV_ALLOC_GREF => {
                let a = AllocGref::decode(&bytes);
                let n = u64::from(a.count);
                if a.flags & !GNTDEV_ALLOC_FLAG_WRITABLE != 0 || n == 0 {
                    Err(EINVAL)
                } else if !room(n) {
                    Err(ENOSPC)
                } else if n > u64::from(free) {
                    Err(Errno::ENOMEM)
                } else if !user.is_mapped(a.gref_ids, a.count as usize * 4) {
                    Err(EFAULT)
                } else {
                    Ok(())
                }
            }
            IOCTL_GNTDEV_DEALLOC_GREF | IOCTL_GNTDEV_UNMAP_GRANT_REF => {
                let a = DeallocGref::decode(&bytes);
                let map = cmd == IOCTL_GNTDEV_UNMAP_GRANT_REF;
                if recorded(a.index, a.count, map) {
                    Ok(())
                } else {
                    Err(EINVAL)
                }
            }
            IOCTL_GNTDEV_MAP_GRANT_REF => {
                let a = MapGrantRef::decode(&bytes);
                let n = u64::from(a.count);
                let own = u32::from(self.sides[side].id());
                let len = a.count as usize * GrantRefArg::SIZE;
                let bad = |e: &[u8]| {
                    let d = GrantRefArg::decode(e).domid;
                    d > 0xffff || d == own || d == u32::from(DOMID_SELF)
                };
                if n == 0 {
                    Err(EINVAL)
                } else if !room(n) {
                    Err(ENOSPC)
                } else if !user.is_mapped(a.refs, len) {
                    Err(EFAULT)
                } else if user.get(a.refs, len).chunks(GrantRefArg::SIZE).any(bad) {
                    Err(EINVAL)
                } else {
                    Ok(())
                }
            }
            IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR => {
                let a = GetOffsetForVaddr::decode(&bytes);
                let whole = self.vb..self.vb + 2 * PAGE;
                if side == B && self.ib.is_some() && whole.contains(&a.vaddr) {
                    Ok(())
                } else {
                    Err(EINVAL)
                }
            }
            IOCTL_GNTDEV_GRANT_COPY => {
                let a = GrantCopy::decode(&bytes);
                // The first batch: as many segments as bounce pages.
                let first = a.count.min(64).min(free) as usize;
                if a.count == 0 {
                    Ok(())
                } else if free == 0 {
                    Err(Errno::ENOMEM)
                } else if !user.is_mapped(a.segments, first * GrantCopySegment::SIZE) {
                    Err(EFAULT)
                } else {
                    // Arbitrary segments: bad ones fail, good ones copy.
                    return Want::OkOr(&[EINVAL, EFAULT]);
                }
            }
            IOCTL_GNTDEV_SET_MAX_GRANTS => {
                if SetMaxGrants::decode(&bytes).count > DEFAULT_MAX_GRANTS {
                    Err(E2BIG)
                } else {
                    Ok(())
                }
            }
            IOCTL_GNTDEV_GRANT_USER => {
                let a = GrantUser::decode(&bytes);
                let n = u64::from(a.count);
                let (anon, end) = (self.anon[side], a.vaddr.wrapping_add(n * PAGE));
                let writable = a.flags == GNTDEV_ALLOC_FLAG_WRITABLE;
                let held = self.users[side]
                    .iter()
                    .any(|u| u.3 && u.1 < end && a.vaddr < u.1 + u64::from(u.2) * PAGE);
                if a.flags & !GNTDEV_ALLOC_FLAG_WRITABLE != 0 || n == 0 {
                    Err(EINVAL)
                } else if !room(n) {
                    Err(ENOSPC)
                } else if a.vaddr != anon && a.vaddr != anon + PAGE {
                    // Unaligned, unmapped, or a gntdev mapping.
                    Err(EINVAL)
                } else if end > anon + 2 * PAGE {
                    Err(EFAULT)
                } else if !writable && held {
                    Err(EBUSY)
                } else if !user.is_mapped(a.gref_ids, a.count as usize * 4) {
                    Err(EFAULT)
                } else {
                    Ok(())
                }
            }
            _ => unreachable!("a device command"),
        })
    }

    /// Records what successful call `cmd` changed; checks what it wrote.
    fn done(&mut self, side: usize, cmd: u32, at: u64) {
        let user = &self.procs[side].user;
        match cmd {
            IOCTL_GNTDEV_ALLOC_GREF => {
                let a: AllocGref = user.get_arg(at);
                self.pages[side] += a.count;
                self.regions[side].push((a.index, a.count, false));
            }
            IOCTL_GNTDEV_MAP_GRANT_REF => {
                let a: MapGrantRef = user.get_arg(at);
                self.regions[side].push((a.index, a.count, true));
            }
            IOCTL_GNTDEV_GRANT_USER => {
                let a: GrantUser = user.get_arg(at);
                self.regions[side].push((a.index, a.count, false));
                let writable = a.flags == GNTDEV_ALLOC_FLAG_WRITABLE;
                self.users[side].push((a.index, a.vaddr, a.count, writable));
            }
            IOCTL_GNTDEV_DEALLOC_GREF | IOCTL_GNTDEV_UNMAP_GRANT_REF => {
                let a: DeallocGref = user.get_arg(at);
                let map = cmd == IOCTL_GNTDEV_UNMAP_GRANT_REF;
                self.regions[side].retain(|r| *r != (a.index, a.count, map));
                if map && side == B && self.ib == Some(a.index) {
                    self.ib = None;
                }
                let users = &mut self.users[side];
                let user_run = !map && users.iter().any(|u| u.0 == a.index);
                users.retain(|u| map || u.0 != a.index);
                // B still maps A's first run: its pages stay. A
                // `GRANT_USER`'s pages are the process's, not the pool's.
                if !map && !user_run && (side, a.index) != (A, self.ia) {
                    self.pages[side] -= a.count;
                }
            }
            IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR => {
                let a: GetOffsetForVaddr = user.get_arg(at);
                assert_eq!((Some(a.offset), a.count), (self.ib, 2));
            }
            IOCTL_GNTDEV_SET_MAX_GRANTS => {
                self.limits[side] = user.get_arg::<SetMaxGrants>(at).count;
            }
            _ => {}
        }
    }

    /// Both processes exit; both domains are back at their baseline.
    fn finish(self) {
        let [pa, pb] = self.procs;
        pb.exit();
        pa.exit();
        for side in &self.sides {
            side.assert_baseline();
            assert_eq!(Arc::strong_count(&side.dev), 1, "device references left");
        }
    }
}

/// Every ioctl fed arbitrary bytes and arbitrary pointers, counts and
/// indexes: no panic, the result the input calls for, and the baseline
/// back after closing.
#[test]
fn decoders_take_arbitrary_input() {
    let seed = seed();
    let config = Config {
        cases: 64,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let res = TestRunner::new(config).run(&vec(call(), 1..=8), |calls| {
        let mut d = Decoders::new();
        let r = catch_unwind(AssertUnwindSafe(|| {
            for c in &calls {
                d.run(c);
            }
        }));
        match r {
            Ok(()) => catch_unwind(AssertUnwindSafe(|| d.finish())),
            Err(e) => {
                let _ = catch_unwind(AssertUnwindSafe(move || drop(d)));
                Err(e)
            }
        }
        .map_err(|e| TestCaseError::fail(panic_message(&*e)))
    });
    if let Err(e) = res {
        panic!("{e}\nseed {seed}: PROPTEST_RNG_SEED={seed} replays it");
    }
}
