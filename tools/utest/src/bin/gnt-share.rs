//! The sharing side of the gntdev demo (domain A; `docs/share-protocol.md`,
//! gntdev variant): shares N pages with the peer through libxengnttab's
//! `share_pages`, fills them with the protocol's pattern, publishes the
//! references and an event channel in xenstore, waits for the mapper's
//! `verified`, checks its reply words, then waits for the mapper's unmap
//! notify (the last byte of the last page cleared and an event) when its
//! process exits, unshares and writes `done`. If the mapper's domain dies
//! instead (its `map/state` node disappears, perhaps before its verdict
//! was read), it unshares all the same:
//! the kernel defers the grants until Xen has released the dead domain's
//! mappings, and reaps them then.
//!
//!
//! With `moves` > 0 the share outlives that many moves of the domain
//! (`xl save` and `xl restore`, `xl migrate`): after each round (verdict,
//! reply words, unmap notify) it restores the reply words and the notify
//! byte, writes `done` without unsharing, waits until the domain has moved
//! (the `DOMAIN_GENERATION` sysctl), then publishes the same references
//! again under its new domain id with a new event channel, so that the
//! peer maps them again: the kernel keeps our grants across the move.
//!
//! With `round` > 0 the process is round `round` of a run of rounds
//! (`docs/share-protocol.md`, rounds): it waits for the mapper of that
//! round (its `map/round`), publishes `share/round` with the share, and
//! ends the round as one without moves does.
//!
//! With `loan` the pages are not `ALLOC_GREF`'s but the process's own
//! anonymous memory, granted writable as they are (`GRANT_USER`, held
//! wired); the protocol is the same, and the end of the share is
//! `DEALLOC_GREF` and a `munmap`.
//!
//! Argument: `round << 48 | peer << 32 | loan << 31 | moves << 24 | pages`.
#![no_std]
#![no_main]

use gnttab::evtchn::Evtchn;
use gnttab::xs::{Absent, Fmt, Watch, Xs, XsError};
use gnttab::{Buf, Gnttab};
use urt::mman::{MAP_ANON, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use urt::{PAGE, println, sysctl};

urt::entry!(main);

/// The pattern's seed.
const SEED: u32 = 0x5eed_0000;
/// How long each wait for a live peer may take: a dead one is seen
/// within `PEER_POLL_NS`, and a live one may be working for minutes (the
/// SMP stress mode's 10,000 cycles took 212 s in the emulated host).
const TIMEOUT_NS: u64 = 600_000_000_000;
/// How often the wait for the unmap notify looks whether the peer is gone.
const PEER_POLL_NS: u64 = 200_000_000;

fn word(i: usize, k: usize) -> u32 {
    SEED.wrapping_add((i * 1024 + k) as u32)
}

fn main(arg: u64) -> i32 {
    let (round, peer, loan, moves, pages) = (
        arg >> 48,
        ((arg >> 32) & 0xffff) as u32,
        arg & 1 << 31 != 0,
        ((arg >> 24) & 0x7f) as u32,
        (arg & 0xff_ffff) as usize,
    );
    match run(peer, pages, moves, round, loan) {
        Ok(()) => 0,
        Err(e) => {
            println!("gnt-share: FAIL {e}");
            1
        }
    }
}

/// Writes `value` at `path`, a node below the share's directory: it is
/// readable by the peer already, as xenstored gives a node it creates the
/// permissions of its parent (the creator as owner). One request, not two:
/// a share of N pages publishes N / 256 reference nodes.
fn publish(xs: &mut Xs, path: &str, value: &[u8]) -> Result<(), &'static str> {
    xs.write(path, value).map_err(|_| "xenstore write")
}

fn run(peer: u32, n: usize, moves: u32, round: u64, loan: bool) -> Result<(), &'static str> {
    if n == 0 {
        return Err("pages=0");
    }
    let mut xs = Xs::open().map_err(|_| "open /dev/xen/xenstore")?;
    if round > 0 {
        wait_mapper_round(&mut xs, peer, round)?;
    }
    let gnt = Gnttab::open().map_err(|_| "open /dev/xen/gntdev")?;
    let ev = Evtchn::open().map_err(|_| "open /dev/xen/evtchn")?;
    let mut refs = Buf::<u32>::new(n).map_err(|_| "refs buffer")?;
    let (addr, loaned) = if loan {
        println!(
            "gnt-share: granting {n} pages of its own memory as they are (GRANT_USER, writable)"
        );
        let addr = urt::mmap(
            0,
            n * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANON,
            u64::MAX,
            0,
        )
        .map_err(|_| "mmap of the memory to grant")?;
        let index = gnt
            .grant_user(peer as u16, addr, refs.values(), true)
            .map_err(|_| "grant_user")?;
        (addr, Some(index))
    } else {
        let addr = gnt
            .share_pages(peer as u16, refs.values(), true, None)
            .map_err(|_| "share_pages")?;
        (addr, None)
    };
    let words = addr as *mut u32;
    fill(words, n);
    let mut generation = urt::sysctl(sysctl::DOMAIN_GENERATION, sysctl::READ_ONLY)
        .map_err(|_| "sysctl DOMAIN_GENERATION")?;
    let mut moved = 0;
    loop {
        let last = moved == moves;
        match share_round(&mut xs, &ev, peer, refs.values(), addr, last, round)? {
            (Round::Done, port) if !last => {
                fill(words, n);
                generation = wait_move(generation)?;
                stale_port(&ev, port)?;
                moved += 1;
            }
            _ => break,
        }
    }
    utest::checkpoint::checkpoint(&mut xs, "before-unshare")?;
    if let Some(index) = loaned {
        gnt.dealloc_grefs(index, n).map_err(|_| "dealloc_grefs")?;
    }
    gnt.unshare(addr, n).map_err(|_| "unshare")?;
    publish_state(&mut xs, b"done")
}

/// Waits until the mapper of round `round` is up: its `map/round` node
/// reads `round`, written after it reset its `map/state`, so that the
/// verdict read next is this round's.
fn wait_mapper_round(xs: &mut Xs, peer: u32, round: u64) -> Result<(), &'static str> {
    let mut path = Fmt::new();
    path.push(b"/local/domain/")
        .num(u64::from(peer))
        .push(b"/data/xenguest/map/round");
    utest::round::wait_round(xs, path.as_str(), round, TIMEOUT_NS, Absent::MeansGone)
        .map_err(|_| "the mapper of this round never came")
}

/// How a round of the protocol ended.
enum Round {
    /// The mapper verified, replied and unmapped.
    Done,
    /// The mapper's domain died first.
    PeerGone,
}

/// Fills the `n` pages at `words` with the protocol's pattern (and so
/// restores the reply words and the notify byte of an earlier round).
fn fill(words: *mut u32, n: usize) {
    for i in 0..n {
        for k in 0..1024 {
            // SAFETY: inside the shared mapping of `n` pages, read-write.
            unsafe { words.add(i * 1024 + k).write_volatile(word(i, k)) };
        }
    }
}

/// Waits until the domain has moved (restored or migrated): the
/// `DOMAIN_GENERATION` sysctl moves past `generation`. Returns the new one.
fn wait_move(generation: u64) -> Result<u64, &'static str> {
    let t0 = urt::clock_ns();
    loop {
        let now = urt::sysctl(sysctl::DOMAIN_GENERATION, sysctl::READ_ONLY)
            .map_err(|_| "sysctl DOMAIN_GENERATION")?;
        if now != generation {
            let id = urt::sysctl(sysctl::DOMID, sysctl::READ_ONLY).unwrap_or(u64::MAX);
            println!(
                "gnt-share: the domain moved (generation {now}, now domain {id}); sharing again"
            );
            return Ok(now);
        }
        if urt::clock_ns() - t0 >= TIMEOUT_NS {
            return Err("the domain did not move");
        }
        let _ = urt::sleep(PEER_POLL_NS);
    }
}

/// Checks that `port`, bound before the move, is reported gone: its
/// notify fails with `ENOTCONN` (the kernel's word for a channel of the
/// old domain), and unbinding it just forgets it.
fn stale_port(ev: &Evtchn, port: u32) -> Result<(), &'static str> {
    match ev.notify(port) {
        Err(urt::errno::ENOTCONN) => {}
        Ok(_) => return Err("a port of the old domain still notified"),
        Err(_) => return Err("a port of the old domain: not ENOTCONN"),
    }
    ev.unbind(port)
        .map_err(|_| "unbind of a port of the old domain")?;
    println!("gnt-share: event channel {port} of the old domain: ENOTCONN, unbound");
    Ok(())
}

/// The share's xenstore directory in our domain now.
fn share_dir(xs: &mut Xs) -> Result<(u32, Fmt), &'static str> {
    let me = xs.read_u64("domid").map_err(|_| "read domid")? as u32;
    let mut base = Fmt::new();
    base.push(b"/local/domain/")
        .num(u64::from(me))
        .push(b"/data/xenguest/share");
    Ok((me, base))
}

/// Writes the share's `state`.
fn publish_state(xs: &mut Xs, value: &[u8]) -> Result<(), &'static str> {
    let (_, base) = share_dir(xs)?;
    let mut path = Fmt::new();
    path.push(base.as_bytes()).push(b"/state");
    publish(xs, path.as_str(), value)
}

/// One round of the protocol over the pages at `addr` shared through
/// `refs`: a new event channel, the share published under our domain id
/// now, the mapper's verdict, its reply words and its unmap notify. A
/// round that is not the `last` ends with `done` written and the pages
/// still shared. A `round` > 0 is published as `round`. Returns how it
/// ended and the event channel it bound, which is left bound.
fn share_round(
    xs: &mut Xs,
    ev: &Evtchn,
    peer: u32,
    refs: &[u32],
    addr: u64,
    last: bool,
    round: u64,
) -> Result<(Round, u32), &'static str> {
    let n = refs.len();
    let words = addr as *mut u32;
    let (me, base) = share_dir(xs)?;
    let base = base.as_str();
    let port = ev
        .bind_unbound_port(peer)
        .map_err(|_| "bind_unbound_port")?;
    ev.set_timeout(TIMEOUT_NS).map_err(|_| "set timeout")?;
    let _ = xs.rm(base);
    xs.write(base, b"").map_err(|_| "xenstore write")?;
    xs.set_perms_owner_reader(base, me, peer)
        .map_err(|_| "xenstore set_perms")?;
    let mut path = Fmt::new();
    let mut val = Fmt::new();
    for (k, v) in [
        ("count", n as u64),
        ("seed", u64::from(SEED)),
        ("evtchn", u64::from(port)),
        ("round", round),
    ] {
        if k == "round" && round == 0 {
            continue;
        }
        path.clear()
            .push(base.as_bytes())
            .push(b"/")
            .push(k.as_bytes());
        val.clear().num(v);
        publish(xs, path.as_str(), val.as_bytes())?;
    }
    utest::refs::publish(xs, base, refs)?;
    // The mapper's verdict, watched before the share is ready so that no
    // change of it can come before the watch (`Xs::wait_for`): its node,
    // or in a run of rounds all its `map` nodes (`wait_verdict`).
    let mut map_dir = Fmt::new();
    map_dir
        .push(b"/local/domain/")
        .num(u64::from(peer))
        .push(b"/data/xenguest/map");
    let mut map_state = Fmt::new();
    map_state.push(map_dir.as_bytes()).push(b"/state");
    let watched = if round == 0 { &map_state } else { &map_dir };
    let mut verdict = Watch::new(watched.as_str(), "verdict").map_err(|_| "watch map")?;
    path.clear().push(base.as_bytes()).push(b"/state");
    publish(xs, path.as_str(), b"ready")?;
    println!(
        "gnt-share: shared {n} pages with domain {peer} through gntdev, as domain {me}, evtchn {port}"
    );

    // The verdict, then the reply words.
    let mut st = [0u8; 128];
    let seen = wait_verdict(xs, &mut verdict, map_dir.as_str(), round, &mut st);
    drop(verdict);
    let round = match seen {
        Ok(len) if st[..len].starts_with(b"failed") => {
            return Err("the mapper could not verify the pages");
        }
        Ok(_) => {
            check_replies(words, n)?;
            wait_unmap_notify(xs, ev, map_state.as_str(), addr, n)?;
            Round::Done
        }
        // The mapper wrote its verdict and died before we read it.
        Err(XsError::Gone) => {
            println!("gnt-share: the mapper's domain is gone before its verdict; unsharing");
            Round::PeerGone
        }
        Err(_) => return Err("no verdict from the mapper"),
    };
    if !last && matches!(round, Round::Done) {
        publish(xs, path.as_str(), b"done")?;
        println!("gnt-share: round done, pages still shared; waiting for the domain to move");
    }
    Ok((round, port))
}

/// Checks the mapper's reply word in each of the `n` pages at `words`.
fn check_replies(words: *const u32, n: usize) -> Result<(), &'static str> {
    let bad = (0..n)
        // SAFETY: inside the mapping.
        .filter(|&i| unsafe { words.add(i * 1024).read_volatile() } != !word(i, 0))
        .count();
    if bad != 0 {
        println!("gnt-share: {bad} of {n} reply words wrong");
        return Err("reply words wrong");
    }
    println!("gnt-share: mapper verified; all {n} reply words correct");
    Ok(())
}

/// Waits for the mapper's verdict in `map_dir/state` (watched by
/// `watch`: that node, or with `round` > 0 the whole directory):
/// `verified` or `unmapped`, or `failed...`; its length in `out`. In round `round` > 0 of a run of rounds, a later round in
/// `map_dir/round` counts as `verified`: the mapper starts round K+1 only
/// once it verified round K and its process ended well, and it resets
/// `state` to `waiting` at once, so a sharer that looks late (a slow
/// wake-up) would otherwise never see this round's verdict (a soak run
/// waited so at its round 16 while its mapper waited for round 17).
/// `Gone` once the mapper's domain is (its nodes removed).
fn wait_verdict(
    xs: &mut Xs,
    watch: &mut Watch,
    map_dir: &str,
    round: u64,
    out: &mut [u8; 128],
) -> Result<usize, XsError> {
    if round == 0 {
        let mut state = Fmt::new();
        state.push(map_dir.as_bytes()).push(b"/state");
        // The mapper never removes its verdict node while it lives. (Its
        // watch must be the node's: `wait_for` counts its events to tell
        // a node not yet written from one gone.)
        return xs.wait_for(
            watch,
            state.as_str(),
            &[b"verified", b"unmapped"],
            b"failed",
            out,
            TIMEOUT_NS,
            Absent::MeansGone,
        );
    }
    let (mut state, mut later) = (Fmt::new(), Fmt::new());
    state.push(map_dir.as_bytes()).push(b"/state");
    later.push(map_dir.as_bytes()).push(b"/round");
    let deadline = urt::clock_ns().saturating_add(TIMEOUT_NS);
    loop {
        match xs.read(state.as_str(), out) {
            Ok(n) if [&b"verified"[..], b"unmapped"].contains(&&out[..n]) => return Ok(n),
            Ok(n) if out[..n].starts_with(b"failed") => return Ok(n),
            Ok(_) => {}
            // Seen when the round began (`wait_mapper_round`): gone now.
            Err(_) => return Err(XsError::Gone),
        }
        if let Ok(k) = xs.read_u64(later.as_str())
            && k > round
        {
            println!("gnt-share: the mapper went on to round {k}: round {round} verified");
            out[..8].copy_from_slice(b"verified");
            return Ok(8);
        }
        let now = urt::clock_ns();
        if now >= deadline {
            return Err(XsError::Sys(urt::errno::ETIMEDOUT));
        }
        match watch.wait((deadline - now).min(gnttab::xs::RECHECK_NS)) {
            Ok(()) | Err(XsError::Sys(urt::errno::ETIMEDOUT)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits for the unmap notify of the mapper's process exit (the last byte
/// of the `n` pages at `addr` cleared, and events on `ev`), or for the
/// mapper's end (`map_state` gone from xenstore), for at most
/// `TIMEOUT_NS` of the clock. The mapper's state is looked at every
/// `PEER_POLL_NS` whether events come or not: a dead peer sends none,
/// and a chatty one must not keep us from seeing it die.
fn wait_unmap_notify(
    xs: &mut Xs,
    ev: &Evtchn,
    map_state: &str,
    addr: u64,
    n: usize,
) -> Result<(), &'static str> {
    let last = (addr as usize + n * PAGE - 1) as *const u8;
    ev.set_timeout(PEER_POLL_NS).map_err(|_| "set timeout")?;
    let t0 = urt::clock_ns();
    let mut next_poll = t0.saturating_add(PEER_POLL_NS);
    let mut events = 0;
    let mut st = [0u8; 128];
    // SAFETY: the last byte of the mapping.
    while unsafe { last.read_volatile() } != 0 {
        match ev.wait() {
            Ok(_) => events += 1,
            Err(urt::errno::ETIMEDOUT) => {}
            Err(_) => return Err("event channel read"),
        }
        let now = urt::clock_ns();
        if now >= next_poll {
            next_poll = now.saturating_add(PEER_POLL_NS);
            if xs.read(map_state, &mut st).is_err() {
                println!("gnt-share: the mapper's domain is gone; unsharing");
                return Ok(());
            }
            if now - t0 >= TIMEOUT_NS {
                return Err("no unmap-notify event from the mapper");
            }
        }
    }
    println!("gnt-share: unmap notify seen: byte cleared, {events} event(s)");
    Ok(())
}
