//! The gntdev demo scenarios: user programs share and map grants through
//! `/dev/xen/gntdev` (`tools/utest`'s `gnt-share` and `gnt-map`, with
//! `/dev/xen/xenstore` and `/dev/xen/evtchn` for the protocol of
//! `docs/share-protocol.md`, gntdev variant). The kernel starts the
//! program, waits for it, reaps deferred grants, reports the device's
//! counters and checks that free pages, grant references and hole frames
//! are back to their starting values.
//!
//! Command line: `scenario=gntdev-share peer=DOMID pages=N`,
//! `scenario=gntdev-map [peer=DOMID]`.

use super::Outcome;
use crate::cmdline::Options;
use crate::{dev, events, kprintln, layout, mem, proc};

/// How long deferred grants may take to complete after the program.
const REAP_TIMEOUT_NS: u64 = 10_000_000_000;

/// Free pages, grant references (live and pending), hole frames.
fn baseline() -> (u64, u64, u64) {
    let (live, pending) = dev::grant_refs();
    (mem::free_pages(), live + pending, layout::hole_in_use())
}

/// Runs `program` with `arg`, then checks the baseline; `who` prefixes the
/// report lines.
fn run(who: &str, program: &str, arg: u64) -> Outcome {
    let before = baseline();
    let s0 = dev::gntdev_stats();
    let p = proc::spawn(program, arg).map_err(|e| {
        log::error!("spawn {program}: {e}");
        "cannot start the program"
    })?;
    let status = proc::wait(&p);
    drop(p);
    // The peer may still map what we shared: reap until it lets go.
    let deadline = events::now_ns().saturating_add(REAP_TIMEOUT_NS);
    while dev::gntdev_stats().pending_grants != 0 && events::now_ns() < deadline {
        dev::reap_gntdev();
        events::wait(0, 10_000_000);
    }
    dev::reap_gntdev();
    let s = dev::gntdev_stats();
    let after = baseline();
    kprintln!(
        "{who}: {program} exited with status {status}; gntdev: {} mapping(s), {} map hypercall(s), {} populate(s), {} unmap hypercall(s), {} notify byte(s) cleared, {} event(s) sent",
        s.mappings - s0.mappings,
        s.map_hypercalls - s0.map_hypercalls,
        s.populates - s0.populates,
        s.unmap_hypercalls - s0.unmap_hypercalls,
        s.bytes_cleared - s0.bytes_cleared,
        s.events_sent - s0.events_sent,
    );
    kprintln!(
        "{who}: baseline free pages {} -> {}, grant refs {} -> {}, hole frames {} -> {}",
        before.0,
        after.0,
        before.1,
        after.1,
        before.2,
        after.2
    );
    if status != 0 {
        return Err("the program failed");
    }
    if after != before {
        return Err("free pages, grant references or hole frames not back to baseline");
    }
    Ok(())
}

/// Domain A: `gnt-share` shares `pages=` pages with `peer=`.
pub fn share(opts: &Options<'_>) -> Outcome {
    let peer = super::share::peer(opts)?;
    let pages = opts.get_u64("pages").unwrap_or(16);
    run("sharer", "gnt-share", u64::from(peer) << 32 | pages)
}

/// Domain B: `gnt-map` maps the peer's share and exits without unmapping.
pub fn map(opts: &Options<'_>) -> Outcome {
    let peer = super::share::peer(opts)?;
    run("mapper", "gnt-map", u64::from(peer))
}
