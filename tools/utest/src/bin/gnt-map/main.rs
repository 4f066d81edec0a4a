//! The mapping side of the gntdev demo (domain B; `docs/share-protocol.md`,
//! gntdev variant): finds the peer's share in xenstore, maps all N grants
//! with libxengnttab's `map_domain_grant_refs` shape (one mapping, with an
//! unmap notify: clear the last byte, signal the event channel), checks
//! every word, writes the reply words, reports `verified` and the counters
//! per mapping. Then, by mode:
//! - 0: exits WITHOUT unmapping: the kernel tears the mapping down and
//!   fires the notify at process exit;
//! - 1: maps the grants again read-only, reads that mapping, checks that
//!   `mprotect(READ|WRITE)` of it fails with `EACCES`, and writes to it:
//!   the kernel must kill the process (and tear both mappings down);
//! - 2: holds the mapping until the peer's share is gone from xenstore
//!   (its domain destroyed), checks the mapping still reads the pattern,
//!   unmaps it and exits;
//! - 3: the benchmark against a peer in the same run: maps the grants a
//!   second time with the populate path off (`vm.populate` = 0: one fault
//!   per page, as FreeBSD's gntdev takes), reads every page, reports both
//!   mappings' faults and map hypercalls, unmaps that mapping and exits as
//!   mode 0 does;
//! - 4: as mode 0, but the reply words are written with `GRANT_COPY` (one
//!   4-byte segment per page, local buffer to grant) instead of through
//!   the mapping, and every page is then read back with `GRANT_COPY` and
//!   compared with the mapping; reports the copy hypercalls;
//! - 5: XSA-361: as mode 0, after three mappings of three of the peer's
//!   grants with one replaced by a reference that does not exist, first,
//!   in the middle and last: each must fail as a whole (`bad_refs`);
//! - 6: as mode 0, after a map of one grant that is never mmapped, with a
//!   `SEND_EVENT` notify, released (`notify_unmapped`).
//! - 7: SMP: four threads touch the mapping at the same moment (one
//!   populate and one map hypercall for all of them) and each checks every
//!   word; then this thread unmaps while the others keep reading: a reader
//!   that reads a page after `munmap` returned (a TLB entry no shootdown
//!   removed) says so and exits 1; the expected end is a reader's fault
//!   killing the process (status 139).
//! - 8: SMP stress: after the usual check, four threads run map, touch
//!   and unmap cycles of 16-grant gntdev mappings and of 16-page anonymous
//!   mappings, 10,000 cycles in all, then exits as mode 0 does.
//! - 9: 2 MiB entries: the mapping (of a multiple of 512 grants) must sit
//!   at a 2 MiB-aligned address and take one 2 MiB entry per 512 pages in
//!   this process's page tables; then it unmaps it (one unmap hypercall)
//!   and the entries and hole frames must be back to where they were.
//! - 10: partial munmap of a 2 MiB entry: as mode 9 up to the count of
//!   entries, then `munmap` of 4 pages inside the first 2 MiB: one
//!   demotion, one 2 MiB entry less, no unmap hypercall yet, every other
//!   page still reads the sharer's words; then exits as mode 0 does (the
//!   kernel unmaps the rest with one hypercall).
//! - 11: soak: after the usual check, this thread maps, checks and unmaps
//!   16 of the peer's grants at a time, 10,000 times (`soak.rs`), then
//!   exits as mode 0 does.
//! - 12: the benchmark of `scripts/bench` (`bench.rs`), before the usual
//!   check; then exits as mode 0 does.
//! - 13: scaling (issue 10): after the usual check, the same fault-heavy
//!   work on 1, 2 and 4 threads (`scale.rs`), then exits as mode 0 does.
//!
//! With `round` > 0 the process is round `round` of a run of rounds
//! (`docs/share-protocol.md`, rounds): it first resets its `map/state` to
//! `waiting`, writes `map/round`, and maps the share only once the
//! sharer's `share/round` reads the same round.
//!
//! Argument: `mode << 32 | round << 16 | peer`.
#![no_std]
#![no_main]

use gnttab::abi::{self, CopySideArg, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GrantCopySegment};
use gnttab::evtchn::Evtchn;
use gnttab::xs::{Absent, Fmt, Watch, Xs};
use gnttab::{Buf, Gnttab, Notify};
use urt::{PAGE, println, sysctl};

urt::entry!(main);

mod bench;
mod scale;
mod smp;
mod soak;

/// How long the wait for the share, or for the peer's end, may take.
const TIMEOUT_NS: u64 = 120_000_000_000;

fn stat(key: u64) -> u64 {
    urt::sysctl(key, sysctl::READ_ONLY).unwrap_or(u64::MAX)
}

/// Our `map/state` reset to `waiting` (readable by the peer, as the
/// protocol's nodes are): an earlier round's verdict is gone, and the
/// sharer, which finds the node present from now on, sees our end when
/// our domain dies (the toolstack removes its nodes). In round `round` >
/// 0, then `map/round` (`docs/share-protocol.md`, rounds), which lets the
/// sharer publish that round.
fn announce(xs: &mut Xs, me: u32, peer: u32, round: u64) -> Result<(), &'static str> {
    let mut dir = Fmt::new();
    dir.push(b"/local/domain/")
        .num(u64::from(me))
        .push(b"/data/xenguest/map");
    xs.write(dir.as_str(), b"").map_err(|_| "write map")?;
    xs.set_perms_owner_reader(dir.as_str(), me, peer)
        .map_err(|_| "set_perms map")?;
    let mut path = Fmt::new();
    path.push(dir.as_bytes()).push(b"/state");
    xs.write(path.as_str(), b"waiting")
        .map_err(|_| "write map/state")?;
    if round > 0 {
        let mut value = Fmt::new();
        value.num(round);
        path.clear().push(dir.as_bytes()).push(b"/round");
        xs.write(path.as_str(), value.as_bytes())
            .map_err(|_| "write map/round")?;
    }
    Ok(())
}

/// Waits until the share under `base` is round `round`'s (`share/round`).
fn wait_round(xs: &mut Xs, base: &str, round: u64) -> Result<(), &'static str> {
    let mut path = Fmt::new();
    path.push(base.as_bytes()).push(b"/round");
    // The sharer clears its share before it writes the next.
    let t0 = urt::clock_ns();
    utest::round::wait_round(xs, path.as_str(), round, TIMEOUT_NS, Absent::NotYet).map_err(|e| {
        // Which failure, and when: a soak run once ended here, its sharer
        // having written the share.
        println!(
            "gnt-map: round {round}'s share: {e:?} after {} ms",
            (urt::clock_ns() - t0) / 1_000_000
        );
        "the share of this round never came"
    })
}

/// What to do after the pages are verified (the module's documentation).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Exit,
    WriteReadOnly,
    HoldUntilPeerGone,
    ComparePerPage,
    CopyReplies,
    BadRefs,
    NotifyUnmapped,
    Threads,
    Stress,
    Large,
    LargePartialMunmap,
    Soak,
    Bench,
    Scale,
}

fn main(arg: u64) -> i32 {
    let mode = match arg >> 32 {
        0 => Mode::Exit,
        1 => Mode::WriteReadOnly,
        2 => Mode::HoldUntilPeerGone,
        3 => Mode::ComparePerPage,
        4 => Mode::CopyReplies,
        5 => Mode::BadRefs,
        6 => Mode::NotifyUnmapped,
        7 => Mode::Threads,
        8 => Mode::Stress,
        9 => Mode::Large,
        10 => Mode::LargePartialMunmap,
        11 => Mode::Soak,
        12 => Mode::Bench,
        13 => Mode::Scale,
        _ => {
            println!("gnt-map: FAIL unknown mode");
            return 1;
        }
    };
    match run((arg & 0xffff) as u32, (arg >> 16) & 0xffff, mode) {
        Ok(()) => 0,
        Err(e) => {
            println!("gnt-map: FAIL {e}");
            1
        }
    }
}

fn run(peer: u32, round: u64, mode: Mode) -> Result<(), &'static str> {
    let mut xs = Xs::open().map_err(|_| "open /dev/xen/xenstore")?;
    let me = xs.read_u64("domid").map_err(|_| "read domid")? as u32;
    let mut base = Fmt::new();
    base.push(b"/local/domain/")
        .num(u64::from(peer))
        .push(b"/data/xenguest/share");
    let base = base.as_str();
    let mut path = Fmt::new();
    let mut st = [0u8; 64];
    announce(&mut xs, me, peer, round)?;
    if round > 0 {
        wait_round(&mut xs, base, round)?;
    }
    path.clear().push(base.as_bytes()).push(b"/state");
    let mut ready = Watch::new(path.as_str(), "ready").map_err(|_| "watch the share")?;
    xs.wait_for(
        &mut ready,
        path.as_str(),
        &[b"ready"],
        b"\xff",
        &mut st,
        TIMEOUT_NS,
        Absent::WrittenThenGone,
    )
    .map_err(|_| "the share never became ready")?;
    drop(ready);
    let mut get = |xs: &mut Xs, k: &str| {
        path.clear()
            .push(base.as_bytes())
            .push(b"/")
            .push(k.as_bytes());
        xs.read_u64(path.as_str()).map_err(|_| "read a share node")
    };
    let n = get(&mut xs, "count")? as usize;
    let seed = get(&mut xs, "seed")? as u32;
    let remote_port = get(&mut xs, "evtchn")? as u32;
    let mut refs = Buf::<u32>::new(n).map_err(|_| "refs buffer")?;
    utest::refs::read(&mut xs, base, refs.values())?;
    let ev = Evtchn::open().map_err(|_| "open /dev/xen/evtchn")?;
    let port = ev
        .bind_interdomain(peer, remote_port)
        .map_err(|_| "bind_interdomain")?;
    let gnt = Gnttab::open().map_err(|_| "open /dev/xen/gntdev")?;
    if mode == Mode::Bench {
        bench::run(&mut xs, &gnt, peer, refs.values(), seed)?;
    }

    let (calls0, pop0, maps0, holes0, large0) = (
        stat(sysctl::GNTDEV_MAP_HYPERCALLS),
        stat(sysctl::GNTDEV_POPULATES),
        stat(sysctl::GNTDEV_MAPPINGS),
        stat(sysctl::HOLE_FRAMES),
        stat(sysctl::PROC_LARGE_ENTRIES),
    );
    let notify = Notify {
        offset: Some((n * PAGE - 1) as u64),
        port: Some(port),
    };
    utest::checkpoint::checkpoint(&mut xs, "before-map")?;
    let addr = gnt
        .map_grant_refs(&[peer], refs.values(), true, Some(notify))
        .map_err(|e| {
            println!("gnt-map: map_grant_refs: errno {e}");
            "map_grant_refs"
        })?;
    let words = addr as *mut u32;
    // Faults of the mapping itself: the library's own buffers are touched
    // by now.
    let faults0 = stat(sysctl::PROC_FAULTS);
    let mut bad = 0;
    if mode == Mode::Threads {
        bad += smp::touch_together(words, n, seed);
    }
    for i in 0..n {
        for k in 0..1024 {
            let want = seed.wrapping_add((i * 1024 + k) as u32);
            // SAFETY: inside the mapping of `n` pages.
            if unsafe { words.add(i * 1024 + k).read_volatile() } != want {
                bad += 1;
            }
        }
        if mode != Mode::CopyReplies {
            // SAFETY: as above; the mapping is writable.
            unsafe {
                words
                    .add(i * 1024)
                    .write_volatile(!seed.wrapping_add((i * 1024) as u32))
            };
        }
    }
    let faults = stat(sysctl::PROC_FAULTS) - faults0;
    if mode == Mode::CopyReplies {
        bad += copy_replies(&gnt, peer as u16, refs.values(), words, seed)?;
    }
    let (calls, pops, maps) = (
        stat(sysctl::GNTDEV_MAP_HYPERCALLS) - calls0,
        stat(sysctl::GNTDEV_POPULATES) - pop0,
        stat(sysctl::GNTDEV_MAPPINGS) - maps0,
    );
    let mut mpath = Fmt::new();
    mpath
        .push(b"/local/domain/")
        .num(u64::from(me))
        .push(b"/data/xenguest/map");
    let _ = xs.write(mpath.as_str(), b"");
    let _ = xs.set_perms_owner_reader(mpath.as_str(), me, peer);
    mpath.push(b"/state");
    let verdict: &[u8] = if bad == 0 {
        b"verified"
    } else {
        b"failed: wrong words"
    };
    xs.write(mpath.as_str(), verdict)
        .map_err(|_| "write map/state")?;
    xs.set_perms_owner_reader(mpath.as_str(), me, peer)
        .map_err(|_| "set_perms map/state")?;
    ev.notify(port).map_err(|_| "notify")?;
    println!(
        "gnt-map: mapped {n} pages in {maps} mapping(s): {calls} map hypercall(s), {faults} page fault(s) ({pops} populate) per mapping; {bad} wrong words"
    );
    println!(
        "COUNTERS gnt-map pages={n} mappings={maps} map_hypercalls={calls} faults={faults} populates={pops} wrong_words={bad}"
    );
    if bad != 0 {
        return Err("wrong words");
    }
    // With several touchers the process's fault count also holds their
    // stacks' faults: the populate and the map hypercall are what count.
    let one_fault = mode == Mode::Threads || faults == 1;
    if maps != 1 || pops != 1 || calls != 1 || !one_fault {
        return Err("the mapping took more than one fault (one populate, one map hypercall)");
    }
    if mode == Mode::ComparePerPage {
        compare_per_page(&gnt, peer, refs.values(), faults, calls)?;
    }
    if matches!(mode, Mode::Large | Mode::LargePartialMunmap) {
        let base = Baseline {
            holes: holes0,
            large: large0,
        };
        large_entries(&gnt, addr, n, seed, mode, base)?;
    }
    match mode {
        Mode::Exit
        | Mode::ComparePerPage
        | Mode::CopyReplies
        | Mode::BadRefs
        | Mode::NotifyUnmapped
        | Mode::LargePartialMunmap
        | Mode::Bench => {
            if mode == Mode::BadRefs {
                bad_refs(&gnt, peer, refs.values())?;
            }
            if mode == Mode::NotifyUnmapped {
                notify_unmapped(&gnt, peer, refs.values()[0], port)?;
            }
            utest::checkpoint::checkpoint(&mut xs, "before-exit")?;
            println!("gnt-map: exiting without unmapping");
            // The event channel stays open until the process exits: the
            // kernel tears the mapping down first and its unmap notify
            // signals this port.
            core::mem::forget(ev);
            Ok(())
        }
        Mode::WriteReadOnly => {
            core::mem::forget(ev);
            write_read_only(&gnt, peer, refs.values(), seed)
        }
        Mode::Threads => {
            core::mem::forget(ev);
            smp::unmap_under_readers(&gnt, addr, n)
        }
        Mode::Stress | Mode::Soak | Mode::Scale => {
            if mode == Mode::Stress {
                smp::stress(&gnt, peer, refs.values())?;
            } else if mode == Mode::Scale {
                scale::scale(&gnt, peer, refs.values())?;
            } else {
                soak::soak(&gnt, peer, refs.values(), |i, k| {
                    seed.wrapping_add((i * 1024 + k) as u32)
                })?;
            }
            utest::checkpoint::checkpoint(&mut xs, "before-exit")?;
            println!("gnt-map: exiting without unmapping");
            core::mem::forget(ev);
            Ok(())
        }
        Mode::Large => {
            core::mem::forget(ev);
            Ok(())
        }
        Mode::HoldUntilPeerGone => {
            hold_until_gone(&mut xs, base, words, n, seed)?;
            gnt.unmap(addr, n).map_err(|_| "unmap")?;
            println!("gnt-map: unmapped {n} pages after the peer's end");
            Ok(())
        }
    }
}

/// 2 MiB in bytes, and in pages.
const LARGE: u64 = 2 << 20;
const LARGE_PAGES: usize = 512;

/// What the process had before its mapping: hole frames and 2 MiB entries.
struct Baseline {
    holes: u64,
    large: u64,
}

/// Modes 9 and 10 (the module's documentation): the mapping of `n`
/// grants at `addr` takes `n / 512` 2 MiB entries; mode 9 then unmaps it
/// and checks the baseline, mode 10 munmaps 4 pages inside the first
/// 2 MiB and checks the demotion and the rest of the mapping.
fn large_entries(
    gnt: &Gnttab,
    addr: u64,
    n: usize,
    seed: u32,
    mode: Mode,
    base: Baseline,
) -> Result<(), &'static str> {
    let want = (n / LARGE_PAGES) as u64;
    let large = stat(sysctl::PROC_LARGE_ENTRIES) - base.large;
    let aligned = addr.is_multiple_of(LARGE);
    let (unmaps0, demotions0) = (
        stat(sysctl::GNTDEV_UNMAP_HYPERCALLS),
        stat(sysctl::PMAP_DEMOTIONS),
    );
    if mode == Mode::Large {
        gnt.unmap(addr, n).map_err(|_| "unmap")?;
        let (after, unmaps, holes) = (
            stat(sysctl::PROC_LARGE_ENTRIES) - base.large,
            stat(sysctl::GNTDEV_UNMAP_HYPERCALLS) - unmaps0,
            stat(sysctl::HOLE_FRAMES),
        );
        println!(
            "gnt-map: large: {n} pages at {addr:#x} ({}2 MiB-aligned) in {large} 2 MiB entries (want {want}); after unmap: {after} 2 MiB entries, {unmaps} unmap hypercall(s), hole frames {} -> {holes}",
            if aligned { "" } else { "NOT " },
            base.holes
        );
        println!(
            "COUNTERS gnt-map-large pages={n} aligned={} large_entries={large} large_after_unmap={after} unmap_hypercalls={unmaps} hole_frames={} hole_frames_after={holes}",
            u8::from(aligned),
            base.holes
        );
        if !aligned || large != want || after != 0 || unmaps != 1 || holes != base.holes {
            return Err("the mapping did not take and give back its 2 MiB entries");
        }
        return Ok(());
    }
    // Four pages inside the first 2 MiB entry go.
    let (hole_at, hole_len) = (100, 4);
    urt::munmap(addr + (hole_at * PAGE) as u64, hole_len * PAGE).map_err(|_| "munmap")?;
    let (left, demotions, unmaps) = (
        stat(sysctl::PROC_LARGE_ENTRIES) - base.large,
        stat(sysctl::PMAP_DEMOTIONS) - demotions0,
        stat(sysctl::GNTDEV_UNMAP_HYPERCALLS) - unmaps0,
    );
    let words = addr as *const u32;
    let mut bad = 0;
    for i in (0..n).filter(|i| !(hole_at..hole_at + hole_len).contains(i)) {
        for k in 1..1024 {
            // SAFETY: inside the mapping of `n` pages, outside the part
            // unmapped above.
            if unsafe { words.add(i * 1024 + k).read_volatile() }
                != seed.wrapping_add((i * 1024 + k) as u32)
            {
                bad += 1;
            }
        }
    }
    println!(
        "gnt-map: large-partial-munmap: {n} pages in {large} 2 MiB entries (want {want}); munmap of pages {hole_at}..{}: {demotions} demotion(s), {left} 2 MiB entries left, {unmaps} unmap hypercall(s) so far; {bad} wrong words in the rest",
        hole_at + hole_len
    );
    println!(
        "COUNTERS gnt-map-partial pages={n} aligned={} large_entries={large} demotions={demotions} large_left={left} unmap_hypercalls={unmaps} wrong_words={bad}",
        u8::from(aligned)
    );
    if !aligned || large != want || demotions != 1 || left != want - 1 || unmaps != 0 || bad != 0 {
        return Err("the partial munmap did not demote one 2 MiB entry and keep the rest");
    }
    Ok(())
}

/// A grant reference past any table: its map op fails (`GNTST_bad_gntref`).
const BAD_REF: u32 = 0xffff_fff0;

/// XSA-361 on Xen: maps `refs[..3]` three times with a [`BAD_REF`] in
/// place of the first, the middle and the last. Each mapping's first
/// access - a copy the kernel makes from it for `write` to `/dev/null`,
/// which fails with `EFAULT` instead of killing us - must fail as a whole:
/// the two good ops are unmapped again in one rollback, so each costs one
/// unmap hypercall and the hole frames are back where they were.
fn bad_refs(gnt: &Gnttab, peer: u32, refs: &[u32]) -> Result<(), &'static str> {
    let three: [u32; 3] = refs
        .get(..3)
        .and_then(|r| r.try_into().ok())
        .ok_or("bad-refs needs 3 pages")?;
    let null = urt::open(b"/dev/null\0", urt::fcntl::O_WRONLY).map_err(|_| "open /dev/null")?;
    let (holes0, unmaps0) = (
        stat(sysctl::HOLE_FRAMES),
        stat(sysctl::GNTDEV_UNMAP_HYPERCALLS),
    );
    for pos in 0..3 {
        let mut r = three;
        r[pos] = BAD_REF;
        let addr = gnt
            .map_grant_refs(&[peer], &r, false, None)
            .map_err(|_| "map_grant_refs with a bad reference")?;
        // The raw call: no Rust reference to memory that cannot be read.
        let w = urt::syscall(urt::nr::WRITE, [null, addr, 1, 0, 0, 0]);
        gnt.unmap(addr, 3)
            .map_err(|_| "unmap of the failed mapping")?;
        if w != -i64::from(urt::errno::EFAULT) {
            println!("gnt-map: xsa-361: bad reference at {pos}: write returned {w}");
            return Err("a mapping with a bad reference was readable");
        }
    }
    let _ = urt::close(null);
    let (holes, unmaps) = (
        stat(sysctl::HOLE_FRAMES),
        stat(sysctl::GNTDEV_UNMAP_HYPERCALLS) - unmaps0,
    );
    println!(
        "gnt-map: xsa-361: bad reference first, middle and last: each mapping failed as a whole (EFAULT), {unmaps} rollback unmap hypercall(s), hole frames {holes0} -> {holes}"
    );
    if unmaps != 3 || holes != holes0 {
        return Err("a failed batch map was not rolled back");
    }
    Ok(())
}

/// Issue 14 defect 4 on Xen: a `MAP_GRANT_REF` of `gref` that is never
/// mmapped, with a `SEND_EVENT` notify on `port`: its `UNMAP_GRANT_REF`
/// must send the event (as Linux's gntdev does; libxenvchan relies on it),
/// one more in the kernel's count of notify events sent.
fn notify_unmapped(gnt: &Gnttab, peer: u32, gref: u32, port: u32) -> Result<(), &'static str> {
    let sent0 = stat(sysctl::GNTDEV_EVENTS_SENT);
    let mut r = abi::GrantRefArg { domid: peer, gref };
    let mut m = abi::MapGrantRef {
        count: 1,
        pad0: 0,
        index: 0,
        refs: &mut r as *mut abi::GrantRefArg as u64,
    };
    urt::ioctl(
        gnt.fd(),
        abi::IOCTL_GNTDEV_MAP_GRANT_REF,
        &mut m as *mut _ as u64,
    )
    .map_err(|_| "map_grant_ref")?;
    let mut n = abi::UnmapNotify {
        index: m.index,
        action: abi::UNMAP_NOTIFY_SEND_EVENT,
        event_channel_port: port,
    };
    urt::ioctl(
        gnt.fd(),
        abi::IOCTL_GNTDEV_SET_UNMAP_NOTIFY,
        &mut n as *mut _ as u64,
    )
    .map_err(|_| "set_unmap_notify")?;
    let mut u = abi::UnmapGrantRef {
        index: m.index,
        count: 1,
    };
    urt::ioctl(
        gnt.fd(),
        abi::IOCTL_GNTDEV_UNMAP_GRANT_REF,
        &mut u as *mut _ as u64,
    )
    .map_err(|_| "unmap_grant_ref")?;
    let sent = stat(sysctl::GNTDEV_EVENTS_SENT) - sent0;
    println!(
        "gnt-map: notify-unmapped: a map never mmapped sent {sent} notify event(s) at UNMAP_GRANT_REF"
    );
    if sent != 1 {
        return Err("the SEND_EVENT notify of a map never mmapped was lost");
    }
    Ok(())
}

/// Writes the reply word of every page with `GRANT_COPY` (one 4-byte
/// segment per page, from a local buffer to the grant), then reads every
/// page back with `GRANT_COPY` and compares it with the mapping at
/// `words`; returns the number of words that differ.
fn copy_replies(
    gnt: &Gnttab,
    peer: u16,
    refs: &[u32],
    words: *const u32,
    seed: u32,
) -> Result<usize, &'static str> {
    let n = refs.len();
    let mut segs = Buf::<GrantCopySegment>::new(n).map_err(|_| "segments buffer")?;
    let mut replies = Buf::<u32>::new(n).map_err(|_| "replies buffer")?;
    for (i, r) in replies.values().iter_mut().enumerate() {
        *r = !seed.wrapping_add((i * 1024) as u32);
    }
    let (src, h0, ops0) = (
        replies.addr(),
        stat(sysctl::GRANT_HYPERCALLS),
        stat(sysctl::GRANT_COPY_OPS),
    );
    for (i, s) in segs.values().iter_mut().enumerate() {
        *s = GrantCopySegment {
            source: src + 4 * i as u64,
            dest: CopySideArg::Foreign {
                gref: refs[i],
                offset: 0,
                domid: peer,
            }
            .encode(),
            len: 4,
            flags: GNTCOPY_DEST_GREF,
            status: 1,
        };
    }
    gnt.grant_copy(segs.values())
        .map_err(|_| "GRANT_COPY of the replies")?;
    let failed = segs.values().iter().filter(|s| s.status != 0).count();
    let write_calls = stat(sysctl::GRANT_HYPERCALLS) - h0;
    let mut back = Buf::<u32>::new(n * 1024).map_err(|_| "read-back buffer")?;
    let dst = back.addr();
    for (i, s) in segs.values().iter_mut().enumerate() {
        *s = GrantCopySegment {
            source: CopySideArg::Foreign {
                gref: refs[i],
                offset: 0,
                domid: peer,
            }
            .encode(),
            dest: dst + (i * PAGE) as u64,
            len: PAGE as u16,
            flags: GNTCOPY_SOURCE_GREF,
            status: 1,
        };
    }
    let h1 = stat(sysctl::GRANT_HYPERCALLS);
    gnt.grant_copy(segs.values())
        .map_err(|_| "GRANT_COPY of the pages")?;
    let failed = failed + segs.values().iter().filter(|s| s.status != 0).count();
    let read_calls = stat(sysctl::GRANT_HYPERCALLS) - h1;
    let ops = stat(sysctl::GRANT_COPY_OPS) - ops0;
    let wrong = back
        .values()
        .iter()
        .enumerate()
        // SAFETY: word `k` of the mapping of `n` pages.
        .filter(|&(k, &v)| unsafe { words.add(k).read_volatile() } != v)
        .count();
    println!(
        "gnt-map: grant copy: {n} reply words written in {write_calls} copy hypercall(s), {n} pages read back in {read_calls} ({ops} copy ops); {failed} failed segment(s), {wrong} word(s) differ from the mapping"
    );
    println!(
        "COUNTERS gnt-map-copy pages={n} write_hypercalls={write_calls} read_hypercalls={read_calls} copy_ops={ops} failed_segments={failed} differ={wrong}"
    );
    if failed != 0 {
        return Err("grant copy segments failed");
    }
    Ok(wrong)
}

/// Maps `refs` a second time with the populate path off, reads every
/// page and reports its faults and map hypercalls next to the populate
/// mapping's (`faults`, `calls`); unmaps it again.
fn compare_per_page(
    gnt: &Gnttab,
    peer: u32,
    refs: &[u32],
    faults: u64,
    calls: u64,
) -> Result<(), &'static str> {
    let n = refs.len();
    urt::sysctl(sysctl::VM_POPULATE, 0).map_err(|_| "vm.populate=0")?;
    let (calls0, gfaults0) = (
        stat(sysctl::GNTDEV_MAP_HYPERCALLS),
        stat(sysctl::GNTDEV_FAULTS),
    );
    let mapped = gnt.map_grant_refs(&[peer], refs, false, None);
    let faults0 = stat(sysctl::PROC_FAULTS);
    let mut sum = 0u32;
    if let Ok(addr) = mapped {
        for i in 0..n {
            // SAFETY: word 1 of page `i` of the read-only mapping.
            sum =
                sum.wrapping_add(unsafe { (addr as *const u32).add(i * 1024 + 1).read_volatile() });
        }
    }
    let per_page = stat(sysctl::PROC_FAULTS) - faults0;
    let _ = urt::sysctl(sysctl::VM_POPULATE, 1);
    let addr = mapped.map_err(|_| "map_grant_refs without populate")?;
    let (pcalls, gfaults) = (
        stat(sysctl::GNTDEV_MAP_HYPERCALLS) - calls0,
        stat(sysctl::GNTDEV_FAULTS) - gfaults0,
    );
    gnt.unmap(addr, n).map_err(|_| "unmap")?;
    println!(
        "gnt-map: benchmark, {n} pages: populate {faults} fault(s), {calls} map hypercall(s); per-page faults (vm.populate=0, FreeBSD's way) {per_page} fault(s) ({gfaults} pager fault(s)), {pcalls} map hypercall(s); faults ratio {faults}/{per_page} (checksum {sum:#x})"
    );
    println!(
        "COUNTERS gnt-map-benchmark pages={n} faults={faults} map_hypercalls={calls} per_page_faults={per_page} pager_faults={gfaults} per_page_map_hypercalls={pcalls}"
    );
    if per_page != n as u64 || faults != 1 {
        return Err("unexpected fault counts");
    }
    Ok(())
}

/// Maps `refs` a second time, read-only, checks that it reads the reply
/// word of page 0, and writes to it: the process must not survive that.
fn write_read_only(gnt: &Gnttab, peer: u32, refs: &[u32], seed: u32) -> Result<(), &'static str> {
    let ro = gnt
        .map_grant_refs(&[peer], refs, false, None)
        .map_err(|_| "read-only map_grant_refs")? as *mut u32;
    // SAFETY: word 0 of the read-only mapping of at least one page.
    if unsafe { ro.read_volatile() } != !seed {
        return Err("the read-only mapping does not read the reply word");
    }
    // Issue 14 defect 1: the mapping can never become writable.
    let rw = urt::mman::PROT_READ | urt::mman::PROT_WRITE;
    match urt::mprotect(ro as u64, refs.len() * PAGE, rw) {
        Err(urt::errno::EACCES) => {
            println!("gnt-map: mprotect(READ|WRITE) of the read-only mapping: EACCES")
        }
        Err(_) => return Err("mprotect of the read-only mapping: not EACCES"),
        Ok(_) => return Err("mprotect made a read-only grant mapping writable"),
    }
    println!("gnt-map: read-only mapping reads the reply word; writing to it");
    // SAFETY: inside the mapping; the write must fault and kill us.
    unsafe { ro.write_volatile(0) };
    Err("a write to a read-only grant mapping succeeded")
}

/// Waits, woken by a watch, until the peer's share (`base`) is gone (its
/// domain destroyed: libxl removes its xenstore home), then checks that
/// the mapping of `n` pages at `words` still reads the pattern: Xen keeps
/// a dead domain's mapped pages until the last mapping goes.
fn hold_until_gone(
    xs: &mut Xs,
    base: &str,
    words: *const u32,
    n: usize,
    seed: u32,
) -> Result<(), &'static str> {
    println!("gnt-map: holding the mapping until the peer is gone");
    let mut path = Fmt::new();
    path.push(base.as_bytes()).push(b"/state");
    let mut watch = Watch::new(path.as_str(), "peer").map_err(|_| "watch the share")?;
    let mut st = [0u8; 64];
    let t0 = urt::clock_ns();
    let mut events = 0;
    while xs.read(path.as_str(), &mut st).is_ok() {
        let left = (t0 + TIMEOUT_NS).saturating_sub(urt::clock_ns());
        if left == 0 || watch.wait(left).is_err() {
            return Err("the peer never went away");
        }
        events += 1;
    }
    let waited = urt::clock_ns() - t0;
    let bad = (0..n)
        // SAFETY: word 1 of page `i` of the mapping.
        .filter(|&i| unsafe { words.add(i * 1024 + 1).read_volatile() } != seed.wrapping_add((i * 1024 + 1) as u32))
        .count();
    println!(
        "gnt-map: the peer's share is gone after {} ms ({events} watch event(s)); {bad} of {n} pages read wrong",
        waited / 1_000_000
    );
    if bad != 0 {
        return Err("the mapping changed after the peer's end");
    }
    Ok(())
}
