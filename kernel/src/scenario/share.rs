//! The share scenarios: one domain grants pages, the other maps them, as
//! `docs/share-protocol.md` describes. The peer may be another of our
//! domains or dom0's `xen-interop` tool (libxengnttab).
//!
//! Command line: `scenario=share-sharer|share-mapper|revoke-sharer|
//! revoke-mapper peer=DOMID [pages=N] [seed=S]`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use xen::abi::{DomId, Port};
use xen::grant::{EndAccess, GrantOps, GrantRef, Hole, MapRequest, UnmapRequest};
use xen::xenstore::{Access, Perm, TxId};

use super::Outcome;
use crate::cmdline::Options;
use crate::layout::{self, PAGE_SIZE};
use crate::shared_page::{SharedPage, WORDS};
use crate::{events, grants, mem, sched, xenstore};

/// Refs per `refs/J` node.
const REFS_PER_NODE: usize = 256;
/// How long any one step may wait for the peer.
const STEP_TIMEOUT_NS: u64 = 60_000_000_000;
/// How often the sharer looks for its deferred grants to come back.
const REAP_POLL_NS: u64 = 50_000_000;

/// `HOME(D)` of the protocol.
fn home(dom: DomId) -> String {
    format!("/local/domain/{dom}/data/xenguest")
}

/// Word `k` of page `i`.
fn word(seed: u32, i: usize, k: usize) -> u32 {
    seed.wrapping_add((i * 1024 + k) as u32)
}

/// The peer's domain id: `peer=` on the command line, else the toolstack's
/// `data/xenguest-peer` node in our xenstore home (for a domain created
/// before its peer existed).
pub(super) fn peer(opts: &Options<'_>) -> Result<DomId, &'static str> {
    opts.get_u64("peer")
        .or_else(|| xenstore::read_u64("data/xenguest-peer").ok())
        .and_then(|p| DomId::try_from(p).ok())
        .ok_or("no peer=DOMID on the command line nor data/xenguest-peer in xenstore")
}

fn our_domid() -> Result<DomId, &'static str> {
    xenstore::read_u64("domid")
        .ok()
        .and_then(|d| DomId::try_from(d).ok())
        .ok_or("cannot read our domid from xenstore")
}

fn xs_err(what: &'static str) -> impl Fn(xen::hypercall::XenErrno) -> &'static str {
    move |e| {
        log::error!("{what}: xenstore error {e:?}");
        what
    }
}

/// Writes `value` at `path` and gives `reader` read access.
fn publish(path: &str, value: &str, owner: DomId, reader: DomId) -> Result<(), &'static str> {
    xenstore::with(|xs| {
        xs.write(TxId::NONE, path, value.as_bytes())?;
        xs.set_perms(
            TxId::NONE,
            path,
            &[
                Perm {
                    domid: owner,
                    access: Access::None,
                },
                Perm {
                    domid: reader,
                    access: Access::Read,
                },
            ],
        )
    })
    .map_err(xs_err("publish a node"))
}

/// The sharer: grants `pages=` pages to the peer and runs the protocol.
pub fn sharer(opts: &Options<'_>, revoke: bool) -> Outcome {
    let m = peer(opts)?;
    let me = our_domid()?;
    let n = opts.get_u64("pages").unwrap_or(16) as usize;
    let seed = opts.get_u64("seed").unwrap_or(0x5eed_0000) as u32;
    if n == 0 {
        return Err("pages=0");
    }
    let table = grants::table();
    let free_before = mem::free_pages();
    let grants_before = table.stats();

    // 1. Pages, grants, event channel, xenstore nodes.
    let mut frames = Vec::with_capacity(n);
    let mut refs: Vec<GrantRef> = Vec::with_capacity(n);
    for i in 0..n {
        let f = mem::alloc_page().ok_or("out of memory for the shared pages")?;
        let words = f.words();
        for k in 0..WORDS {
            words.write(k, word(seed, i, k));
        }
        let r = table.grant_access(m, f.gfn(), false).map_err(|e| {
            log::error!("grant {i}: {e}");
            "grant_access failed"
        })?;
        frames.push(f);
        refs.push(r);
    }
    let port = xen::event_channel::alloc_unbound(m).map_err(|_| "alloc_unbound failed")?;
    events::bind(port, events::mark);
    let base = format!("{}/share", home(me));
    let _ = xenstore::with(|xs| xs.rm(TxId::NONE, &base));
    publish(&base, "", me, m)?;
    for (k, v) in [
        ("count", n as u64),
        ("seed", u64::from(seed)),
        ("evtchn", u64::from(port)),
    ] {
        publish(&format!("{base}/{k}"), &format!("{v}"), me, m)?;
    }
    for (j, chunk) in refs.chunks(REFS_PER_NODE).enumerate() {
        let list: Vec<String> = chunk.iter().map(|r| format!("{r}")).collect();
        publish(&format!("{base}/refs/{j}"), &list.join(" "), me, m)?;
    }
    publish(&format!("{base}/state"), "ready", me, m)?;
    crate::kprintln!("sharer: granted {n} pages to domain {m}, evtchn {port}");

    // 2-3. The mapper's verdict, then its reply words.
    let map_state = format!("{}/map/state", home(m));
    // Without the revoke step the mapper does not wait for us between
    // verifying and unmapping, so `unmapped` (which follows only a
    // successful verification) may be the first state we see.
    let state = wait_state(port, &map_state, &["verified", "unmapped"], "failed")
        .map_err(|_| "no verdict from the mapper")?;
    if state.starts_with("failed") {
        log::error!("mapper says: {state}");
        return Err("mapper could not verify the pages");
    }
    let bad = frames
        .iter()
        .enumerate()
        .filter(|(i, f)| f.words().read(0) != !word(seed, *i, 0))
        .count();
    if bad > 0 {
        log::error!("{bad} of {n} pages lack the mapper's reply");
        return Err("reply words missing");
    }
    crate::kprintln!("sharer: mapper verified {n} pages and replied");

    // Revoke variant: end access while the mapper still maps.
    let mut deferred = 0;
    if revoke {
        publish(&format!("{base}/state"), "revoking", me, m)?;
        for &r in &refs {
            match table.end_access(r) {
                Ok(EndAccess::Deferred) => deferred += 1,
                Ok(EndAccess::Ended) => {}
                Err(_) => return Err("end_access failed"),
            }
        }
        crate::kprintln!("sharer: {deferred} of {n} ends deferred while mapped");
        if deferred != n {
            return Err("a grant in use by the peer was ended");
        }
        publish(&format!("{base}/state"), "revoke-deferred", me, m)?;
    }

    // 4-5. Unmapped: end access, free, report. A mapper whose domain
    // died (its nodes gone) never unmaps: Xen releases its mappings as
    // it tears the domain down, and the deferred grants are reaped then.
    let state = wait_state(port, &map_state, &["unmapped"], "failed");
    let gone = matches!(state, Err(StateError::Gone));
    match state {
        Ok(v) if v == "unmapped" => {}
        Err(StateError::Gone) => {
            crate::kprintln!("sharer: the mapper's domain is gone before its unmap");
        }
        Ok(_) => return Err("mapper did not unmap"),
        Err(StateError::TimedOut) => return Err("peer timed out"),
    }
    if gone && !revoke {
        for &r in &refs {
            match table.end_access(r) {
                Ok(EndAccess::Deferred) => deferred += 1,
                Ok(EndAccess::Ended) => {}
                Err(_) => return Err("end_access failed"),
            }
        }
    }
    if revoke || deferred > 0 {
        let reaped = reap_all(table, deferred)?;
        crate::kprintln!("sharer: reaped {reaped} deferred grants after the unmap");
        if reaped != deferred {
            return Err("deferred grants were not all reaped");
        }
    } else {
        for &r in &refs {
            if !matches!(table.end_access(r), Ok(EndAccess::Ended)) {
                return Err("a grant was still in use after the unmap");
            }
        }
    }
    for f in frames {
        mem::free_page(f);
    }
    let _ = events::unbind(port);
    publish(&format!("{base}/state"), "done", me, m)?;
    let after = table.stats();
    crate::kprintln!(
        "sharer: grants live {} -> {}, pending {} -> {}; free pages {} -> {}",
        grants_before.live_refs,
        after.live_refs,
        grants_before.pending_refs,
        after.pending_refs,
        free_before,
        mem::free_pages()
    );
    if after.live_refs != grants_before.live_refs
        || after.pending_refs != grants_before.pending_refs
    {
        return Err("grant references leaked");
    }
    if mem::free_pages() != free_before {
        return Err("pages leaked");
    }
    Ok(())
}

/// Reaps deferred grants until `want` of them are back (the peer's
/// kernel, or Xen tearing the peer's domain down, lets go of them),
/// within `STEP_TIMEOUT_NS`; returns how many were reaped.
fn reap_all(table: &grants::Table, want: usize) -> Result<usize, &'static str> {
    let deadline = events::now_ns().saturating_add(STEP_TIMEOUT_NS);
    let mut reaped = 0;
    loop {
        reaped += table.reap().len() + grants::take_reaped().len();
        if reaped >= want {
            return Ok(reaped);
        }
        if events::now_ns() >= deadline {
            log::error!("{reaped} of {want} deferred grants reaped in time");
            return Err("deferred grants were not all reaped");
        }
        sched::sleep_until(events::now_ns().saturating_add(REAP_POLL_NS));
    }
}

/// Why [`wait_state`] returned without a value.
enum StateError {
    /// The node was read once and then vanished: its domain is gone.
    Gone,
    /// `STEP_TIMEOUT_NS` passed.
    TimedOut,
}

/// Waits for an event on `port` until `path` reads one of `wanted` or
/// starts with `failure`; returns the value. A node that was there and is
/// no more (the peer never removes it) means its domain is gone.
fn wait_state(
    port: Port,
    path: &str,
    wanted: &[&str],
    failure: &str,
) -> Result<String, StateError> {
    let deadline = events::now_ns().saturating_add(STEP_TIMEOUT_NS);
    let mut seen = false;
    loop {
        match xenstore::read_string(path) {
            Ok(v) if wanted.contains(&v.as_str()) || v.starts_with(failure) => return Ok(v),
            Ok(_) => seen = true,
            Err(_) if seen => return Err(StateError::Gone),
            Err(_) => {}
        }
        let now = events::now_ns();
        if now >= deadline {
            log::error!("timed out waiting for {path} to become {wanted:?}");
            return Err(StateError::TimedOut);
        }
        events::wait(port, (deadline - now).min(100_000_000));
    }
}

/// The mapper: maps the peer's grants with one batch and runs the protocol.
pub fn mapper(opts: &Options<'_>, revoke: bool) -> Outcome {
    let s = peer(opts)?;
    let me = our_domid()?;
    let table = grants::table();
    let base = format!("{}/share", home(s));
    let mine = format!("{}/map", home(me));
    let hole_before = layout::hole_in_use();
    let _ = xenstore::with(|xs| xs.rm(TxId::NONE, &mine));
    publish(&mine, "", me, s)?;

    // 1. Wait for the sharer.
    xenstore::wait_for_value(&format!("{base}/state"), &["ready"], STEP_TIMEOUT_NS)
        .map_err(xs_err("sharer never became ready"))?;
    let n = xenstore::read_u64(&format!("{base}/count")).map_err(xs_err("count"))? as usize;
    let seed = xenstore::read_u64(&format!("{base}/seed")).map_err(xs_err("seed"))? as u32;
    let remote_port =
        xenstore::read_u64(&format!("{base}/evtchn")).map_err(xs_err("evtchn"))? as Port;
    let mut refs: Vec<GrantRef> = Vec::with_capacity(n);
    for j in 0..n.div_ceil(REFS_PER_NODE) {
        let list = xenstore::read_string(&format!("{base}/refs/{j}")).map_err(xs_err("refs"))?;
        for r in list.split_ascii_whitespace() {
            refs.push(r.parse().map_err(|_| "a grant reference is not a number")?);
        }
    }
    if refs.len() != n || n == 0 {
        return Err("count does not match the refs");
    }
    let port = xen::event_channel::bind_interdomain(s, remote_port)
        .map_err(|_| "bind_interdomain failed")?;
    events::bind(port, events::mark);

    // 2. Map all N with one batch.
    let run = layout::alloc_hole(n as u64).map_err(|_| "no room in the hole")?;
    // SAFETY: the run is ours alone in the hole and holds no RAM; Xen maps
    // the grants there and nothing else uses those frames until we free them.
    let hole = unsafe { Hole::new(run.gfn, run.frames) };
    let reqs: Vec<MapRequest> = refs
        .iter()
        .enumerate()
        .map(|(i, &gref)| MapRequest {
            dom: s,
            gref,
            slot: i as u64,
            readonly: false,
        })
        .collect();
    let before = table.stats();
    let results = table.map(&hole, &reqs);
    let after_map = table.stats();
    let handles: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        log::error!("{failed} of {n} maps failed, first: {e}");
    }
    let map_calls = after_map.hypercalls - before.hypercalls;
    let retries = after_map.eagain_retries - before.eagain_retries;
    crate::kprintln!(
        "mapper: mapped {} of {n} pages with {map_calls} map hypercall(s) ({} per page), {retries} EAGAIN retries",
        handles.len(),
        Ratio(map_calls, n as u64)
    );

    // 3. Verify, reply, report.
    let mut verdict = String::from("verified");
    if failed == 0 {
        for i in 0..n {
            // SAFETY: slot `i` of the hole maps the peer's page until the
            // unmap below, inside the identity map.
            let words = unsafe { SharedPage::new((run.gfn + i as u64) * PAGE_SIZE) };
            if let Some(k) = (0..WORDS).find(|&k| words.read(k) != word(seed, i, k)) {
                verdict = format!("failed: page {i} word {k} is {:#x}", words.read(k));
                break;
            }
            words.write(0, !word(seed, i, 0));
        }
    } else {
        verdict = format!("failed: {failed} of {n} maps failed");
    }
    publish(&format!("{mine}/state"), &verdict, me, s)?;
    let _ = xen::event_channel::send(port);

    if revoke && failed == 0 {
        let v = xenstore::wait_for_value(
            &format!("{base}/state"),
            &["revoke-deferred"],
            STEP_TIMEOUT_NS,
        )
        .map_err(xs_err("sharer never tried to revoke"))?;
        // The sharer ended access: our mapping must be intact all the same.
        // SAFETY: as above; slot 0 is still mapped.
        let w1 = unsafe { SharedPage::new(run.gfn * PAGE_SIZE) }.read(1);
        crate::kprintln!("mapper: sharer says {v}; page 0 word 1 still reads {w1:#x}");
        if w1 != word(seed, 0, 1) {
            verdict = String::from("failed: mapping changed under revoke");
        }
        super::checkpoint::checkpoint("before-unmap")?;
    }

    // 4. Unmap with one batch.
    let unmaps: Vec<UnmapRequest> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.as_ref().ok().map(|&handle| UnmapRequest {
                slot: i as u64,
                handle,
            })
        })
        .collect();
    let before_unmap = table.stats();
    let unmapped = table.unmap(&hole, &unmaps);
    let unmap_calls = table.stats().hypercalls - before_unmap.hypercalls;
    let unmap_failed = unmapped.iter().filter(|r| r.is_err()).count();
    crate::kprintln!(
        "mapper: unmapped {} pages with {unmap_calls} unmap hypercall(s), {unmap_failed} failed",
        unmaps.len()
    );
    if unmap_failed == 0 {
        let _ = layout::free_hole(run);
    }
    publish(&format!("{mine}/state"), "unmapped", me, s)?;
    let _ = xen::event_channel::send(port);
    let done = xenstore::wait_for_value(&format!("{base}/state"), &["done"], STEP_TIMEOUT_NS);
    let _ = events::unbind(port);
    crate::kprintln!(
        "mapper: hole frames in use {} -> {}",
        hole_before,
        layout::hole_in_use()
    );
    // The same numbers for the scripts (`counter` in scripts/lib/xl.sh).
    crate::kprintln!(
        "COUNTERS mapper pages={n} mapped={} map_hypercalls={map_calls} eagain_retries={retries} unmap_hypercalls={unmap_calls} unmap_failed={unmap_failed} hole_frames={hole_before} hole_frames_after={}",
        handles.len(),
        layout::hole_in_use()
    );

    if verdict != "verified" {
        log::error!("{verdict}");
        return Err("pages did not verify");
    }
    if unmap_failed > 0 || layout::hole_in_use() != hole_before {
        return Err("unmap failed or hole frames leaked");
    }
    // One hypercall each, plus one more per round of EAGAIN retries.
    if (retries == 0 && map_calls != 1) || unmap_calls != 1 {
        return Err("map or unmap took more than one hypercall");
    }
    done.map_err(xs_err("sharer never finished"))?;
    Ok(())
}

/// `a / b` printed as a decimal fraction.
struct Ratio(u64, u64);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let milli = self.0 * 1_000_000 / self.1.max(1);
        write!(f, "{}.{:06}", milli / 1_000_000, milli % 1_000_000)
    }
}
