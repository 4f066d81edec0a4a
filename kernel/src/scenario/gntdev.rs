//! The gntdev demo scenarios: user programs share and map grants through
//! `/dev/xen/gntdev` (`tools/utest`'s `gnt-share` and `gnt-map`, with
//! `/dev/xen/xenstore` and `/dev/xen/evtchn` for the protocol of
//! `docs/share-protocol.md`, gntdev variant). The kernel starts the
//! program, waits for it and for the device's reaper to collect the
//! grants the peer still mapped, reports the device's counters and the
//! kernel heap's peak (its sizing rule is in `crate::heap`) and checks
//! that free pages, grant references and hole frames are back to their
//! starting values.
//!
//! The loan pair (`utest::lend`): `scenario=gntdev-lend peer=DOMID
//! case=CASE` and `scenario=gntdev-borrow [peer=DOMID] case=CASE`, CASE
//! `readonly`, `zero` or `owner-exits` ([`lend`], [`borrow`]).
//!
//! Command line: `scenario=gntdev-bad` (bad input: `gnt-bad`'s ioctl
//! arguments, `gnt-badref`'s mapping with a grant that does not exist,
//! `gnt-hog`'s mappings without end), `scenario=gntdev-share peer=DOMID pages=N`,
//! `scenario=gntdev-map [peer=DOMID] [mode=MODE]`, MODE one of the
//! following, saying what `gnt-map` does once it has verified the pages:
//! - `exit` (default): exits without unmapping (the kernel unmaps and
//!   fires the unmap notify);
//! - `ro-write`: maps the grants a second time read-only, reads them,
//!   fails to `mprotect` them writable (`EACCES`) and writes to them: the
//!   process must be killed (status 139) and the kernel tear both
//!   mappings down;
//! - `hold`: keeps the mapping until the sharer's domain is gone (`xl
//!   destroy` by the test), checks it still reads, unmaps and exits;
//! - `compare`: the benchmark: maps the grants a second time with the
//!   populate path off (one fault per page, FreeBSD's way), reports both
//!   mappings' counts, unmaps that one, then exits as `exit` does;
//! - `copy`: as `exit`, but writes the reply words with `GRANT_COPY` and
//!   reads every page back with it, reporting the copy hypercalls;
//! - `xsa-361`: as `exit`, after three mappings with a bad reference
//!   first, in the middle and last, each of which must fail as a whole
//!   and be rolled back;
//! - `notify-unmapped`: as `exit`, after a map of one grant that is never
//!   mmapped, with a `SEND_EVENT` notify: its release must send it;
//! - `threads` (SMP): four threads touch the mapping at once (one
//!   populate, one map hypercall), then one unmaps it while the others
//!   read: a reader's fault after the shootdown kills the process (139);
//! - `stress` (SMP): 10,000 map/touch/unmap cycles of gntdev and
//!   anonymous mappings on four threads, then as `exit`;
//! - `large`: the mapping (of a multiple of 512 grants) takes one 2 MiB
//!   entry per 512 pages, at a 2 MiB-aligned address; it is unmapped
//!   and its entries and hole frames must be gone;
//! - `large-partial-munmap`: as `large` up to the count, then a munmap of
//!   4 pages inside the first 2 MiB entry demotes it, the rest still
//!   reads right, and the exit unmaps the rest with one hypercall;
//! - `soak`: 10,000 map/check/unmap cycles of 16 of the peer's grants at a
//!   time on one thread, then as `exit`;
//! - `bench`: the benchmark of `scripts/bench` (map sweep, transfer,
//!   clock; `docs/benchmarks.md`) before the usual check, then as `exit`.

use xen::xenstore::TxId;

use super::Outcome;
use super::process::KILLED_SEGV;
use crate::cmdline::Options;
use crate::{dev, events, grants, heap, kprintln, layout, mem, proc, sched, xenstore};

/// How long deferred grants may take to complete after the program (the
/// peer's domain may be dying: Xen releases its mappings as it goes).
const REAP_TIMEOUT_NS: u64 = 20_000_000_000;
/// How often the scenario looks whether the reaper is done.
const REAP_POLL_NS: u64 = 50_000_000;

/// What a program must leave as it found: free pages, pages lent
/// (`GRANT_USER`'s loans), grant references (live and pending), hole
/// frames, bound event channels, xenstore watch sinks.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Baseline {
    free_pages: u64,
    lent_pages: u64,
    grant_refs: u64,
    hole_frames: u64,
    ports: usize,
    watch_sinks: usize,
}

fn baseline() -> Baseline {
    let (live, pending) = dev::grant_refs();
    Baseline {
        free_pages: mem::free_pages(),
        lent_pages: mem::domain().loans.counters.lent.get(),
        grant_refs: live + pending,
        hole_frames: layout::hole_in_use(),
        ports: events::bound_ports(),
        watch_sinks: xenstore::sinks(),
    }
}

/// Heap bytes a run may leave allocated: what the kernel keeps of a
/// process until the next one starts (its registry entry) and queues that
/// keep their capacity, more with more vCPUs (measured: up to 38 KiB on
/// one vCPU, 66 KiB on four). A leak per call of the fuzzer's 20,000, or
/// per page of a big mapping, is more.
const HEAP_SLACK: usize = 256 * 1024;

/// Heap bytes in use less the grant table's bookkeeping, which grows with
/// the table for good (a run that shares 65536 pages leaves about 900 KiB
/// of it).
fn heap_net() -> usize {
    heap::in_use().saturating_sub(grants::stats().bookkeeping_bytes)
}

/// Runs `program` with `arg`, expecting one of the exit statuses `want`,
/// then checks the baseline; `who` prefixes the report lines.
pub(super) fn run(who: &str, program: &str, arg: u64, want: &[i32]) -> Outcome {
    run_status(who, program, arg, want, |_| Ok(())).map(drop)
}

/// [`run`], returning the exit status; `exited(status)` runs as soon as
/// the program has exited, before the wait for the grants the peer still
/// maps.
fn run_status(
    who: &str,
    program: &str,
    arg: u64,
    want: &[i32],
    exited: impl FnOnce(i32) -> Outcome,
) -> Result<i32, &'static str> {
    let before = baseline();
    let heap_before = heap_net();
    let s0 = dev::gntdev_stats();
    let p = proc::spawn(program, arg).map_err(|e| {
        log::error!("spawn {program}: {e}");
        "cannot start the program"
    })?;
    let ended_before = crate::suspend::ended();
    let status = proc::wait(&p);
    drop(p);
    exited(status)?;
    // A suspend ends the processes that hold foreign mappings (they
    // cannot move with the domain): an end as good as any.
    let by_suspend = status == proc::KILLED_STATUS && crate::suspend::ended() > ended_before;
    if by_suspend {
        kprintln!(
            "{who}: {program} was ended by a suspend (its foreign grant mappings cannot move)"
        );
    }
    // The peer may still map what we shared: the device's reaper thread
    // collects the grants once it lets go.
    let t0 = events::now_ns();
    let deadline = t0.saturating_add(REAP_TIMEOUT_NS);
    let mut pending = dev::gntdev_stats().pending_grants;
    let deferred = pending;
    while pending != 0 && events::now_ns() < deadline {
        sched::sleep_until(events::now_ns().saturating_add(REAP_POLL_NS));
        pending = dev::gntdev_stats().pending_grants;
    }
    if deferred != 0 {
        kprintln!(
            "{who}: {deferred} deferred grant(s) at exit, {pending} left after {} ms (reaper thread)",
            (events::now_ns() - t0) / 1_000_000
        );
    }
    let s = dev::gntdev_stats();
    let after = baseline();
    let heap_after = heap_net();
    let (heap, peak) = heap::usage();
    kprintln!("{who}: {program} exited with status {status}");
    // The device's counters for this run and the baseline, one
    // `key=value` each: for readers and for the scripts (`counter` in
    // scripts/lib/xl.sh).
    kprintln!(
        "COUNTERS {who} status={status} mappings={} map_hypercalls={} populates={} unmap_hypercalls={} notify_cleared={} events_sent={} eagain_retries={} deferred={deferred} deferred_left={pending} free_pages={} free_pages_after={} lent_pages={} lent_pages_after={} grant_refs={} grant_refs_after={} hole_frames={} hole_frames_after={} ports={} ports_after={} watch_sinks={} watch_sinks_after={} heap_net={heap_before} heap_net_after={heap_after} heap_peak_kib={} heap_kib={}",
        s.mappings - s0.mappings,
        s.map_hypercalls - s0.map_hypercalls,
        s.populates - s0.populates,
        s.unmap_hypercalls - s0.unmap_hypercalls,
        s.bytes_cleared - s0.bytes_cleared,
        s.events_sent - s0.events_sent,
        s.eagain_retries - s0.eagain_retries,
        before.free_pages,
        after.free_pages,
        before.lent_pages,
        after.lent_pages,
        before.grant_refs,
        after.grant_refs,
        before.hole_frames,
        after.hole_frames,
        before.ports,
        after.ports,
        before.watch_sinks,
        after.watch_sinks,
        peak / 1024,
        heap / 1024
    );
    if !want.contains(&status) && !by_suspend {
        log::error!("{program}: status {status}, expected one of {want:?}");
        return Err("the program did not end as expected");
    }
    if after != before {
        return Err(
            "free pages, lent pages, grant references, hole frames, event channels or watch sinks not back to baseline",
        );
    }
    if heap_after > heap_before + HEAP_SLACK {
        return Err("the kernel heap grew by more than its slack");
    }
    // The mapper's benchmark: one map hypercall per mapping (more only
    // for EAGAIN retry rounds) and one unmap hypercall; a map that failed
    // one map hypercall, and one unmap for the good ops it rolled back
    // (mode xsa-361), none when none was good (mode dead-peer).
    let mapped = s.mappings - s0.mappings;
    let maps = mapped + s.map_failures - s0.map_failures;
    let unmaps = s.unmap_hypercalls - s0.unmap_hypercalls;
    let retried = s.eagain_retries != s0.eagain_retries;
    if who == "mapper"
        && ((!retried && s.map_hypercalls - s0.map_hypercalls != maps)
            || !(mapped..=maps).contains(&unmaps))
    {
        return Err("not one map and one unmap hypercall per mapping");
    }
    Ok(status)
}

/// Bad input: `gnt-bad` must see every bad ioctl refused, `gnt-badref` be
/// killed by its fault on a mapping of bad grants, `gnt-hog`, which maps
/// without end, be refused before the kernel's heap runs out; each time
/// the baseline must come back, and `anon` then finds memory as it
/// should be.
pub fn bad(_opts: &Options<'_>) -> Outcome {
    run("bad", "gnt-bad", 0, &[0])?;
    run("bad", "gnt-badref", 0, &[KILLED_SEGV])?;
    // Refused at an mmap (exits 0) or at a fault (killed).
    run("bad", "gnt-hog", 0, &[0, KILLED_SEGV])?;
    // Memory is as it was: a new process's anonymous pages are zero-filled
    // and keep what it writes.
    run("bad", "anon", 0, &[0])
}

/// `fuzz`: the system call fuzzer (`tools/utest`'s `fuzz`) makes `calls=`
/// random calls (20,000 by default) from `seed=` (1 by default), with
/// xenstore messages if `xenstore=1`, in `procs=` processes one after the
/// other (1 by default; process `i` gets seed `seed + i << 20`). With
/// `peer=DOMID` (a domain running `chaos`) they also map, copy and read
/// its grants, and a process killed by its read of a grant revoked under
/// it is a good end (the next one goes on). Each must end so and leave
/// everything at the baseline.
pub fn fuzz(opts: &Options<'_>) -> Outcome {
    let seed = opts.get_u64("seed").unwrap_or(1);
    let calls = opts.get_u64("calls").unwrap_or(20_000);
    let procs = opts.get_u64("procs").unwrap_or(1);
    if seed >= 1 << 20 || calls >= 1 << 22 || !(1..=16).contains(&procs) || procs > calls {
        return Err(
            "seed= (below 2^20), calls= (below 2^22) or procs= (1 to 16, at most calls=) out of range",
        );
    }
    let xs = opts.get_u64("xenstore").unwrap_or(0) & 1;
    let peer = match opts.get("peer") {
        Some(_) => Some(super::share::peer(opts)?),
        None => None,
    };
    let (peer_bits, want): (u64, &[i32]) = match peer {
        Some(d) => (1 << 40 | u64::from(d) << 24, &[0, KILLED_SEGV]),
        None => (0, &[0]),
    };
    let mut killed = 0;
    for i in 0..procs {
        let n = calls / procs + if i == procs - 1 { calls % procs } else { 0 };
        let arg = xs << 63 | n << 41 | peer_bits | (seed + (i << 20));
        if run_status("fuzz", "fuzz", arg, want, |_| Ok(()))? == KILLED_SEGV {
            killed += 1;
        }
    }
    if peer.is_some() {
        kprintln!(
            "fuzz: {procs} process(es), {killed} killed by a read of a grant the peer revoked"
        );
    }
    Ok(())
}

/// `chaos`: `gnt-chaos` shares pages with `peer=` (or the domain in our
/// `data/xenguest-peer`) and ends the shares at random for `ms=`
/// milliseconds (10,000 by default) from `seed=` (1), in one process
/// after another (one may exit with its shares live: the kernel ends
/// them), each back at the baseline once the peer has let go.
pub fn chaos(opts: &Options<'_>) -> Outcome {
    let peer = super::share::peer(opts)?;
    let seed = opts.get_u64("seed").unwrap_or(1);
    let ms = opts.get_u64("ms").unwrap_or(10_000);
    if seed >= 1 << 20 || ms >= 1 << 24 {
        return Err("seed= (below 2^20) or ms= (below 2^24) out of range");
    }
    let end = events::now_ns().saturating_add(ms * 1_000_000);
    let mut procs = 0;
    loop {
        let left = end.saturating_sub(events::now_ns()) / 1_000_000;
        if left == 0 {
            break;
        }
        let arg = left << 40 | ((seed + (procs << 12)) & 0xff_ffff) << 16 | u64::from(peer);
        run("chaos", "gnt-chaos", arg, &[0])?;
        procs += 1;
    }
    kprintln!("chaos: {procs} process(es) in {ms} ms");
    Ok(())
}

/// Domain A: `gnt-share` shares `pages=` pages with `peer=`, across
/// `moves=` moves of the domain (`xl save`/`restore`, `xl migrate`); or,
/// with `rounds=R`, R times in a row, each a whole round of the protocol
/// by a new process (`docs/share-protocol.md`, rounds), each back at the
/// baseline. With `loan=1` the shared pages are the process's own
/// anonymous memory, granted writable as they are (`GRANT_USER`) rather
/// than pages `ALLOC_GREF` allocated.
pub fn share(opts: &Options<'_>) -> Outcome {
    let peer = super::share::peer(opts)?;
    let pages = opts.get_u64("pages").unwrap_or(16);
    let moves = opts.get_u64("moves").unwrap_or(0);
    let loan = opts.get_u64("loan").unwrap_or(0);
    if pages >= 1 << 24 || moves >= 1 << 7 || loan > 1 || (loan == 1 && moves != 0) {
        return Err("pages=, moves= or loan= out of range (loan=1 takes no moves)");
    }
    let moves = loan << 7 | moves;
    rounds(opts, "sharer", |round| {
        run(
            "sharer",
            "gnt-share",
            round << 48 | u64::from(peer) << 32 | moves << 24 | pages,
            &[0],
        )
    })
}

/// Runs `one(round)` for round 1 to `rounds=` in turn, or `one(0)` once
/// without that option; `who` prefixes the closing line.
fn rounds(opts: &Options<'_>, who: &str, mut one: impl FnMut(u64) -> Outcome) -> Outcome {
    let Some(rounds) = opts.get_u64("rounds") else {
        return one(0);
    };
    if !(1..1 << 16).contains(&rounds) {
        return Err("rounds= out of range");
    }
    let mut warm = 0;
    for round in 1..=rounds {
        one(round)?;
        if round == WARM_ROUNDS {
            warm = heap_net();
        }
    }
    // Each run may leave up to `HEAP_SLACK` behind (caches filled); a
    // run of rounds must not grow after its first ones.
    let grown = heap_net().saturating_sub(warm);
    kprintln!(
        "{who}: {rounds} rounds, each process back at the baseline; kernel heap {grown} byte(s) up since round {WARM_ROUNDS}"
    );
    if rounds >= 4 * WARM_ROUNDS && grown > ROUNDS_HEAP_SLACK {
        return Err("the kernel heap grew round after round");
    }
    Ok(())
}

/// Rounds after which a run of rounds has filled its caches.
const WARM_ROUNDS: u64 = 2;
/// Heap a run of rounds may gain after [`WARM_ROUNDS`]: a vector's
/// growth, not a leak per round (one of 272 bytes a process grew a run
/// of 100 by 27 KiB).
const ROUNDS_HEAP_SLACK: usize = 4096;

/// Domain B: `gnt-map` maps the peer's share; `mode=` says what it does
/// next (the module's documentation); `rounds=R` maps R shares in turn,
/// each by a new process.
pub fn map(opts: &Options<'_>) -> Outcome {
    let peer = super::share::peer(opts)?;
    // gnt-map's argument: the mode in the high half, the round and the
    // peer below.
    let (mode, want) = match opts.get("mode").unwrap_or("exit") {
        "exit" => (0, 0),
        "ro-write" => (1, KILLED_SEGV),
        "hold" => (2, 0),
        "compare" => (3, 0),
        "copy" => (4, 0),
        "xsa-361" => (5, 0),
        "notify-unmapped" => (6, 0),
        "threads" => (7, KILLED_SEGV),
        "stress" => (8, 0),
        "large" => (9, 0),
        "large-partial-munmap" => (10, 0),
        "soak" => (11, 0),
        "bench" => (12, 0),
        "scale" => (13, 0),
        // As exit, with a sharer destroyed before the map: the touch of
        // its grants fails and kills the process.
        "dead-peer" => (0, KILLED_SEGV),
        m => {
            log::error!("gntdev-map: unknown mode={m}");
            return Err("unknown mode");
        }
    };
    rounds(opts, "mapper", |round| {
        run(
            "mapper",
            "gnt-map",
            mode << 32 | round << 16 | u64::from(peer),
            &[want],
        )
    })
}

/// The loan pair's cases (`case=`) and their numbers in the programs'
/// argument (`utest::lend::Case`).
const LEND_CASES: [&str; 3] = ["readonly", "zero", OWNER_EXITS];
/// The case in which the lender's process exits while the peer maps.
const OWNER_EXITS: &str = "owner-exits";

/// The number of the loan pair's `case=`.
fn lend_case(opts: &Options<'_>) -> Result<u64, &'static str> {
    let case = opts.get("case").unwrap_or("");
    LEND_CASES
        .iter()
        .position(|&c| c == case)
        .map(|n| n as u64)
        .ok_or("case= must be readonly, zero or owner-exits")
}

/// Domain A of the loan pair: `gnt-lend` grants its own memory read-only
/// to `peer=` by loan (`case=` one of [`LEND_CASES`]); with
/// `case=owner-exits` the process exits while the peer maps the pages, and
/// once it is gone the scenario says so in the share's `state`
/// (`exited`), so that the peer reads them again after the exit and then
/// unmaps: the baseline check (free and lent pages back) then says every
/// lent page was freed, once.
pub fn lend(opts: &Options<'_>) -> Outcome {
    let peer = super::share::peer(opts)?;
    let case = lend_case(opts)?;
    let owner_exits = opts.get("case") == Some(OWNER_EXITS);
    let lent = || mem::domain().loans.counters.lent.get();
    let lent0 = lent();
    // At the owner's exit: the pages still lent, and the free count.
    let at_exit = core::cell::Cell::new((0, 0));
    run_status(
        "lender",
        "gnt-lend",
        case << 32 | u64::from(peer),
        &[0],
        |status| {
            // A program that failed has told the peer why.
            if !owner_exits || status != 0 {
                return Ok(());
            }
            at_exit.set((lent().saturating_sub(lent0), mem::free_pages()));
            kprintln!(
                "lender: gnt-lend exited with {} page(s) lent; telling the borrower",
                at_exit.get().0
            );
            xenstore::with(|xs| xs.write(TxId::NONE, "data/xenguest/share/state", b"exited"))
                .map_err(|_| "write share/state")
        },
    )?;
    if !owner_exits {
        return Ok(());
    }
    // Back at the baseline: what was freed since the exit is what the
    // borrower's unmap let go, each lent page once.
    let (held, free) = at_exit.get();
    let freed = mem::free_pages().saturating_sub(free);
    kprintln!(
        "lender: {held} page(s) lent at the owner's exit, {freed} freed after it (the borrower's unmap)"
    );
    kprintln!("COUNTERS lender-exit lent_at_exit={held} freed_after_exit={freed}");
    if held == 0 || freed != held {
        return Err("the lent pages did not outlive the owner, or were not freed once each");
    }
    Ok(())
}

/// Domain B of the loan pair: `gnt-borrow` maps what `peer=` (or the
/// domain in our `data/xenguest-peer`) lent, read-only, and checks it as
/// `case=` says.
pub fn borrow(opts: &Options<'_>) -> Outcome {
    let peer = super::share::peer(opts)?;
    let case = lend_case(opts)?;
    run("mapper", "gnt-borrow", case << 32 | u64::from(peer), &[0])
}
