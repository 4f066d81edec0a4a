//! gnt-map's soak mode (9): the same peer's grants mapped, touched and
//! unmapped [`SOAK_CYCLES`] times on one thread, every cycle checked.

use gnttab::Gnttab;
use urt::{PAGE, println};

/// Map, touch and unmap cycles.
pub const SOAK_CYCLES: u64 = 10_000;
/// Grants per mapping.
const SOAK_PAGES: usize = 16;

/// Maps windows of [`SOAK_PAGES`] of the peer's `refs` in turn, checks two
/// words of each page against the share's pattern (`word(page, index)`;
/// not word 0, which holds the reply, nor the last, the notify byte's) and
/// unmaps, [`SOAK_CYCLES`] times. The kernel
/// must make one map and one unmap hypercall per cycle and leak nothing
/// (the scenario checks the counters and the baseline after the exit).
pub fn soak(
    gnt: &Gnttab,
    peer: u32,
    refs: &[u32],
    word: impl Fn(usize, usize) -> u32,
) -> Result<(), &'static str> {
    let windows = refs.len() / SOAK_PAGES;
    if windows == 0 {
        return Err("the soak mode needs 16 grants");
    }
    let t0 = urt::clock_ns();
    let mut wrong = 0u64;
    for c in 0..SOAK_CYCLES {
        let first = (c as usize % windows) * SOAK_PAGES;
        let addr = gnt
            .map_domain_grant_refs(peer, &refs[first..first + SOAK_PAGES], false)
            .map_err(|_| "soak: map")?;
        for p in 0..SOAK_PAGES {
            let page = (addr as usize + p * PAGE) as *const u32;
            for k in [1, 512] {
                // SAFETY: inside the read-only mapping just made.
                let v = unsafe { page.add(k).read_volatile() };
                wrong += u64::from(v != word(first + p, k));
            }
        }
        gnt.unmap(addr, SOAK_PAGES).map_err(|_| "soak: unmap")?;
    }
    let ms = (urt::clock_ns() - t0) / 1_000_000;
    println!(
        "gnt-map: soak: {SOAK_CYCLES} map/touch/unmap cycles of {SOAK_PAGES} grants in {ms} ms, {wrong} wrong word(s)"
    );
    if wrong != 0 {
        return Err("soak: wrong words");
    }
    Ok(())
}
